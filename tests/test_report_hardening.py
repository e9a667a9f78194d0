"""`helmflow report` on warehouses the flow did not write itself: a served model's run (NULL parameter
count), names that look like HTML or a template, a front page with one model, and a disk that fills up
while the site is written. The warehouses are written row by row (no model), so these tests are fast.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from helmflow.flows.cli import main
from helmflow.flows.report.site import _json_for_script
from helmflow.tasks.metrics.intervals import IntervalMetric, wilson
from helmflow.tasks.records import Completion, Instance, Prediction, Request, Stat, ValidationResult
from helmflow.warehouse.rows import result_frames
from helmflow.warehouse.store import Warehouse
from tests.test_report import CHROMIUM, needs_browser

PAYLOADS = ["<!--", "<script>", "</script><script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "{{7*7}}"]


def record_run(
    db: Path, run_id: str, model: str, scenario: str, answers: list[int], served: bool = False, suite: str | None = None
) -> None:
    """A succeeded run as the flow writes it, with Wilson and bootstrap intervals on its two headline metrics.
    `served`: the model is behind an OpenAI-compatible server, so its parameter count is unknown (NULL),
    as are its cache counts (a run from before they were recorded)."""
    warehouse = Warehouse(db)
    backend = "openai" if served else "hf"
    warehouse.start_run(
        {
            "run_id": run_id,
            "suite": suite,
            "scenario": scenario,
            "spec_hash": f"spec-{scenario}",
            "spec_json": json.dumps({"main_metric": "exact_match"}),
            "model": model,
            "model_fingerprint": f"fp-{run_id}",
            "model_json": json.dumps({"name": model, "backend": backend, "path": "http://127.0.0.1:8000/v1"}),
            "seed": 0,
            "adapter_json": "{}",
            "num_instances": len(answers),
            "device": "remote" if served else "cpu",
            "dtype": "float32",
            "batch_size": 4,
            "num_threads": 1,
            "package_versions": json.dumps({"helmflow": "0.0"}),
        }
    )
    instances = [Instance(f"i{k}", f"question {k}", "test", ("yes", "no"), 0) for k in range(len(answers))]
    predictions = []
    for instance, answer in zip(instances, answers, strict=True):
        request = Request(f"{instance.id}:", instance.id, "multiple_choice", instance.input, (" A", " B"))
        logprobs = [-0.1, -2.0] if answer == 0 else [-2.0, -0.1]
        completion = Completion(request.id, logprobs, [1, 1], prompt_tokens=5, latency_s=0.01, batch_size=2)
        predictions.append(Prediction(request, completion, answer, "AB"[answer], 0.8))
    correct = [float(a == 0) for a in answers]
    stats = [Stat(i.id, "accuracy", "exact_match", c) for i, c in zip(instances, correct, strict=True)]
    right, n = int(sum(correct)), len(answers)
    low, high = wilson(right, n)  # type: ignore[misc]
    metrics = [
        IntervalMetric(
            "accuracy", "exact_match", right / n, n, headline=True, ci_low=low, ci_high=high, ci_method="wilson"
        ),
        IntervalMetric(
            "calibration",
            "ece_10_bin",
            abs(0.8 - right / n),
            n,
            lower_is_better=True,
            headline=True,
            ci_low=0.0,
            ci_high=0.5,
            ci_method="bootstrap",
        ),
    ]
    checks = [ValidationResult("predictions", "expect_column_values_to_not_be_null", "{}", True, n, 0, [])]
    tables = result_frames(instances, predictions, stats, metrics, checks)
    updates = {"wall_seconds": 1.5, "model_calls": n, "metrics_code_version": "1"}
    if not served:
        updates |= {"num_parameters": 134_515_008, "cache_hits": 0}
    warehouse.finish_run(run_id, "succeeded", tables, updates)


def report(db: Path, out: Path, *extra: str) -> int:
    return main(["--db", str(db), "report", "--out", str(out), *extra])


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def visible_text(html: str) -> str:
    """A page's text without its tags (enough to see what a reader sees in the static parts)."""
    return re.sub(r"<[^>]+>", " ", html)


# -- a served model's run ---------------------------------------------------------------------------------


def test_served_model_run_is_reported_without_a_parameter_count(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    db, out = tmp_path / "w.duckdb", tmp_path / "site"
    record_run(db, "local1", "smol", "s1", [0, 0, 1, 0], suite="quick")
    record_run(db, "served1", "gpt-served", "s1", [0, 1, 1, 0], served=True)
    runs = Warehouse(db).report_runs().set_index("run_id")
    # The premise: what DuckDB hands pandas for the served run's NULLs is pd.NA, which Jinja cannot test.
    assert runs.loc["served1", "num_parameters"] is pd.NA and runs.loc["served1", "cache_hits"] is pd.NA
    assert report(db, out) == 0
    captured = capsys.readouterr()
    # index, matrix, history, compare index, one compare page (s1: smol against gpt-served), 2 × (run, instances)
    assert captured.out.startswith("9 pages for 2 runs in ") and captured.err == ""
    served = (out / "run-served1.html").read_text()
    assert "<tr><th>model</th><td>gpt-served (fp-served1)</td></tr>" in served
    assert "<tr><th>suite</th><td></td></tr>" in served
    assert "<tr><th>device</th><td>remote · float32 · batch 4 · 1 threads · 1.5 s</td></tr>" in served
    assert "Every answer was computed in this run (4 model calls)." in served
    local = (out / "run-local1.html").read_text()
    assert "<tr><th>model</th><td>smol (fp-local1, 134,515,008 parameters)</td></tr>" in local
    assert "<tr><th>suite</th><td>quick</td></tr>" in local
    for page in out.glob("*.html"):  # no missing value shows as Python's or pandas' name for it
        assert not re.findall(r"\bNone\b|\bnan\b|\bNaT\b|&lt;NA&gt;", visible_text(page.read_text())), page.name
    instances = (out / "data" / "instances-served1.js").read_text()
    assert instances.startswith('window.HELMFLOW_INSTANCES = {"run":"served1","scenario":"s1","model":"gpt-served"')


# -- writing the site whole, or not at all ----------------------------------------------------------------


@pytest.fixture
def written(tmp_path: Path) -> Iterator[tuple[Path, Path, dict[str, bytes]]]:
    """A warehouse with one run and its report, then a second run the next report would add."""
    db, out = tmp_path / "w.duckdb", tmp_path / "site"
    record_run(db, "r1", "smol", "s1", [0, 0, 1, 0])
    assert report(db, out) == 0
    before = files_of(out)
    record_run(db, "r2", "other", "s1", [0, 1, 1, 0])
    yield db, out, before


def _fail_after(monkeypatch: pytest.MonkeyPatch, writes: int) -> list[Path]:
    """Path.write_text succeeds `writes` times, then the disk is full. Returns the paths written."""
    original = Path.write_text
    done: list[Path] = []

    def write_text(self: Path, *args: object, **kwargs: object) -> int:
        if len(done) >= writes:
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        done.append(self)
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "write_text", write_text)
    return done


def test_a_full_disk_leaves_the_previous_report_as_it_was(
    written: tuple[Path, Path, dict[str, bytes]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    db, out, before = written
    capsys.readouterr()
    done = _fail_after(monkeypatch, 4)
    assert report(db, out) == 1
    assert len(done) == 4  # it failed part-way: four pages were written (where they went is gone)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"error: could not write the report to {out.resolve()}: No space left on device (the folder is as it was)\n"
    )
    assert files_of(out) == before  # every file, byte for byte
    assert sorted(p.name for p in out.parent.iterdir()) == ["site", "w.duckdb"]  # no folder left half-written
    monkeypatch.undo()
    assert report(db, out) == 0 and (out / "run-r2.html").exists()  # with room, the next report is whole


def test_a_full_disk_on_the_first_report_leaves_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db, out = tmp_path / "w.duckdb", tmp_path / "reports" / "site"
    record_run(db, "r1", "smol", "s1", [0, 0, 1, 0])
    _fail_after(monkeypatch, 0)
    assert report(db, out) == 1
    assert list(out.parent.iterdir()) == []


def test_a_failed_swap_puts_the_previous_report_back(
    written: tuple[Path, Path, dict[str, bytes]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Every page is written, but the new folder cannot take the old one's place: the old one comes back."""
    db, out, before = written
    original = Path.rename

    def rename(self: Path, target: Path) -> Path:
        if ".writing-" in self.name:
            raise OSError(errno.EIO, "Input/output error", str(self))
        return original(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    capsys.readouterr()
    assert report(db, out) == 1
    assert capsys.readouterr().err == (
        f"error: could not write the report to {out.resolve()}: Input/output error (the folder is as it was)\n"
    )
    assert files_of(out) == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["site", "w.duckdb"]


def test_a_new_report_replaces_the_old_one_whole(written: tuple[Path, Path, dict[str, bytes]]) -> None:
    db, out, _ = written
    (out / "data" / "instances-gone.js").write_text("stale")
    assert report(db, out, "--model", "other") == 0
    assert (out / "run-r2.html").exists()
    assert not (out / "run-r1.html").exists() and not (out / "data" / "instances-gone.js").exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ["site", "w.duckdb"]
    assert oct(out.stat().st_mode & 0o777) == oct(0o777 & ~_umask())  # a folder like any other, not mkdtemp's 0700


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_folder_that_is_not_a_report_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    db, out = tmp_path / "w.duckdb", tmp_path / "project"
    record_run(db, "r1", "smol", "s1", [0, 0, 1, 0])
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert report(db, out) == 2
    assert capsys.readouterr().err == (
        f"error: report folder {out.resolve()} holds files that are not a helmflow report (the report replaces the "
        "whole folder): name a new or empty folder with --out\n"
    )
    assert files_of(out) == {"notes.txt": b"mine"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["project", "w.duckdb"]


# -- names that look like markup ----------------------------------------------------------------------------


def test_json_in_a_script_cannot_end_or_alter_it() -> None:
    value = {"name": "</script><!--<script>&amp;\u2028\u2029", "<key>": [1.5, None]}
    text = _json_for_script(value)
    assert text == (
        '{"name":"\\u003c/script\\u003e\\u003c!--\\u003cscript\\u003e\\u0026amp;\\u2028\\u2029",'
        '"\\u003ckey\\u003e":[1.5,null]}'
    )
    assert json.loads(text) == value


def _hostile_warehouse(db: Path) -> dict[str, tuple[str, str]]:
    """Each payload is a model that ran two scenarios, each also named by a payload (its own and the next),
    so every scenario has two models and the leaderboard ranks all five. Run id -> (model, scenario)."""
    runs = {}
    for k, model in enumerate(PAYLOADS):
        for j, scenario in enumerate((PAYLOADS[k], PAYLOADS[(k + 1) % len(PAYLOADS)])):
            run_id = f"r{k}{j}"
            record_run(db, run_id, model, scenario, [0, k % 2, 1, 0])
            runs[run_id] = (model, scenario)
    return runs


def _open_every_page(out: Path) -> tuple[dict[str, tuple[int, int]], list[str], dict[str, dict[str, list[str]]]]:
    """Load each page in Chromium: (chart divs, rendered charts) per page, problems, and texts per page."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    charts: dict[str, tuple[int, int]] = {}
    texts: dict[str, dict[str, list[str]]] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
        page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
        for html in sorted(out.glob("*.html")):
            page.goto(html.as_uri())
            page.wait_for_load_state("load")
            divs = page.locator("div.chart").count()
            if divs:
                # Until every chart renders or one fails; a page whose specs broke renders none (counted below).
                with contextlib.suppress(PlaywrightTimeout):
                    page.wait_for_function(
                        f"document.querySelectorAll('div.chart svg, div.chart canvas').length >= {divs} || "
                        "[...document.querySelectorAll('div.chart')].some(d => d.textContent.includes('chart failed'))",
                        timeout=10_000,
                    )
            charts[html.name] = (divs, page.locator("div.chart svg, div.chart canvas").count())
            texts[html.name] = {
                "h1": page.locator("h1").all_inner_texts(),
                "first column": page.locator("table tbody tr td:first-child").all_inner_texts(),
                "chart text": page.locator("div.chart svg text").all_text_contents(),
                # Any element or inline script a name smuggled in would show here.
                "inline scripts": page.evaluate(
                    "[...document.scripts].filter(s => !s.src && s.type !== 'application/json').map(s => s.text)"
                ),
                "images": [str(page.locator("img").count())],
            }
            if html.name.startswith("instances-"):
                texts[html.name]["instances"] = page.locator("#instance-rows tr td:first-child").all_inner_texts()
        browser.close()
    return charts, problems, texts


@needs_browser
@pytest.mark.slow  # a real run and every page in Chromium (about 20 s): make test-slow
def test_names_that_look_like_markup_show_as_text_and_break_no_chart(tmp_path: Path) -> None:
    db, out = tmp_path / "w.duckdb", tmp_path / "site"
    runs = _hostile_warehouse(db)
    assert report(db, out) == 0
    charts, problems, texts = _open_every_page(out)
    assert problems == []
    # Every chart renders: the win rates, a reliability diagram per run, one history chart per
    # model × scenario × headline metric (10 × 2).
    expected = {name: 0 for name in charts} | {"index.html": 1, "history.html": 20}
    expected |= {f"run-{run_id}.html": 1 for run_id in runs}
    assert charts == {name: (n, n) for name, n in expected.items()}
    assert len(charts) == 2 + 2 * len(runs) + 1 + 5 + 1  # index, matrix, runs, instances, history, compares
    assert all(t["inline scripts"] == [] and t["images"] == ["0"] for t in texts.values())
    # The names, as text, where the pages show them.
    assert sorted(texts["index.html"]["first column"]) == sorted(PAYLOADS)
    assert sorted(texts["matrix.html"]["first column"]) == sorted(s for _, s in runs.values())
    for run_id, (model, scenario) in runs.items():
        assert texts[f"run-{run_id}.html"]["h1"] == [f"{model} × {scenario} run {run_id}"]
        assert texts[f"instances-{run_id}.html"]["h1"] == [f"Instances: {model} × {scenario} run {run_id}"]
        assert texts[f"instances-{run_id}.html"]["instances"] == ["i0", "i1", "i2", "i3"]  # its data script ran
    titles = {t for t in texts["history.html"]["chart text"] if " × " in t}
    assert titles == {
        f"{model} × {scenario} — {name}"
        for model, scenario in runs.values()
        for name in ("accuracy: exact_match", "calibration: ece_10_bin (lower is better)")
    }
    assert set(PAYLOADS) <= set(texts["index.html"]["chart text"])  # the win-rate bars' axis labels
    assert '<tr data-model="{{7*7}}"><td>{{7*7}}</td>' in (out / "index.html").read_text()  # a name, not a template


# -- one model --------------------------------------------------------------------------------------------


@needs_browser
def test_with_one_model_the_front_page_shows_its_scores(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    db, out = tmp_path / "w.duckdb", tmp_path / "site"
    record_run(db, "r1", "smollm2-135m-instruct", "mmlu", [0, 0, 1, 0])  # 3 of 4 right
    record_run(db, "r2", "smollm2-135m-instruct", "boolq", [1, 0, 1])  # 1 of 3 right
    assert report(db, out) == 0
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto((out / "index.html").as_uri())
        header = page.locator("#headline-scores thead th").all_inner_texts()
        rows = [
            [cell.inner_text() for cell in row.locator("td").all()]
            for row in page.locator("#headline-scores tbody tr").all()
        ]
        note = page.locator("#headline-note").inner_text()
        leaderboard = page.locator("#leaderboard").count()
        page.set_viewport_size({"width": 1100, "height": 520})
        page.screenshot(path=str(tmp_path / "one-model.png"), full_page=True)
        browser.close()
    assert problems == [] and leaderboard == 0
    assert note.startswith("One model so far, smollm2-135m-instruct: its headline score in each category")
    assert header == ["scenario", "accuracy", "calibration", "run"]
    # Sorted by scenario; each cell the value [Wilson 95% interval] of 3/4 and 1/3, the metric under it.
    assert rows == [
        ["boolq", "0.3333 [0.06149, 0.7923]\nexact_match", "0.4667 [0, 0.5]\nece_10_bin\nlower is better", "r2"],
        ["mmlu", "0.75 [0.3006, 0.9544]\nexact_match", "0.05 [0, 0.5]\nece_10_bin\nlower is better", "r1"],
    ]
