"""`helmflow contamination --probes LIST RUN_ID`: memorisation probes on a stored run's instances with the run's
own model, no corpus (flows/contamination_probes.py; docs/contamination.md). Options of the `contamination`
command, beside its corpus check (flows/cli_contamination.py)."""

from __future__ import annotations

import argparse
import sys

from helmflow.flows.cli_common import EXIT_BAD_INPUT, EXIT_OK

PROBE_NAMES = ("ngram_completion", "min_k_pp")


def _probes(text: str) -> tuple[str, ...]:
    names = PROBE_NAMES if text == "all" else tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names or any(n not in PROBE_NAMES for n in names):
        raise argparse.ArgumentTypeError(f"{text!r}: the probes are {', '.join(PROBE_NAMES)} (comma-separated) or all")
    return names


def _perturbation(text: str) -> str:
    from helmflow.tasks.perturb import ROBUSTNESS

    if text not in ROBUSTNESS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a robustness perturbation ({', '.join(ROBUSTNESS)})")
    return text


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= 100:
        raise argparse.ArgumentTypeError(f"{value:g} is not a percentage in (0, 100]")
    return value / 100


def add_probe_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("memorisation probes: the run's model on its instances, no corpus")
    group.add_argument(
        "--probes",
        type=_probes,
        default=None,
        metavar="LIST",
        help="ngram_completion (greedy 5-gram completion at 5 points), min_k_pp (Min-K%%++ and Min-K%%, and Min-K%%++ "
        "after a perturbation), comma-separated, or all; stored per instance, category contamination",
    )
    group.add_argument(
        "--perturbation",
        action="append",
        type=_perturbation,
        metavar="NAME",
        help="the robustness perturbation min_k_pp is compared after (repeatable; default typos)",
    )
    group.add_argument(
        "--min-k", type=_percent, default=0.2, metavar="PERCENT", help="the share of tokens Min-K%%++ averages (20)"
    )


def _value(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def cmd_probes(args: argparse.Namespace) -> int:
    """The probes, when asked; the caller runs the corpus check after them when --corpus is given too."""
    if not args.probes:
        print("error: give --corpus PATH (a corpus check), --probes LIST or both", file=sys.stderr)
        return EXIT_BAD_INPUT
    from helmflow.flows.contamination_probes import DEFAULT_PERTURBATIONS, ProbeOptions, run_probes

    options = ProbeOptions(
        probes=args.probes, k=args.min_k, perturbations=tuple(args.perturbation or DEFAULT_PERTURBATIONS)
    )

    def report(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    outcome = run_probes(args.db, args.run, options, report)
    print(f"memorisation probes on run {outcome.run_id} with {outcome.model} (higher: more likely seen in training)")
    for r in outcome.records:
        print(
            f"  {r.probe}: {r.scored} of {r.instances} instances scored ({r.truncated} cut to max_length); "
            f"{r.passes} forward passes, {r.tokens:,} tokens, {r.seconds:.1f} s"
        )
    print(f"  {outcome.seconds:.1f} s of forward passes in all (the stored inputs' pass, read by both, once)")
    rows = [("metric", "perturbation", "mean", "n")]
    rows += [(m.metric, m.perturbation, _value(m.value), str(m.n)) for m in outcome.means]
    widths = [max(len(row[k]) for row in rows) for k in range(4)]
    for row in rows:
        cells = (c.ljust(w) if k < 2 else c.rjust(w) for k, (c, w) in enumerate(zip(row, widths, strict=True)))
        print("  " + "  ".join(cells))
    reproduced = sorted(
        (v for v in outcome.values if v.metric == "ngram_accuracy" and v.value),
        key=lambda v: (-(v.value or 0), v.instance_id),
    )
    for v in reproduced[: args.show]:
        print(f"  reproduced {v.instance_id}: {v.value:.0%} of its {options.n}-token completions exactly")
    query = f"select * from contamination_probe_stats where run_id = '{outcome.run_id}'"
    print(f'  per instance: helmflow query "{query}"')
    return EXIT_OK
