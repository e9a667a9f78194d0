-- Schema version 4: history. Re-scoring writes new metric versions, so stats carry one too;
-- generated tokens' log-probs are kept so that re-scoring reproduces confidence exactly.
ALTER TABLE instance_stats ADD COLUMN metrics_version INTEGER DEFAULT 1;
UPDATE instance_stats SET metrics_version = 1 WHERE metrics_version IS NULL;
ALTER TABLE predictions ADD COLUMN output_logprobs DOUBLE[];
-- Per-instance extras some metrics need (BBQ's polarity and groups), as JSON.
ALTER TABLE instances ADD COLUMN extra VARCHAR;

-- The newest metrics version of every run.
CREATE VIEW current_metrics AS
SELECT m.* FROM metrics m
WHERE m.metrics_version = (SELECT max(v.metrics_version) FROM metrics v WHERE v.run_id = m.run_id);

-- The latest succeeded run of each model on each scenario.
CREATE VIEW latest_runs AS
SELECT * EXCLUDE (recency) FROM (
    SELECT r.*, row_number() OVER (PARTITION BY model, scenario ORDER BY started_at DESC) AS recency
    FROM runs r WHERE status = 'succeeded'
) WHERE recency = 1;

-- Latest succeeded result per model × scenario × metric.
CREATE VIEW latest_metrics AS
SELECT r.model, r.scenario, r.suite, r.started_at, m.*
FROM latest_runs r JOIN current_metrics m USING (run_id);

-- Every succeeded run's value of every metric, in time order: the series behind `helmflow history`.
CREATE VIEW metric_history AS
SELECT r.started_at, r.run_id, r.model, r.scenario, r.model_fingerprint, r.spec_hash,
       m.category, m.metric, m.perturbation, m.group_name, m.value, m.n, m.lower_is_better
FROM runs r JOIN current_metrics m USING (run_id)
WHERE r.status = 'succeeded';

-- HELM's win rate: in each column (scenario × category headline metric, latest runs), the share of
-- the other models a model beats; ties count half; lower-is-better respected; columns with fewer
-- than two models are skipped.
CREATE VIEW win_rates AS
WITH columns AS (
    SELECT model, scenario, category, metric, perturbation, value, lower_is_better
    FROM latest_metrics WHERE headline AND group_name = '' AND value IS NOT NULL
)
SELECT a.model, a.scenario, a.category, a.metric,
       sum(CASE WHEN b.model = a.model THEN 0
                WHEN a.value = b.value THEN 0.5
                WHEN (a.value > b.value) <> a.lower_is_better THEN 1 ELSE 0 END) / (count(*) - 1) AS win_rate,
       count(*) AS models
FROM columns a JOIN columns b USING (scenario, category, metric, perturbation)
GROUP BY ALL
HAVING count(*) >= 2;

-- Mean win rate per model and category, and over every column ('overall').
CREATE VIEW leaderboard AS
SELECT model, category, avg(win_rate) AS mean_win_rate, count(*) AS columns FROM win_rates GROUP BY ALL
UNION ALL
SELECT model, 'overall' AS category, avg(win_rate), count(*) FROM win_rates GROUP BY model;
