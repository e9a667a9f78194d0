-- Schema version 12: a generation's raw text beside the answer read out of it (a scenario's
-- answer_extraction: tasks/extract.py, lm-evaluation-harness's filter steps). `completion` stays what was
-- scored; `raw_completion` holds what the model wrote, null where the scenario extracts nothing.
ALTER TABLE predictions ADD COLUMN raw_completion VARCHAR;
