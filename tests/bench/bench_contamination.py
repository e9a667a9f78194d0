"""Corpus overlap at scale: `helmflow contamination` on a generated corpus of 2 GB of text (docs/contamination.md).

Writes a corpus of random-word documents (JSONL files and plain text files, HELMFLOW_BENCH_CONTAMINATION_GB
gigabytes in all, default 2.0) into a temporary folder, plants three of a 10-instance run's questions in it (two
in text files, one in a JSONL document, each with a line break inside), runs the command as a child process,
and prints its wall time, CPU time and peak memory (DuckDB runs inside it), then runs it again to show the
resumed check skipping every file. The peak memory is given twice: the child's own maximum resident set
(wait4's rusage), and the largest of resident-memory samples taken every 0.1 s, with the progress line the
command had printed last when that sample was taken. The corpus is deleted at the end, whatever happens.
Prints `key value` lines; fails if the marked instances are not exactly the planted ones.

    python -m tests.bench.bench_contamination
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from tests.truth_runs import McRun, record_mc_run

FILE_BYTES = 128 * 2**20
TEXT_FILES = 4  # of every 16 files; the rest JSONL
PLANTED = {0: 3, 4: 9, 7: 1}  # instance -> the file it is planted in (file 1 is a text file)
SUBJECTS = ["astronomy", "botany", "chemistry", "dentistry", "ecology", "forestry", "geology", "history", "ink", "jazz"]


class BenchRun(McRun):
    def question(self, k: int) -> str:
        s = SUBJECTS[k]
        return (
            f"In {s} class {k}, the teacher asked which of the {s} facts below is true, given that every "
            f"{s} student had read chapter {k} of the {s} book twice before the exam"
        )


def _vocabulary(rng: np.random.Generator) -> np.ndarray:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = {"".join(rng.choice(letters, size=int(rng.integers(2, 10)))) for _ in range(50_000)}
    words -= {w for s in SUBJECTS for w in s.split()}
    return np.array(sorted(words))


def _documents(vocab: np.ndarray, rng: np.random.Generator, total_words: int) -> list[str]:
    """Documents of 50 to 4,000 random words (a few common, most rare, as words are) with about `total_words`."""
    words = vocab[(rng.random(total_words) ** 4 * len(vocab)).astype(np.int64)].tolist()
    docs, start = [], 0
    while start < len(words):
        stop = start + int(rng.integers(50, 4000))
        docs.append(" ".join(words[start:stop]).capitalize() + ".")
        start = stop
    return docs


def write_corpus(folder: Path, gigabytes: float, plants: dict[int, str]) -> tuple[int, int]:
    """Files of about FILE_BYTES each until `gigabytes` are written; returns (files, bytes)."""
    rng = np.random.default_rng(0)
    vocab = _vocabulary(rng)
    target = int(gigabytes * 2**30)
    written = files = 0
    while written < target:
        text_file = files % 16 < TEXT_FILES
        path = folder / (f"part-{files:03d}.txt" if text_file else f"part-{files:03d}.jsonl")
        docs = _documents(vocab, rng, FILE_BYTES // 6)  # about 6 characters a word with its space
        if plant := plants.get(files):  # inside a document, with a line break in the middle of it
            words = plant.split()
            middle = " ".join(words[:6]) + "\n" + " ".join(words[6:])
            doc = docs[len(docs) // 2]
            docs[len(docs) // 2] = doc[: len(doc) // 2] + " " + middle + " " + doc[len(doc) // 2 :]
        with path.open("w") as f:
            if text_file:
                f.write("\n\n".join(docs) + "\n")
            else:
                f.writelines(json.dumps({"text": doc, "id": k}) + "\n" for k, doc in enumerate(docs))
        written += path.stat().st_size
        files += 1
    return files, written


def _rss_mb(pid: int) -> int:
    """The process's resident memory now, in MB (Linux's /proc)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


def _command(db: Path, corpus: Path, spill: Path) -> tuple[float, int, int, float, str, str]:
    """Run the command: (wall seconds, peak resident MB by getrusage and by sampling, CPU seconds, stdout, the
    progress line it was at when the sampled peak was). The child's own rusage comes from wait4: getrusage's
    RUSAGE_CHILDREN would also count the process that wrote the corpus."""
    argv = [sys.executable, "-m", "helmflow.flows.cli", "--db", str(db), "contamination", "--corpus", str(corpus)]
    argv += ["--threads", "2", "--memory-limit", "1024", "--temp-dir", str(spill), "--show", "5", "r1"]
    log = spill.parent / "progress.log"
    began = time.perf_counter()
    sampled, at = 0, ""
    with log.open("w") as err, subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True) as child:
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                child.returncode = os.waitstatus_to_exitcode(status)
                break
            rss = _rss_mb(child.pid)
            if rss > sampled:
                lines = log.read_text().splitlines()
                sampled, at = rss, lines[-1] if lines else ""
            time.sleep(0.1)
        out = child.stdout.read() if child.stdout else ""
    seconds = time.perf_counter() - began
    if child.returncode != 0:
        raise SystemExit(f"helmflow contamination failed ({child.returncode}):\n{log.read_text()[-3000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    return seconds, usage.ru_maxrss // 1024, sampled, cpu, out, at  # Linux: ru_maxrss in kilobytes


def main() -> int:
    gigabytes = float(os.environ.get("HELMFLOW_BENCH_CONTAMINATION_GB", "2.0"))
    root = Path(tempfile.mkdtemp(prefix="helmflow-bench-contamination-"))
    free = shutil.disk_usage(root).free
    if free < gigabytes * 2**30 * 1.5:
        shutil.rmtree(root)
        raise SystemExit(f"needs {gigabytes * 1.5:.1f} GB free under {root.parent}, has {free / 2**30:.1f}")
    try:
        db = root / "bench.duckdb"
        run = BenchRun("r1", "m", "s", [0] * 10, [0, 1] * 5, datetime(2026, 1, 1))
        record_mc_run(db, run)
        corpus = root / "corpus"
        corpus.mkdir()
        spill = root / "spill"
        spill.mkdir()
        began = time.perf_counter()
        # Written by a process of its own: Linux counts the memory of the process a child was started from in
        # the child's getrusage maximum, and writing the corpus takes gigabytes.
        plants = {f: run.question(k) for k, f in PLANTED.items()}
        writer = multiprocessing.get_context("spawn").Process(target=write_corpus, args=(corpus, gigabytes, plants))
        writer.start()
        writer.join()
        if writer.exitcode != 0:
            raise SystemExit(f"writing the corpus failed ({writer.exitcode})")
        files, size = len(list(corpus.iterdir())), sum(p.stat().st_size for p in corpus.iterdir())
        print(f"corpus_files              {files}")
        print(f"corpus_gb                 {size / 2**30:.2f}")
        print(f"corpus_written_seconds    {time.perf_counter() - began:.0f}")
        seconds, peak, sampled, cpu, out, at = _command(db, corpus, spill)
        dirty = {line.split()[1].rstrip(":") for line in out.splitlines() if line.strip().startswith("dirty ")}
        expected = {f"q{k:03d}" for k in PLANTED}
        print(f"scan_wall_seconds         {seconds:.0f}")
        print(f"scan_cpu_seconds          {cpu:.0f}")
        print(f"scan_mb_per_second        {size / 2**20 / seconds:.1f}")
        print(f"scan_peak_rss_mb          {peak}")
        print(f"scan_sampled_peak_rss_mb  {sampled}")
        print(f"scan_peak_while           {at}")
        print(f"dirty                     {' '.join(sorted(dirty))}")
        resumed, *_ = _command(db, corpus, spill)
        print(f"resumed_wall_seconds      {resumed:.1f}")
        print(out)
        if dirty != expected:
            print(f"expected dirty {sorted(expected)}, got {sorted(dirty)}", file=sys.stderr)
            return 1
        return 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
