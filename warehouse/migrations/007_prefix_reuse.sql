-- Schema version 7: what reusing shared prompt prefixes saved (issue 14). Per request, the prompt tokens
-- its scoring needed (every sequence whole, as without reuse) and the tokens the model computed for it
-- (its own, plus its share of a prefix computed once for its group). Older rows keep nulls.
ALTER TABLE predictions ADD COLUMN prompt_tokens_requested INTEGER;
ALTER TABLE predictions ADD COLUMN prompt_tokens_computed DOUBLE;
-- A cached answer keeps how it was computed, as it keeps its latency.
ALTER TABLE inference_cache ADD COLUMN prompt_tokens_requested INTEGER;
ALTER TABLE inference_cache ADD COLUMN prompt_tokens_computed DOUBLE;
