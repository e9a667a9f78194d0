"""Memorisation probes in the warehouse (flows/contamination_probes.py runs them): the run record of each probe
and its per-instance values, category 'contamination'; the per-run means are the view
`contamination_probe_metrics` (migration 015)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from helmflow.warehouse.db import Connected
from helmflow.warehouse.rows import Row
from helmflow.warehouse.runs import _transaction, now

CATEGORY = "contamination"


@dataclass(frozen=True)
class ProbeValue:
    """One per-instance value of a probe."""

    instance_id: str
    metric: str
    perturbation: str  # '': the stored input
    value: float | None


@dataclass(frozen=True)
class ProbeMean:
    probe: str
    metric: str
    perturbation: str
    value: float | None
    n: int


class ProbeStore(Connected):
    """Mixin of Warehouse."""

    def record_probe(self, record: Row, values: list[ProbeValue]) -> None:
        """A probe's run record and its values, replacing those of an earlier run of the same probe on the run
        (one transaction: a reader sees the old set or the new one)."""
        run_id, probe = record["run_id"], record["probe"]
        frame = pd.DataFrame(
            {
                "run_id": run_id,
                "probe": probe,
                "instance_id": [v.instance_id for v in values],
                "perturbation": [v.perturbation for v in values],
                "category": CATEGORY,
                "metric": [v.metric for v in values],
                "value": pd.array([v.value for v in values], dtype="Float64"),
            }
        )
        row = {**record, "finished_at": now()}
        with self.connect() as con, _transaction(con):
            for table in ("contamination_probe_runs", "contamination_probe_stats"):
                con.execute(f"delete from {table} where run_id = ? and probe = ?", [run_id, probe])
            con.execute(
                f"insert into contamination_probe_runs ({', '.join(row)}) values ({', '.join('?' for _ in row)})",
                list(row.values()),
            )
            con.register("incoming", frame)
            con.execute("insert into contamination_probe_stats by name select * from incoming")
            con.unregister("incoming")

    def probe_means(self, run_id: str) -> list[ProbeMean]:
        """Each probe metric's mean over the run's instances (the view), in a stable order."""
        with self.connect(read_only=True) as con:
            rows = con.execute(
                "select probe, metric, perturbation, value, n from contamination_probe_metrics where run_id = ? "
                "order by probe desc, perturbation, metric",
                [run_id],
            ).fetchall()
        return [ProbeMean(p, m, pert, None if v is None else float(v), int(n)) for p, m, pert, v, n in rows]


__all__ = ["CATEGORY", "ProbeMean", "ProbeStore", "ProbeValue"]
