"""What happens before the flow, side by side on two cores: Prefect's server starts and Great
Expectations is imported, each in a process of its own, while this process loads the data and the model.

The first flow run of a process needs Prefect's API. With none configured, Prefect starts a temporary
server itself, but from inside the flow (so the data checks and the model load waited for it), and only
after importing its whole server package into this process (4–5 s of Python that holds the GIL against
everything else here). `get_ready` instead starts that same server as a subprocess first and points this
process and its children at it (`flows/temporary_server.py`); starts the validation worker, whose first
job is Great Expectations' import (`flows/validation_process.py`); loads every scenario's data and hands
its checks to the worker; loads the first model; then waits for the checks (bad data still stops the
command before any flow runs) and for the server. The flow's load tasks take what was loaded as it is,
from the flow's RunContext.
"""

from __future__ import annotations

import sys
import time

from helmflow.flows.pipeline import RunContext
from helmflow.flows.plans import ScenarioPlan
from helmflow.flows.prepare import preflight
from helmflow.flows.temporary_server import start_prefect_api
from helmflow.specs.schema import ModelSpec
from helmflow.tasks.models import load_model as load


def get_ready(
    plans: list[ScenarioPlan],
    models: list[ModelSpec],
    seed: int,
    prefer: str,
    load_model: bool,
    context: RunContext,
) -> dict[str, float]:
    """Check every scenario's data and load the first model (`load_model`: the flow runs models in this
    process) while Prefect's server starts; return when all three are done, with each one's seconds.
    What was loaded is left in `context`, for the flow's load stages to take.

    The data and the model load one after the other: loading them in two threads races on
    transformers' lazy imports (`datasets` reads `transformers.PreTrainedTokenizerBase` while the
    model's thread is still importing transformers).
    """
    server = start_prefect_api()  # None: the user's Prefect API (PREFECT_API_URL, a profile) is used
    if "great_expectations" not in sys.modules:
        # The worker's one purpose is that import (3-5 s), beside the data and model loads; a process that has
        # it already (a notebook's second evaluate, a test session) checks in-process. The caller stops it.
        context.checks.start()
    started = time.perf_counter()
    # Unreadable data raises here; data that fails its checks raises at finish_checks(), after the model
    # load that ran beside them. Either way before any flow runs (the server stops at exit).
    finish_checks = preflight(plans, seed, prefer, context.checks, context.unavailable)
    data_loaded = time.perf_counter()
    if load_model and models:
        context.models[models[0].model_dump_json()] = load(models[0])
    loaded = time.perf_counter()
    context.prepared.update(finish_checks())
    checked = time.perf_counter()
    if server is not None:
        server.wait_until_healthy()
    return {
        "data_load": data_loaded - started,
        "model_load": loaded - data_loaded,
        "checks_waited": checked - loaded,
        "prefect_server_start": (server.healthy_after or 0.0) if server is not None else 0.0,
    }
