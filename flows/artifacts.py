"""Prefect artifacts: what a run or a refresh produced, shown in the Prefect UI beside its flow run.

A benchmark run publishes a table of its headline metrics with 95% intervals and a markdown
summary naming the run id and the warehouse (so the numbers can be found again with
`helmflow query`); a refresh publishes what was stale and why, what ran, and any regression.
Artifacts are a view: outside a flow run there is nothing to attach them to and nothing is
published, and a failure to publish is logged, never failing the run whose results are stored.

Prefect's Artifacts page lists the newest artifact of each key, so each key names what the artifact
is about: a run's are keyed by its scenario × model and its warehouse (a short hash of the file's
path), a refresh's by its suites and warehouse. Two models, two scenarios or two warehouses never
hide each other; the next run of the same pair is the key's next version.
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import TYPE_CHECKING, Any

from helmflow.flows.leaderboard import board_frame, leaderboard_of, tie_lines
from helmflow.specs.library import find
from helmflow.specs.registry import CATEGORIES
from helmflow.warehouse.store import Warehouse

if TYPE_CHECKING:
    from helmflow.flows.refresh import RefreshReport

log = logging.getLogger(__name__)


def _in_flow_run() -> bool:
    from prefect.context import FlowRunContext

    return FlowRunContext.get() is not None


KEY_PART_CHARS = 40  # of each name in a key: room for scenario, model and the warehouse in Prefect's key


def artifact_key(kind: str, names: list[str], warehouse: Warehouse) -> str:
    """`helmflow-<names>-<warehouse hash>-<kind>` in the characters Prefect allows in a key (a-z, 0-9, -)."""
    where = hashlib.sha256(str(warehouse.path.resolve()).encode()).hexdigest()[:8]
    parts = [re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:KEY_PART_CHARS].strip("-") for name in names]
    return "-".join(["helmflow", *[p for p in parts if p], where, kind])


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
        for run_id in run_ids:  # one pair of artifacts per run, each under its scenario × model's keys
            own = [r for r in rows if r["run_id"] == run_id]
            names = [own[0]["scenario"], own[0]["model"]] if own else [run_id]
            create_table_artifact(
                own, key=artifact_key("metrics", names, warehouse), description=f"Headline metrics of run {run_id}"
            )
            create_markdown_artifact(
                run_summary(warehouse, [run_id], own),
                key=artifact_key("summary", names, warehouse),
                description=f"helmflow run {run_id}",
            )
    except Exception:
        log.warning("could not publish Prefect artifacts for %s", run_ids, exc_info=True)
        return False
    return True


def leaderboard_lines(warehouse: Warehouse, scenarios: list[str]) -> list[str]:
    """The scenarios' leaderboard as markdown: mean win rates with intervals, then ties and pairs not compared."""

    runs = warehouse.report_runs(scenarios)
    result = leaderboard_of(warehouse, runs[runs.latest])
    if not result.rates:
        return ["- no column has two or more models yet"]
    frame = board_frame(result, CATEGORIES)
    shown = [c for c in ["overall", *CATEGORIES] if c in frame.columns]
    lines = ["| model | " + " | ".join(shown) + " |", "|---" * (len(shown) + 1) + "|"]
    for row in frame.to_dict("records"):
        cells = [
            "" if row.get(c) != row.get(c) else f"{row[c]:.3g} [{row[c + '_low']:.3g}, {row[c + '_high']:.3g}]"
            for c in shown
        ]
        lines.append(f"| {row['model']} | " + " | ".join(cells) + " |")
    lines.append("\nMean win rate (HELM) with its 95% bootstrap interval over instances.\n")
    return lines + [f"- {line}" for line in tie_lines(result)]


def refresh_summary(report: RefreshReport, db: str | None, scenarios: list[str] | None = None) -> str:
    lines = [f"# helmflow refresh\n\nWarehouse: `{Warehouse(db).path.resolve()}`\n", "## Stale, and why\n"]
    lines += [f"- {label}: {'; '.join(reasons)}" for label, reasons in report.reasons.items()] or ["- nothing"]
    lines += ["\n## Ran\n"] + ([f"- run `{run_id}`" for run_id in report.ran] or ["- nothing"])
    lines += ["\n## Fresh (not run)\n"] + ([f"- {label}" for label in report.fresh] or ["- nothing"])
    lines += ["\n## Regressions\n"] + ([f"- **{line}**" for line in report.regressions] or ["- none"])
    if scenarios:
        lines += ["\n## Leaderboard\n", *leaderboard_lines(Warehouse(db), scenarios)]
    return "\n".join(lines)


def publish_refresh(report: RefreshReport, db: str | None, suites: list[str]) -> bool:
    """The refresh's summary under the current flow run (each run it made published its own metrics)."""
    if not _in_flow_run():
        return False
    from prefect.artifacts import create_markdown_artifact

    try:
        scenarios = [e.scenario for name in suites for e in find("suite", name).spec.scenarios]  # type: ignore[union-attr]
        create_markdown_artifact(
            refresh_summary(report, db, scenarios),
            key=artifact_key("refresh", suites, Warehouse(db)),
            description=f"helmflow refresh of {', '.join(suites)}",
        )
    except Exception:
        log.warning("could not publish the refresh's Prefect artifact", exc_info=True)
        return False
    return True
