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

from helmflow.flows.failures import START_A_SERVER

FLOW_NAME = "helmflow-refresh"
# A cron's fields in order (5; Prefect also takes a 6th, seconds, and a 7th, the year), with what each takes.
CRON_FIELDS = (
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31"),
    ("month", "1-12 or jan-dec"),
    ("day-of-week", "0-7 or sun-sat"),
    ("second", "0-59"),
    ("year", "1970-2099"),
)
CRON_EXPECTED = '5 fields, minute hour day-of-month month day-of-week, e.g. "0 3 * * *" (03:00 every day)'


class DeployError(RuntimeError):
    """Bad input to `schedule` or `serve`. (A server that does not answer is said by the CLI's main,
    flows/failures.py.)"""


def _require_server() -> str:
    url = os.environ.get("PREFECT_API_URL")
    if not url:
        raise DeployError(
            f"schedules live in a Prefect server: start one ({START_A_SERVER}) and set "
            "PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    return url


def check_cron(cron: str) -> None:
    """Refuse a cron that Prefect would refuse (its own check: CronSchedule), saying which fields are wrong,
    before anything asks the server."""
    if not _cron_accepted(cron):
        raise DeployError(f"--cron {cron!r} is not a cron schedule: {_cron_problem(cron)}; expected {CRON_EXPECTED}")


def _cron_accepted(cron: str) -> bool:
    from prefect.client.schemas.schedules import CronSchedule
    from pydantic import ValidationError

    try:
        CronSchedule(cron=cron)
    except ValidationError:
        return False
    return True


def _cron_problem(cron: str) -> str:
    """What is wrong with a cron Prefect refused: its number of fields, or each field that is refused alone."""
    fields = cron.split()
    if not fields:
        return "it is empty"
    if len(fields) == 1 and fields[0].startswith("@"):
        return f"{fields[0]} is not one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly"
    if not 5 <= len(fields) <= len(CRON_FIELDS):
        return f"it has {len(fields)} field{'s' if len(fields) > 1 else ''}"
    wrong = []
    for index, field in enumerate(fields):
        alone = ["*"] * len(fields)  # this field among stars, so that its own refusal is what is tested
        alone[index] = field
        if not _cron_accepted(" ".join(alone)):
            name, allowed = CRON_FIELDS[index]
            wrong.append(f"{name} {field!r} ({allowed})")
    if not wrong:  # each field is fine alone: Prefect refuses the combination
        return "Prefect refuses these fields together"
    return " and ".join(wrong) + (" are" if len(wrong) > 1 else " is") + " not valid"


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

    # The input first, each a clear error now rather than at 3 a.m.; then the server.
    check_cron(cron)
    find("suite", suite)
    _require_server()
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
