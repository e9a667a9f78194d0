-- Schema version 15: memorisation probes (`helmflow contamination --probes`; tasks/contamination_probes.py):
-- what a run's own model says about having seen each instance's text, with no corpus, as the category
-- 'contamination'. Tables of their own, not instance_stats and metrics: a probe runs only when asked, after
-- the run, and its values must outlive a re-scoring (which writes the run's metrics anew as a new version).

-- The run record: one row per (run, probe), replaced when that probe runs again on the run.
CREATE TABLE contamination_probe_runs (
    run_id            VARCHAR NOT NULL,
    probe             VARCHAR NOT NULL,  -- ngram_completion | min_k_pp
    settings          VARCHAR NOT NULL,  -- JSON: n and starts, or k and the perturbations with their seed
    model             VARCHAR NOT NULL,
    model_fingerprint VARCHAR NOT NULL,
    device            VARCHAR NOT NULL,
    dtype             VARCHAR NOT NULL,
    instances         INTEGER NOT NULL,  -- probed
    scored            INTEGER NOT NULL,  -- with a value of the probe's main metric (a text too short has none)
    truncated         INTEGER NOT NULL,  -- longer than the model's max_length: probed on their first tokens
    -- The forward passes the probe reads, their tokens and wall seconds. The pass over the stored texts is
    -- read by both probes and counted in each row: a row is what its probe costs when run alone.
    passes            INTEGER NOT NULL,
    tokens            BIGINT NOT NULL,
    seconds           DOUBLE NOT NULL,
    finished_at       TIMESTAMP NOT NULL,
    PRIMARY KEY (run_id, probe)
);

-- Per instance, shaped as instance_stats is (with the probe), so that the two union in a query.
CREATE TABLE contamination_probe_stats (
    run_id       VARCHAR NOT NULL,
    probe        VARCHAR NOT NULL,
    instance_id  VARCHAR NOT NULL,
    perturbation VARCHAR NOT NULL,  -- '': the stored input; else that input after this perturbation
    category     VARCHAR NOT NULL,  -- contamination
    metric       VARCHAR NOT NULL,  -- ngram_accuracy | min_k_pp | min_k | min_k_pp_drop (higher: more likely seen)
    value        DOUBLE,            -- null: the text is too short for the metric
    PRIMARY KEY (run_id, instance_id, metric, perturbation)
);

-- Per run: each probe metric's mean over the instances that have a value.
CREATE VIEW contamination_probe_metrics AS
SELECT run_id, probe, category, metric, perturbation, avg(value) AS value, count(value) AS n
FROM contamination_probe_stats
GROUP BY ALL;
