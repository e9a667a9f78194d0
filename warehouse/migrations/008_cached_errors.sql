-- Schema version 8: a cached answer keeps its error. A chat model's answer that names no option letter
-- is an error, scored as no answer; without the error, the same answer from the cache would be scored
-- as the first option. Older rows keep nulls (they were cached without one).
ALTER TABLE inference_cache ADD COLUMN error VARCHAR;
