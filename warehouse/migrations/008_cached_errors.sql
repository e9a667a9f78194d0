-- Schema version 8: a cached answer keeps its error. A chat model's answer that names no option letter
-- is an error, scored as no answer; without the error, the same answer from the cache would be scored
-- as the first option.
ALTER TABLE inference_cache ADD COLUMN error VARCHAR;
-- Such answers cached before this version have no error to keep (every option at -100, the letter miss
-- of tasks/models/openai.py): they are dropped, so the next run asks the model again.
DELETE FROM inference_cache
WHERE model_fingerprint LIKE '%+mc-by-letter' AND kind = 'multiple_choice' AND list_max(logprobs) = -100.0;
