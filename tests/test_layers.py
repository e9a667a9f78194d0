"""The layout holds: one top-level name in the wheel, layers that import only downwards, SQL only in warehouse/."""

from __future__ import annotations

import ast
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

# One worker runs the whole module (its fixtures are module-scoped).
pytestmark = pytest.mark.xdist_group("wheel")

LAYERS = ("flows", "tasks", "specs", "warehouse")
# Which helmflow packages each layer may import (a prefix match on the module name).
ALLOWED = {
    "specs": ("helmflow.specs",),
    "tasks": ("helmflow.tasks", "helmflow.specs"),
    "warehouse": ("helmflow.warehouse", "helmflow.tasks.records"),
    "flows": ("helmflow.",),
}


def imported_modules(path: Path) -> set[str]:
    """Every helmflow module a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {m for m in found if m.startswith("helmflow")}


def test_each_layer_imports_only_what_it_may() -> None:
    wrong = []
    for layer in LAYERS:
        for path in sorted((REPO / layer).rglob("*.py")):
            for module in sorted(imported_modules(path)):
                if not module.startswith(ALLOWED[layer]):
                    # `from helmflow.tasks import records` names the module as package + name
                    if module == "helmflow.tasks" and layer == "warehouse":
                        continue
                    wrong.append(f"{path.relative_to(REPO)} imports {module}")
    assert wrong == []


def test_records_import_nothing_of_ours() -> None:
    assert imported_modules(REPO / "tasks" / "records.py") == set()


def test_only_the_warehouse_runs_sql() -> None:
    offenders = [
        f"{path.relative_to(REPO)}:{number}"
        for layer in ("flows", "tasks", "specs")
        for path in sorted((REPO / layer).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "execute(" in line
    ]
    assert offenders == []


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
    )
    [built] = out.glob("helmflow-*.whl")
    return built


def test_the_wheel_has_one_top_level_name(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"helmflow", "helmflow-0.1.0.dist-info"}
    assert "helmflow/warehouse/migrations/001_initial.sql" in names
    assert "helmflow/specs/scenarios/mmlu.yaml" in names
    # The benchmarks and the lm-eval comparison are development tools (tests/bench/), not installed.
    assert [n for n in names if n.startswith(("helmflow/flows/bench", "helmflow/flows/compare_lm_eval"))] == [
        "helmflow/flows/benchmark.py"
    ]
    assert not any(n.startswith("tests/") for n in names)
    entry_points = zipfile.ZipFile(wheel).read("helmflow-0.1.0.dist-info/entry_points.txt").decode()
    assert "helmflow = helmflow.flows.cli:console_main" in entry_points


def test_a_fresh_venv_with_only_helmflow_has_no_generic_top_level_packages(wheel: Path, tmp_path: Path) -> None:
    venv.create(tmp_path / "venv", with_pip=False)
    python = tmp_path / "venv" / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    zipfile.ZipFile(wheel).extractall(site)  # what pip install --no-deps does for a pure wheel
    probe = "import importlib.util as u; print([n for n in ('flows', 'tasks', 'specs', 'warehouse') if u.find_spec(n)])"
    out = subprocess.run([python, "-c", probe], cwd=tmp_path, check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"
    failed = subprocess.run([python, "-c", "import flows"], cwd=tmp_path, capture_output=True, text=True)
    assert failed.returncode == 1 and "No module named 'flows'" in failed.stderr
    found = subprocess.run(
        [python, "-c", "import helmflow.tasks.records as r; print(r.LETTERS[:4])"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert found.stdout.strip() == "ABCD"


def test_the_published_schemas_are_current_and_every_shipped_spec_names_its_own() -> None:
    from helmflow.specs.json_schema import SCHEMAS, modeline, schema_text

    for kind, folder in (("scenario", "scenarios"), ("model", "models"), ("suite", "suites")):
        assert (SCHEMAS / f"{kind}.schema.json").read_text() == schema_text(kind), (
            "run python -m helmflow.specs.json_schema"
        )
        for spec in sorted((REPO / "specs" / folder).glob("*.yaml")):
            assert spec.read_text().splitlines()[0] == modeline(kind), spec


def test_specs_schema_prints_json_schema(capsys: pytest.CaptureFixture) -> None:
    import json

    from helmflow.flows.cli import main

    assert main(["specs", "schema", "model"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "helmflow model spec"
    assert schema["properties"]["backend"]["enum"] == ["embedded", "hf", "openai"]
    assert "name" in schema["required"]
