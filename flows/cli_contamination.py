"""`helmflow contamination --corpus PATH RUN_ID`: which of a run's instances a training corpus holds, and the
run's metrics on the clean ones (flows/contamination.py; docs/contamination.md)."""

from __future__ import annotations

import argparse
import sys

from helmflow.flows.cli_common import EXIT_BAD_INPUT, EXIT_OK
from helmflow.flows.cli_contamination_probes import add_probe_arguments, cmd_probes


def _ngram(text: str) -> int | None:
    if text == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a whole number nor 'auto'") from None
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"{value} is out of range: an n-gram has 1 to 64 words")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


def add_contamination_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "contamination",
        help="mark a run's instances that share an n-gram with a training corpus; metrics on the clean ones",
    )
    parser.add_argument("run", metavar="RUN_ID")
    parser.add_argument(
        "--corpus",
        action="append",
        metavar="PATH",
        help="a Parquet, JSONL or text file, or a folder of them (repeatable); may be larger than memory",
    )
    parser.add_argument(
        "--ngram",
        type=_ngram,
        default=13,
        metavar="N",
        help="words per n-gram (default 13, lm-eval's), or 'auto': GPT-3's rule, the instances' 5th-percentile "
        "length within [8, 13]",
    )
    parser.add_argument(
        "--with-references", action="store_true", help="also check each reference text and option, not only inputs"
    )
    parser.add_argument("--text-field", default="text", help="the text column of Parquet and JSONL rows (text)")
    parser.add_argument(
        "--memory-limit", type=_positive, default=1024, metavar="MB", help="DuckDB's memory; past it, it spills"
    )
    parser.add_argument("--threads", type=_positive, default=None, help="DuckDB's threads (default: every core)")
    parser.add_argument("--temp-dir", default=None, help="where DuckDB spills (default: the system's temp folder)")
    parser.add_argument("--show", type=int, default=20, help="how many dirty instances to list")
    add_probe_arguments(parser)
    parser.set_defaults(func=cmd_contamination)


def _interval(low: float | None, high: float | None) -> str:
    return f"[{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""


def _cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def _aligned(column: int, cell: str, width: int) -> str:
    return cell.ljust(width) if column == 0 else cell.rjust(width)


def metrics_lines(rows: list) -> list[str]:
    """The metrics table: each whole-run metric on the whole run, the clean and the dirty instances."""
    header = ("metric", "whole", "95% interval", "n", "clean", "95% interval", "n", "dirty", "n")
    table = [header]
    notes = []
    for r in rows:
        name = f"{r.category}/{r.metric}" + (f" ({r.perturbation})" if r.perturbation else "")
        name += " *" if r.headline else ""
        whole = (_cell(r.whole.value), _interval(r.whole.ci_low, r.whole.ci_high), str(r.whole.n))
        if r.clean is None:
            table.append((name, *whole, "—", "", "", "—", ""))
            notes.append(f"{name}: {r.note}")
            continue
        clean = (_cell(r.clean.value), _interval(r.clean.ci_low, r.clean.ci_high), str(r.clean.n))
        table.append((name, *whole, *clean, _cell(r.dirty.value), str(r.dirty.n)))
    widths = [max(len(row[k]) for row in table) for k in range(len(header))]
    lines = ["  ".join(_aligned(k, c, w) for k, (c, w) in enumerate(zip(row, widths, strict=True))) for row in table]
    return [*lines, "* headline metric", *notes]


def cmd_contamination(args: argparse.Namespace) -> int:
    if args.probes or not args.corpus:  # memorisation probes (flows/cli_contamination_probes.py), then any corpus
        code = cmd_probes(args)
        if code != EXIT_OK or not args.corpus:
            return code
        print()
    from helmflow.flows.contamination import CheckOptions, check_overlap, clean_subset_metrics
    from helmflow.warehouse.corpus_overlap import CorpusError, ScanLimits

    options = CheckOptions(
        n=args.ngram,
        with_references=args.with_references,
        text_field=args.text_field,
        limits=ScanLimits(args.memory_limit, args.threads, args.temp_dir),
    )

    def report(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        outcome = check_overlap(args.db, args.run, args.corpus, options, report)
    except CorpusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    marks = outcome.marks
    dirty = outcome.dirty
    print(
        f"run {outcome.run_id}, check {outcome.check_id} ({outcome.n}-grams): {len(dirty)} of {len(marks)} instances "
        f"dirty, {len(marks) - len(dirty)} clean ({outcome.too_short} too short to hold a {outcome.n}-gram); "
        f"{outcome.files} corpus file(s), {outcome.scanned} scanned now"
    )
    for mark in [m for m in marks if m.dirty][: args.show]:
        print(f"  dirty {mark.instance_id}: {mark.matched} of {mark.ngrams} n-grams, e.g. {mark.example!r}")
    if len(dirty) > args.show:
        print(f"  ... and {len(dirty) - args.show} more (helmflow query on contamination_instances lists them)")
    print()
    for line in metrics_lines(clean_subset_metrics(args.db, args.run, set(dirty))):
        print(line)
    return EXIT_OK
