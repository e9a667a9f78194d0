"""Corpus overlap (`helmflow contamination`): lm-eval's normalisation in SQL, the scan, resuming, and the
clean subset's metrics, on a 10-instance run written straight to the warehouse (no model)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helmflow.flows.cli import main
from helmflow.flows.contamination import NOT_REBUILT, CheckOptions, check_overlap, clean_subset_metrics
from helmflow.warehouse import corpus_overlap as overlap
from helmflow.warehouse.corpus_overlap import CorpusError, OverlapScanner, corpus_files, gpt3_n, janitor_words
from helmflow.warehouse.store import Warehouse
from tests.truth_runs import McRun, record_mc_run

# Ten questions of 20+ words with nothing in common beyond a few words, so that only planted text overlaps.
SUBJECTS = ["astronomy", "botany", "chemistry", "dentistry", "ecology", "forestry", "geology", "history", "ink", "jazz"]


@dataclass
class LongRun(McRun):
    def question(self, k: int) -> str:
        s = SUBJECTS[k]
        return (
            f"In {s} class {k}, the teacher asked which of the {s} facts below is true, given that every "
            f"{s} student had read chapter {k} of the {s} book twice before the exam"
        )


# Gold is always the first option; instances 0, 1, 3, 4, 7 and 9 are answered right (6 of 10).
PREDICTED = [0, 0, 1, 0, 0, 1, 1, 0, 1, 0]
PLANTED = {"q000", "q004", "q007"}


@pytest.fixture
def run(db: Path) -> LongRun:
    run = LongRun(
        "r1",
        "m",
        "s",
        [0] * 10,
        PREDICTED,
        datetime(2026, 1, 1),
        extra={("calibration", "ece_10_bin"): (0.2, 0.1, 0.3)},
    )
    record_mc_run(db, run)
    return run


def _words(text: str, start: int, stop: int) -> str:
    return " ".join(text.split()[start:stop])


@pytest.fixture
def corpus(tmp_path: Path, run: LongRun) -> Path:
    """Instances 0 and 4 planted in JSONL documents (case and punctuation changed), 7 across a line break of a
    text file; instance 2 only by 12 words (one short of an n-gram), and unrelated Parquet rows."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    q0, q2, q4, q7 = (run.question(k) for k in (0, 2, 4, 7))
    docs = [
        {"text": "Some forum post. " + _words(q0, 2, 16).upper().replace(" ", ", ") + " and so on.", "id": 1},
        {"text": f'Quoted: "{_words(q4, 5, 18)}" — end', "id": 2},
        {"text": f"Near miss: {_words(q2, 0, 12)} stop", "id": 3},
        {"id": 4},  # no text field: skipped
    ]
    (folder / "web.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    seven = q7.split()
    (folder / "book.txt").write_text(
        "Chapter one\n" + " ".join(seven[:8]) + "\n" + " ".join(seven[8:15]) + "\nThe end\n"
    )
    pq.write_table(pa.table({"text": ["nothing to see here " * 5, None], "n": [1, 2]}), folder / "other.parquet")
    return folder


def test_janitor_normalisation_in_sql_is_lm_evals() -> None:
    # Hand-computed from lm-eval's Janitor: ASCII letters lowercased, string.punctuation deleted, str.split().
    cases = {
        "Hello, World!  It's a ÉTÉ\u00a0test—done": ["hello", "world", "its", "a", "ÉtÉ", "test—done"],
        "A-B c.d\x1cE\tF\u3000g": ["ab", "cd", "e", "f", "g"],
        "x\u200by ... !! Z": ["x\u200by", "z"],  # a zero-width space is no whitespace to Python
        "": [],
    }
    with OverlapScanner([], 13) as scanner:
        assert scanner.words(list(cases)) == list(cases.values())
    assert [janitor_words(t) for t in cases] == list(cases.values())


def test_an_instances_texts_are_separate_documents() -> None:
    with OverlapScanner([], 3) as scanner:
        scanner.add_texts([("i", "a b c"), ("i", "d e f"), ("j", "x, Y z!")])
        assert scanner.instance_ngrams() == {"i": {"a b c", "d e f"}, "j": {"x y z"}}  # no "b c d"


def test_gpt3_rule_for_n() -> None:
    assert gpt3_n(range(1, 21)) == 8  # 5th percentile 1 word: at least 8
    assert gpt3_n(range(20, 40)) == 13  # 20 words: at most 13
    assert gpt3_n([9] * 19 + [30]) == 9


def test_text_pieces_keep_every_ngram(tmp_path: Path) -> None:
    words = [f"w{k % 37}{'!' if k % 5 == 0 else ''}" for k in range(400)]
    path = tmp_path / "t.txt"
    path.write_text(" \n".join(" ".join(words[k : k + 7]) for k in range(0, 400, 7)))

    def grams(text: str) -> set[tuple[str, ...]]:
        w = janitor_words(text)
        return {tuple(w[i : i + 4]) for i in range(len(w) - 3)}

    pieces = list(overlap.text_pieces(path, 4, piece_chars=50))
    assert len(pieces) > 20
    assert set().union(*(grams(p) for p in pieces)) == grams(path.read_text())


def test_streamed_scan_matches_a_python_scan(tmp_path: Path) -> None:
    """Many row groups read on two threads: the n-grams found are exactly those a plain Python scan finds."""
    import random

    rng = random.Random(1)
    vocab = [f"v{k}" for k in range(60)]
    docs = [" ".join(rng.choices(vocab, k=rng.randint(0, 40))) for _ in range(1500)]
    pq.write_table(pa.table({"text": docs}), tmp_path / "c.parquet", row_group_size=64)
    tests = [(f"t{k}", " ".join(rng.choices(vocab, k=12))) for k in range(300)]
    n = 3
    expected: set[str] = set()
    for d in docs:
        w = janitor_words(d)
        expected |= {" ".join(w[i : i + n]) for i in range(len(w) - n + 1)}
    files = corpus_files([tmp_path / "c.parquet"])
    with OverlapScanner(files, n, overlap.ScanLimits(threads=2)) as scanner:
        scanner.add_texts(tests)
        own = set().union(*scanner.instance_ngrams().values())
        found = scanner.scan(files[0])
    assert found == own & expected and 0 < len(found) < len(own)


def test_three_planted_of_ten_are_marked_and_the_others_scored(db: Path, corpus: Path) -> None:
    outcome = check_overlap(db, "r1", [str(corpus)], CheckOptions())
    assert set(outcome.dirty) == PLANTED
    assert (outcome.files, outcome.scanned, outcome.too_short) == (3, 3, 0)
    by_id = {m.instance_id: m for m in outcome.marks}
    assert by_id["q000"].matched == 2  # words 2..15 of it: 14 words, two 13-grams
    assert by_id["q004"].matched == 1 and by_id["q007"].matched == 3
    assert by_id["q002"].matched == 0  # 12 words are not a 13-gram
    row = Warehouse(db).check_row(outcome.check_id)
    assert (row["status"], row["dirty"], row["clean"], row["ngram_n"]) == ("finished", 3, 7, 13)

    rows = {(r.category, r.metric): r for r in clean_subset_metrics(db, "r1", set(outcome.dirty))}
    accuracy = rows[("accuracy", "exact_match")]
    assert (accuracy.whole.value, accuracy.whole.n) == (0.6, 10)
    # Clean: q001, q002, q003, q005, q006, q008, q009, of which q001, q003, q009 right: 3 of 7.
    assert accuracy.clean.value == pytest.approx(3 / 7) and accuracy.clean.n == 7
    # Wilson's interval of 3 of 7 at 95%, worked by hand: centre 0.45388, half-width 0.29566.
    assert accuracy.clean.ci_method == "wilson"
    assert accuracy.clean.ci_low == pytest.approx(0.15822, abs=1e-4)
    assert accuracy.clean.ci_high == pytest.approx(0.74954, abs=1e-4)
    assert (accuracy.dirty.value, accuracy.dirty.n) == (1.0, 3)
    ece = rows[("calibration", "ece_10_bin")]
    assert ece.clean is None and ece.note == NOT_REBUILT and ece.whole.value == 0.2


def test_a_check_resumes_after_its_last_finished_file(db: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = OverlapScanner.scan
    calls: list[str] = []

    def failing(self: OverlapScanner, file: overlap.CorpusFile, *args: object, **kwargs: object) -> set[str]:
        calls.append(file.path.name)
        if file.path.name == "other.parquet":
            raise KeyboardInterrupt  # stopped on the second file (files go in name order)
        return real(self, file, *args, **kwargs)

    monkeypatch.setattr(OverlapScanner, "scan", failing)
    with pytest.raises(KeyboardInterrupt):
        check_overlap(db, "r1", [str(corpus)], CheckOptions())
    assert calls == ["book.txt", "other.parquet"]
    monkeypatch.setattr(OverlapScanner, "scan", real)
    resumed = check_overlap(db, "r1", [str(corpus)], CheckOptions())
    assert resumed.scanned == 2 and set(resumed.dirty) == PLANTED  # book.txt's match kept from the first try
    assert check_overlap(db, "r1", [str(corpus)], CheckOptions()).scanned == 0
    (corpus / "book.txt").write_text("rewritten without the planted text\n")
    os.utime(corpus / "book.txt", (1, 1))
    again = check_overlap(db, "r1", [str(corpus)], CheckOptions())
    assert again.scanned == 1 and set(again.dirty) == {"q000", "q004"}


def test_the_command(db: Path, corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--db", str(db), "contamination", "--corpus", str(corpus / "web.jsonl"), "r1"]) == 0
    out, err = capsys.readouterr()
    assert "2 of 10 instances dirty, 8 clean" in out
    assert "dirty q000" in out and "dirty q004" in out
    line = next(x for x in out.splitlines() if x.startswith("accuracy/exact_match"))
    # whole 0.6 of 10; clean: q001-3, q005-9 → q001, q003, q007, q009 right of 8: 0.5; dirty 2 of 2.
    assert line.split()[:2] == ["accuracy/exact_match", "*"] and " 0.5 " in line and line.rstrip().endswith("1  2")
    assert "[1/1]" in err
    assert main(["--db", str(db), "contamination", "--corpus", str(corpus / "missing.txt"), "r1"]) == 2
    assert main(["--db", str(db), "contamination", "--corpus", str(corpus), "nope"]) == 2


def test_corpus_paths_are_checked_and_the_scan_reads_nothing_else(tmp_path: Path) -> None:
    fake = tmp_path / "fake.parquet"
    fake.write_text("not parquet")
    with pytest.raises(CorpusError, match="not a Parquet file"):
        corpus_files([fake])
    (tmp_path / "notes.csv").write_text("a,b\n")
    with pytest.raises(CorpusError, match="not a corpus file type"):
        corpus_files([tmp_path / "notes.csv"])
    os.mkfifo(tmp_path / "pipe.txt")
    with pytest.raises(CorpusError, match="not a regular file"):
        corpus_files([tmp_path / "pipe.txt"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CorpusError, match="no Parquet, JSONL or text file"):
        corpus_files([empty])
    good = tmp_path / "ok.jsonl"
    good.write_text('{"text": "a b c"}\n')
    other = tmp_path / "other.jsonl"
    other.write_text('{"text": "x"}\n')
    with OverlapScanner(corpus_files([good]), 2) as scanner:
        assert scanner.con.execute("select count(*) from read_json(?)", [str(good)]).fetchall() == [(1,)]
        with pytest.raises(duckdb.PermissionException):
            scanner.con.execute("select * from read_json(?)", [str(other)]).fetchall()
        with pytest.raises(duckdb.Error, match="Cannot change configuration"):
            scanner.con.execute("set enable_external_access = true")
