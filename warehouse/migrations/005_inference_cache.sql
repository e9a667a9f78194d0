-- Schema version 5: an inference cache shared by all runs, and what refresh and resume need.

-- One model answer per (model fingerprint, request key). The key hashes everything that decides
-- the answer: the request's kind, prompt, continuations, decoding parameters, dtype and max length.
-- Entries are written batch by batch while a run goes, so a crashed run resumes where it stopped.
CREATE TABLE inference_cache (
    model_fingerprint   VARCHAR NOT NULL,
    request_key         VARCHAR NOT NULL,
    kind                VARCHAR NOT NULL,
    logprobs            DOUBLE[],
    continuation_tokens INTEGER[],
    text                VARCHAR,
    prompt_tokens       INTEGER,
    output_tokens       INTEGER,
    generated_tokens    INTEGER,
    latency_s           DOUBLE,
    batch_size          INTEGER,
    run_id              VARCHAR,
    created_at          TIMESTAMP NOT NULL,
    PRIMARY KEY (model_fingerprint, request_key)
);

-- How many requests went to the model and how many came from the cache.
ALTER TABLE runs ADD COLUMN model_calls INTEGER;
ALTER TABLE runs ADD COLUMN cache_hits INTEGER;
-- The metric code's version: a refresh re-scores runs whose metrics came from older code.
ALTER TABLE runs ADD COLUMN metrics_code_version VARCHAR;
-- The spec file's folder, so that a resumed run finds relative data paths.
ALTER TABLE runs ADD COLUMN spec_dir VARCHAR;
