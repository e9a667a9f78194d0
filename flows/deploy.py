"""Prefect deployments of the refresh flow: `helmflow schedule` creates one, `helmflow serve` runs them.

A schedule lives in the Prefect server (not in an ephemeral one that ends with the command), so
both commands need PREFECT_API_URL. `serve` reads every deployment of the refresh flow from the
server and serves them in this process with Prefect's `serve`: each scheduled (or manually
triggered) run executes here. The same deployment can instead run on a work pool: create it with
`--work-pool NAME` and start a worker (`prefect worker start --pool NAME`).
"""

from __future__ import annotations

import os
from typing import Any

FLOW_NAME = "helmflow-refresh"


class DeployError(RuntimeError):
    pass


def _require_server() -> str:
    url = os.environ.get("PREFECT_API_URL")
    if not url:
        raise DeployError(
            "schedules live in a Prefect server: start one (prefect server start --host 127.0.0.1) and set "
            "PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    return url


def _deployment(name: str, cron: list[str] | None, parameters: dict[str, Any], work_pool: str | None = None) -> Any:
    from prefect.deployments.runner import EntrypointType

    from helmflow.flows.refresh import refresh

    return refresh.to_deployment(
        name=name,
        cron=cron,
        parameters=parameters,
        tags=["helmflow"],
        enforce_parameter_schema=False,
        work_pool_name=work_pool,
        entrypoint_type=EntrypointType.MODULE_PATH,
        description="helmflow scheduled refresh: re-run what changed, report what is fresh, flag regressions",
    )


def schedule(
    suite: str,
    models: list[str] | None,
    cron: str,
    db: str | None,
    name: str | None = None,
    work_pool: str | None = None,
) -> str:
    """Create (or update) the deployment; returns its full name, 'helmflow-refresh/<name>'."""
    from helmflow.specs.library import find

    _require_server()
    find("suite", suite)  # a clear error now rather than at 3 a.m.
    name = name or suite
    parameters = {
        "suites": [suite],
        "models": models or None,
        "db": os.path.abspath(db) if db else os.environ.get("HELMFLOW_DB"),
    }
    _deployment(name, [cron], parameters, work_pool).apply(work_pool_name=work_pool)
    return f"{FLOW_NAME}/{name}"


def served_deployments() -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        found = client.read_deployments(flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAME])))
    deployments = []
    for deployment in found:
        if deployment.work_pool_name:  # those run on their pool's workers
            continue
        crons = [s.schedule.cron for s in deployment.schedules if getattr(s.schedule, "cron", None)]
        deployments.append(_deployment(deployment.name, crons or None, dict(deployment.parameters)))
    return deployments


def serve_all(limit: int | None = None) -> None:
    from prefect import serve

    _require_server()
    deployments = served_deployments()
    if not deployments:
        raise DeployError("no helmflow deployments to serve: create one with helmflow schedule SUITE --cron ...")
    serve(*deployments, limit=limit)
