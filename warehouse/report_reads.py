"""Reads behind the static report (`helmflow report`): every query the site writer needs, in one place.

The report looks at a selection of succeeded runs (a suite's scenarios, some models, runs since a
date); its leaderboard and matrix use the latest of those per model × scenario, with the same win
rate as the `win_rates` view (004_history.sql), so with no filter the two agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pandas as pd

from helmflow.warehouse.db import Connected, latest_version, schema_version

# The columns of report_instance_batches' rows, in order.
INSTANCE_COLUMNS = (
    "instance_id", "group_name", "input", "choices", "gold_index", "reference_texts", "perturbation", "prompt",
    "completion", "raw_completion", "choice_logprobs", "predicted_index", "confidence", "error", "score",
)  # fmt: skip
# Each prediction's main-metric value as last scored (parameters: run id, metric, run id).
_CURRENT_SCORES = """
    with current as (
        select instance_id, perturbation, value from instance_stats
        where run_id = ? and category = 'accuracy' and metric = ?
          and metrics_version = (select max(metrics_version) from instance_stats where run_id = ?)
    )"""

RUN_COLUMNS = (
    "run_id, started_at, suite, scenario, model, spec_hash, model_fingerprint, dataset_fingerprint, data_source, "
    "seed, num_instances, package_versions, device, dtype, batch_size, num_threads, wall_seconds, model_calls, "
    "cache_hits, metrics_code_version, toxicity_classifier, num_parameters, flow_run_id, status, spec_json"
)


class ReportReads(Connected):
    """Mixin of Warehouse."""

    def upgraded(self) -> None:
        """Bring an older warehouse up to date (intervals are schema 6) before reading it read-only.

        Reads open the file read-only, which never migrates; a warehouse last written by an older
        helmflow is upgraded here once, the way any write would (a copy of it is kept beside it).
        """
        with self.connect(read_only=True) as con:
            current = schema_version(con)
        if current < latest_version():
            with self.connect():
                pass

    def latest_attempts(self, scenarios: list[str]) -> pd.DataFrame:
        """Each model × scenario's newest run of any status (run_id, scenario, model, status, error), so a layout
        can say why a cell is empty: a run that failed, or one still running."""
        with self.connect(read_only=True) as con:
            return con.execute(
                "select run_id, scenario, model, status, error from runs where scenario in (select unnest(?)) "
                "qualify row_number() over (partition by model, scenario order by started_at desc) = 1",
                [scenarios],
            ).df()

    def report_runs(
        self, scenarios: list[str] | None = None, models: list[str] | None = None, since: datetime | None = None
    ) -> pd.DataFrame:
        """Succeeded runs under the filters, oldest first, with `latest` marking each model × scenario's newest."""
        with self.connect(read_only=True) as con:
            return con.execute(
                f"select {RUN_COLUMNS}, row_number() over (partition by model, scenario order by started_at desc) = 1 "
                "as latest from runs where status = 'succeeded' "
                "and (? or scenario in (select unnest(?))) and (? or model in (select unnest(?))) "
                "and (? is null or started_at >= ?) order by started_at",
                [scenarios is None, scenarios or [], models is None, models or [], since, since],
            ).df()

    def report_metrics(self, run_ids: list[str]) -> pd.DataFrame:
        """Every current metric of the runs (all groups and perturbations), with intervals."""
        self.upgraded()
        with self.connect(read_only=True) as con:
            return con.execute(
                "select run_id, category, metric, perturbation, group_name, value, n, lower_is_better, headline, "
                "ci_low, ci_high, ci_method from current_metrics where run_id in (select unnest(?)) "
                "order by run_id, category, metric, perturbation, group_name",
                [run_ids or [""]],
            ).df()

    def report_validations(self, run_ids: list[str]) -> pd.DataFrame:
        with self.connect(read_only=True) as con:
            return con.execute(
                "select run_id, stage, expectation, kwargs, success, element_count, unexpected_count, "
                "unexpected_ids from validations where run_id in (select unnest(?)) order by run_id, stage, rowid",
                [run_ids or [""]],
            ).df()

    def report_instances(self, run_id: str, main_metric: str) -> pd.DataFrame:
        """One row per prediction (each perturbed variant too): input, gold, answer, log-probs, correctness.
        The whole run in one frame: the report itself reads it in batches (report_instance_batches)."""
        frames = [
            pd.DataFrame(rows, columns=list(INSTANCE_COLUMNS))
            for rows in self.report_instance_batches(run_id, main_metric)
        ]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(INSTANCE_COLUMNS))

    def report_instance_batches(
        self, run_id: str, main_metric: str, size: int = 2048
    ) -> Iterator[list[tuple[Any, ...]]]:
        """report_instances' rows, `size` at a time, as tuples of INSTANCE_COLUMNS, in the same order
        (the instances' order, each instance's variants together, by perturbation name).

        A run of 84,252 predictions with 5-shot prompts holds hundreds of MB of prompts, which one
        sorted query would hold whole (in DuckDB's memory, and in Python's as one frame): the order is
        read first (row ids and scores, a few MB), then each batch's rows by their row ids, which the
        scan skips to (a run's predictions lie together). The connection stays open until the last
        batch is read, or the iterator is closed."""
        with self.connect(read_only=True) as con:
            order = con.execute(
                f"""
                {_CURRENT_SCORES}
                select p.rowid, c.value from predictions p join instances i using (run_id, instance_id)
                left join current c using (instance_id, perturbation)
                where p.run_id = ? order by i.rowid, p.perturbation
                """,
                [run_id, main_metric, run_id, run_id],
            ).fetchall()
            for start in range(0, len(order), size):
                batch = dict(order[start : start + size])
                ids = list(batch)
                rows = con.execute(
                    """
                    select p.rowid, p.instance_id, coalesce(i.group_name, '') as group_name, i.input, i.choices,
                           i.gold_index, i.reference_texts, p.perturbation, p.prompt, p.completion,
                           p.raw_completion, p.choice_logprobs, p.predicted_index, p.confidence, p.error
                    from predictions p join instances i using (run_id, instance_id)
                    where p.run_id = ? and p.rowid between ? and ? and p.rowid in (select unnest(?))
                    """,
                    [run_id, min(ids), max(ids), ids],
                ).fetchall()
                place = {rowid: n for n, rowid in enumerate(ids)}
                rows.sort(key=lambda row: place[row[0]])
                yield [(*row[1:], batch[row[0]]) for row in rows]

    def report_instance_outcomes(self, run_id: str, main_metric: str) -> pd.DataFrame:
        """The unperturbed predictions' small columns, in the instances' order: confidence, main-metric
        score, the number of options, gold and predicted option (the reliability diagram and the
        predicted-against-gold table; no prompt is read)."""
        with self.connect(read_only=True) as con:
            return con.execute(
                f"""
                {_CURRENT_SCORES}
                select p.confidence, c.value as score, len(i.choices) as n_choices, i.gold_index, p.predicted_index
                from predictions p join instances i using (run_id, instance_id)
                left join current c using (instance_id, perturbation)
                where p.run_id = ? and p.perturbation = '' order by i.rowid
                """,
                [run_id, main_metric, run_id, run_id],
            ).df()

    def cache_counts(self, run_ids: list[str]) -> dict[str, tuple[int, int]]:
        """Run id -> (model calls, answers from the inference cache)."""
        with self.connect(read_only=True) as con:
            rows = con.execute(
                "select run_id, coalesce(model_calls, 0), coalesce(cache_hits, 0) from runs "
                "where run_id in (select unnest(?))",
                [run_ids or [""]],
            ).fetchall()
        return {r: (int(calls), int(hits)) for r, calls, hits in rows}

    def history_with_intervals(
        self, model: str, scenario: str, metric: str, perturbation: str, category: str | None = None
    ) -> pd.DataFrame:
        """A whole-run metric over time with its category and interval (robustness and fairness share
        `worst_case`, so the category tells them apart, or picks one)."""
        self.upgraded()
        with self.connect(read_only=True) as con:
            return con.execute(
                "select started_at, run_id, category, value, ci_low, ci_high, n from metric_history "
                "where model = ? and scenario = ? and metric = ? and perturbation = ? and group_name = '' "
                "and (? is null or category = ?) order by started_at, category",
                [model, scenario, metric, perturbation, category, category],
            ).df()

    def history_groups(
        self, model: str, scenario: str, metric: str, perturbation: str, category: str | None = None
    ) -> list[str]:
        """The instance groups (MMLU's subjects, say) some succeeded run of the model × scenario has the
        metric for, sorted."""
        self.upgraded()
        with self.connect(read_only=True) as con:
            rows = con.execute(
                "select distinct group_name from metric_history where model = ? and scenario = ? and metric = ? "
                "and perturbation = ? and group_name != '' and (? is null or category = ?) order by 1",
                [model, scenario, metric, perturbation, category, category],
            ).fetchall()
        return [name for (name,) in rows]

    def group_history(
        self, model: str, scenario: str, metric: str, perturbation: str, group: str, category: str | None = None
    ) -> pd.DataFrame:
        """history_with_intervals within one instance group: where a change happened. Per-group accuracy
        has its interval (tasks/metrics/intervals.py); other per-group metrics have none (null)."""
        self.upgraded()
        with self.connect(read_only=True) as con:
            return con.execute(
                "select started_at, run_id, category, group_name, value, ci_low, ci_high, n from metric_history "
                "where model = ? and scenario = ? and metric = ? and perturbation = ? and group_name = ? "
                "and (? is null or category = ?) order by started_at, category",
                [model, scenario, metric, perturbation, group, category, category],
            ).df()


__all__ = ["ReportReads"]
