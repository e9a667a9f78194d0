"""Reads behind the static report (`helmflow report`): every query the site writer needs, in one place.

The report looks at a selection of succeeded runs (a suite's scenarios, some models, runs since a
date); its leaderboard and matrix use the latest of those per model × scenario, with the same win
rate as the `win_rates` view (004_history.sql), so with no filter the two agree.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from helmflow.warehouse.db import Connected, latest_version, schema_version

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
        """One row per prediction (each perturbed variant too): input, gold, answer, log-probs, correctness."""
        with self.connect(read_only=True) as con:
            return con.execute(
                """
                with current as (
                    select instance_id, perturbation, value from instance_stats
                    where run_id = ? and category = 'accuracy' and metric = ?
                      and metrics_version = (select max(metrics_version) from instance_stats where run_id = ?)
                )
                select p.instance_id, coalesce(i.group_name, '') as group_name, i.input, i.choices, i.gold_index,
                       i.reference_texts, p.perturbation, p.prompt, p.completion, p.choice_logprobs,
                       p.predicted_index, p.confidence, p.error, c.value as score
                from predictions p join instances i using (run_id, instance_id)
                left join current c using (instance_id, perturbation)
                where p.run_id = ? order by i.rowid, p.perturbation
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
