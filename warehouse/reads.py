"""Typed reads: what the CLI, the flows and the history need, as records, dicts and frames.

Every query against the result tables and views is here; callers never see SQL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from helmflow.tasks.records import Completion, Instance, Request
from helmflow.warehouse.db import Connected
from helmflow.warehouse.rows import Row, instance_of, stored_answer_of, stored_sample_of
from helmflow.warehouse.runs import interrupted_run_ids, reap_interrupted

# What two runs must share to be comparable; every other difference is reported beside a comparison.
FINGERPRINT = (
    "spec_hash",
    "dataset_fingerprint",
    "model_fingerprint",
    "dtype",
    "batch_size",
    "seed",
    "package_versions",
)


@dataclass(frozen=True)
class StoredRun:
    """A run as re-scoring needs it: its spec, instances and answers in the order they were written."""

    run_id: str
    spec_json: str
    num_parameters: int | None
    instances: list[Instance]
    answers: list[tuple[Request, Completion]]  # the predictions', then the samples' (request.sample > 0)
    status: str  # as `helmflow runs` shows it: a run whose process died is failed


def _dicts(cursor: duckdb.DuckDBPyConnection) -> list[Row]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


class Reads(Connected):
    """Mixin of Warehouse."""

    # -- runs --------------------------------------------------------------------------------------

    def run_row(self, run_id: str, *columns: str) -> Row:
        """Columns of one run, `status` as it effectively is (an interrupted run is failed)."""
        with self.connect(read_only=True) as con:
            rows = _dicts(con.execute(f"select status, {', '.join(columns)} from runs where run_id = ?", [run_id]))
            if not rows:
                raise LookupError(f"no run '{run_id}' in the warehouse")
            row = rows[0]
            if row["status"] == "running" and run_id in interrupted_run_ids(con):
                row["status"] = "failed"
        return row

    def runs(self, limit: int) -> pd.DataFrame:
        with self.connect(read_only=True) as con:
            stale = set(interrupted_run_ids(con))
            frame = con.execute(
                "select run_id, started_at, suite, scenario, model, status, spec_hash, model_fingerprint, "
                "num_instances as n, round(wall_seconds, 1) as wall_s from runs order by started_at desc limit ?",
                [limit],
            ).df()
        frame["status"] = [
            ("failed (interrupted)" if r in stale else s) for r, s in zip(frame.run_id, frame.status, strict=True)
        ]
        return frame

    def runs_of(self, model: str, scenario: str) -> list[Row]:
        """Every run of a model × scenario, newest first (interrupted ones recorded as failed first)."""
        fields = (
            "run_id, status, started_at, spec_hash, model_fingerprint, dataset_fingerprint, metrics_code_version, seed"
        )
        with self.connect() as con:
            reap_interrupted(con)
            return _dicts(
                con.execute(
                    f"select {fields} from runs where model = ? and scenario = ? order by started_at desc",
                    [model, scenario],
                )
            )

    def succeeded_runs(self) -> list[tuple[str, str, str]]:
        """(run id, model, scenario) of every succeeded run, by model, scenario and time."""
        with self.connect(read_only=True) as con:
            return con.execute(
                "select run_id, model, scenario from runs where status = 'succeeded' "
                "order by model, scenario, started_at"
            ).fetchall()

    def model_calls(self, run_ids: list[str]) -> int:
        with self.connect(read_only=True) as con:
            [(calls,)] = con.execute(
                "select coalesce(sum(model_calls), 0) from runs where run_id in (select unnest(?))", [run_ids or [""]]
            ).fetchall()
        return int(calls)

    def fingerprint(self, run_id: str) -> dict[str, object]:
        with self.connect(read_only=True) as con:
            rows = _dicts(
                con.execute(f"select model, scenario, {', '.join(FINGERPRINT)} from runs where run_id = ?", [run_id])
            )
        if not rows:
            raise LookupError(f"no run '{run_id}' in the warehouse")
        return rows[0]

    def main_metric(self, run_id: str) -> str:
        with self.connect(read_only=True) as con:
            rows = con.execute("select spec_json from runs where run_id = ?", [run_id]).fetchall()
        return json.loads(rows[0][0]).get("main_metric", "exact_match") if rows else "exact_match"

    def stored_run(self, run_id: str) -> StoredRun:
        with self.connect(read_only=True) as con:
            runs = con.execute(
                "select spec_json, num_parameters, status from runs where run_id = ?", [run_id]
            ).fetchall()
            if not runs:
                raise LookupError(f"no run '{run_id}' in the warehouse")
            spec_json, num_parameters, status = runs[0]
            if status == "running" and run_id in interrupted_run_ids(con):  # its process died
                status = "failed"
            instances = _dicts(con.execute("select * from instances where run_id = ? order by rowid", [run_id]))
            predictions = _dicts(con.execute("select * from predictions where run_id = ? order by rowid", [run_id]))
            # A sample's prompt is its instance's unperturbed prediction's (not stored twice).
            samples = _dicts(
                con.execute(
                    "select s.*, p.prompt from samples s left join predictions p on p.run_id = s.run_id "
                    "and p.instance_id = s.instance_id and p.perturbation = '' and p.kind = 'generation' "
                    "where s.run_id = ? order by s.rowid",
                    [run_id],
                )
            )
        answers = [stored_answer_of(r) for r in predictions] + [stored_sample_of(r) for r in samples]
        return StoredRun(run_id, spec_json, num_parameters, [instance_of(r) for r in instances], answers, status)

    # -- results -------------------------------------------------------------------------------------

    def headline_results(self, run_ids: list[str]) -> pd.DataFrame:
        """Long form: one row per run and headline category (runs with no metric keep one empty row)."""
        with self.connect(read_only=True) as con:
            return con.execute(
                "select r.run_id, r.scenario, r.model, r.status, r.num_instances as n, m.category, m.value, "
                "round(r.wall_seconds, 1) as wall_s, m.metric || case when m.perturbation = '' then '' "
                "else ' (' || m.perturbation || ')' end || case when m.lower_is_better then ', lower is better' "
                "else '' end as headline_metric "
                "from runs r left join metrics m on m.run_id = r.run_id and m.group_name = '' and m.headline "
                "where r.run_id in (select unnest(?)) order by r.scenario, r.model",
                [run_ids],
            ).df()

    def metric_history(self, model: str, scenario: str, metric: str, perturbation: str) -> pd.DataFrame:
        with self.connect(read_only=True) as con:
            return con.execute(
                "select started_at, run_id, value, n from metric_history where model = ? and scenario = ? "
                "and metric = ? and perturbation = ? and group_name = '' order by started_at",
                [model, scenario, metric, perturbation],
            ).df()

    def leaderboard(self, scenarios: list[str] | None = None, category: str | None = None) -> pd.DataFrame:
        """Mean win rate per model and category and overall, recomputed from win_rates under the filters."""
        with self.connect(read_only=True) as con:
            return con.execute(
                "with rates as (select * from win_rates where (? is null or scenario in (select unnest(?))) "
                "and (? is null or category = ?)) "
                "select model, category, round(avg(win_rate), 4) as mean_win_rate, count(*) as columns from rates "
                "group by all union all select model, 'overall', round(avg(win_rate), 4), count(*) from rates "
                "group by model order by category, mean_win_rate desc, model",
                [None if scenarios is None else 1, scenarios or [], category, category],
            ).df()

    def metric_pairs(self, run_a: str, run_b: str) -> list[tuple]:
        """(category, metric, perturbation, value in A, value in B) of the two runs' whole-run metrics."""
        with self.connect(read_only=True) as con:
            return con.execute(
                """
                select coalesce(x.category, y.category), coalesce(x.metric, y.metric),
                       coalesce(x.perturbation, y.perturbation), x.value, y.value
                from (select * from current_metrics where run_id = ? and group_name = '') x
                full join (select * from current_metrics where run_id = ? and group_name = '') y
                  using (category, metric, perturbation)
                order by 1, 2, 3
                """,
                [run_a, run_b],
            ).fetchall()

    def paired_stats(self, run_a: str, run_b: str) -> dict[tuple[str, str, str], list[tuple]]:
        """Per (category, metric, perturbation): (instance, value in A, value in B) on common instances."""
        with self.connect(read_only=True) as con:
            rows = con.execute(
                """
                with current as (
                    select s.* from instance_stats s
                    where s.metrics_version =
                        (select max(v.metrics_version) from instance_stats v where v.run_id = s.run_id)
                )
                select x.category, x.metric, x.perturbation, x.instance_id, x.value, y.value
                from current x join current y using (instance_id, category, metric, perturbation)
                where x.run_id = ? and y.run_id = ? and x.value is not null and y.value is not null
                order by x.instance_id
                """,
                [run_a, run_b],
            ).fetchall()
        paired: dict[tuple[str, str, str], list[tuple]] = {}
        for category, metric, perturbation, instance, va, vb in rows:
            paired.setdefault((category, metric, perturbation), []).append((instance, va, vb))
        return paired

    def conditions(self, run_ids: list[str]) -> dict[str, Row]:
        """What each run's runtimes depend on besides the model: device, threads, batch size, the machine's
        load, and whether its answers came from the inference cache (timed when first computed)."""
        with self.connect(read_only=True) as con:
            rows = _dicts(
                con.execute(
                    "select run_id, device, num_threads, batch_size, load_per_core, "
                    "coalesce(cache_hits, 0) as cache_hits from runs where run_id in (select unnest(?))",
                    [run_ids or [""]],
                )
            )
        return {r.pop("run_id"): r for r in rows}

    def column_stats(self, run_ids: list[str]) -> pd.DataFrame:
        """The per-instance values headline metrics are rebuilt from (current metrics version): every accuracy
        statistic, the calibration confidence, the inference runtime and the toxicity probability."""
        with self.connect(read_only=True) as con:
            return con.execute(
                """
                select s.run_id, s.category, s.metric, s.perturbation, s.instance_id, s.value
                from instance_stats s
                where s.run_id in (select unnest(?)) and s.value is not null
                  and s.metrics_version =
                      (select max(v.metrics_version) from instance_stats v where v.run_id = s.run_id)
                  and (s.category = 'accuracy' or (s.category, s.metric) in (('calibration', 'confidence'),
                       ('efficiency', 'inference_runtime'), ('toxicity', 'toxicity_probability')))
                order by s.run_id, s.instance_id
                """,
                [run_ids or [""]],
            ).df()

    def answer_counts(self, run_ids: list[str]) -> dict[str, list[tuple[int | None, int, int, int]]]:
        """Per run: (predicted option or None, gold option, number of options, instances) over its unperturbed
        multiple-choice instances (those with options and a gold one): what the spread of its answers is
        computed from. A run with no such instance is absent."""
        with self.connect(read_only=True) as con:
            rows = con.execute(
                "select p.run_id, p.predicted_index, i.gold_index, len(i.choices), count(*) "
                "from predictions p join instances i using (run_id, instance_id) "
                "where p.run_id in (select unnest(?)) and p.perturbation = '' and len(i.choices) > 0 "
                "and i.gold_index is not null group by all order by all",
                [run_ids or [""]],
            ).fetchall()
        counts: dict[str, list[tuple[int | None, int, int, int]]] = {}
        for run_id, predicted, gold, options, n in rows:
            counts.setdefault(run_id, []).append((predicted, gold, options, n))
        return counts

    # -- benchmarks and agreement with other tools -----------------------------------------------------

    def forward_figures(self, run_id: str) -> Row:
        """Predictions, forward seconds and prompt tokens of a run, with its device settings (make bench)."""
        with self.connect(read_only=True) as con:
            [row] = _dicts(
                con.execute(
                    "select count(*) as n, sum(latency_s) as forward_s, sum(prompt_tokens) as prompt_tokens, "
                    "sum(prompt_tokens_requested) as tokens_requested, sum(prompt_tokens_computed) as tokens_computed, "
                    "any_value(r.device) as device, any_value(r.dtype) as dtype, any_value(r.batch_size) as batch, "
                    "any_value(r.num_threads) as threads, any_value(r.wall_seconds) as run_wall "
                    "from predictions p join runs r using (run_id) where run_id = ?",
                    [run_id],
                )
            )
        return row

    def scored_predictions(self, run_id: str) -> list[Row]:
        """Unperturbed predictions with group, prompt, choice log-probs, choice and its accuracy stats."""
        with self.connect(read_only=True) as con:
            return _dicts(
                con.execute(
                    "select p.instance_id, i.group_name, p.prompt, p.choice_logprobs, p.predicted_index, "
                    "(p.predicted_index = i.gold_index)::int as correct, "
                    "max(case when s.metric = 'exact_match' then s.value end) as acc, "
                    "max(case when s.metric = 'exact_match_char_norm' then s.value end) as acc_norm "
                    "from predictions p join instances i using (run_id, instance_id) "
                    "left join instance_stats s using (run_id, instance_id, perturbation) "
                    "where run_id = ? and p.perturbation = '' and (s.metrics_version is null or s.metrics_version = "
                    "(select max(metrics_version) from instance_stats v where v.run_id = p.run_id)) group by all",
                    [run_id],
                )
            )

    # -- files ---------------------------------------------------------------------------------------

    def export(self, folder: Path, fmt: str) -> list[Path]:
        """Every base table to folder/<table>.<fmt> (parquet or csv)."""
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        with self.connect(read_only=True) as con:
            tables = [
                t
                for (t,) in con.execute(
                    "select table_name from information_schema.tables where table_type = 'BASE TABLE' order by 1"
                ).fetchall()
            ]
            for table in tables:
                path = folder / f"{table}.{fmt}"
                options = "(format parquet)" if fmt == "parquet" else "(format csv, header true)"
                con.execute(f"copy {table} to '{_quoted(path)}' {options}")
                written.append(path)
        return written


def _quoted(path: Path) -> str:
    return str(path).replace("'", "''")


__all__ = ["FINGERPRINT", "Reads", "StoredRun"]
