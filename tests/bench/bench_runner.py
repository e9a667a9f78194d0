"""The cost of fanning out: one MMLU zero-shot slice on the local runner, then on a 2-worker local Dask cluster.

`python -m tests.bench.bench_runner [INSTANCES] [SHARDS]` prints one line per runner and the
overhead. Both runs go into fresh warehouses (nothing comes from the inference cache) and the
Prefect server is started before either is timed. On a machine with as many cores as workers
there is no speed-up to expect: the local runner's torch already uses every core, and each
worker process loads its own copy of the model. The overhead is what a real cluster has to win
back: cluster start, one model load per worker, and shipping requests and answers.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    instances = int(args[0]) if args else 200
    shards = int(args[1]) if len(args) > 1 else 4
    from helmflow.flows.cli import _quiet_environment

    _quiet_environment(verbose=False)
    from helmflow.flows.benchmark import benchmark
    from helmflow.flows.plans import ScenarioPlan
    from helmflow.flows.runners import parse_runner, task_runner
    from helmflow.specs.library import apply_suite_entry, find_model, find_scenario
    from helmflow.specs.schema import Perturbations
    from helmflow.warehouse.store import Warehouse

    spec = apply_suite_entry(find_scenario("mmlu"), num_train=0, max_instances=instances).model_copy(
        update={"perturbations": Perturbations()}
    )
    model = find_model("smollm2-135m-instruct")
    folder = Path(tempfile.mkdtemp(prefix="helmflow-bench-runner-"))
    from prefect import flow

    from helmflow.flows.temporary_server import start_prefect_api

    # helmflow's temporary server, as `helmflow run` starts it: PREFECT_API_URL names it, so the Dask workers
    # report to it too. Prefect's own in-process start (a first flow with no API set) tells no child, and
    # each worker then started and waited for a server of its own inside the dask timing.
    server = start_prefect_api()
    if server is not None:
        server.wait_until_healthy()

    @flow(name="helmflow-bench-warm-up")
    def warm_up() -> None:
        """Nothing: Prefect's client set up for flow runs, outside both timings."""

    warm_up()
    lines, walls = [], {}
    for name, runner in (("local", "local"), ("dask", "dask")):
        chosen = parse_runner(runner, workers=2)
        flow = benchmark if task_runner(chosen) is None else benchmark.with_options(task_runner=task_runner(chosen))
        db = str(folder / f"{name}.duckdb")
        began = time.perf_counter()
        [outcome] = flow([ScenarioPlan(spec)], [model], db=db, fan_out=chosen.fans_out, shards=shards)
        walls[name] = time.perf_counter() - began
        figures = Warehouse(db).forward_figures(outcome.run_id)
        lines.append(
            f"{name:5s} {chosen!s:26s} {outcome.status:9s} {figures['n']} requests  wall {walls[name]:6.1f} s  "
            f"{figures['n'] / walls[name]:5.2f} req/s  model time {figures['forward_s']:6.1f} s  "
            f"threads/process {figures['threads']}"
        )
    print(f"helmflow bench_runner: mmlu zero-shot, {instances} instances, smollm2-135m-instruct, {shards} shards")
    print("\n".join(lines))
    overhead = walls["dask"] - walls["local"]
    print(f"overhead of dask (2 workers) over local: {overhead:+.1f} s ({walls['dask'] / walls['local']:.2f}x wall)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
