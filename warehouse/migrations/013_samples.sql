-- Schema version 13: sampled completions (a scenario's adapter.num_samples; tasks/samples.py), one row per
-- instance and sample, beside the run's greedy predictions. A table of their own, so every reader of
-- `predictions` keeps reading the greedy pass; maj@k and pass@k are scored from these rows. The prompt is the
-- instance's unperturbed prediction's (same instance_id, perturbation ''), not stored again per sample.
CREATE TABLE samples (
    run_id           VARCHAR NOT NULL,
    request_id       VARCHAR NOT NULL,
    instance_id      VARCHAR NOT NULL,
    sample           INTEGER NOT NULL,
    seed             BIGINT,
    temperature      DOUBLE NOT NULL,
    top_p            DOUBLE NOT NULL,
    completion       VARCHAR,
    raw_completion   VARCHAR,
    output_logprobs  DOUBLE[],
    confidence       DOUBLE,
    prompt_tokens    INTEGER,
    output_tokens    INTEGER,
    generated_tokens INTEGER,
    latency_s        DOUBLE,
    batch_size       INTEGER,
    error            VARCHAR,
    PRIMARY KEY (run_id, request_id)
);
