"""Declared contamination (issue 29, item 3): (model, scenario) pairs that a published source says the model was
trained on, from helmflow's list and a user's file, marked † in `helmflow leaderboard`, the report's
leaderboard and history pages and `helmflow history`, each mark a numbered footnote citing its source. Nothing
is removed or re-ranked. On a warehouse written row by row (tests/reference_runs.py: no model, fast).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from helmflow.flows.cli import main
from helmflow.flows.reference_view import contamination_marks
from helmflow.specs import reference_rows
from helmflow.specs.library import spec_names
from helmflow.specs.reference_rows import load_references, matches, read_references
from tests.reference_runs import DAY, FLAN, GOLDS, SMOL, html_rows, reference_pages, reference_warehouse, table_rows
from tests.truth_runs import McRun, record_mc_run

SHIPPED = Path(reference_rows.__file__).parent / "references" / "contamination.yaml"
FLAN_SOURCE = "https://github.com/google-research/FLAN/blob/main/flan/v2/flan_collection_info.csv"
FLAN_NOTE = (
    "Flan-T5 was instruction-tuned on the Flan Collection (Chung et al. 2022, https://arxiv.org/abs/2210.11416; "
    "Longpre et al. 2023, https://arxiv.org/abs/2301.13688), whose list of datasets names these: arc_challenge, "
    "arc_easy, bool_q, cb, cola, copa, mnli, glue_mrpc, multirc, qnli, glue_qqp, record, rte, sst2, wic, wnli, "
    "wsc, cnn_dailymail, hellaswag, imdb_reviews, natural_questions, openbookqa, quac, xsum and cot_gsm8k."
)
FLAN_LINE = f"†1 declared contamination (strong) of flan-t5-small on sst2: {FLAN_NOTE} Source: {FLAN_SOURCE}"
USER = """\
# a user's own declaration: its model card says so
contamination:
  - models: [SMOL]
    scenarios: [mmlu, sst*]
    level: weak
    source: https://example.org/smol-card
    note: Its model card lists MMLU and SST-2 among the fine-tuning data.
"""
SMOL_LINE = (
    "†2 declared contamination (weak) of smol on mmlu, sst2: Its model card lists MMLU and SST-2 among the "
    "fine-tuning data. Source: https://example.org/smol-card"
)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return reference_warehouse(tmp_path_factory)


@pytest.fixture(scope="module")
def user_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("declared") / "mine.yaml"
    path.write_text(USER)
    return path


@pytest.fixture(scope="module")
def board_out(db: Path, user_file: Path) -> str:
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert main(["--db", str(db), "leaderboard", "--references", str(user_file)]) == 0
    return out.getvalue()


@pytest.fixture(scope="module")
def pages(db: Path, user_file: Path) -> Path:
    return reference_pages(db, user_file.parent / "site", [user_file])


def test_the_shipped_declarations_and_their_sources() -> None:
    declared = read_references(SHIPPED).declared
    assert [(d.models, d.level, d.source) for d in declared] == [
        (("t0pp",), "strong", "https://arxiv.org/abs/2110.08207"),
        (
            ("davinci", "curie", "babbage", "ada", "text-davinci-002", "text-davinci-003", "text-curie-001",
             "text-babbage-001", "text-ada-001", "code-davinci-001", "code-davinci-002", "code-cushman-001"),
            "weak",
            "https://arxiv.org/abs/2005.14165",
        ),
        (("gpt-4", "gpt-4-0314", "gpt-4-0613", "gpt-4-32k", "gpt-4-32k-0314", "gpt-4-32k-0613"), "strong",
         "https://arxiv.org/abs/2303.08774"),
        (("flan-t5-*",), "strong", FLAN_SOURCE),
        (("llama-2-*",), "weak", "https://arxiv.org/abs/2307.09288"),
    ]  # fmt: skip
    names = spec_names("scenario")
    covered = [sorted(n for n in names if any(d.covers(d.models[0], n) for _ in [0])) for d in declared]
    assert covered == [
        ["boolq", "helm_boolq", "helm_cnn_dailymail", "helm_hellaswag", "helm_imdb", "helm_openbookqa", "helm_xsum"],
        ["boolq", "helm_boolq", "helm_hellaswag", "helm_natural_qa_closedbook", "helm_natural_qa_openbook_longans",
         "helm_openbookqa", "helm_quac"],
        ["gsm8k_cot"],
        ["arc_challenge", "arc_challenge_lettered", "arc_easy", "arc_easy_lettered", "boolq", "cb", "cola", "copa",
         "gsm8k_cot", "helm_boolq", "helm_cnn_dailymail", "helm_hellaswag", "helm_imdb",
         "helm_natural_qa_closedbook", "helm_natural_qa_openbook_longans", "helm_openbookqa", "helm_quac",
         "helm_xsum", "mnli", "mrpc", "multirc", "qnli", "qqp", "record", "rte", "rte_glue", "sst2", "wic",
         "wnli", "wsc"],
        ["helm_hellaswag", "helm_mmlu", "mmlu"],
    ]  # fmt: skip
    # Every pattern names a scenario of the library: a typo would mark nothing, silently.
    for d in declared:
        assert all(any(matches(p, n) for n in names) for p in d.scenarios), d.where


@pytest.mark.parametrize(
    ("pattern", "name", "matched"),
    [
        ("davinci", "davinci", True),
        ("davinci", "openai/davinci", True),  # a pattern without '/' also matches the name's last part
        ("davinci", "text-davinci-003", False),
        ("openai/davinci", "davinci", False),
        ("flan-t5-*", "flan-t5-small", True),
        ("flan-t5-*", "google/flan-t5-base", True),
        ("llama-2-*", "Llama-2-7b-hf", True),  # without regard to case
        ("gpt-4", "gpt-4o", False),
        ("arc_*", "arc_easy_lettered", True),
        ("sst*", "sst2", True),
    ],
)
def test_names_match_by_glob_case_and_last_part(pattern: str, name: str, matched: bool) -> None:
    assert matches(pattern, name) is matched


def test_only_the_declarations_that_cover_a_shown_result_are_numbered(user_file: Path) -> None:
    refs = load_references([user_file])
    assert contamination_marks(refs, [(FLAN, "mmlu")]).footnotes == []  # Flan's list has no MMLU
    marks = contamination_marks(refs, [(SMOL, "mmlu"), (FLAN, "sst2"), (FLAN, "mmlu"), (SMOL, "sst2")])
    assert [(f.number, f.declared.source, f.pairs) for f in marks.footnotes] == [
        (1, FLAN_SOURCE, ((FLAN, "sst2"),)),
        (2, "https://example.org/smol-card", ((SMOL, "mmlu"), (SMOL, "sst2"))),
    ]
    assert (marks.of_pair(FLAN, "sst2"), marks.of_pair(FLAN, "mmlu"), marks.of_model(SMOL)) == ([1], [], [2])
    assert marks.footnotes[1].declared.where == f"{user_file}:3"


def test_the_leaderboard_marks_each_declared_result(board_out: str) -> None:
    board, values = board_out.split("mean win rate (HELM)")
    # The marks name models in the ranking; the ranking itself is unchanged (1 and 0: flan-t5-small leads both).
    assert table_rows(board) == [[f"{FLAN} †1", "1 [0.5, 1]", "1 [0.5, 1]"], [f"{SMOL} †2", "0 [0, 0.5]", "0 [0, 0.5]"]]
    models = [row for row in table_rows(values) if not row[0].startswith("reference: ")]
    assert models == [
        [FLAN, "mmlu", "accuracy", "exact_match", "0.25 [0.1119, 0.4687]"],
        [SMOL, "mmlu", "accuracy", "exact_match", "0.15 [0.05237, 0.3604] †2"],
        [FLAN, "sst2", "accuracy", "exact_match", "0.8 [0.584, 0.9193] †1"],
        [SMOL, "sst2", "accuracy", "exact_match", "0.25 [0.1119, 0.4687] †2"],
    ]
    assert board_out.splitlines()[-2:] == [FLAN_LINE, SMOL_LINE]


def test_the_report_marks_and_cites(pages: Path) -> None:
    index = pages / "index.html"
    assert html_rows(index, "leaderboard")[1:] == [
        [f"{FLAN}†1", "1 [0.5, 1]", "1 [0.5, 1]"],
        [f"{SMOL}†2", "0 [0, 0.5]", "0 [0, 0.5]"],
    ]
    models = [row[:4] for row in html_rows(index, "reference-rows")[1:] if not row[2].startswith("reference: ")]
    assert models == [
        ["mmlu", "accuracy: exact_match", FLAN, "0.25 [0.1119, 0.4687]"],
        ["mmlu", "accuracy: exact_match", f"{SMOL}†2", "0.15 [0.05237, 0.3604]"],
        ["sst2", "accuracy: exact_match", f"{FLAN}†1", "0.8 [0.584, 0.9193]"],
        ["sst2", "accuracy: exact_match", f"{SMOL}†2", "0.25 [0.1119, 0.4687]"],
    ]
    shipped = "helmflow's specs/references/contamination.yaml:63"  # not this machine's install path
    assert html_rows(index, "contamination") == [
        [f"{FLAN_LINE} (declared in {shipped})"],
        [f"{SMOL_LINE} (declared in {pages.parent / 'mine.yaml'}:3)"],
    ]
    page = index.read_text()
    # Each mark links its footnote; every link stays within the page (the report opens from disk).
    assert page.count('<a href="#contamination-1">†1</a>') == 2 and page.count('<a href="#contamination-2">†2</a>') == 3
    assert 'id="contamination-1"' in page and 'id="contamination-2"' in page
    # Under each chart of a marked model × scenario, its declaration (one pair: a plain †, no number).
    history = [row[0] for row in html_rows(pages / "history.html", "") if "declared contamination" in row[0]]
    assert history == [
        FLAN_LINE.replace("†1", "†"),
        SMOL_LINE.replace("†2", "†").replace("mmlu, sst2", "mmlu"),
        SMOL_LINE.replace("†2", "†").replace("mmlu, sst2", "sst2"),
    ]


def test_history_prints_the_footnote(db: Path, user_file: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["--db", str(db), "history", "--model", SMOL, "--scenario", "sst2", "--metric", "exact_match"]
    assert main([*args, "--references", str(user_file)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2:] == [SMOL_LINE.replace("†2", "†").replace("mmlu, sst2", "sst2"), "bars: from 0, 30 blocks = 1"]


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        (
            "  - models: [smol]\n    scenarios: [mmlu]\n    level: medium\n    source: a blog\n    note: x\n",
            ":4: field 'contamination.0.level': Input should be 'strong' or 'weak'\n{file}:5: field "
            "'contamination.0.source': String should match pattern '^https?://\\S+$'",
        ),
        (
            "  - models: []\n    scenarios: [mmlu]\n    level: weak\n    source: https://example.org\n    note: x\n",
            ":2: field 'contamination.0.models': List should have at least 1 item after validation, not 0",
        ),
        (
            "  - model: [smol]\n    models: [smol]\n    scenarios: [mmlu]\n    level: weak\n"
            "    source: https://example.org\n    note: x\n",
            ":2: unknown field 'contamination.0.model'; did you mean 'models'? (expected one of: level, models, "
            "note, scenarios, source)",
        ),
    ],
)
def test_a_bad_declaration_is_refused_with_its_file_and_line(
    entry: str, problem: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("contamination:\n" + entry)
    args = ["--db", str(tmp_path / "w.duckdb"), "history", "--model", "m", "--scenario", "s", "--metric", "x"]
    assert main([*args, "--references", str(path)]) == 2
    assert capsys.readouterr().err == f"error: {path}{problem.format(file=path)}\n"


def test_one_model_s_front_page_marks_its_scores(tmp_path: Path) -> None:
    """With one model there is no ranking: the front page lists its headline scores by scenario, and a
    declared scenario is marked there, its footnote below."""
    db = tmp_path / "w.duckdb"
    record_mc_run(db, McRun("flan-only", FLAN, "sst2", GOLDS, GOLDS, DAY, perturbed=False))
    index = reference_pages(db, tmp_path / "site", []) / "index.html"
    assert [row[:2] for row in html_rows(index, "headline-scores")] == [
        ["scenario", "accuracy"],
        ["sst2†1", "1 [0.8389, 1]exact_match"],
    ]
    assert html_rows(index, "contamination") == [
        [f"{FLAN_LINE} (declared in helmflow's specs/references/contamination.yaml:63)"]
    ]
