-- Schema version 3: what separate and calibrated multiple-choice scoring need to be recomputed later.

-- Tokens in each choice's continuation (per-token normalisation, lm-eval's acc_norm by tokens).
ALTER TABLE predictions ADD COLUMN choice_token_counts INTEGER[];
-- multiple_choice_calibrated: each choice's log-likelihood after the bare answer prompt.
ALTER TABLE predictions ADD COLUMN choice_baseline_logprobs DOUBLE[];
