-- Schema version 2: what the seven-category metrics need to record with a run.

-- Toxicity scores mean nothing without the classifier that gave them: "name==version".
ALTER TABLE runs ADD COLUMN toxicity_classifier VARCHAR;
-- For idealised FLOPs (2 · parameters · tokens).
ALTER TABLE runs ADD COLUMN num_parameters BIGINT;
