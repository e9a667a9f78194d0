-- Schema version 6: each headline metric's 95% interval (tasks/metrics/intervals.py): Wilson for
-- plain proportions, a seeded bootstrap over instances for the rest. Older runs keep nulls until
-- re-scored (`helmflow rescore`, or the next refresh after the metric code version changes).
ALTER TABLE metrics ADD COLUMN ci_low DOUBLE;
ALTER TABLE metrics ADD COLUMN ci_high DOUBLE;
-- wilson | bootstrap
ALTER TABLE metrics ADD COLUMN ci_method VARCHAR;

-- The history now shows each value's interval and the run's suite.
CREATE OR REPLACE VIEW metric_history AS
SELECT r.started_at, r.run_id, r.model, r.scenario, r.model_fingerprint, r.spec_hash,
       m.category, m.metric, m.perturbation, m.group_name, m.value, m.n, m.lower_is_better,
       m.ci_low, m.ci_high, m.ci_method, r.suite, m.headline
FROM runs r JOIN current_metrics m USING (run_id)
WHERE r.status = 'succeeded';
