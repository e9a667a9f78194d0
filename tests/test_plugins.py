"""Plugins by entry points: a separately installed distribution adds a backend and a metric, and helmflow's
commands use them, while helmflow's own files stay as they were.

The plugin is a real distribution (a pyproject.toml and one module), installed with pip into the test's own
site folder; `helmflow` runs in a subprocess that has that folder on PYTHONPATH, as it would after a
`pip install` of the plugin. The distributions that go wrong are laid out by hand (a .dist-info with its
entry_points.txt, what pip writes), which keeps those tests quick.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from helmflow.specs import registry
from tests.conftest import REPO, write

PLUGIN_PYPROJECT = """[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "helmflow-tally"
version = "0.3.0"

[tool.setuptools]
py-modules = ["helmflow_tally"]

[project.entry-points."helmflow.backends"]
first = "helmflow_tally:BACKEND"

[project.entry-points."helmflow.metrics"]
tally = "helmflow_tally:METRICS"
"""

# A backend that always answers the first choice, with fixed log-probs, and a metric that counts wrong
# answers: no torch, no model, and a value the test knows exactly.
PLUGIN_MODULE = '''"""helmflow-tally: the `first` backend and the `wrong_answers` metric (category `tally`)."""

from helmflow.specs.schema import ModelSpec
from helmflow.tasks.metrics.scoring import MULTIPLE_CHOICE, MetricRecord, Scoring
from helmflow.tasks.models.base import Backend, ModelInfo
from helmflow.tasks.records import Completion, Metric, Request


class First:
    def __init__(self, spec: ModelSpec) -> None:
        self.info = ModelInfo(spec.name, "first", "first@1", "cpu", "none", 4, 1, None)

    def loglikelihood(self, requests: list[Request], progress=None) -> list[Completion]:
        out = [
            Completion(r.id, logprobs=[-0.5 - k for k in range(len(r.continuations))], latency_s=0.01, batch_size=1)
            for r in requests
        ]
        if progress:
            progress(len(out), len(requests))
        return out

    def generate(self, requests: list[Request], progress=None) -> list[Completion]:
        return [Completion(r.id, text="first", generated_tokens=1, latency_s=0.01, batch_size=1) for r in requests]


BACKEND = Backend(load=First, fingerprint=lambda spec: "first@1")


def wrong_answers(scoring: Scoring) -> list[Metric]:
    wrong = [
        p for p in scoring.unperturbed if p.predicted_index != scoring.by_id[p.request.instance_id].gold_index
    ]
    return [Metric("tally", "wrong_answers", float(len(wrong)), len(scoring.unperturbed), True, headline=True)]


METRICS = [
    MetricRecord(
        name="wrong_answers",
        category="tally",
        function=wrong_answers,
        higher_is_better=False,
        display_name="Wrong answers",
        methods=MULTIPLE_CHOICE,
        description="how many instances the model got wrong",
    )
]
'''

GOLDS = [0, 1, 1, 0, 1]  # `first` answers option 0 every time: 3 wrong, exact match 2/5

SCENARIO = """name: tally_quiz
source:
  offline: {files: {test: quiz.jsonl}}
fields: {input: q, choices: opts, answer: gold}
adapter: {method: multiple_choice_separate}
metrics: [exact_match, wrong_answers]
"""


def environment(tmp_path: Path, site: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PYTHONPATH")}
    env.update(
        DO_NOT_TRACK="1",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="90",
        PREFECT_HOME=str(tmp_path / "prefect"),
    )
    if site is not None:
        env["PYTHONPATH"] = str(site)
    return env


def helmflow(tmp_path: Path, site: Path | None, *args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """The installed `helmflow` command, run from tmp_path (never the repository)."""
    script = Path(sys.executable).with_name("helmflow")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "helmflow.flows.cli"]
    return subprocess.run(
        [*command, *args],
        cwd=tmp_path,
        env=environment(tmp_path, site),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def repo_status() -> set[str] | None:
    """`git status --porcelain` of helmflow's checkout, one entry a line (None outside one)."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        return None
    done = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, check=True)
    return set(done.stdout.splitlines())


# What the plugin or its run could leave in the checkout, were they to write there.
TRACES = ("helmflow_tally", "helmflow-tally", "wrong_answers", "first@1", "tally_quiz")


def changed_by_the_test(before: set[str] | None, after: set[str] | None) -> list[str]:
    """The entries of `git status` that differ after the test and are the test's doing.

    Equal status is what a checkout nobody else works in shows. Where people edit the same working tree while
    the test runs, their own changes differ too: an entry counts only when its file is not source a person
    edits (a database, a .dist-info, a build output) or mentions the plugin, its metric or its run.
    """
    if before is None or after is None:
        return []
    edited = (".py", ".md", ".toml", ".yaml", ".yml", ".json", ".sql", ".txt", ".cfg", ".html", ".css", ".js")

    def ours(file: Path) -> bool:
        if file.suffix not in edited:
            return True
        return any(trace in file.read_text(errors="replace") for trace in TRACES)

    found = []
    for entry in sorted(before ^ after):
        path = REPO / entry[3:].strip().strip('"').split(" -> ")[-1]
        files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()] if path.is_dir() else []
        if any(ours(f) for f in files):  # a path gone is someone's removal: the plugin removes nothing
            found.append(entry)
    return found


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """helmflow-tally, built and installed by pip into a site folder of this test's own."""
    root = tmp_path_factory.mktemp("plugin")
    source = root / "helmflow-tally"
    write(source / "pyproject.toml", PLUGIN_PYPROJECT)
    write(source / "helmflow_tally.py", PLUGIN_MODULE)
    site = root / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            source,
        ],
        check=True,
        capture_output=True,
        cwd=root,
        timeout=300,
    )
    assert (site / "helmflow_tally.py").is_file()
    return site


def install_by_hand(site: Path, name: str, entry_points: str, modules: dict[str, str] | None = None) -> Path:
    """A distribution laid out as pip lays it out: its modules, and its .dist-info with entry_points.txt."""
    info = site / f"{name.replace('-', '_')}-0.1.0.dist-info"
    write(info / "METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n")
    write(info / "entry_points.txt", entry_points)
    for module, text in (modules or {}).items():
        write(site / f"{module}.py", text)
    return site


@pytest.mark.slow  # a helmflow run in a subprocess with its own Prefect server (about 25 s): make test-slow
def test_helmflow_run_uses_the_plugin_backend_and_stores_its_metric(plugin_site: Path, tmp_path: Path) -> None:
    before = repo_status()
    rows = [{"q": f"Question {i}?", "opts": ["yes", "no"], "gold": gold} for i, gold in enumerate(GOLDS)]
    write(tmp_path / "quiz.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    scenario = write(tmp_path / "quiz.yaml", SCENARIO)
    model = write(tmp_path / "first.yaml", "name: first-choice\nbackend: first\n")
    db = tmp_path / "w.duckdb"

    done = helmflow(tmp_path, plugin_site, "--db", str(db), "run", str(scenario), "--model", str(model))

    assert done.returncode == 0, done.stderr[-3000:]
    with duckdb.connect(str(db), read_only=True) as con:
        [(run_id, status, fingerprint)] = con.execute("select run_id, status, model_fingerprint from runs").fetchall()
        stored = con.execute(
            "select category, metric, value, n, lower_is_better, headline from metrics"
            " where run_id = ? and group_name = '' and perturbation = '' order by category, metric",
            [run_id],
        ).fetchall()
    assert (status, fingerprint) == ("succeeded", "first@1")
    # Only what the spec asked for: exact_match (also the main metric) and the plugin's metric.
    assert stored == [("accuracy", "exact_match", 0.4, 5, False, True), ("tally", "wrong_answers", 3.0, 5, True, True)]
    assert changed_by_the_test(before, repo_status()) == []  # the plugin wrote nothing into helmflow's checkout
    assert not [p for p in REPO.glob("**/helmflow_tally*") if ".venv" not in p.parts]


def test_specs_list_and_schema_show_the_plugins_names(plugin_site: Path, tmp_path: Path) -> None:
    listed = helmflow(tmp_path, plugin_site, "specs", "list")
    assert listed.returncode == 0, listed.stderr[-2000:]
    rows = [[cell.strip() for cell in line.strip("│ ").split("│")] for line in listed.stdout.splitlines()]
    mine = {(row[0], row[1]): row[-1] for row in rows if len(row) > 2 and row[1] in ("first", "wrong_answers")}
    assert mine == {
        ("backend", "first"): "model backend (plugin: helmflow-tally 0.3.0)",
        ("metric", "wrong_answers"): "tally: Wrong answers; lower is better (plugin: helmflow-tally 0.3.0)",
    }

    model_schema = json.loads(helmflow(tmp_path, plugin_site, "specs", "schema", "model").stdout)
    assert model_schema["properties"]["backend"]["enum"] == ["embedded", "hf", "openai", "first"]
    scenario_schema = helmflow(tmp_path, plugin_site, "specs", "schema", "scenario").stdout
    metrics = json.loads(scenario_schema)["$defs"]["ScenarioSpec"]["properties"]["metrics"]["items"]["enum"]
    with registry.own_only():
        own = list(registry.categories())  # HELM's seven, then helmflow's own others (summarization)
    assert metrics[: len(own) + 1] == [*own, "tally"]  # categories first, a plugin's after helmflow's
    assert metrics[-1] == "wrong_answers"

    # Without the plugin on the path, none of its names: the published schema is helmflow's own.
    plain = json.loads(helmflow(tmp_path, None, "specs", "schema", "model").stdout)
    assert plain["properties"]["backend"]["enum"] == ["embedded", "hf", "openai"]


def test_a_plugin_that_does_not_import_is_one_line_naming_it(tmp_path: Path) -> None:
    site = install_by_hand(
        tmp_path / "site", "helmflow-broken", "[helmflow.metrics]\nbroken = helmflow_broken:METRICS\n",
        {"helmflow_broken": "import a_module_nobody_has\n"},
    )  # fmt: skip
    scenario = write(tmp_path / "s.yaml", "name: s\nsource: {offline: {files: {test: d.jsonl}}}\n")
    done = helmflow(tmp_path, site, "specs", "validate", str(scenario))
    assert (done.returncode, done.stderr) == (
        2,
        "error: entry point 'broken = helmflow_broken:METRICS' (group helmflow.metrics) of helmflow-broken 0.1.0 "
        "failed to load: ModuleNotFoundError: No module named 'a_module_nobody_has'\n",
    )


@pytest.mark.slow  # a helmflow run in a subprocess (about 15 s): make test-slow
def test_a_plugin_backend_that_does_not_import_fails_only_the_run_that_uses_it(tmp_path: Path) -> None:
    site = install_by_hand(tmp_path / "site", "helmflow-gone", "[helmflow.backends]\ngone = helmflow_gone:BACKEND\n")
    write(tmp_path / "d.jsonl", json.dumps({"q": "Q?", "opts": ["a", "b"], "gold": 0}) + "\n")
    scenario = write(tmp_path / "s.yaml", "name: s\nsource: {offline: {files: {test: d.jsonl}}}\n"
                     "fields: {input: q, choices: opts, answer: gold}\n")  # fmt: skip
    model = write(tmp_path / "gone.yaml", "name: gone\nbackend: gone\n")
    assert helmflow(tmp_path, site, "specs", "validate", str(model)).returncode == 0  # the name alone is known
    done = helmflow(tmp_path, site, "--db", str(tmp_path / "w.duckdb"), "run", str(scenario), "--model", str(model))
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        "error: entry point 'gone = helmflow_gone:BACKEND' (group helmflow.backends) of helmflow-gone 0.1.0 "
        "failed to load: ModuleNotFoundError: No module named 'helmflow_gone'"
    )


def test_a_plugin_metric_named_like_a_builtin_one_is_refused(tmp_path: Path) -> None:
    module = PLUGIN_MODULE.replace('name="wrong_answers"', 'name="exact_match"')
    site = install_by_hand(
        tmp_path / "site", "helmflow-clash", "[helmflow.metrics]\nclash = helmflow_clash:METRICS\n",
        {"helmflow_clash": module},
    )  # fmt: skip
    scenario = write(tmp_path / "s.yaml", "name: s\nsource: {offline: {files: {test: d.jsonl}}}\n")
    done = helmflow(tmp_path, site, "specs", "validate", str(scenario))
    assert (done.returncode, done.stderr) == (
        2,
        "error: entry point 'clash = helmflow_clash:METRICS' (group helmflow.metrics) of helmflow-clash 0.1.0: "
        "metric 'exact_match' clashes with helmflow's own metric 'exact_match' (category accuracy); "
        "a plugin's metric needs a name of its own\n",
    )
