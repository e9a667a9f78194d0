-- Schema version 11: what fitting a prompt into the model's context window did (tasks/fit_context.py, HELM's
-- RequestState fields): the exemplars the prompt kept, and whether the prompt was cut. Null for a request
-- whose model's window helmflow does not know (an OpenAI-compatible server), and for runs made before.
ALTER TABLE predictions ADD COLUMN num_train_instances INTEGER;
ALTER TABLE predictions ADD COLUMN prompt_truncated BOOLEAN;
