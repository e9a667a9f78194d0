-- helmflow warehouse, schema version 1. Migrations are applied in order and never edited.

CREATE TABLE runs (
    run_id              VARCHAR PRIMARY KEY,
    suite               VARCHAR,
    scenario            VARCHAR NOT NULL,
    spec_hash           VARCHAR NOT NULL,
    spec_json           VARCHAR NOT NULL,
    model               VARCHAR NOT NULL,
    model_fingerprint   VARCHAR,
    model_json          VARCHAR NOT NULL,
    seed                INTEGER NOT NULL,
    max_instances       INTEGER,
    adapter_json        VARCHAR NOT NULL,
    data_source         VARCHAR,
    dataset_fingerprint VARCHAR,
    num_instances       INTEGER,
    package_versions    VARCHAR,
    device              VARCHAR,
    dtype               VARCHAR,
    batch_size          INTEGER,
    num_threads         INTEGER,
    flow_run_id         VARCHAR,
    -- running | succeeded | validation_failed | failed
    status              VARCHAR NOT NULL,
    error               VARCHAR,
    pid                 INTEGER,
    host                VARCHAR,
    started_at          TIMESTAMP NOT NULL,
    finished_at         TIMESTAMP,
    wall_seconds        DOUBLE
);

CREATE TABLE instances (
    run_id          VARCHAR NOT NULL,
    instance_id     VARCHAR NOT NULL,
    split           VARCHAR NOT NULL,
    group_name      VARCHAR,
    input           VARCHAR NOT NULL,
    choices         VARCHAR[],
    gold_index      INTEGER,
    reference_texts VARCHAR[],
    PRIMARY KEY (run_id, instance_id)
);

CREATE TABLE predictions (
    run_id          VARCHAR NOT NULL,
    request_id      VARCHAR NOT NULL,
    instance_id     VARCHAR NOT NULL,
    perturbation    VARCHAR NOT NULL,
    kind            VARCHAR NOT NULL,
    prompt          VARCHAR NOT NULL,
    completion      VARCHAR,
    choice_logprobs DOUBLE[],
    predicted_index INTEGER,
    confidence      DOUBLE,
    prompt_tokens   INTEGER,
    output_tokens   INTEGER,
    latency_s       DOUBLE,
    batch_size      INTEGER,
    error           VARCHAR,
    PRIMARY KEY (run_id, request_id)
);

CREATE TABLE instance_stats (
    run_id       VARCHAR NOT NULL,
    instance_id  VARCHAR NOT NULL,
    perturbation VARCHAR NOT NULL,
    category     VARCHAR NOT NULL,
    metric       VARCHAR NOT NULL,
    value        DOUBLE
);

CREATE TABLE metrics (
    run_id          VARCHAR NOT NULL,
    metrics_version INTEGER NOT NULL,
    category        VARCHAR NOT NULL,
    metric          VARCHAR NOT NULL,
    perturbation    VARCHAR NOT NULL,
    group_name      VARCHAR NOT NULL,
    value           DOUBLE,
    n               INTEGER NOT NULL,
    lower_is_better BOOLEAN NOT NULL,
    headline        BOOLEAN NOT NULL
);

CREATE TABLE validations (
    run_id           VARCHAR NOT NULL,
    stage            VARCHAR NOT NULL,
    expectation      VARCHAR NOT NULL,
    kwargs           VARCHAR NOT NULL,
    success          BOOLEAN NOT NULL,
    element_count    INTEGER,
    unexpected_count INTEGER,
    unexpected_ids   VARCHAR[]
);
