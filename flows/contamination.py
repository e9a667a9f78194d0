"""`helmflow contamination`: check a stored run's instances against a training corpus, then score the clean ones.

1. The check (warehouse/corpus_overlap.py does the scan): the run's instance texts become n-grams, each
   corpus file is scanned in DuckDB and its matches recorded in the warehouse before the next one starts, so
   a stopped check, run again, resumes after the last finished file; a file changed since is scanned again.
   Each instance is then marked dirty (an n-gram of it is in the corpus) or clean.
2. The clean subset's metrics (lm-eval's "clean" evaluation, GPT-3's §4): each whole-run metric recomputed
   from the run's stored per-instance values on the clean instances only, beside the whole run's, each with
   its 95% interval as helmflow gives it (tasks/metrics/intervals.py: Wilson for 0/1 values, else the seeded
   bootstrap). A metric is recomputed the way the leaderboard rebuilds a column from instances
   (flows/leaderboard.py): a mean, a worst case over perturbations, ECE, a toxic share; it is first rebuilt on
   every instance and compared with the stored value, and a metric that does not come back exactly (a bias
   score, a group gap: not a function of per-instance values alone) is shown without a clean value.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from helmflow.flows.leaderboard import instance_rows
from helmflow.tasks.metrics.intervals import bootstrap, proportion_or_mean
from helmflow.tasks.metrics.win_rates import KINDS, TOXIC_THRESHOLD
from helmflow.warehouse.contamination import InstanceMark, spec_of
from helmflow.warehouse.corpus_overlap import (
    DEFAULT_N,
    NORMALISATION,
    CorpusFile,
    OverlapScanner,
    ScanLimits,
    corpus_files,
    gpt3_n,
    janitor_words,
)
from helmflow.warehouse.store import Warehouse

Report = Callable[[str], None]
# How often a long file's scan says how far DuckDB has got.
HEARTBEAT_S = 15.0


@dataclass(frozen=True)
class CheckOptions:
    n: int | None = DEFAULT_N  # None: GPT-3's rule (the instances' 5th-percentile length, within [8, 13])
    with_references: bool = False  # also the reference texts and options, each on its own
    text_field: str = "text"
    limits: ScanLimits = field(default_factory=ScanLimits)


@dataclass(frozen=True)
class CheckOutcome:
    check_id: str
    run_id: str
    n: int
    files: int
    scanned: int  # files scanned by this command (the others were done before)
    bytes: int
    test_ngrams: int
    marks: list[InstanceMark]

    @property
    def dirty(self) -> list[str]:
        return [m.instance_id for m in self.marks if m.dirty]

    @property
    def too_short(self) -> int:
        return sum(m.ngrams == 0 for m in self.marks)


def check_id_of(run_id: str, corpus: list[str], n: int, fields: str, text_field: str) -> str:
    roots = sorted(str(Path(p).expanduser().resolve()) for p in corpus)
    key = json.dumps([run_id, roots, n, fields, NORMALISATION, text_field])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


@contextmanager
def _heartbeat(scanner: OverlapScanner, file: CorpusFile, report: Report) -> Iterator[None]:
    """While a Parquet or JSONL file is scanned, say DuckDB's own progress every HEARTBEAT_S seconds."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            try:
                share = scanner.con.query_progress()
            except Exception:  # the query just ended, or DuckDB cannot say
                continue
            if share >= 0:
                report(f"  {file.path.name}: {share:.0f}% read")

    thread = threading.Thread(target=beat, name="helmflow-overlap-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _scan_files(
    warehouse: Warehouse,
    scanner: OverlapScanner,
    check_id: str,
    files: list[CorpusFile],
    options: CheckOptions,
    report: Report,
) -> int:
    """Scan the files the check has not finished, recording each; returns how many were scanned."""
    done = warehouse.scanned_files(check_id)
    total = sum(f.bytes for f in files)
    progress = scanned = 0
    began = time.perf_counter()
    for number, file in enumerate(files, 1):
        label = f"[{number}/{len(files)}] {file.path}"
        if done.get(str(file.path)) == (file.bytes, file.modified):
            progress += file.bytes
            report(f"{label}: scanned before, skipped")
            continue
        start = time.perf_counter()
        read = [0]  # characters read of this file so far (a cell the callback adds to)

        def piece_done(characters: int, _file: CorpusFile = file, _read: list[int] = read) -> None:
            _read[0] += characters
            report(f"  {_file.path.name}: {_read[0] / 2**20:,.0f} MB of text read")

        with _heartbeat(scanner, file, report):
            found = scanner.scan(file, options.text_field, piece_done if file.bytes > 4 * 2**20 else None)
        seconds = time.perf_counter() - start
        warehouse.record_file(check_id, str(file.path), file.kind, file.bytes, file.modified, found, seconds)
        scanned += 1
        progress += file.bytes
        rate = file.bytes / 2**20 / max(seconds, 1e-9)
        elapsed = time.perf_counter() - began
        report(
            f"{label}: {len(found)} test n-gram(s) found; {file.bytes / 2**20:,.1f} MB in {seconds:.1f} s "
            f"({rate:,.1f} MB/s); {progress / 2**30:,.2f} of {total / 2**30:,.2f} GB done, {elapsed:.0f} s so far"
        )
    return scanned


def check_overlap(
    db: str | Path | None, run_id: str, corpus: list[str], options: CheckOptions, report: Report = lambda _: None
) -> CheckOutcome:
    """Mark each instance of the run dirty or clean against the corpus, resuming an earlier check of the same
    run, corpus, n and fields; the marks and counts are stored with the check."""
    warehouse = Warehouse(db)
    run, instances = warehouse.instance_texts(run_id)
    if not instances:
        raise LookupError(f"run {run_id} has no stored instances (it is {run['status']}): nothing to check")
    files = corpus_files(corpus)
    n = options.n or gpt3_n(len(janitor_words(i.input)) for i in instances)
    fields = "input+references" if options.with_references else "input"
    texts = [(i.instance_id, i.input) for i in instances]
    if options.with_references:
        texts += [(i.instance_id, r) for i in instances for r in i.references]
    check_id = check_id_of(run_id, corpus, n, fields, options.text_field)
    with OverlapScanner(files, n, options.limits) as scanner:
        test_ngrams = scanner.add_texts(texts)
        own = scanner.instance_ngrams()
        warehouse.start_check(
            {
                "check_id": check_id,
                "run_id": run_id,
                "corpus": "\n".join(sorted(str(Path(p).expanduser().resolve()) for p in corpus)),
                "ngram_n": n,
                "fields": fields,
                "normalisation": NORMALISATION,
                "text_field": options.text_field,
                "test_ngrams": test_ngrams,
            }
        )
        total = sum(f.bytes for f in files)
        report(
            f"check {check_id}: {len(instances)} instances of run {run_id}, {test_ngrams:,} distinct {n}-grams; "
            f"{len(files)} corpus file(s), {total / 2**30:,.2f} GB"
        )
        scanned = _scan_files(warehouse, scanner, check_id, files, options, report) if test_ngrams else 0
    matched = warehouse.matched_ngrams(check_id, [str(f.path) for f in files])
    marks = []
    for instance in instances:
        grams = own.get(instance.instance_id, set())
        hits = grams & matched
        marks.append(InstanceMark(instance.instance_id, bool(hits), len(grams), len(hits), min(hits, default=None)))
    dirty = sum(m.dirty for m in marks)
    totals = {
        "files": len(files),
        "bytes": total,
        "dirty": dirty,
        "clean": len(marks) - dirty,
        "too_short": sum(m.ngrams == 0 for m in marks),
    }
    warehouse.finish_check(check_id, run_id, marks, totals)
    return CheckOutcome(check_id, run_id, n, len(files), scanned, total, test_ngrams, marks)


# -- the clean subset's metrics ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    value: float | None
    n: int
    ci_low: float | None = None
    ci_high: float | None = None
    ci_method: str = ""


@dataclass(frozen=True)
class SubsetMetric:
    """One whole-run metric on the whole run, its clean instances and its dirty ones."""

    category: str
    metric: str
    perturbation: str
    headline: bool
    lower_is_better: bool
    whole: Estimate
    clean: Estimate | None  # None: the metric is not rebuilt from per-instance values
    dirty: Estimate | None
    note: str = ""


NOT_REBUILT = "not rebuilt from per-instance values (it is not a function of them alone): whole run only"


def _value(kind: str, rows: np.ndarray) -> float | None:
    return KINDS[kind](rows) if len(rows) else None


def _estimate(kind: str, rows: np.ndarray) -> Estimate:
    """The metric on these instances' rows, with its interval as intervals.py would give it."""
    value = _value(kind, rows)
    if value is None:
        return Estimate(None, 0)
    if kind == "mean":
        bounds, method = proportion_or_mean([float(v) for v in rows[:, 0]])
    elif kind == "toxic":
        bounds, method = proportion_or_mean([float(v >= TOXIC_THRESHOLD) for v in rows[:, 0]])
    else:
        bounds, method = bootstrap(lambda idx: _value(kind, rows[idx]), len(rows)), "bootstrap"
    low, high = bounds if bounds else (None, None)
    return Estimate(value, len(rows), low, high, method if bounds else "")


def _same(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and abs(a - b) <= 1e-9 * max(1.0, abs(b))


def clean_subset_metrics(db: str | Path | None, run_id: str, dirty: set[str]) -> list[SubsetMetric]:
    """Each whole-run metric of the run's current metrics version on the whole run, the clean instances
    (those not in `dirty`) and the dirty ones."""
    warehouse = Warehouse(db)
    spec = spec_of(warehouse.run_row(run_id, "spec_json"))
    metrics, stats = warehouse.current_results(run_id)
    per_instance: dict[tuple[str, str, str, str], dict[str, float]] = {}
    for s in stats.itertuples(index=False):
        per_instance.setdefault((run_id, s.category, s.metric, s.perturbation), {})[s.instance_id] = float(s.value)
    out = []
    for m in metrics.itertuples(index=False):
        stored = None if m.value is None or np.isnan(m.value) else float(m.value)
        whole = Estimate(
            stored,
            int(m.n),
            None if np.isnan(m.ci_low) else float(m.ci_low),
            None if np.isnan(m.ci_high) else float(m.ci_high),
            m.ci_method if isinstance(m.ci_method, str) else "",
        )
        name = SimpleNamespace(run_id=run_id, **m._asdict())
        kind, rows = instance_rows(name, spec, per_instance)
        own = per_instance.get((run_id, m.category, m.metric, m.perturbation))
        if not kind and own:  # any other metric that is the mean of its own per-instance values
            kind, rows = "mean", {i: (v,) for i, v in own.items()}
        ids = sorted(rows)
        table = np.asarray([rows[i] for i in ids], dtype=float).reshape(len(ids), -1) if ids else np.empty((0, 1))
        named = (m.category, m.metric, m.perturbation, bool(m.headline), bool(m.lower_is_better))
        if not kind or not _same(_value(kind, table), stored):
            out.append(SubsetMetric(*named, whole, None, None, NOT_REBUILT))
            continue
        if whole.ci_low is None and not whole.ci_method:  # not a headline: its interval the same way as the clean's
            whole = _estimate(kind, table)
        keep = np.asarray([i not in dirty for i in ids], dtype=bool)
        out.append(SubsetMetric(*named, whole, _estimate(kind, table[keep]), _estimate(kind, table[~keep])))
    return out


__all__ = ["CheckOptions", "CheckOutcome", "SubsetMetric", "check_overlap", "clean_subset_metrics"]
