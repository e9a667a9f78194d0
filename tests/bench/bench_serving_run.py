"""`make bench-serving`: helmflow's shipped MMLU, run whole, against a fast fake OpenAI-compatible server.

    python -m tests.bench.bench_serving_run [--sizes 2000,14042] [--concurrency 64] [--batch-size 1]
        [--scale 56168] [--skip-lmeval] [--skip-report] [--repeat-lmeval R] [--keep]

tests/fake_openai_server.py runs in its own process (its CPU and request count come from its /_stats), and
a model spec for helmflow's `openai` backend points at it (concurrency C, batch_size B). For each size N:

1. `python -m helmflow.flows.cli --db FRESH.duckdb run mmlu --model fake.yaml --max-instances N --source offline`
   as a subprocess (the shipped MMLU spec: 5-shot, its five perturbations; --max-instances keeps a seeded
   sample of N questions in total, and 14,042 is the whole test set). Measured: wall seconds; the HTTP
   requests the server answered meanwhile; the CPU of helmflow's process tree (getrusage of the children
   of this process around the command, with this process made the tree's subreaper so that a descendant
   left behind is waited for and counted too); the server's CPU; the peak RSS of the command alone and
   of its whole tree (summed, sampled every 0.2 s from /proc), and the tree's peak PSS; the warehouse size.
2. `helmflow report` of that warehouse into a folder: seconds and total size; then, unless --skip-report,
   the run's instance page in headless Chromium: seconds to the first rows in `#instance-rows`, and to a
   search (`#filter-text`) for the run's last instance showing a matching row with `#match-count` updated.
3. The same requests (the run's distinct prompts, read back from the warehouse, each with its four
   letters) sent again from this process through OpenAIModel.loglikelihood, chunk by chunk as the flow
   calls it (bench_serving's "transport"), and by lm-evaluation-harness 0.4.13's `local-completions`
   (num_concurrent = C) in its own virtual environment; each one's client CPU per request, the least
   of --repeat-lmeval runs.

Then a synthetic scenario of --scale (56,168) MMLU-shaped questions (the test set four times, each copy's
options shuffled with its own seed; JSONL and scenario YAML in the work folder; the same adapter, 5-shot
exemplars and perturbations as MMLU) runs the same way, for its peak memory beside the largest size's.

Prints one table per size, the synthetic run's, and an acceptance block (each line with the value
measured and PASS or FAIL); docs/benchmarks.md explains every number. Progress goes to stderr.
Exits 1 when a run fails or an acceptance line fails.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

for _name, _value in (
    ("DO_NOT_TRACK", "1"),
    ("PREFECT_SERVER_ANALYTICS_ENABLED", "false"),
    ("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90"),
):
    os.environ.setdefault(_name, _value)

MIB = 1024 * 1024
MB = 1_000_000
SAMPLE_S = 0.2
CHROMIUM = Path("/usr/bin/chromium")
LETTERS = (" A", " B", " C", " D")
BROWSER_TRIES = 3
DEFAULT_SIZES = (2000, 14042)
DEFAULT_SCALE = 56168  # the 14,042 test questions four times

# The acceptance lines.
CLIENT_MS_MAX = 0.6
LMEVAL_RATIO_MIN = 2.0
PEAK_MIB_MAX = 1.2 * 1024
SCALE_GROWTH_MAX = 1.10
REPORT_MB_MAX = 60.0
FIRST_ROWS_S_MAX = 1.5
SEARCH_S_MAX = 3.0
ASKED_AT = (64, 1)  # concurrency, batch_size the client line is stated at

PR_SET_CHILD_SUBREAPER = 36


# -- /proc ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcStat:
    pid: int
    ppid: int
    cpu_ticks: int  # utime + stime
    rss_pages: int


def parse_stat(text: str) -> ProcStat:
    """/proc/PID/stat. The command name (field 2) may hold spaces and parentheses: split at the last ')'."""
    head, _, rest = text.rpartition(")")
    fields = rest.split()  # fields[0] is field 3 (state): field n is fields[n - 3]
    return ProcStat(int(head.split("(", 1)[0]), int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[21]))


def parse_pss_kib(smaps_rollup: str) -> int:
    """The `Pss:` line of /proc/PID/smaps_rollup, in KiB (0 when absent)."""
    for line in smaps_rollup.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def descendants(root: int, parents: dict[int, int]) -> set[int]:
    """`root` and every process below it, from a pid -> parent pid map."""
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    tree: set[int] = set()
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid not in tree:
            tree.add(pid)
            todo.extend(children.get(pid, ()))
    return tree


def process_label(cmdline: Sequence[str], root: Sequence[str] | None) -> str:
    """What a process of helmflow's tree is, from its command line and the command's (None: it is the command)."""
    text = " ".join(cmdline)
    if root is None:
        return "helmflow (the command)"
    if list(cmdline) == list(root):
        return "a fork of the command"  # between fork and exec, or a forked worker: its pages are mostly shared
    if "uvicorn" in text:
        return "Prefect's temporary server"
    if "resource_tracker" in text:
        return "multiprocessing's resource tracker"
    if "multiprocessing" in text:
        return "validation worker (Great Expectations)"
    return f"{Path(cmdline[0]).name} ({' '.join(cmdline[1:])[:60]})" if cmdline else "?"


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:  # gone meanwhile, or not ours to read
        return None


@dataclass
class ProcessSeen:
    label: str
    cpu_s: float = 0.0  # utime + stime at its last sample
    peak_rss: int = 0


class TreeSampler:
    """Samples the process tree under `root` every SAMPLE_S seconds: peaks of the root's RSS, of the
    tree's summed RSS and of its summed PSS, and each process's CPU at its last sample. A process once
    seen in the tree stays in it while it lives (a child left behind is reparented away from root)."""

    def __init__(self, root: int, interval_s: float = SAMPLE_S) -> None:
        self.root, self.interval_s = root, interval_s
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.tick = os.sysconf("SC_CLK_TCK")
        self.peak_root_rss = self.peak_tree_rss = self.peak_tree_pss = 0
        self.processes: dict[int, ProcessSeen] = {}
        self.root_cmdline: list[str] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tree-sampler", daemon=True)

    def __enter__(self) -> TreeSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    @staticmethod
    def _cmdline(pid: int) -> list[str]:
        return [part for part in (_read(f"/proc/{pid}/cmdline") or "").split("\0") if part]

    def sample(self) -> None:
        stats: dict[int, ProcStat] = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                text = _read(f"/proc/{entry.name}/stat")
                if text:
                    with contextlib.suppress(ValueError, IndexError):
                        stat = parse_stat(text)
                        stats[stat.pid] = stat
        if self.root not in stats:
            return
        tree = descendants(self.root, {p: s.ppid for p, s in stats.items()}) | (self.processes.keys() & stats.keys())
        rss = pss = 0
        for pid in tree:
            stat = stats.get(pid)
            if stat is None:
                continue
            seen = self.processes.get(pid)
            if seen is None:
                cmdline = self._cmdline(pid)
                if pid == self.root:
                    self.root_cmdline = cmdline
                label = process_label(cmdline, None if pid == self.root else self.root_cmdline)
                seen = self.processes[pid] = ProcessSeen(label)
            seen.cpu_s = stat.cpu_ticks / self.tick
            seen.peak_rss = max(seen.peak_rss, stat.rss_pages * self.page)
            rss += stat.rss_pages * self.page
            pss += parse_pss_kib(_read(f"/proc/{pid}/smaps_rollup") or "") * 1024
            if pid == self.root:
                self.peak_root_rss = max(self.peak_root_rss, stat.rss_pages * self.page)
        self.peak_tree_rss = max(self.peak_tree_rss, rss)
        self.peak_tree_pss = max(self.peak_tree_pss, pss)
        self.samples += 1


def set_subreaper(on: bool) -> bool:
    """Make this process the subreaper of its descendants (Linux): an orphan comes here, to be waited for."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def reap(pids: Sequence[int], timeout_s: float = 30.0) -> list[int]:
    """Wait for those of `pids` that are this process's children (orphans of the tree); the ones still
    running after `timeout_s` are returned (their CPU is then not in getrusage's count)."""
    pending, deadline = set(pids), time.monotonic() + timeout_s
    while pending:
        for pid in list(pending):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # not our child: its own parent waits for it
                pending.discard(pid)
                continue
            if done:
                pending.discard(pid)
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return sorted(pending)


def children_cpu_s() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# -- the runs ---------------------------------------------------------------------------------------


def parse_sizes(text: str) -> list[int]:
    sizes = [int(part) for part in text.split(",") if part.strip()]
    if not sizes or any(n < 1 for n in sizes):
        raise ValueError(f"--sizes needs positive numbers separated by commas, not {text!r}")
    return sizes


def model_yaml(url: str, concurrency: int, batch_size: int) -> str:
    """A model spec for helmflow's openai backend at the fake server (whose one model is `fake`)."""
    return (
        "name: fake-server\n"
        "description: tests/fake_openai_server.py, for make bench-serving\n"
        "backend: openai\n"
        f"path: {url}\n"
        "remote_model: fake\n"
        f"concurrency: {concurrency}\n"
        f"batch_size: {batch_size}\n"
        "retry_backoff_s: 0.1\n"
    )


def helmflow_run_command(db: Path, scenario: str, model: Path, max_instances: int | None) -> list[str]:
    command = [sys.executable, "-m", "helmflow.flows.cli", "--db", str(db), "run", scenario, "--model", str(model)]
    command += ["--source", "offline"]
    return command + (["--max-instances", str(max_instances)] if max_instances else [])


@dataclass
class RunMeasure:
    label: str
    run_id: str
    questions: int  # instances of the run
    prompts: int  # distinct prompts (a perturbation that changes nothing adds none)
    requests: int  # HTTP requests the server answered while the command ran (4 per prompt at batch_size 1)
    wall_s: float
    cpu_s: float  # the tree's CPU: getrusage(RUSAGE_CHILDREN) around the command, every process waited for
    command_cpu_s: float  # the command's own CPU at its last sample
    server_cpu_s: float
    peak_command_rss: int
    peak_tree_rss: int
    peak_tree_pss: int
    warehouse_bytes: int
    processes: dict[int, ProcessSeen] = field(default_factory=dict)
    outlived: list[int] = field(default_factory=list)

    def ms(self, seconds: float) -> float:
        return 1000 * seconds / max(self.requests, 1)


def tail(path: Path, lines: int = 20) -> str:
    return "".join(path.read_text(errors="replace").splitlines(keepends=True)[-lines:])


def run_measured(label: str, command: list[str], db: Path, fake: Any, log: Path) -> RunMeasure:
    """The helmflow command run and measured (see the module's doc); raises when it fails."""
    print(f"  {label}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    before = fake.stats()
    subreaper = set_subreaper(True)
    cpu = children_cpu_s()
    began = time.perf_counter()
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        with TreeSampler(process.pid) as sampler:
            code = process.wait()
        wall = time.perf_counter() - began
    outlived = reap([pid for pid in sampler.processes if pid != process.pid]) if subreaper else []
    cpu = children_cpu_s() - cpu
    set_subreaper(False)
    after = fake.stats()
    if code != 0:
        raise RuntimeError(f"{label}: helmflow exited {code} after {wall:.0f} s ({log}):\n{tail(log)}")
    run_id, questions, prompts = read_run(db)
    return RunMeasure(
        label=label,
        run_id=run_id,
        questions=questions,
        prompts=prompts,
        requests=int(after["requests"] - before["requests"]),
        wall_s=wall,
        cpu_s=cpu,
        command_cpu_s=sampler.processes[process.pid].cpu_s if process.pid in sampler.processes else 0.0,
        server_cpu_s=after["cpu_s"] - before["cpu_s"],
        peak_command_rss=sampler.peak_root_rss,
        peak_tree_rss=sampler.peak_tree_rss,
        peak_tree_pss=sampler.peak_tree_pss,
        warehouse_bytes=sum(p.stat().st_size for p in db.parent.glob(db.name + "*") if p.is_file()),
        processes=sampler.processes,
        outlived=outlived,
    )


def read_run(db: Path) -> tuple[str, int, int]:
    """The warehouse's one run: its id, its instances and its distinct prompts."""
    import duckdb

    with contextlib.closing(duckdb.connect(str(db), read_only=True)) as con:
        [(run_id, status)] = con.execute("select run_id, status from runs").fetchall()
        if status != "succeeded":
            raise RuntimeError(f"run {run_id} is {status}")
        [(questions,)] = con.execute("select count(*) from instances where run_id = ?", [run_id]).fetchall()
        [(prompts,)] = con.execute(
            "select count(distinct prompt) from predictions where run_id = ?", [run_id]
        ).fetchall()
    return run_id, int(questions), int(prompts)


def run_requests(db: Path, run_id: str) -> list[Any]:
    """The run's requests again: each distinct prompt with its options' letters (the joint adapter's
    continuations, target_delimiter " "), in the order they were first made."""
    import duckdb

    from helmflow.tasks.records import Request

    with contextlib.closing(duckdb.connect(str(db), read_only=True)) as con:
        rows = con.execute(
            "select p.prompt, max(len(i.choices)) from predictions p join instances i using (run_id, instance_id) "
            "where p.run_id = ? group by p.prompt order by min(p.request_id)",
            [run_id],
        ).fetchall()
    return [
        Request(f"q{k}", f"q{k}", "multiple_choice", prompt, tuple(" " + "ABCDEFGHIJ"[c] for c in range(n)))
        for k, (prompt, n) in enumerate(rows)
    ]


def last_instance(db: Path, run_id: str) -> str:
    """The id of the run's last instance (the instance browser's last rows)."""
    import duckdb

    with contextlib.closing(duckdb.connect(str(db), read_only=True)) as con:
        [(instance_id,)] = con.execute(
            "select instance_id from instances where run_id = ? order by rowid desc limit 1", [run_id]
        ).fetchall()
    return str(instance_id)


# -- the report -------------------------------------------------------------------------------------


@dataclass
class ReportMeasure:
    write_s: float
    bytes: int
    files: int
    page: str
    needle: str = ""
    first_rows_s: list[float] = field(default_factory=list)  # one per try, each in a fresh browser context
    search_s: list[float] = field(default_factory=list)  # to the searched row, #match-count no longer "searching"
    found_s: list[float] = field(default_factory=list)  # to the searched row shown (the search may go on)
    shown: str = ""  # #match-count when the page opened, then after the search
    problems: list[str] = field(default_factory=list)

    @property
    def first_rows(self) -> float | None:
        return statistics.median(self.first_rows_s) if self.first_rows_s else None

    @property
    def search(self) -> float | None:
        return statistics.median(self.search_s) if self.search_s else None

    @property
    def found(self) -> float | None:
        return statistics.median(self.found_s) if self.found_s else None


def folder_size(folder: Path) -> tuple[int, int]:
    """Bytes and number of the files under a folder."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def write_report(db: Path, out: Path, run_id: str, log: Path) -> ReportMeasure:
    command = [sys.executable, "-m", "helmflow.flows.cli", "--db", str(db), "report", "--out", str(out)]
    began = time.perf_counter()
    with log.open("w") as f:
        code = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - began
    if code != 0:
        raise RuntimeError(f"helmflow report exited {code} ({log}):\n{tail(log)}")
    size, files = folder_size(out)
    page = out / f"instances-{run_id}.html"
    if not page.is_file():
        pages = sorted(out.glob("instances-*.html"))
        page = pages[0] if pages else page
    return ReportMeasure(seconds, size, files, str(page))


# True once the search shows its result: #match-count changed and a row shown holds the searched id; with
# `done`, also once #match-count no longer says it is searching (a page that reads its rows in data pages
# shows what it has found while it reads: "... rows (searching 3 of 20 pages)").
SEARCH_SHOWN = """([needle, before, done]) => {
  const count = document.getElementById("match-count");
  if (!count || count.textContent === before || (done && /searching/i.test(count.textContent))) return false;
  return Array.from(document.querySelectorAll("#instance-rows tr")).some((tr) => tr.textContent.includes(needle));
}"""


def time_browser(report: ReportMeasure, needle: str, tries: int = BROWSER_TRIES) -> None:
    """Open the instance page `tries` times in headless Chromium, each in a fresh context: seconds from
    navigation to the first row in #instance-rows, then from typing `needle` into #filter-text to a row
    holding it with #match-count updated, and on to #match-count no longer saying "searching"."""
    from playwright.sync_api import sync_playwright

    report.needle = needle
    uri = Path(report.page).resolve().as_uri()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        try:
            for _ in range(tries):
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                page = context.new_page()
                page.on("pageerror", lambda e: report.problems.append(f"page error: {e}"))
                began = time.perf_counter()
                page.goto(uri, wait_until="commit")
                page.wait_for_selector("#instance-rows tr", state="attached", timeout=120_000)
                report.first_rows_s.append(time.perf_counter() - began)
                before = page.inner_text("#match-count")
                began = time.perf_counter()
                page.fill("#filter-text", needle)
                page.wait_for_function(SEARCH_SHOWN, arg=[needle, before, False], polling="raf", timeout=120_000)
                report.found_s.append(time.perf_counter() - began)
                page.wait_for_function(SEARCH_SHOWN, arg=[needle, before, True], polling="raf", timeout=120_000)
                report.search_s.append(time.perf_counter() - began)
                report.shown = f"{before!r} -> {page.inner_text('#match-count')!r}"
                context.close()
        finally:
            browser.close()


# -- the same requests from a client alone ----------------------------------------------------------


def measure_clients(fake: Any, requests: list[Any], args: argparse.Namespace) -> tuple[Any, Any]:
    """bench_serving's transport (OpenAIModel.loglikelihood in this process) and lm-eval's local-completions
    on `requests`, each the least client CPU per request of --repeat-lmeval runs."""
    from helmflow.specs.schema import ModelSpec
    from helmflow.tasks.models.openai import OpenAIModel
    from tests.bench.bench_serving import in_chunks, measure, measure_lm_eval

    spec = ModelSpec(
        name="fake", backend="openai", path=fake.url, concurrency=args.concurrency, batch_size=args.batch_size
    )
    model = OpenAIModel(spec)
    model.loglikelihood(requests[: max(args.concurrency // 4, 1)])  # connections open, code paths warm
    transport = measure("helmflow OpenAIModel", fake, lambda: in_chunks(model, requests), args.repeat_lmeval)
    model.client.close()
    if args.skip_lmeval:
        return transport, "not run (--skip-lmeval)"
    if any(r.continuations != LETTERS for r in requests):
        return transport, "not run: a prompt has other than four options (bench_serving's script sends four)"
    lm_eval: Any = None
    for _ in range(args.repeat_lmeval):
        print(f"  lm-eval local-completions: {len(requests) * 4} requests", file=sys.stderr, flush=True)
        this = measure_lm_eval(fake, requests, args.concurrency)
        if isinstance(this, str):
            return transport, this
        print(f"  lm-eval local-completions: {this.client_ms:.3f} client CPU ms/request", file=sys.stderr)
        if lm_eval is None or this.client_ms < lm_eval.client_ms:
            lm_eval = this
    return transport, lm_eval


# -- the synthetic scenario -------------------------------------------------------------------------

Item = tuple[str, str, Sequence[str], int, str]  # id, question, choices, gold index, group


def synthetic_rows(items: Sequence[Item], n: int, seed: int = 0) -> list[dict[str, Any]]:
    """n MMLU-shaped rows: `items` over and over, copy k's options shuffled with its own seed (copy 0 as
    they are; a shuffle that moves nothing is rotated, so that no copy repeats a prompt)."""
    rows: list[dict[str, Any]] = []
    copy = 0
    while len(rows) < n and items:
        rng = random.Random(seed * 1_000_003 + copy)
        for item_id, question, choices, gold, group in items:
            if len(rows) == n:
                break
            order = list(range(len(choices)))
            if copy:
                rng.shuffle(order)
                if order == sorted(order):
                    order = order[1:] + order[:1]
            rows.append(
                {
                    "id": f"{item_id}-c{copy}",
                    "question": question,
                    "choices": [choices[k] for k in order],
                    "answer": order.index(gold),
                    "subject": group,
                }
            )
        copy += 1
    return rows


def synthetic_spec(mmlu: Any, name: str = "mmlu_synthetic") -> dict[str, Any]:
    """The shipped MMLU spec's adapter, metrics and perturbations over local test.jsonl and dev.jsonl."""
    return {
        "name": name,
        "description": "MMLU-shaped synthetic questions for make bench-serving's memory check",
        "source": {"split": "test", "offline": {"files": {"test": "test.jsonl", "dev": "dev.jsonl"}, "format": "json"}},
        "fields": {
            "id": "id",
            "input": "{{ question.strip() }}",
            "choices": "choices",
            "answer": "answer",
            "answer_type": "index",
            "group": "subject",
        },
        "adapter": mmlu.adapter.model_dump(mode="json"),
        "metrics": list(mmlu.metrics),
        "main_metric": mmlu.main_metric,
        "perturbations": mmlu.perturbations.model_dump(mode="json"),
    }


def write_synthetic(folder: Path, n: int) -> Path:
    """The synthetic scenario's files in `folder`; returns its spec's path."""
    import yaml

    from helmflow.specs.library import find_scenario
    from helmflow.specs.schema import ScenarioSpec
    from helmflow.tasks.data import fewshot_pool, load_instances

    mmlu = find_scenario("mmlu")
    instances, _ = load_instances(mmlu, prefer="offline")
    items = [(i.id, str(i.input), i.choices, int(i.gold_index or 0), i.group or "") for i in instances]
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "test.jsonl").open("w") as out:
        for row in synthetic_rows(items, n):
            out.write(json.dumps(row) + "\n")
    pool = fewshot_pool(mmlu, "offline")
    with (folder / "dev.jsonl").open("w") as out:
        for k, i in enumerate(pool):
            row = {"id": f"dev-{k}", "question": str(i.input), "choices": list(i.choices), "answer": i.gold_index}
            out.write(json.dumps({**row, "subject": i.group or ""}) + "\n")
    spec = synthetic_spec(mmlu)
    ScenarioSpec.model_validate(spec)
    path = folder / "mmlu_synthetic.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))
    return path


# -- printing ---------------------------------------------------------------------------------------


@dataclass
class SizeResult:
    size: int
    run: RunMeasure
    report: ReportMeasure | None = None
    transport: Any = None  # bench_serving.Result
    lm_eval: Any = None  # bench_serving.Result, or why it was not measured


def mib(n: int) -> str:
    return f"{n / MIB:,.0f}"


def seconds_list(values: Sequence[float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def run_lines(run: RunMeasure) -> list[tuple[str, str]]:
    per = run.ms
    lines = [
        ("questions / distinct prompts / HTTP requests", f"{run.questions:,} / {run.prompts:,} / {run.requests:,}"),
        ("wall s (the whole command)", f"{run.wall_s:.1f}"),
        ("requests/s (HTTP requests / wall)", f"{run.requests / run.wall_s:,.0f}"),
        ("helmflow CPU s, process tree (getrusage)", f"{run.cpu_s:.1f}"),
        ("helmflow CPU ms/request, process tree", f"{per(run.cpu_s):.3f}"),
        ("  of which the command alone (sampled)", f"{per(run.command_cpu_s):.3f}"),
        ("fake server CPU ms/request", f"{per(run.server_cpu_s):.3f}"),
        (
            "peak MiB: command RSS / tree RSS / tree PSS",
            "  /  ".join(map(mib, (run.peak_command_rss, run.peak_tree_rss, run.peak_tree_pss))),
        ),
        ("warehouse MB", f"{run.warehouse_bytes / MB:.1f}"),
    ]
    counted = ", ".join(
        f"{p.label} {p.cpu_s:.1f} s CPU, {mib(p.peak_rss)} MiB"
        for p in sorted(run.processes.values(), key=lambda p: -p.cpu_s)
    )
    lines.append(("processes in the tree (sampled)", counted))
    if run.outlived:
        lines.append(("still running after the command", f"{len(run.outlived)} (their CPU is not counted)"))
    return lines


def size_lines(result: SizeResult) -> list[tuple[str, str]]:
    lines = run_lines(result.run)
    report = result.report
    if report is not None:
        lines.append(
            ("report: write s / total MB / files", f"{report.write_s:.1f} / {report.bytes / MB:.1f} / {report.files}")
        )
        if report.first_rows_s:
            lines.append(
                (
                    "instance page: first rows s (median; each try)",
                    f"{report.first_rows:.2f} ({seconds_list(report.first_rows_s)})",
                )
            )
            lines.append(
                (
                    f"search {report.needle!r}: its row shown s (median; each try)",
                    f"{report.found:.2f} ({seconds_list(report.found_s)})",
                )
            )
            lines.append(
                (
                    "  the search finished s (median; each try)",
                    f"{report.search:.2f} ({seconds_list(report.search_s)})",
                )
            )
            lines.append(("#match-count before -> after", report.shown))
        for problem in report.problems[:3]:
            lines.append(("page problem", problem))
    t = result.transport
    if t is not None:
        lines.append(
            (
                "transport: OpenAIModel client CPU ms/request",
                f"{t.client_ms:.3f} ({t.requests:,} requests, {t.wall_s:.1f} s, {t.requests / t.wall_s:,.0f}/s)",
            )
        )
    lm = result.lm_eval
    if lm is not None and not isinstance(lm, str):
        lines.append(
            (
                "lm-eval local-completions client CPU ms/request",
                f"{lm.client_ms:.3f} ({lm.requests:,} requests, {lm.wall_s:.1f} s, {lm.requests / lm.wall_s:,.0f}/s)",
            )
        )
        ratio = f"{lm.client_ms / t.client_ms:.2f}x" if t is not None else "-"
        whole = lm.client_ms / result.run.ms(result.run.cpu_s)
        lines.append(("lm-eval / helmflow CPU per request", f"{ratio} transport, {whole:.2f}x whole run"))
    elif lm is not None:
        lines.append(("lm-eval local-completions", lm))
    return lines


def table(title: str, lines: list[tuple[str, str]]) -> list[str]:
    width = max(len(name) for name, _ in lines)
    return [title, *(f"  {name:<{width}}  {value}" for name, value in lines)]


# -- acceptance -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    claim: str
    measured: str
    passed: bool | None  # None: not measured

    def text(self) -> str:
        verdict = {True: "PASS", False: "FAIL", None: "n/a"}[self.passed]
        return f"  {verdict:<4}  {self.claim}: {self.measured}"


def at_most(claim: str, value: float | None, limit: float, fmt: str, unit: str) -> Line:
    if value is None:
        return Line(claim, "not measured", None)
    return Line(claim, f"{value:{fmt}} {unit}", value <= limit)


def acceptance(
    results: Sequence[SizeResult], scale: RunMeasure | None, concurrency: int, batch_size: int
) -> list[Line]:
    """The issue's acceptance lines with the values measured (per size where they are per size)."""
    lines: list[Line] = []
    asked = (concurrency, batch_size) == ASKED_AT
    where = "" if asked else f" (measured at concurrency {concurrency}, batch_size {batch_size})"
    for r in results:
        n = f"[{r.size:,}]"
        run, report = r.run, r.report
        lm = None if isinstance(r.lm_eval, str) else r.lm_eval
        whole = run.ms(run.cpu_s)
        transport = r.transport.client_ms if r.transport is not None else None
        client = f"{n} helmflow client CPU <= {CLIENT_MS_MAX} ms/request"
        lines.append(at_most(f"{client}, transport{where}", transport, CLIENT_MS_MAX, ".3f", "ms"))
        lines.append(at_most(f"{client}, whole run{where}", whole, CLIENT_MS_MAX, ".3f", "ms"))
        for what, ours in (("transport", transport), ("whole run", whole)):
            claim = f"{n} lm-eval local-completions CPU/request >= {LMEVAL_RATIO_MIN:g}x helmflow's, {what}"
            if lm is None or not ours:
                lines.append(Line(claim, "not measured", None))
            else:
                ratio = lm.client_ms / ours
                measured = f"{ratio:.2f}x ({lm.client_ms:.3f} / {ours:.3f} ms)"
                lines.append(Line(claim, measured, ratio >= LMEVAL_RATIO_MIN))
        server = run.ms(run.server_cpu_s)
        claim = f"{n} helmflow total CPU/request < the fake server's"
        lines.append(Line(claim, f"{whole:.3f} vs {server:.3f} ms", whole < server))
        size = report.bytes / MB if report else None
        lines.append(at_most(f"{n} report total <= {REPORT_MB_MAX:g} MB", size, REPORT_MB_MAX, ".1f", "MB"))
        first = report.first_rows if report else None
        lines.append(
            at_most(f"{n} instance browser first rows <= {FIRST_ROWS_S_MAX} s", first, FIRST_ROWS_S_MAX, ".2f", "s")
        )
        search = report.search if report else None
        lines.append(at_most(f"{n} search over all rows <= {SEARCH_S_MAX:g} s", search, SEARCH_S_MAX, ".2f", "s"))
    base = max(results, key=lambda r: r.size, default=None)
    if base is not None:
        note = "" if base.size == 14042 else " (the issue asks at 14,042)"
        claim = f"peak RSS of the helmflow tree at {base.size:,} questions <= 1.2 GiB{note}"
        lines.append(at_most(claim, base.run.peak_tree_rss / MIB, PEAK_MIB_MAX, ",.0f", "MiB"))
        if scale is not None:
            growth = scale.peak_tree_rss / max(base.run.peak_tree_rss, 1)
            claim = f"peak at {scale.questions:,} (synthetic) <= {SCALE_GROWTH_MAX:.2f}x the peak at {base.size:,}"
            measured = f"{growth:.3f}x ({mib(scale.peak_tree_rss)} / {mib(base.run.peak_tree_rss)} MiB)"
            lines.append(Line(claim, measured, growth <= SCALE_GROWTH_MAX))
        else:
            lines.append(Line("peak at 56,168 <= 1.10x the peak at 14,042", "not measured (--scale 0)", None))
    return lines


# -- main -------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="MMLU questions per run (default 2000,14042)"
    )
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument(
        "--scale", type=int, default=DEFAULT_SCALE, help="synthetic questions for the memory check (0: none)"
    )
    parser.add_argument("--skip-lmeval", action="store_true", help="do not send the requests through lm-eval")
    parser.add_argument(
        "--skip-report", action="store_true", help="write and size the report, but do not time it in Chromium"
    )
    parser.add_argument(
        "--repeat-lmeval", type=int, default=1, help="runs of the transport and of lm-eval (the least CPU kept)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (warehouses, reports, logs)")
    args = parser.parse_args(argv)
    try:
        args.sizes = parse_sizes(args.sizes)
    except ValueError as exc:
        parser.error(str(exc))
    if args.repeat_lmeval < 1 or args.concurrency < 1 or args.batch_size < 1 or args.scale < 0:
        parser.error("--repeat-lmeval, --concurrency and --batch-size must be at least 1, --scale at least 0")
    return args


def bench_size(size: int, work: Path, model: Path, fake: Any, args: argparse.Namespace) -> SizeResult:
    folder = work / f"mmlu-{size}"
    folder.mkdir()
    db = folder / "w.duckdb"
    command = helmflow_run_command(db, "mmlu", model, size)
    result = SizeResult(size, run_measured(f"mmlu {size:,}", command, db, fake, folder / "helmflow.log"))
    print(f"  report of run {result.run.run_id}", file=sys.stderr, flush=True)
    result.report = write_report(db, folder / "report", result.run.run_id, folder / "report.log")
    if not args.skip_report:
        if CHROMIUM.exists():
            time_browser(result.report, last_instance(db, result.run.run_id))
        else:
            result.report.problems.append(f"not timed: no Chromium at {CHROMIUM}")
    requests = run_requests(db, result.run.run_id)
    sent = sum(len(r.continuations) for r in requests)
    if args.batch_size == 1 and sent != result.run.requests:  # a retry, or prompts rebuilt wrongly
        print(f"  note: {sent:,} requests rebuilt, the server answered {result.run.requests:,}", file=sys.stderr)
    result.transport, result.lm_eval = measure_clients(fake, requests, args)
    return result


def bench_all(args: argparse.Namespace, work: Path) -> tuple[bool, list[SizeResult], RunMeasure | None]:
    """Every size, then the synthetic run, against one fake server: (whether one failed, the sizes, the synthetic)."""
    from tests.fake_openai_server import serve

    results: list[SizeResult] = []
    scale: RunMeasure | None = None
    failed = False
    with serve() as fake:
        model = work / "fake-server.yaml"
        model.write_text(model_yaml(fake.url, args.concurrency, args.batch_size))
        for size in args.sizes:
            print(f"MMLU, {size:,} questions", file=sys.stderr, flush=True)
            try:
                results.append(bench_size(size, work, model, fake, args))
            except Exception as exc:  # the other sizes still run; the exit status says it failed
                print(f"{size}: {type(exc).__name__}: {exc}", file=sys.stderr)
                failed = True
        if args.scale:
            print(f"synthetic, {args.scale:,} questions", file=sys.stderr, flush=True)
            try:
                spec = write_synthetic(work / "synthetic", args.scale)
                db = work / "synthetic" / "w.duckdb"
                command = helmflow_run_command(db, str(spec), model, None)
                scale = run_measured(
                    f"synthetic {args.scale:,}", command, db, fake, work / "synthetic" / "helmflow.log"
                )
            except Exception as exc:
                print(f"synthetic: {type(exc).__name__}: {exc}", file=sys.stderr)
                failed = True
    return failed, results, scale


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from tests.bench.bench_lmeval_tasks import LM_EVAL_VERSION, lm_eval_venv

    if not args.skip_lmeval:
        lm_eval_venv()  # installed once, as make bench-lmeval does
    failed = True  # until the runs are over: an exception keeps the work folder too
    work = Path(tempfile.mkdtemp(prefix="helmflow-bench-serving-"))
    try:
        failed, results, scale = bench_all(args, work)
    finally:
        if args.keep or failed:
            print(f"work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    header = (
        f"helmflow's openai backend against tests/fake_openai_server.py: concurrency {args.concurrency}, "
        f"batch_size {args.batch_size}; lm-eval {LM_EVAL_VERSION} local-completions, num_concurrent {args.concurrency}"
    )
    print(header)
    for r in results:
        print()
        print("\n".join(table(f"MMLU, {r.size:,} questions (run {r.run.run_id})", size_lines(r))))
    if scale is not None:
        print()
        lines = run_lines(scale)
        base = max(results, key=lambda r: r.size, default=None)
        if base is not None:
            growth = scale.peak_tree_rss / max(base.run.peak_tree_rss, 1)
            lines.append((f"tree RSS peak / the peak at {base.size:,}", f"{growth:.3f}x"))
        print("\n".join(table(f"synthetic MMLU-shaped, {scale.questions:,} questions (run {scale.run_id})", lines)))
    lines = acceptance(results, scale, args.concurrency, args.batch_size)
    print()
    print("acceptance")
    print("\n".join(line.text() for line in lines))
    return 1 if failed or any(line.passed is False for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main())
