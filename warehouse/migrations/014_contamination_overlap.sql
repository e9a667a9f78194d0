-- Schema version 14: corpus overlap checks (`helmflow contamination`; tasks/contamination_overlap.py): which of
-- a run's instances share a word n-gram with a training corpus (GPT-3's rule, lm-eval's normalisation).

-- One check: a run against a corpus (its resolved paths), with the n-gram length, the instance fields read and
-- the normalisation. `check_id` hashes those, so running the same check again resumes it.
CREATE TABLE contamination_checks (
    check_id       VARCHAR PRIMARY KEY,
    run_id         VARCHAR NOT NULL,
    corpus         VARCHAR NOT NULL,  -- the corpus paths as given, resolved, joined by newlines
    ngram_n        INTEGER NOT NULL,
    fields         VARCHAR NOT NULL,  -- input | input+references
    normalisation  VARCHAR NOT NULL,
    text_field     VARCHAR NOT NULL,  -- the text column of Parquet and JSONL rows
    test_ngrams    INTEGER NOT NULL,  -- distinct n-grams of the run's instances
    -- scanning (files are still to do, or the command stopped) | finished
    status         VARCHAR NOT NULL,
    started_at     TIMESTAMP NOT NULL,
    finished_at    TIMESTAMP,
    files          INTEGER,
    bytes          BIGINT,
    dirty          INTEGER,
    clean          INTEGER,
    too_short      INTEGER            -- instances with fewer than ngram_n words: they cannot overlap (counted clean)
);

-- Progress: each corpus file once scanned, and the size and time it had then (a changed file is scanned again).
CREATE TABLE contamination_files (
    check_id     VARCHAR NOT NULL,
    path         VARCHAR NOT NULL,
    kind         VARCHAR NOT NULL,    -- parquet | jsonl | text
    bytes        BIGINT NOT NULL,
    modified     DOUBLE NOT NULL,     -- the file's mtime, seconds since the epoch
    matched      INTEGER NOT NULL,    -- distinct test n-grams found in it
    seconds      DOUBLE NOT NULL,
    scanned_at   TIMESTAMP NOT NULL,
    PRIMARY KEY (check_id, path)
);

-- The test n-grams each file holds (few: only the instances' n-grams, never the corpus's).
CREATE TABLE contamination_matches (
    check_id VARCHAR NOT NULL,
    path     VARCHAR NOT NULL,
    ngram    VARCHAR NOT NULL
);

-- Per instance of the run: dirty (an n-gram of it is in the corpus) or clean, once the check finished.
CREATE TABLE contamination_instances (
    check_id      VARCHAR NOT NULL,
    run_id        VARCHAR NOT NULL,
    instance_id   VARCHAR NOT NULL,
    dirty         BOOLEAN NOT NULL,
    ngrams        INTEGER NOT NULL,   -- the instance's distinct n-grams
    matched       INTEGER NOT NULL,   -- of which in the corpus
    example       VARCHAR,            -- one matched n-gram (the first in sort order), to look for in the corpus
    PRIMARY KEY (check_id, instance_id)
);
