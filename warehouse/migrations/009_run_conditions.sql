-- Schema version 9: what a run's runtimes depend on besides the model. Device, threads and batch size
-- were recorded already; the machine's load was not, and two runs of the same weights measured under
-- different load looked like a real efficiency difference. The 1-minute load average per core, read
-- when inference ended (flows/benchmark.py).
ALTER TABLE runs ADD COLUMN load_per_core DOUBLE;
