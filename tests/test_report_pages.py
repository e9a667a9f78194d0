"""The instance browser's data in pages: a run's predictions are written as a small index and data pages
of 2,000 rows (a few-shot prompt's shared head stored once per page, a perturbed copy as the words that
changed), read back exactly, and browsed in Chromium: the first rows at once, the last page on demand,
a search over every page. Warehouses are written row by row as the flow writes them (no model: fast).
"""

from __future__ import annotations

import json
import random
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from helmflow.flows.cli import main
from helmflow.flows.report.site import _json_string_for_script, write_instances
from helmflow.tasks.records import LETTERS, Completion, Instance, Prediction, Request, Stat
from helmflow.warehouse.db import connect
from helmflow.warehouse.rows import result_frames
from helmflow.warehouse.store import Warehouse
from tests.test_report import needs_browser
from tests.truth_runs import McRun, prompt_of, record_mc_run

RUN = "pages0000001"
ODD = "odd000000001"
INSTANCES = 2500  # 5,000 rows with their typos copies: data pages of 2,000, 2,000 and 1,000 rows
SUBJECTS = ["anatomy", "astronomy", "virology"]  # a third of the instances each, in order
MARKUP = "</script><script>alert(1)</script><!--"


def report(db: Path, out: Path) -> None:
    assert main(["--db", str(db), "report", "--out", str(out)]) == 0


def big_run() -> McRun:
    golds = [k % 4 for k in range(INSTANCES)]
    predicted = [g if k % 3 else (g + 1) % 4 for k, g in enumerate(golds)]
    groups = [SUBJECTS[k * len(SUBJECTS) // INSTANCES] for k in range(INSTANCES)]
    return McRun(RUN, "smollm2-135m-instruct", "mmlu", golds, predicted, datetime(2025, 1, 1), groups=groups)


def record_odd_run(db: Path) -> None:
    """A run with what the common case does not have: text outside the Basic Multilingual Plane (two
    UTF-16 units to JavaScript, one character to Python) before and after a perturbation's change, a
    perturbed copy equal to the unperturbed prompt, an input the prompt does not hold, a generation
    instance, an error, and markup in an id, a head and an answer."""
    head = f"Réponds 😀 {MARKUP} it's a \\ backslash.\n" + "Exemplar 𝑥 line, " * 12 + "\nAnswer: A\n\n"
    mc = [(f"m{k}", f"Which 𝑥 is {k} 🚀 here?") for k in range(3)]
    instances = [
        Instance(id_, text, "test", ("un 😀", "deux", MARKUP, "quatre"), k % 4, group="emoji")
        for k, (id_, text) in enumerate(mc)
    ]
    instances += [
        Instance("elsewhere", "Ünïcode input the prompt does not hold", "test", ("a", "b"), 0, group="other"),
        Instance("gen", "Capital of France?", "test", references=("Paris", "paris"), group="other"),
        Instance('<img src=x onerror="alert(1)">', "An id with markup", "test", ("a", "b"), 1, group="other"),
    ]
    rows: list[tuple[Instance, str, str, int | None, str | None]] = []
    for inst in instances[:3]:
        prompt = f"{head}{inst.input}\nA. un 😀\nB. deux\nC. {MARKUP}\nD. quatre\nAnswer:"
        rows.append((inst, "", prompt, 0, None))
        rows.append((inst, "gender", prompt, 0, None))  # a fairness perturbation that found nothing to change
        rows.append((inst, "typos", prompt.replace("🚀 here", "🚀 hree"), 1, None))
    rows.append((instances[3], "", "Somewhere else 🗼 entirely\nAnswer:", 1, None))
    rows.append((instances[4], "", "Q: Capital of France?\nA:", None, None))
    rows.append((instances[5], "", "An id with markup\nAnswer:", None, "timeout"))
    predictions, stats = [], []
    for inst, perturbation, prompt, choice, error in rows:
        kind = "multiple_choice" if inst.choices else "generation"
        request = Request(f"{inst.id}:{perturbation}", inst.id, kind, prompt, (" A", " B"), perturbation=perturbation)
        logprobs = [] if choice is None else [-0.25 if j == choice else -2.5 for j in range(len(inst.choices))]
        completion = Completion(request.id, logprobs, [1] * len(logprobs), prompt_tokens=9, latency_s=0.01,
                                batch_size=1, error=error)  # fmt: skip
        text = "Paris 🗼" if kind == "generation" else ("" if choice is None else LETTERS[choice])
        predictions.append(Prediction(request, completion, choice, text, None if choice is None else 0.7))
        value = float(choice == inst.gold_index) if kind == "multiple_choice" else 1.0
        stats.append(Stat(inst.id, "accuracy", "exact_match", value, perturbation))
    warehouse = Warehouse(db)
    warehouse.start_run(
        {"run_id": ODD, "suite": None, "scenario": "odd", "spec_hash": "spec-odd",
         "spec_json": json.dumps({"main_metric": "exact_match"}), "model": "m", "model_fingerprint": "fp-m",
         "model_json": json.dumps({"name": "m", "backend": "hf"}), "seed": 0, "adapter_json": "{}",
         "num_instances": len(instances), "device": "cpu", "dtype": "float32", "batch_size": 1, "num_threads": 1,
         "package_versions": json.dumps({"helmflow": "0.0"})}
    )  # fmt: skip
    tables = result_frames(instances, predictions, stats, [], [])
    warehouse.finish_run(ODD, "succeeded", tables, {"wall_seconds": 1.0, "model_calls": len(rows), "cache_hits": 0})


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("pages")
    db, out = folder / "w.duckdb", folder / "site"
    record_mc_run(db, big_run())
    record_odd_run(db)
    report(db, out)
    return db, out


# -- the data, read back as the browser reads it ---------------------------------------------------------


def read_index(out: Path, run_id: str) -> dict[str, Any]:
    text = (out / "data" / f"instances-{run_id}.js").read_text()
    assert text.startswith("window.HELMFLOW_INSTANCES = ") and text.endswith(";\n")
    return json.loads(text.removeprefix("window.HELMFLOW_INSTANCES = ").removesuffix(";\n"))


def read_page(path: Path) -> tuple[str, int, dict[str, Any]]:
    """A data page script's arguments: window.HELMFLOW_PAGE(run, k, 'JSON')."""
    match = re.fullmatch(r"window\.HELMFLOW_PAGE\((\"[^\"]*\"),(\d+),'(.*)'\);\n", path.read_text(), re.DOTALL)
    assert match, path
    literal = match.group(3)
    assert "'" not in re.sub(r"\\.", "", literal)  # every quote in the string is escaped
    return json.loads(match.group(1)), int(match.group(2)), json.loads(re.sub(r"\\(.)", r"\1", literal))


def js_slice(text: str, start: int, end: int | None = None) -> str:
    """JavaScript's text.slice(start, end): offsets in UTF-16 code units (a pair split apart raises)."""
    units = text.encode("utf-16-le")
    return units[2 * start : None if end is None else 2 * end].decode("utf-16-le")


def js_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def placed(value: Any, rest: str) -> Any:
    """An input or option: its text, or [start, length] within the first variant's rest."""
    return js_slice(rest, value[0], value[0] + value[1]) if isinstance(value, list) else value


def decoded(out: Path, run_id: str) -> list[dict[str, Any]]:
    """Every row of the run's data pages, decoded as browser.js decodes them."""
    index = read_index(out, run_id)
    rows = []
    for k, (src, start, count, _) in enumerate(index["pages"]):
        run, number, page = read_page(out / src)
        assert (run, number, start) == (run_id, k, len(rows))
        shown = lambda v, options: f"{index['letters'][v]}. {options[v]}" if isinstance(v, int) else v  # noqa: E731
        for id_, group, input_, options, gold, variants in page["instances"]:
            rests: list[str] = []
            heads: list[str] = []
            for j, (perturbation, e, answer, logprobs, score) in enumerate(variants):
                if isinstance(e, int):
                    head, rest = heads[e], rests[e]
                else:
                    ref = rests[0] if j else ""
                    head = page["heads"][e[0]] if e[0] >= 0 else ""
                    rest = js_slice(ref, 0, e[1]) + e[2] + js_slice(ref, js_length(ref) - e[3])
                heads.append(head)
                rests.append(rest)
                rows.append(
                    {"id": id_, "group": index["groups"][group], "perturbation": index["perturbations"][perturbation],
                     "prompt": head + rest, "answer": answer, "logprobs": logprobs, "score": score}
                )  # fmt: skip
            options = [placed(o, rests[0]) for o in options]
            for row in rows[len(rows) - len(variants) :]:
                row["input"] = placed(input_, rests[0])
                row["gold"], row["answer"] = shown(gold, options), shown(row["answer"], options)
        assert len(rows) - start == count
    assert len(rows) == index["rows"]
    return rows


def stored(db: Path, run_id: str) -> list[dict[str, Any]]:
    """The run's rows straight from the tables, in the browser's order, shown as the old writer showed them."""
    with connect(db, read_only=True) as con:
        rows = con.execute(
            "select p.instance_id, coalesce(i.group_name, ''), p.perturbation, p.prompt, p.error, p.completion, "
            "p.predicted_index, i.choices, i.gold_index, i.reference_texts, p.choice_logprobs, s.value, i.input "
            "from predictions p join instances i using (run_id, instance_id) left join instance_stats s "
            "on s.run_id = p.run_id and s.instance_id = p.instance_id and s.perturbation = p.perturbation "
            "and s.metric = 'exact_match' where p.run_id = ? order by i.rowid, p.perturbation",
            [run_id],
        ).fetchall()
    out = []
    for row in rows:
        id_, group, perturbation, prompt, error, completion, chosen, choices, gold, refs, logprobs, score, input_ = row
        if error:
            answer = f"error: {error}"
        elif choices and chosen is not None:
            answer = f"{LETTERS[chosen]}. {choices[chosen]}"
        else:
            answer = completion or ""
        out.append(
            {"id": id_, "group": group, "perturbation": perturbation, "prompt": prompt, "answer": answer,
             "gold": f"{LETTERS[gold]}. {choices[gold]}" if choices and gold is not None else " | ".join(refs or []),
             "logprobs": [round(x, 4) for x in logprobs or []], "score": score, "input": input_}
        )  # fmt: skip
    return out


def test_every_row_reads_back_as_stored(site: tuple[Path, Path]) -> None:
    db, out = site
    for run_id in (RUN, ODD):
        assert decoded(out, run_id) == stored(db, run_id)


def test_pages_of_2000_rows_with_each_head_stored_once_per_page(site: tuple[Path, Path]) -> None:
    db, out = site
    index = read_index(out, RUN)
    assert (index["run"], index["scenario"], index["rows"]) == (RUN, "mmlu", 5000)
    assert index["groups"] == SUBJECTS and index["perturbations"] == ["", "typos"]
    folder = out / "data" / f"instances-{RUN}"
    assert index["pages"] == [
        [f"data/instances-{RUN}/page-0.js", 0, 2000, [0, 1]],  # instances 0-999: anatomy, then astronomy
        [f"data/instances-{RUN}/page-1.js", 2000, 2000, [1, 2]],
        [f"data/instances-{RUN}/page-2.js", 4000, 1000, [2]],
    ]
    assert sorted(p.name for p in folder.iterdir()) == ["page-0.js", "page-1.js", "page-2.js"]
    # The instructions and exemplar every prompt begins with: once per page, not once per row.
    run = big_run()
    head = prompt_of(run, 0)[: prompt_of(run, 0).index(run.question(0))]
    exemplar = "An exemplar question that is long, " * 6
    for k in range(3):
        text = (folder / f"page-{k}.js").read_text()
        assert text.count(exemplar) == 1
        _, _, page = read_page(folder / f"page-{k}.js")
        assert page["heads"] == [head]
        # Each typos copy ("Qeustion" for "Question") is stored as the two letters that changed.
        middles = {v[1][2] for inst in page["instances"] for v in inst[5] if v[0] == 1}
        assert middles == {"eu"}
    # The old layout, every prompt whole: 2.2 MB; pages: a third of that (these questions are short), and
    # a small index.
    with connect(db, read_only=True) as con:
        [(prompts,)] = con.execute("select sum(strlen(prompt)) from predictions where run_id = ?", [RUN]).fetchall()
    pages = sum(p.stat().st_size for p in folder.iterdir())
    assert prompts > 2_000_000 and pages < prompts / 3, (pages, prompts)
    assert (out / "data" / f"instances-{RUN}.js").stat().st_size < 1000


def test_a_prompt_equal_to_another_variant_s_is_stored_once(site: tuple[Path, Path]) -> None:
    _, out = site
    [(_, _, page)] = [read_page(p) for p in (out / "data" / f"instances-{ODD}").iterdir()]
    emoji = [inst for inst in page["instances"] if inst[0].startswith("m")]
    assert len(emoji) == 3
    for k, inst in enumerate(emoji):
        _, gender, typos = inst[5]
        assert gender[1] == 0  # the gender copy's prompt is the unperturbed one: a reference to it
        assert typos[1][0] == 0 and typos[1][2] == "re"  # "🚀 here" became "🚀 hree"
        assert inst[2] == [0, js_length(f"Which 𝑥 is {k} 🚀 here?")] == [0, len(f"Which 𝑥 is {k} 🚀 here?") + 2]
    # The group's shared head, stored once: the first instance's typos copy found it (its prompt and the
    # unperturbed one share it), and the unperturbed prompt took it too.
    assert [inst[5][0][1][0] for inst in emoji] == [0, 0, 0] and len(page["heads"]) == 1
    assert page["heads"][0].startswith("Réponds 😀") and page["heads"][0].endswith("Answer: A\n\n")
    assert [inst[2] for inst in page["instances"][3:]] == [
        "Ünïcode input the prompt does not hold",
        [3, len("Capital of France?")],
        [0, len("An id with markup")],
    ]


def test_batches_follow_the_instances_order_whatever_the_storage_order(site: tuple[Path, Path], tmp_path: Path) -> None:
    """A copy of the run stored in reverse (a merged warehouse may hold rows in any order): its batches
    still come in the instances' order, each instance's variants by perturbation."""
    db, _ = site
    copy = tmp_path / "w.duckdb"
    copy.write_bytes(db.read_bytes())
    with connect(copy) as con:
        for table, order in (("instances", ""), ("predictions", ", perturbation desc"), ("instance_stats", "")):
            con.execute(
                f"insert into {table} select * replace ('reversed0001' as run_id) from {table} where run_id = ? "
                f"order by instance_id desc{order}",
                [ODD],
            )
    warehouse = Warehouse(copy)
    batches = list(warehouse.report_instance_batches("reversed0001", "exact_match", size=4))
    assert [len(b) for b in batches] == [4, 4, 4]
    with connect(copy, read_only=True) as con:
        expected = con.execute(
            "select p.instance_id, p.perturbation from predictions p join instances i using (run_id, instance_id) "
            "where run_id = 'reversed0001' order by i.rowid, p.perturbation"
        ).fetchall()
        stored_order = con.execute(
            "select instance_id, perturbation from predictions where run_id = 'reversed0001' order by rowid"
        ).fetchall()
    assert [(row[0], row[6]) for b in batches for row in b] == expected
    assert expected[:3] == [("m2", ""), ("m2", "gender"), ("m2", "typos")]
    assert stored_order[:3] == [("m2", "typos"), ("m2", "gender"), ("m2", "")]  # the premise: another order
    whole = warehouse.report_instances("reversed0001", "exact_match")
    assert list(zip(whole.instance_id, whole.perturbation, strict=True)) == expected


def test_random_prompts_read_back_whatever_their_heads_and_changes(tmp_path: Path) -> None:
    """Made-up runs: groups with and without a shared head, heads that change within a group, copies
    changed anywhere (in the head too) by characters of one or two UTF-16 units, equal copies, inputs in
    and out of the prompt; pages of 50 rows. Every prompt, input, option and answer reads back."""
    rng = random.Random(7)
    alphabet = "abc de\nf'\"\\<>&é😀𝑥\u2028"
    text = lambda n: "".join(rng.choice(alphabet) for _ in range(n))  # noqa: E731
    heads = {g: [text(rng.choice([0, 150, 400])) + "\n" for _ in range(2)] for g in ("", "g1", "g2", "g3")}
    rows = []
    for k in range(300):
        group = rng.choice(list(heads))
        question, options = text(rng.randrange(0, 60)), [text(rng.randrange(0, 20)) for _ in range(3)]
        prompt = rng.choice(heads[group]) + question + "\n" + "\n".join(options)
        input_, gold = rng.choice([question, text(5), None]), rng.choice([0, 2, None])
        for perturbation in ("", "a", "b", "c")[: rng.randrange(1, 5)]:
            copy = prompt
            if perturbation and rng.random() < 0.7:
                at = rng.randrange(len(prompt) + 1)
                copy = prompt[:at] + text(rng.randrange(0, 5)) + prompt[at + rng.randrange(0, 4) :]
            rows.append(
                {"instance_id": f"i{k}", "group_name": group, "input": input_,
                 "choices": options, "gold_index": gold, "reference_texts": ["r", "s"],
                 "perturbation": perturbation, "prompt": copy, "completion": text(3), "choice_logprobs": [-1.0],
                 "predicted_index": rng.choice([1, None, 7]), "confidence": None, "error": None, "score": 0.5}
            )  # fmt: skip
    write_instances(tmp_path, {"run": "random", "scenario": "s", "model": "m", "metric": "x"}, iter(rows), 50)
    back = decoded(tmp_path, "random")
    assert len(back) == len(rows) and len(read_index(tmp_path, "random")["pages"]) > len(rows) // 60
    for row, got in zip(rows, back, strict=True):
        chosen, gold, options = row["predicted_index"], row["gold_index"], row["choices"]
        assert (got["id"], got["perturbation"], got["prompt"], got["input"]) == (
            row["instance_id"], row["perturbation"], row["prompt"], row["input"]
        )  # fmt: skip
        assert got["gold"] == ("r | s" if gold is None else f"{LETTERS[gold]}. {options[gold]}")
        assert got["answer"] == {None: row["completion"], 7: "7"}.get(chosen, f"{LETTERS[1]}. {options[1]}")


def test_a_page_s_json_string_cannot_end_its_script() -> None:
    value = {"text": f"it's {MARKUP} \\ \" \n \u2028 😀", "n": [1, None]}
    literal = _json_string_for_script(value)
    assert literal.startswith("'") and literal.endswith("'")
    assert not re.search(r"[<>&\n\u2028\u2029]", literal)
    assert json.loads(re.sub(r"\\(.)", r"\1", literal[1:-1])) == value


# -- in Chromium ---------------------------------------------------------------------------------------


def open_instances(browser: Any, out: Path, run_id: str) -> tuple[Any, list[str]]:
    page = browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    page.goto((out / f"instances-{run_id}.html").as_uri())
    page.wait_for_function("document.querySelectorAll('#instance-rows tr').length > 0")
    return page, problems


def settled(page: Any) -> None:
    page.wait_for_function("document.getElementById('instances').dataset.state === 'ready'")


def shown_ids(page: Any) -> list[str]:
    return page.locator("#instance-rows tr td:first-child").all_inner_texts()


def data_pages_read(page: Any) -> list[str]:
    return page.evaluate("[...document.scripts].map(s => s.src.split('/').pop()).filter(n => n.startsWith('page-'))")


@needs_browser
def test_first_rows_at_once_then_the_last_page_on_demand(site: tuple[Path, Path], browser: Any) -> None:
    db, out = site
    ids = [row["id"] for row in stored(db, RUN)]
    page, problems = open_instances(browser, out, RUN)
    settled(page)
    first = shown_ids(page)
    count, label = page.locator("#match-count").inner_text(), page.locator("#page-label").inner_text()
    read_at_first = data_pages_read(page)
    page.click("#next")
    second = shown_ids(page)
    page.click("#last")
    settled(page)
    last = shown_ids(page)
    last_label = page.locator("#page-label").inner_text()
    read_at_last = data_pages_read(page)
    disabled = page.evaluate("['first', 'prev', 'next', 'last'].map(id => document.getElementById(id).disabled)")
    page.click("#prev")
    before_last = shown_ids(page)
    page.close()
    assert problems == []
    assert first == ids[:100] and first[:4] == ["q000", "q000", "q001", "q001"]
    assert (count, label) == ("5000 of 5000 rows", "page 1 of 50")
    assert read_at_first == ["page-0.js"]  # the first rows need the first data page only
    assert second == ids[100:200]
    assert last == ids[4900:] and last_label == "page 50 of 50" and last[-1] == "q2499"
    assert read_at_last == ["page-0.js", "page-2.js"]  # the last page without the one between
    assert disabled == [False, False, True, True]
    assert before_last == ids[4800:4900]


@needs_browser
def test_a_search_reads_every_page_and_finds_rows_on_the_last(site: tuple[Path, Path], browser: Any) -> None:
    _, out = site
    page, problems = open_instances(browser, out, RUN)
    found = {}
    # The unperturbed question of an instance on the last data page: its row's prompt, and its typos
    # copy's input (the stored input is the unperturbed text).
    for text in ("question 2400 of pages", "Qeustion 2401 of", "exemplar question that is LONG", "no such text"):
        page.fill("#filter-text", text)
        settled(page)
        found[text] = (
            page.locator("#match-count").inner_text(),
            shown_ids(page)[:3],
            page.locator("#instance-rows tr td:nth-child(3)").all_inner_texts()[:3],
        )
    read = data_pages_read(page)
    page.close()
    assert problems == []
    assert found["question 2400 of pages"] == ("2 of 5000 rows", ["q2400", "q2400"], ["", "typos"])
    assert found["Qeustion 2401 of"] == ("1 of 5000 rows", ["q2401"], ["typos"])  # only the perturbed prompt
    assert found["exemplar question that is LONG"] == ("5000 of 5000 rows", ["q000", "q000", "q001"], ["", "typos", ""])
    assert found["no such text"] == ("0 of 5000 rows", [], [])
    assert sorted(read) == ["page-0.js", "page-1.js", "page-2.js"]


@needs_browser
def test_a_group_filter_reads_only_the_pages_holding_the_group(site: tuple[Path, Path], browser: Any) -> None:
    db, out = site
    expected = [row["id"] for row in stored(db, RUN) if row["group"] == "anatomy" and row["score"] == 0]
    page, problems = open_instances(browser, out, RUN)
    page.select_option("#filter-group", "anatomy")
    page.select_option("#filter-correct", "incorrect")
    settled(page)
    count = page.locator("#match-count").inner_text()
    ids = shown_ids(page)
    read = data_pages_read(page)
    page.close()
    assert problems == []
    assert count == f"{len(expected)} of 5000 rows" and ids == expected[:100]
    assert read == ["page-0.js"]


@needs_browser
def test_odd_rows_show_as_stored_and_markup_stays_text(site: tuple[Path, Path], browser: Any) -> None:
    db, out = site
    page, problems = open_instances(browser, out, ODD)
    settled(page)
    rows = page.evaluate(
        """[...document.querySelectorAll('#instance-rows tr')].map(tr => {
            const td = [...tr.children];
            return {id: td[0].textContent, perturbation: td[2].textContent,
                    input: td[3].querySelector('div.input').firstChild.textContent,
                    prompt: td[3].querySelector('pre').textContent, answer: td[4].textContent,
                    gold: td[6].textContent, correct: td[7].textContent};
        })"""
    )
    images = page.locator("img").count()
    page.fill("#filter-text", "🚀 HREE")  # after the change, past a character JavaScript counts as two
    settled(page)
    typos = shown_ids(page)
    page.close()
    assert problems == [] and images == 0
    expected = stored(db, ODD)
    assert [(r["id"], r["perturbation"], r["prompt"], r["answer"], r["gold"]) for r in rows] == [
        (e["id"], e["perturbation"], e["prompt"], e["answer"], e["gold"]) for e in expected
    ]
    assert [r["input"] for r in rows] == [e["input"] for e in expected]
    assert [r["correct"] for r in rows][-3:] == ["no", "yes", "no"]  # "elsewhere" chose B; gen; the error
    assert rows[-1]["answer"] == "error: timeout" and rows[-2]["answer"] == "Paris 🗼"
    assert typos == ["m0", "m1", "m2"]
