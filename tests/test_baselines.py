"""Reference rows (issue 29, item 4): published human baselines and estimates, each with its citation, shown
beside the models' results in `helmflow leaderboard`, the report's leaderboard and history pages and `helmflow
history`, labelled as references and never ranked: the win rates are the models' alone. On a warehouse
written row by row (tests/reference_runs.py: no model, fast).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from helmflow.flows.cli import main
from helmflow.flows.leaderboard import leaderboard_of
from helmflow.specs import reference_rows
from helmflow.specs.library import find
from helmflow.specs.reference_rows import load_references, read_references
from helmflow.warehouse.db import connect
from helmflow.warehouse.store import Warehouse
from tests.reference_runs import FLAN, SMOL, html_rows, reference_pages, reference_warehouse, table_rows

SHIPPED = Path(reference_rows.__file__).parent / "references" / "baselines.yaml"
GLUE, SUPERGLUE, MMLU = (
    "https://arxiv.org/abs/1905.10425",
    "https://arxiv.org/abs/1905.00537",
    "https://arxiv.org/abs/2009.03300",
)
BBH = "https://arxiv.org/abs/2210.09261"
EXPERT = "reference: expert-level accuracy, estimated (Hendrycks et al. 2021)"
MTURK = "reference: non-expert humans, Mechanical Turk (Hendrycks et al. 2021)"
HUMAN = "reference: human baseline (Nangia & Bowman 2019)"

# A user's file: a baseline that would beat both models on both scenarios if it were ranked.
ORACLE = """\
baselines:
  - name: oracle
    label: oracle (test)
    citation: a test's own number
    source: https://example.org/oracle
    scores:
      - {scenario: sst2, value: 1.0, reported: "100"}
      - {scenario: mmlu, value: 1.0, reported: "100"}
"""


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return reference_warehouse(tmp_path_factory)


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("refs") / "oracle.yaml"
    path.write_text(ORACLE)
    return path


@pytest.fixture(scope="module")
def board_out(db: Path, oracle: Path) -> str:
    """What `helmflow leaderboard --references oracle.yaml` prints (one run of the board's bootstrap for the module)."""
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert main(["--db", str(db), "leaderboard", "--references", str(oracle)]) == 0
    return out.getvalue()


@pytest.fixture(scope="module")
def site(db: Path, oracle: Path) -> Path:
    return reference_pages(db, oracle.parent / "site", [oracle])


def test_the_shipped_numbers_are_the_published_ones() -> None:
    shipped = read_references(SHIPPED)
    rows = {(r.baseline, r.scenario): (r.metric, r.value, r.reported) for r in shipped.rows}
    glue = {("glue_human", s): ("exact_match", v, p) for s, v, p in [
        ("sst2", 0.978, "97.8 (accuracy)"),
        ("mrpc", 0.808, "86.3/80.8 (F1/accuracy): accuracy"),
        ("qqp", 0.804, "59.5/80.4 (F1/accuracy): accuracy"),
        ("mnli", 0.920, "92.0/92.8 (matched/mismatched accuracy): matched"),
        ("qnli", 0.912, "91.2 (accuracy)"),
        ("rte_glue", 0.936, "93.6 (accuracy)"),
        ("wnli", 0.959, "95.9 (accuracy)"),
    ]}  # fmt: skip
    superglue = {("superglue_human", s): (m, v, p) for s, m, v, p in [
        ("boolq", "exact_match", 0.890, "89.0 (accuracy)"),
        ("helm_boolq", "quasi_exact_match", 0.890, "89.0 (accuracy)"),
        ("cb", "exact_match", 0.989, "95.8/98.9 (F1/accuracy): accuracy"),
        ("copa", "exact_match", 1.0, "100.0 (accuracy)"),
        ("rte", "exact_match", 0.936, "93.6 (accuracy)"),
        ("wic", "exact_match", 0.800, "80.0 (accuracy)"),
        ("wsc", "exact_match", 1.0, "100.0 (accuracy)"),
    ]}  # fmt: skip
    mmlu = {
        ("mmlu_expert", "mmlu"): ("exact_match", 0.898, "89.8% (accuracy)"),
        ("mmlu_expert", "helm_mmlu"): ("exact_match", 0.898, "89.8% (accuracy)"),
        ("mmlu_mturk", "mmlu"): ("exact_match", 0.345, "34.5% (accuracy)"),
        ("mmlu_mturk", "helm_mmlu"): ("exact_match", 0.345, "34.5% (accuracy)"),
    }
    # BIG-Bench Hard, Table 3: the human raters' average and best, per task (percent).
    bbh = {
        "boolean_expressions": (79.4, 100), "causal_judgement": (69.6, 100), "date_understanding": (76.8, 100),
        "disambiguation_qa": (66.6, 93.3), "dyck_languages": (47.8, 100), "formal_fallacies": (90.8, 100),
        "geometric_shapes": (54.0, 100), "hyperbaton": (74.7, 100), "movie_recommendation": (60.7, 90.0),
        "multistep_arithmetic_two": (9.7, 25.0), "navigate": (81.9, 100), "object_counting": (86.1, 100),
        "penguins_in_a_table": (78.0, 100), "reasoning_about_colored_objects": (75.4, 100),
        "ruin_names": (77.7, 100), "salient_translation_error_detection": (36.7, 80.0), "snarks": (76.7, 100),
        "sports_understanding": (70.8, 100), "temporal_sequences": (90.8, 100), "web_of_lies": (81.3, 100),
        "word_sorting": (62.6, 100),
    }  # fmt: skip
    expected = glue | superglue | mmlu
    for task, (average, best) in bbh.items():
        expected[("bbh_human_average", f"bbh_{task}")] = ("exact_match", round(average / 100, 3), f"{average:.1f}")
        shown = f"{best:g}" if best == 100 else f"{best:.1f}"  # as the table prints them: 100, 93.3
        expected[("bbh_human_max", f"bbh_{task}")] = ("exact_match", round(best / 100, 3), shown)
    assert rows == expected
    labels = {(r.baseline, r.label, r.source) for r in shipped.rows}
    assert labels == {
        ("glue_human", "human baseline (Nangia & Bowman 2019)", GLUE),
        ("superglue_human", "human baseline (Wang et al. 2019, SuperGLUE)", SUPERGLUE),
        ("mmlu_expert", "expert-level accuracy, estimated (Hendrycks et al. 2021)", MMLU),
        ("mmlu_mturk", "non-expert humans, Mechanical Turk (Hendrycks et al. 2021)", MMLU),
        ("bbh_human_average", "human raters, average (BIG-bench; Suzgun et al. 2022)", BBH),
        ("bbh_human_max", "human raters, best (BIG-bench; Suzgun et al. 2022)", BBH),
    }


def test_each_shipped_baseline_names_a_library_scenario_and_its_headline_metric() -> None:
    """A reference shows only beside a headline of its own (category, metric): each shipped one must name a
    scenario of the library whose main metric it is, or it would never show."""
    wanted = {(row.scenario, row.category, row.metric) for row in read_references(SHIPPED).rows}
    found = {(s, "accuracy", find("scenario", s).spec.main_metric or "exact_match") for s, _, _ in wanted}  # type: ignore[union-attr]
    assert wanted == found


def test_the_leaderboard_lists_references_after_the_models(board_out: str) -> None:
    """After each scenario's models: its references, helmflow's own then the user's file's (the oracle), each
    labelled 'reference:' with the number as published; then one line per baseline citing its source."""
    values = table_rows(board_out.split("mean win rate (HELM)")[1])
    oracle = ["reference: oracle (test)", "accuracy", "exact_match", "1 · reported 100"]
    assert values == [
        [FLAN, "mmlu", "accuracy", "exact_match", "0.25 [0.1119, 0.4687]"],
        [SMOL, "mmlu", "accuracy", "exact_match", "0.15 [0.05237, 0.3604]"],
        [EXPERT, "mmlu", "accuracy", "exact_match", "0.898 · reported 89.8% (accuracy)"],
        [MTURK, "mmlu", "accuracy", "exact_match", "0.345 · reported 34.5% (accuracy)"],
        [oracle[0], "mmlu", *oracle[1:]],
        [FLAN, "sst2", "accuracy", "exact_match", "0.8 [0.584, 0.9193] †1"],
        [SMOL, "sst2", "accuracy", "exact_match", "0.25 [0.1119, 0.4687]"],
        [HUMAN, "sst2", "accuracy", "exact_match", "0.978 · reported 97.8 (accuracy)"],
        [oracle[0], "sst2", *oracle[1:]],
    ]
    cited = board_out.split("never ranked and never in a win rate:\n")[1].splitlines()[:4]
    assert [line.split(": ")[0] for line in cited] == [
        "  expert-level accuracy, estimated (Hendrycks et al. 2021)",
        "  non-expert humans, Mechanical Turk (Hendrycks et al. 2021)",
        "  oracle (test)",
        "  human baseline (Nangia & Bowman 2019)",
    ]
    assert [line.rsplit(" ", 1)[1] for line in cited] == [
        f"({MMLU})",
        f"({MMLU})",
        "(https://example.org/oracle)",
        f"({GLUE})",
    ]


def test_win_rates_are_the_models_alone(db: Path, board_out: str, site: Path) -> None:
    """An 'oracle' reference at 1.0 on both scenarios would take every column from both models if it were
    ranked (their win rates would fall to 0.5 and 0): the board, the CLI and the report keep HELM's 1 and 0."""
    board = table_rows(board_out.split("mean win rate (HELM)")[0])
    assert board == [[f"{FLAN} †1", "1 [0.5, 1]", "1 [0.5, 1]"], [SMOL, "0 [0, 0.5]", "0 [0, 0.5]"]]
    assert "oracle" not in board_out.split("mean win rate (HELM)")[0]  # not a row of the board
    assert (
        "tied in mmlu accuracy (exact_match): flan-t5-small ≈ smol (not significant at 0.05: McNemar p = 0.688)"
        in board_out
    )
    # The same as the board computed by code that never reads a references file, and as the warehouse's SQL view.
    runs = Warehouse(db).report_runs(None)
    result = leaderboard_of(Warehouse(db), runs[runs.latest])
    assert result.rates == {FLAN: {"accuracy": 1.0, "overall": 1.0}, SMOL: {"accuracy": 0.0, "overall": 0.0}}
    assert result.intervals == {
        FLAN: {"accuracy": (0.5, 1.0), "overall": (0.5, 1.0)},
        SMOL: {"accuracy": (0.0, 0.5), "overall": (0.0, 0.5)},
    }
    with connect(db, read_only=True) as con:
        view = {
            (m, c): v for m, c, v in con.execute("select model, category, mean_win_rate from leaderboard").fetchall()
        }
    assert view == {(FLAN, "accuracy"): 1.0, (FLAN, "overall"): 1.0, (SMOL, "accuracy"): 0.0, (SMOL, "overall"): 0.0}
    # The report (written with the oracle's file too): the ranking table's cells, the reference in its own table.
    assert html_rows(site / "index.html", "leaderboard") == [
        ["model", "overall", "accuracy"],
        [f"{FLAN}†1", "1 [0.5, 1]", "1 [0.5, 1]"],
        [SMOL, "0 [0, 0.5]", "0 [0, 0.5]"],
    ]


def test_the_report_leaderboard_shows_the_references(site: Path) -> None:
    rows = html_rows(site / "index.html", "reference-rows")
    metric, oracle = "accuracy: exact_match", "reference: oracle (test)"
    assert rows == [
        ["scenario", "metric", "model or reference", "value", "source"],
        ["mmlu", metric, FLAN, "0.25 [0.1119, 0.4687]", ""],
        ["mmlu", metric, SMOL, "0.15 [0.05237, 0.3604]", ""],
        ["mmlu", metric, EXPERT, "0.898 · reported 89.8% (accuracy)", MMLU],
        ["mmlu", metric, MTURK, "0.345 · reported 34.5% (accuracy)", MMLU],
        ["mmlu", metric, oracle, "1 · reported 100", "https://example.org/oracle"],
        ["sst2", metric, f"{FLAN}†1", "0.8 [0.584, 0.9193]", ""],
        ["sst2", metric, SMOL, "0.25 [0.1119, 0.4687]", ""],
        ["sst2", metric, HUMAN, "0.978 · reported 97.8 (accuracy)", GLUE],
        ["sst2", metric, oracle, "1 · reported 100", "https://example.org/oracle"],
    ]
    page = (site / "index.html").read_text()
    # Reference rows carry data-ref-value, never the data-value of the ranking's cells (which tests and scripts read).
    assert page.count('data-kind="reference"') == 5 and page.count("data-ref-value=") == 9
    # The history page: under each chart of a metric with references, the references (unlabelled lists: id '').
    history = html_rows(site / "history.html", "")
    glue = f"reference, not a run: human baseline (Nangia & Bowman 2019): 0.978 · reported 97.8 (accuracy) · {GLUE}"
    assert history.count([glue]) == 2  # under flan-t5-small's and smol's sst2 accuracy charts


def test_history_draws_references_on_the_runs_scale(db: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--db", str(db), "history", "--model", SMOL, "--scenario", "mmlu", "--metric", "exact_match"]) == 0
    out = capsys.readouterr().out
    assert table_rows(out) == [
        ["2025-05-01 09:30:00", "smol-mmlu", "accuracy", "0.15 [0.05237, 0.3604]", "20", "████▌"]
    ]
    # 0.898 is 27 blocks of 30 on the 0-1 scale (215.5 eighths, rounded to 216); 0.345 is 10 blocks and 3 eighths.
    tail = f" · {MMLU} (a published result, not a run)"
    assert out.splitlines()[-3:] == [
        f"{EXPERT}: 0.898 {'█' * 27} · reported 89.8% (accuracy){tail}",
        f"{MTURK}: 0.345 {'█' * 10}▍ · reported 34.5% (accuracy){tail}",
        "bars: from 0, 30 blocks = 1",
    ]


def test_the_report_command_reads_its_references_first(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`helmflow report --references FILE` reads the file before it writes a page: a mistake stops it with the
    file and line, and leaves no report (nor half of one) behind."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("contamination:\n  - models: [smol]\n")
    out = tmp_path / "site"
    assert main(["--db", str(db), "report", "--out", str(out), "--references", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}:2: field 'contamination.0.scenarios' is required\n")
    assert not out.exists() and list(tmp_path.iterdir()) == [bad]


def test_a_later_file_replaces_a_baseline_of_the_same_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Users correct or extend the shipped numbers: HELMFLOW_SPEC_PATH folders' references/, then
    HELMFLOW_REFERENCES, then --references; a baseline named again replaces every row of the earlier one."""
    folder = tmp_path / "mine" / "references"
    folder.mkdir(parents=True)
    (folder / "extra.yaml").write_text(ORACLE.replace("oracle (test)", "oracle (spec path)"))
    fix = tmp_path / "fix.yaml"
    fix.write_text(
        "baselines:\n  - name: glue_human\n    label: corrected\n    citation: an erratum\n"
        "    source: https://example.org/erratum\n    scores:\n      - {scenario: sst2, value: 0.9, reported: '90'}\n"
    )
    monkeypatch.setenv("HELMFLOW_SPEC_PATH", str(tmp_path / "mine"))
    monkeypatch.setenv("HELMFLOW_REFERENCES", str(fix))
    refs = load_references()
    assert [(r.label, r.value, r.where) for r in refs.rows_for("sst2")] == [
        ("corrected", 0.9, f"{fix}:7"),
        ("oracle (spec path)", 1.0, f"{folder / 'extra.yaml'}:7"),
    ]
    assert refs.rows_for("mrpc") == []  # glue_human's other rows went with it
    later = tmp_path / "later.yaml"
    later.write_text(ORACLE.replace("oracle (test)", "oracle (command line)"))
    assert [r.label for r in load_references([later]).rows_for("mmlu")][-1] == "oracle (command line)"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "baselines:\n  - name: mine\n    label: mine\n    citation: me\n    source: https://example.org/x\n"
            "    scores:\n      - {scenario: sst2, value: 97.8, reported: '97.8'}\n",
            ":7: field 'baselines.0.scores.0.value': 97.8 is outside [0, 1]: accuracy metrics are proportions "
            "(write 0.978 for 97.8 %)",
        ),
        (
            "baselines:\n  - name: mine\n    label: mine\n    citation: me\n    source: my memory\n"
            "    scores:\n      - {scenario: sst2, value: 0.9}\n",
            ":5: field 'baselines.0.source': String should match pattern '^https?://\\S+$'\n{file}:7: field "
            "'baselines.0.scores.0.reported' is required",
        ),
        (
            "baselines:\n  - name: a\n    label: a\n    citation: a\n    source: https://example.org/a\n"
            "    scores: [{scenario: sst2, value: 0.9, reported: '90'}]\n  - name: a\n    label: b\n"
            "    citation: b\n    source: https://example.org/b\n"
            "    scores: [{scenario: sst2, value: 0.8, reported: '80'}]\n",
            ":7: field 'baselines.1.name': 'a' is named twice in this file (a baseline replaces one of the same name "
            "from an earlier file only)",
        ),
        (
            "baseline: []\n",
            ":1: unknown field 'baseline'; did you mean 'baselines'? (expected one of: baselines, contamination)",
        ),
    ],
)
def test_a_bad_file_is_refused_with_its_file_and_line(
    text: str, problem: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    assert main(["--db", str(tmp_path / "w.duckdb"), "leaderboard", "--references", str(path)]) == 2
    assert capsys.readouterr().err == f"error: {path}{problem.format(file=path)}\n"
