"""The scheduled refresh: re-evaluate what changed, report what did not, watch for regressions.

For each (model, scenario) of the suites, the latest succeeded run is fresh unless its spec hash,
model fingerprint, dataset fingerprint or metric code version differs from now, or it is older
than the suite's `max_age`. Stale pairs run (their unchanged requests come from the inference
cache); a pair whose latest run crashed asking the same questions (spec, model, data, seed) is
resumed instead. After the runs, regression detection looks at what this refresh produced; a
regression, or a run that did not succeed, fails the flow run with its message (and the command's
exit code) and calls the suite's notification command or webhook.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from dataclasses import dataclass, field

from prefect import flow
from prefect.runtime import flow_run

from helmflow.flows.artifacts import publish_refresh
from helmflow.flows.benchmark import load_stage
from helmflow.flows.history import Regression, regressions
from helmflow.flows.in_process import InProcess
from helmflow.flows.pipeline import Pair, RunContext, run_pairs
from helmflow.flows.plans import suite_plans
from helmflow.specs.library import find, find_model
from helmflow.specs.loader import spec_hash
from helmflow.specs.schema import Notify, SuiteSpec
from helmflow.tasks.instances import instances_fingerprint
from helmflow.tasks.metrics import METRICS_CODE_VERSION
from helmflow.tasks.models import fingerprint_of
from helmflow.warehouse.runs import now
from helmflow.warehouse.store import Warehouse


class RegressionFound(RuntimeError):
    """A refresh found a significant drop; the message lists them."""


class RefreshFailed(RuntimeError):
    """Runs of a refresh failed (or failed their checks); the message lists them, and any regressions."""


@dataclass
class RefreshReport:
    ran: list[str] = field(default_factory=list)  # run ids
    fresh: list[str] = field(default_factory=list)  # "model × scenario (run id)"
    reasons: dict[str, list[str]] = field(default_factory=dict)  # "model × scenario" -> why it ran
    regressions: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # "model × scenario: status (run id): error"


def staleness(current: dict[str, object], latest: dict[str, object] | None, max_age: float | None) -> list[str]:
    """Why a model × scenario needs a new run (empty: it is fresh)."""
    if latest is None:
        return ["no succeeded run yet"]
    reasons = [
        f"{key} changed"
        for key in ("spec_hash", "model_fingerprint", "dataset_fingerprint", "metrics_code_version")
        if latest.get(key) != current[key]
    ]
    if max_age is not None:
        age = (now() - latest["started_at"]).total_seconds()  # type: ignore[operator]
        if age > max_age:
            reasons.append(f"older than max_age ({age / 3600:.1f} h)")
    return reasons


# What a crashed run must share with the refresh for it to be resumed rather than run anew.
RESUMABLE = ("spec_hash", "model_fingerprint", "dataset_fingerprint")


def resumable_run(crashed: dict | None, current: dict, seed: int) -> str | None:
    """The crashed run to finish instead of starting anew: one that was asking the same questions."""
    if crashed and all(crashed[k] == current[k] for k in RESUMABLE) and crashed["seed"] == seed:
        return str(crashed["run_id"])
    return None


def latest_runs(db: str | None, model: str, scenario: str) -> tuple[dict | None, dict | None]:
    """The latest succeeded run, and a crashed run newer than it (to resume), of a model × scenario."""
    rows = Warehouse(db).runs_of(model, scenario)
    succeeded = next((r for r in rows if r["status"] == "succeeded"), None)
    crashed = next((r for r in rows if r["status"] == "failed"), None)
    if crashed and succeeded and crashed["started_at"] < succeeded["started_at"]:
        crashed = None
    return succeeded, crashed


def notify(settings: Notify, message: str, found: list[Regression]) -> None:
    if settings.command:
        subprocess.run(
            settings.command,
            shell=True,
            input=message,
            text=True,
            timeout=60,
            env={**os.environ, "HELMFLOW_MESSAGE": message},
        )
    if settings.webhook:
        body = json.dumps({"text": message, "regressions": [r.__dict__ for r in found]}, default=str).encode()
        request = urllib.request.Request(settings.webhook, data=body, headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=30).close()


@flow(name="helmflow-refresh", validate_parameters=False, log_prints=False)
def refresh(
    suites: list[str], models: list[str] | None = None, db: str | None = None, context: RunContext | None = None
) -> RefreshReport:
    context = context or RunContext()
    report = RefreshReport()
    for suite_name in suites:
        suite = find("suite", suite_name).spec
        assert isinstance(suite, SuiteSpec)
        prepared = [load_stage(plan, suite.seed, "auto", context) for plan in suite_plans(suite)]
        failed: list[str] = []  # this suite's runs that did not succeed
        for model_name in models or suite.models:
            model_spec = find_model(model_name)
            current_model = fingerprint_of(model_spec)
            stale: list[Pair] = []
            for prep in prepared:
                label = f"{model_spec.name} × {prep.plan.spec.name}"
                current = {
                    "spec_hash": spec_hash(prep.plan.spec),
                    "model_fingerprint": current_model,
                    "dataset_fingerprint": instances_fingerprint(prep.instances),
                    "metrics_code_version": METRICS_CODE_VERSION,
                }
                latest, crashed = latest_runs(db, model_spec.name, prep.plan.spec.name)
                reasons = staleness(current, latest, suite.max_age_seconds)
                if not reasons:
                    report.fresh.append(f"{label} (run {latest['run_id']})")  # type: ignore[index]
                    context.reporter.stage(label, "fresh")
                    continue
                resume_id = resumable_run(crashed, current, suite.seed)
                if resume_id:
                    reasons.append(f"resuming crashed run {resume_id}")
                report.reasons[label] = reasons
                context.reporter.stage(label, "stale: " + "; ".join(reasons))
                stale.append(Pair(prep, model_spec, resume_id))
            # The model loads only when something is stale (the executor loads it for the first run).
            outcomes = run_pairs(stale, InProcess(context, db), context, suite.seed, db, flow_run.id) if stale else []
            for outcome in outcomes:
                report.ran.append(outcome.run_id)
                if outcome.status != "succeeded":
                    failure = f"{model_spec.name} × {outcome.scenario}: {outcome.status} (run {outcome.run_id})"
                    failed.append(failure + (f": {outcome.error}" if outcome.error else ""))
        report.failed += failed
        found = [r for r in regressions(Warehouse(db)) if r.after_run in report.ran]
        if found:
            lines = [
                f"{r.model} on {r.scenario}: {r.metric} {r.before:.4f} -> {r.after:.4f} (McNemar p = "
                f"{r.p_value:.3g}; runs {r.before_run} -> {r.after_run})"
                for r in found
            ]
            report.regressions += lines
            message = f"helmflow refresh of suite {suite.name}: {len(found)} regression(s)\n" + "\n".join(lines)
            notify(suite.notify, message, found)
        if failed:  # a run that failed at 3 a.m. is news too
            notify(
                suite.notify,
                f"helmflow refresh of suite {suite.name}: {len(failed)} run(s) failed\n" + "\n".join(failed),
                [],
            )
    publish_refresh(report, db, suites)
    if report.failed:  # the flow run fails: Prefect and the command's exit code say so
        raise RefreshFailed("\n".join(["failed run(s):", *report.failed, *report.regressions]))
    if report.regressions:
        raise RegressionFound("\n".join(report.regressions))
    return report
