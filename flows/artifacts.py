"""Prefect artifacts: what a run or a refresh produced, shown in the Prefect UI beside its flow run.

A benchmark run publishes a table of its headline metrics with 95% intervals and a markdown
summary naming the run id and the warehouse (so the numbers can be found again with
`helmflow query`); a refresh publishes what was stale and why, what ran, and any regression.
Artifacts are a view: outside a flow run there is nothing to attach them to and nothing is
published, and a failure to publish is logged, never failing the run whose results are stored.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from helmflow.warehouse.store import Warehouse

if TYPE_CHECKING:
    from helmflow.flows.refresh import RefreshReport

log = logging.getLogger(__name__)


def _in_flow_run() -> bool:
    from prefect.context import FlowRunContext

    return FlowRunContext.get() is not None


def _rounded(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if number != number else round(number, 6)  # NaN is null in a JSON table


def headline_rows(warehouse: Warehouse, run_ids: list[str]) -> list[dict[str, Any]]:
    """One row per run and headline metric: the value, its interval and how it was computed."""
    runs = warehouse.headline_results(run_ids)[["run_id", "scenario", "model", "status"]].drop_duplicates("run_id")
    names = {r.run_id: (r.scenario, r.model, r.status) for r in runs.itertuples()}
    metrics = warehouse.report_metrics(run_ids)
    rows = []
    for m in metrics[metrics.headline & (metrics.group_name == "")].itertuples():
        scenario, model, status = names.get(m.run_id, ("", "", ""))
        rows.append(
            {
                "run_id": m.run_id,
                "scenario": scenario,
                "model": model,
                "status": status,
                "category": m.category,
                "metric": m.metric + (f" ({m.perturbation})" if m.perturbation else ""),
                "value": _rounded(m.value),
                "ci_low": _rounded(m.ci_low),
                "ci_high": _rounded(m.ci_high),
                "interval": m.ci_method if isinstance(m.ci_method, str) else "",
                "n": int(m.n),
                "lower_is_better": bool(m.lower_is_better),
            }
        )
    return rows


def run_summary(warehouse: Warehouse, run_ids: list[str], rows: list[dict[str, Any]]) -> str:
    lines = [f"# helmflow results\n\nWarehouse: `{warehouse.path.resolve()}`\n"]
    for run_id in run_ids:
        own = [r for r in rows if r["run_id"] == run_id]
        title = f"{own[0]['model']} × {own[0]['scenario']} ({own[0]['status']})" if own else ""
        lines.append(f"## Run `{run_id}` {title}\n")
        for r in own:
            interval = f" [{r['ci_low']:.4g}, {r['ci_high']:.4g}]" if r["ci_low"] is not None else ""
            value = "—" if r["value"] is None else f"{r['value']:.4g}"
            lines.append(f"- **{r['category']}** {r['metric']}: {value}{interval}")
        lines.append(f"\n`helmflow query \"select * from metrics where run_id = '{run_id}'\"`\n")
    lines.append("Intervals are 95%: Wilson for proportions, a seeded bootstrap over instances otherwise.")
    return "\n".join(lines)


def publish_run(db: str | None, run_ids: list[str]) -> bool:
    """Table and summary artifacts of the runs under the current flow run; False when none was published."""
    if not run_ids or not _in_flow_run():
        return False
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    try:
        warehouse = Warehouse(db)
        rows = headline_rows(warehouse, run_ids)
        label = run_ids[0] if len(run_ids) == 1 else f"{len(run_ids)} runs"
        create_table_artifact(rows, key="helmflow-headline-metrics", description=f"Headline metrics of {label}")
        create_markdown_artifact(
            run_summary(warehouse, run_ids, rows), key="helmflow-run-summary", description=f"helmflow {label}"
        )
    except Exception:
        log.warning("could not publish Prefect artifacts for %s", run_ids, exc_info=True)
        return False
    return True


def refresh_summary(report: RefreshReport, db: str | None) -> str:
    lines = [f"# helmflow refresh\n\nWarehouse: `{Warehouse(db).path.resolve()}`\n", "## Stale, and why\n"]
    lines += [f"- {label}: {'; '.join(reasons)}" for label, reasons in report.reasons.items()] or ["- nothing"]
    lines += ["\n## Ran\n"] + ([f"- run `{run_id}`" for run_id in report.ran] or ["- nothing"])
    lines += ["\n## Fresh (not run)\n"] + ([f"- {label}" for label in report.fresh] or ["- nothing"])
    lines += ["\n## Regressions\n"] + ([f"- **{line}**" for line in report.regressions] or ["- none"])
    return "\n".join(lines)


def publish_refresh(report: RefreshReport, db: str | None) -> bool:
    """The refresh's summary under the current flow run (each run it made published its own metrics)."""
    if not _in_flow_run():
        return False
    from prefect.artifacts import create_markdown_artifact

    try:
        create_markdown_artifact(refresh_summary(report, db), key="helmflow-refresh", description="helmflow refresh")
    except Exception:
        log.warning("could not publish the refresh's Prefect artifact", exc_info=True)
        return False
    return True
