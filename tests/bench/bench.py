"""`make bench`: a fixed MMLU slice through the whole flow, and where the time goes.

Prints one `key value` line per figure; keep the format stable, later changes are judged by it.
Wall time counts everything from before Prefect is imported to the run landing in the warehouse;
`outside_forward_share` is the part of it not spent in model forward passes (imports, Prefect,
data loading, validation, the warehouse).
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from pathlib import Path

SUBJECTS = ["abstract_algebra", "college_chemistry", "computer_security", "econometrics", "us_foreign_policy"]


class StageClock:
    """A progress reporter that notes when each stage of the flow ends (the fixed cost's breakdown)."""

    def __init__(self, began: float) -> None:
        self.began = began
        self.marks: dict[str, float] = {}

    def mark(self, name: str) -> None:
        self.marks.setdefault(name, time.perf_counter() - self.began)

    def stage(self, label: str, message: str) -> None:
        if message.startswith(("succeeded", "validation_failed", "failed")):
            self.mark("run_written")

    def start_inference(self, label: str, total: int, done: int = 0, retries: int = 0) -> None:
        self.mark("inference_started")

    def advance(self, done: int, retries: int = 0) -> None:
        pass

    def end_inference(self) -> None:
        self.mark("inference_ended")


def main() -> int:
    began = time.perf_counter()
    from helmflow.flows.cli import _quiet_environment

    _quiet_environment(verbose=False)
    from helmflow.flows.benchmark import ScenarioPlan, benchmark
    from helmflow.flows.pipeline import RunContext
    from helmflow.flows.startup import get_ready
    from helmflow.specs.library import apply_suite_entry, find_model, find_scenario
    from helmflow.specs.schema import Perturbations
    from helmflow.warehouse.store import Warehouse

    # The same slice as ever: zero-shot, unperturbed, so that figures stay comparable across changes.
    spec = apply_suite_entry(find_scenario("mmlu"), groups=SUBJECTS, num_train=0).model_copy(
        update={"perturbations": Perturbations()}
    )
    model = find_model(os.environ.get("HELMFLOW_BENCH_MODEL", "smollm2-135m-instruct"))
    db = Path(tempfile.mkdtemp(prefix="helmflow-bench-")) / "bench.duckdb"
    clock = StageClock(began)
    clock.mark("imported")
    # As `helmflow run` does: the data checked and the model loaded while Prefect's server starts.
    plans = [ScenarioPlan(spec)]
    context = RunContext(clock)
    side_by_side = get_ready(plans, [model], 0, "auto", load_model=True, context=context)
    clock.mark("ready")
    [outcome] = benchmark(plans, [model], seed=0, db=str(db), context=context)
    wall = time.perf_counter() - began
    figures = Warehouse(db).forward_figures(outcome.run_id)
    n, forward, tokens = figures["n"], figures["forward_s"], figures["prompt_tokens"]
    device, dtype, batch, threads = figures["device"], figures["dtype"], figures["batch"], figures["threads"]
    run_wall = figures["run_wall"]
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"helmflow bench: mmlu zero-shot on {len(SUBJECTS)} subjects, {model.name} "
        f"({device}, {dtype}, batch {batch}, {threads} threads), status {outcome.status}"
    )
    print(f"instances             {n}")
    print(f"instances_per_second  {n / wall:.2f}")
    print(f"wall_seconds          {wall:.1f}")
    print(f"run_seconds           {run_wall:.1f}")
    print(f"forward_seconds       {forward:.1f}")
    print(f"prompt_tokens_per_s   {tokens / forward:.0f}")
    print(f"outside_forward_share {(wall - forward) / wall:.3f}")
    # Shared prefixes: tokens the scoring needed (every sequence whole) against those the model computed.
    print(f"prompt_tokens_requested {figures['tokens_requested']}")
    print(f"prompt_tokens_computed  {figures['tokens_computed']:.0f}")
    print(f"peak_memory_mib       {peak_mib:.0f}")
    # Where the time outside forward passes goes, stage by stage (seconds from the start of the script).
    previous = 0.0
    for name, label in (
        ("imported", "imports_seconds"),
        ("ready", "ready_seconds"),
        ("inference_started", "flow_start_and_requests_seconds"),
        ("inference_ended", "inference_seconds"),
        ("run_written", "scoring_checks_and_write_seconds"),
    ):
        at = clock.marks.get(name, previous)
        print(f"{label:<38}{at - previous:.1f}")
        previous = at
    print(f"{'after_the_flow_seconds':<38}{wall - previous:.1f}")
    # Beside these, Prefect's server and Great Expectations' import ran in processes of their own.
    for name, seconds in side_by_side.items():
        print(f"{'  ' + name + '_seconds':<38}{seconds:.1f}")
    return 0 if outcome.status == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
