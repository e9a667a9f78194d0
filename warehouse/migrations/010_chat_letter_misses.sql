-- Schema version 10: chat answers are read for their option letter by one rule that now also takes
-- "The answer is D." and "Answer: D" (tasks/models/openai.py chat_letter). Answers cached as a miss
-- under the old rule are dropped, so the next run reads them again instead of reusing the miss.
DELETE FROM inference_cache
WHERE model_fingerprint LIKE '%+mc-by-letter' AND kind = 'multiple_choice' AND error LIKE 'no option letter%';
