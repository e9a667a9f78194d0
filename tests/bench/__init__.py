"""Development tools, not installed with helmflow: the benchmarks (`make bench`, `make bench-runner`,
`make bench-concurrency`, `make bench-refresh`, `make bench-lmeval`) and the lm-evaluation-harness comparison.
Run from the repository root: `python -m tests.bench.bench`."""
