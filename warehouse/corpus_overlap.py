"""Corpus overlap (issue 29): which test instances share a word n-gram with a training corpus.

The rule is GPT-3's (Brown et al. 2020, §4 and appendix C) as lm-evaluation-harness implements it
(lm_eval/decontamination/janitor.py): a text is normalised by lowercasing ASCII letters and deleting
ASCII punctuation (`string.punctuation`), then split on whitespace (Python's `str.split`); an instance is
dirty when one of its n-grams of words (13 by default) occurs in any corpus document.

The corpus may be larger than memory, so the scan runs in DuckDB, one corpus file at a time, on an
in-memory database that spills to a temporary folder past its memory limit:

1. The instances' n-grams are built with the same SQL as the corpus's, so both sides are normalised
   identically; each n-gram gets a 64-bit key, DuckDB's hash of its words' hashes.
2. A corpus document's words become rows, each word's row gets the key of the n-gram ending there from the
   n − 1 rows before it (LAG over the stream: no n-gram text is built on the corpus side), and the keys are
   hash-joined to the instances' (the small side): what comes out is the instances' n-grams found.

Two different n-grams with one key would be a false match: with 10⁹ corpus positions and 10⁶ test n-grams
that has a chance of about 10⁹ · 10⁶ / 2⁶⁴ ≈ 5·10⁻⁵ in a whole scan (docs/contamination.md).

Parquet and JSONL files are read by DuckDB itself (a row's text field is a document). A text file is one
document: DuckDB's read_text would hold a whole file in one value, so Python reads it in pieces that
overlap by n − 1 words, and DuckDB gets the pieces; no n-gram is lost at a cut.

The corpus is the user's, so the scanning connection is locked with DuckDB's own settings: file access
is off except for the corpus files themselves (`allowed_paths`), then `lock_configuration` keeps any
statement from lifting that, or the memory limit. Paths, the text field and texts are bound parameters.
"""

from __future__ import annotations

import gzip
import math
import string
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import duckdb

DEFAULT_N = 13
# GPT-3's appendix C: N is the 5th percentile of the instances' lengths in words, at least 8 and at most 13.
GPT3_MIN_N, GPT3_MAX_N = 8, 13
MAX_N = 64
# Recorded with each check: a change to the normalisation must not resume a check made with the old one.
NORMALISATION = "lm-eval-janitor-1"

PARQUET = "parquet"
JSONL = "jsonl"
TEXT = "text"
# Suffixes by kind; DuckDB reads .gz and .zst JSONL itself, Python .gz text.
SUFFIXES = {
    PARQUET: (".parquet",),
    JSONL: (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz", ".jsonl.zst", ".ndjson.zst"),
    TEXT: (".txt", ".text", ".txt.gz"),
}
# A text file is read this many characters at a time (a piece), one DuckDB query each.
PIECE_CHARS = 8 * 2**20
# read_json refuses a record larger than this (its default is 16 MB; long books are longer). Its buffers grow
# with it: 256 MB took 230 MB more memory on a 100-MB file.
MAX_JSON_RECORD = 64 * 2**20

# lm-eval's normalisation: the characters Python's str.split() splits on, and the ones translate() deletes.
_WHITESPACE = "".join(c for c in map(chr, range(0x110000)) if c.isspace())
_ASCII_WHITESPACE = "".join(c for c in _WHITESPACE if ord(c) < 128)
_JANITOR_TABLE = str.maketrans(string.ascii_uppercase, string.ascii_lowercase, string.punctuation)


class CorpusError(ValueError):
    """A corpus path that cannot be scanned (missing, not a regular file, an unknown type); the message says why."""


def janitor_words(text: str) -> list[str]:
    """lm-eval's normalisation in Python (Janitor.normalize_string, then str.split): the words of a text."""
    return text.translate(_JANITOR_TABLE).split()


def gpt3_n(word_counts: Iterable[int]) -> int:
    """GPT-3's N for a test set: the 5th percentile of its examples' lengths in words (nearest rank), within
    [8, 13]."""
    counts = sorted(word_counts)
    if not counts:
        return GPT3_MAX_N
    fifth = counts[max(0, math.ceil(0.05 * len(counts)) - 1)]
    return min(GPT3_MAX_N, max(GPT3_MIN_N, fifth))


# -- the SQL of the normalisation and of the keys ----------------------------------------------------------


def _literal(text: str) -> str:
    """A SQL string literal of one of this module's constants (never of user input: that is bound)."""
    return "'" + text.replace("'", "''") + "'"


def _re2_class(chars: str) -> str:
    return "[" + "".join(f"\\x{{{ord(c):x}}}" for c in chars) + "]"


_PUNCTUATION = _literal(_re2_class(string.punctuation))
_ASCII_SPACE = _literal(_re2_class(_ASCII_WHITESPACE))
_ANY_SPACE = _literal(_re2_class(_WHITESPACE))


def words_sql(text: str) -> str:
    """SQL for the list of a text's normalised words (lm-eval's). Pure ASCII texts (bytes = characters), the
    common case, take DuckDB's fast lower(); others lowercase ASCII letters only, as lm-eval does, with the
    slower translate(), and split on every Unicode space."""
    stripped = f"regexp_replace({text}, {_PUNCTUATION}, '', 'g')"
    ascii_only = f"lower(regexp_replace({stripped}, {_ASCII_SPACE}, ' ', 'g'))"
    upper, lower = _literal(string.ascii_uppercase), _literal(string.ascii_lowercase)
    unicode = f"translate(regexp_replace({stripped}, {_ANY_SPACE}, ' ', 'g'), {upper}, {lower})"
    normalised = f"(case when strlen({text}) = length({text}) then {ascii_only} else {unicode} end)"
    return f"list_filter(string_split({normalised}, ' '), lambda w: w <> '')"


def ngrams_sql(source: str, n: int, text: str = "text", doc: str = "row_number() over ()") -> str:
    """SQL for one row per n-gram of the documents of `source` (a relation with a `text` column): the document
    (`doc`), the n-gram's key and its words joined by spaces (`ngram`, computed only where selected).

    Words become rows (unnest) and each row's n-gram is read off the n − 1 rows before it with LAG over the
    stream. DuckDB runs LAG ... OVER () as a streaming window, in input order, so memory holds one vector of
    words at a time, not a document's every n-gram: a book-length document costs no more than its words.
    An n-gram whose first row belongs to another document is dropped."""
    back = [n - 1 - j for j in range(n - 1)]
    hashes = ", ".join([f"lag(h, {k}) over ()" for k in back] + ["h"])
    words = ", ".join([f"lag(word, {k}) over ()" for k in back] + ["word"])
    return f"""
        with docs as (select {doc} as doc, {words_sql(text)} as w from {source} where {text} is not null),
        words as (select doc, word, hash(word) as h from (select doc, unnest(w) as word from docs where len(w) >= {n}))
        select doc, hash({hashes}) as key, concat_ws(' ', {words}) as ngram
        from words qualify lag(doc, {n - 1}) over () = doc
    """


def _check_n(n: int) -> int:
    if not isinstance(n, int) or not 1 <= n <= MAX_N:
        raise ValueError(f"the n-gram length is between 1 and {MAX_N} words, not {n!r}")
    return n


# -- corpus files ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CorpusFile:
    path: Path  # resolved
    kind: str  # parquet | jsonl | text
    bytes: int
    modified: float  # st_mtime: a file changed since it was scanned is scanned again


def kind_of(path: Path) -> str | None:
    name = path.name.lower()
    for kind, suffixes in SUFFIXES.items():
        if name.endswith(suffixes):
            return kind
    return None


def _validated(path: Path) -> CorpusFile:
    """A regular file of a known type whose first bytes look like it (a FIFO or a device would never end)."""
    stat = path.stat()
    if not path.is_file():
        raise CorpusError(f"{path}: not a regular file")
    kind = kind_of(path)
    if kind is None:
        known = ", ".join(s for group in SUFFIXES.values() for s in group)
        raise CorpusError(f"{path}: not a corpus file type helmflow reads ({known})")
    with path.open("rb") as f:
        head = f.read(4)
    if kind == PARQUET and head != b"PAR1":
        raise CorpusError(f"{path}: not a Parquet file (it does not start with PAR1)")
    return CorpusFile(path, kind, stat.st_size, stat.st_mtime)


def corpus_files(paths: Iterable[str | Path]) -> list[CorpusFile]:
    """Every corpus file under the paths (a file, or a folder searched recursively for known types, hidden
    ones left out), resolved, deduplicated and sorted, each checked."""
    found: dict[Path, CorpusFile] = {}
    for given in paths:
        path = Path(given).expanduser()
        if not path.exists():
            raise CorpusError(f"{given}: no such file or folder")
        if path.is_dir():
            members = sorted(
                p
                for p in path.rglob("*")
                if kind_of(p) and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not members:
                raise CorpusError(f"{given}: no Parquet, JSONL or text file in this folder")
        else:
            members = [path]
        for member in members:
            resolved = member.resolve()
            if resolved not in found and (member.is_file() or not path.is_dir()):
                found[resolved] = _validated(resolved)
    return [found[p] for p in sorted(found)]


def _open_text(path: Path) -> TextIO:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return path.open("r", encoding="utf-8", errors="replace")


def _carry(piece: str, n: int) -> str:
    """The end of a piece holding its last n − 1 words (as normalised), to start the next piece with."""
    if n <= 1:
        return ""
    for window in (65536, len(piece)):
        tail = piece[-window:]
        tokens = tail.split()
        if window < len(piece) and tokens and not tail[0].isspace():
            tokens = tokens[1:]  # the window may have cut its first token
        kept, words = [], 0
        for token in reversed(tokens):
            kept.append(token)
            words += len(janitor_words(token))
            if words >= n - 1:
                return " ".join(reversed(kept)) + " "
    return piece  # fewer than n − 1 words in the whole piece: carry all of it


def _last_space(text: str, start: int) -> int:
    """The index just after the last whitespace of text[start:], or -1 when it has none (a giant token)."""
    for i in range(len(text) - 1, start - 1, -1):
        if text[i].isspace():
            return i + 1
    return -1


def text_pieces(path: Path, n: int, piece_chars: int = PIECE_CHARS) -> Iterator[str]:
    """A text file in pieces of about `piece_chars` characters, cut after whitespace, each after the first
    starting with the previous one's last n − 1 words: every n-gram of the file is whole in some piece."""
    with _open_text(path) as f:
        pending, seen = "", 0  # text not yet yielded; its first `seen` characters were in the last piece
        while chunk := f.read(piece_chars):
            pending += chunk
            cut = _last_space(pending, seen)
            if cut < 0:
                if len(pending) < 4 * piece_chars:
                    continue  # a token longer than a piece: read on to its end
                cut = len(pending)  # a 32-MB "word" matches nothing anyway
            piece = pending[:cut]
            yield piece
            carry = _carry(piece, n)
            pending, seen = carry + pending[cut:], len(carry)
        if len(pending) > seen:
            yield pending


# -- the scan ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScanLimits:
    """DuckDB's bounds while it scans: past `memory_mb` it spills to `temp_dir` (a fresh folder when None)."""

    memory_mb: int = 1024
    threads: int | None = None  # DuckDB's default: every core
    temp_dir: str | None = None


class OverlapScanner:
    """One locked in-memory DuckDB connection: the instances' n-grams, then corpus files scanned one by one.

    `files` are the only files the connection may read (DuckDB's allowed_paths); they are fixed when it opens.
    """

    def __init__(self, files: list[CorpusFile], n: int = DEFAULT_N, limits: ScanLimits | None = None) -> None:
        limits = limits or ScanLimits()
        self.n = _check_n(n)
        self._spill = tempfile.TemporaryDirectory(prefix="helmflow-overlap-", dir=limits.temp_dir)
        config: dict[str, str | int] = {"memory_limit": f"{limits.memory_mb}MB", "temp_directory": self._spill.name}
        if limits.threads:
            config["threads"] = limits.threads
        self.con = duckdb.connect(":memory:", config=config)
        self.con.execute("set enable_progress_bar = false")
        # The instances' n-grams are always the join's build side, as the scan's SQL is written: DuckDB's estimate
        # of a corpus file's rows can be smaller than their count, and a hash table of every corpus n-gram would
        # spill gigabytes.
        self.con.execute("set disabled_optimizers = 'join_order,build_side_probe_side'")
        self.con.execute("set allowed_paths = ?", [[str(f.path) for f in files if f.kind != TEXT]])
        self.con.execute("set enable_external_access = false")
        self.con.execute("set lock_configuration = true")
        self.con.execute("create table grams (instance_id varchar, ngram varchar, key ubigint)")

    def close(self) -> None:
        self.con.close()
        self._spill.cleanup()

    def __enter__(self) -> OverlapScanner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the instances' side ---------------------------------------------------------------------------

    def words(self, texts: list[str]) -> list[list[str]]:
        """Each text's normalised words, by the SQL the scan uses (lm-eval's normalisation)."""
        rows = self.con.execute(
            f"select k, {words_sql('t')} from (select unnest(?::varchar[]) as t, unnest(range(len(?))) as k) "
            "order by k",
            [texts, texts],
        ).fetchall()
        return [list(w) for _, w in rows]

    def add_texts(self, texts: list[tuple[str, str]]) -> int:
        """Register (instance id, text) pairs as test texts; returns how many distinct n-grams they give."""
        # Each text is a document of its own (k): an instance's input and its references are never one run of words.
        source = "(select unnest(?::varchar[]) as text, unnest(range(?)) as k)"
        grams = ngrams_sql(source, self.n, doc="k")
        self.con.execute(
            f"insert into grams select (?::varchar[])[doc + 1], ngram, key from ({grams})",
            [[i for i, _ in texts], [t for _, t in texts], len(texts)],
        )
        [(count,)] = self.con.execute("select count(distinct ngram) from grams").fetchall()
        return int(count)

    def instance_ngrams(self) -> dict[str, set[str]]:
        pairs = self.con.execute("select distinct instance_id, ngram from grams").fetchall()
        out: dict[str, set[str]] = {}
        for instance_id, ngram in pairs:
            out.setdefault(instance_id, set()).add(ngram)
        return out

    # -- the corpus's side -------------------------------------------------------------------------------

    def _matches(self, source: str, params: list[object]) -> set[str]:
        """The test n-grams found in the documents `source` (SQL with a `text` column) gives. The corpus side
        never builds an n-gram's text (`ngram` is not selected): only its key, joined to the instances'."""
        rows = self.con.execute(
            f"select distinct g.ngram from ({ngrams_sql(source, self.n)}) c "
            "join (select distinct key, ngram from grams) g using (key)",  # built on g, the right side
            params,
        ).fetchall()
        return {ngram for (ngram,) in rows}

    def scan(self, file: CorpusFile, field: str = "text", on_piece: Callable[[int], None] | None = None) -> set[str]:
        """The test n-grams one corpus file contains. `field`: the text field of a JSONL or Parquet row.
        `on_piece(characters)`: called as a text file's pieces are done."""
        if file.kind == PARQUET:
            described = self.con.execute("describe select * from read_parquet(?)", [str(file.path)]).fetchall()
            columns = {row[0]: row[1] for row in described}
            if field not in columns:
                raise CorpusError(f"{file.path}: no column {field!r} (it has {', '.join(columns)})")
            if columns[field] != "VARCHAR":
                raise CorpusError(f"{file.path}: column {field!r} is {columns[field]}, not text")
            quoted = '"' + field.replace('"', '""') + '"'  # one of the file's own column names, quoted
            return self._matches(f"(select {quoted} as text from read_parquet(?))", [str(file.path)])
        if file.kind == JSONL:
            source = (
                f"read_json(?, format = 'newline_delimited', columns = ?, maximum_object_size = {MAX_JSON_RECORD}) "
                "as src(text)"
            )
            return self._matches(source, [str(file.path), {field: "VARCHAR"}])
        found: set[str] = set()
        for piece in text_pieces(file.path, self.n):
            # One piece a query: DuckDB took far more memory for a list of several (2 GB for 8 × 1 MB).
            found |= self._matches("(select ?::varchar as text)", [piece])
            if on_piece:
                on_piece(len(piece))
        return found


__all__ = [
    "DEFAULT_N",
    "NORMALISATION",
    "CorpusError",
    "CorpusFile",
    "OverlapScanner",
    "ScanLimits",
    "corpus_files",
    "gpt3_n",
    "janitor_words",
    "text_pieces",
    "words_sql",
]
