"""Bad input stops with a short error naming the file, field or row, and the warehouse is unchanged."""

import json
from pathlib import Path

import pytest

from helmflow.flows.cli import main
from helmflow.warehouse import runs as writer
from helmflow.warehouse.db import connect
from helmflow.warehouse.store import Warehouse
from tests.conftest import write

SCENARIO = """name: local
source:
  offline:
    files: {{test: {file}}}
fields: {{input: q, choices: opts, answer: gold}}
"""


def snapshot(db: Path) -> dict[str, list]:
    with connect(db, read_only=True) as con:
        return {t: con.execute(f"select * from {t} order by all").fetchall() for t in ("runs", *writer.RESULT_TABLES)}


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    db = tmp_path / "w.duckdb"
    Warehouse(db).start_run(
        {
            "run_id": "old",
            "scenario": "s",
            "spec_hash": "h",
            "spec_json": "{}",
            "model": "m",
            "model_json": "{}",
            "seed": 0,
            "adapter_json": "{}",
        },
    )
    Warehouse(db).fail_run("old", "earlier")
    return db


def run(db: Path, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["--db", str(db), "run", *args])
    return code, capsys.readouterr().err.strip()


def test_misspelt_field(tmp_path: Path, warehouse: Path, capsys: pytest.CaptureFixture) -> None:
    before = snapshot(warehouse)
    spec = write(tmp_path / "scenarios" / "local.yaml", SCENARIO.format(file="d.jsonl").replace("fields:", "feilds:"))
    code, err = run(warehouse, capsys, str(spec))
    assert code == 2
    assert f"{spec}:5: unknown field 'feilds'; did you mean 'fields'?" in err
    assert snapshot(warehouse) == before


def test_missing_data_file(tmp_path: Path, warehouse: Path, capsys: pytest.CaptureFixture) -> None:
    before = snapshot(warehouse)
    spec = write(tmp_path / "scenarios" / "local.yaml", SCENARIO.format(file="missing.jsonl"))
    code, err = run(warehouse, capsys, str(spec))
    assert (code, err) == (2, f"error: data file not found: {tmp_path / 'scenarios' / 'missing.jsonl'}")
    assert snapshot(warehouse) == before


def test_unknown_model(warehouse: Path, capsys: pytest.CaptureFixture) -> None:
    before = snapshot(warehouse)
    code, err = run(warehouse, capsys, "mmlu", "--model", "gpt-9")
    assert code == 2
    assert err == (
        "error: unknown model 'gpt-9': no file models/gpt-9.yaml (known: smollm2-135m-instruct); "
        "or use hf:<hub id or local directory>"
    )
    assert snapshot(warehouse) == before


def test_gold_index_out_of_range(tmp_path: Path, warehouse: Path, capsys: pytest.CaptureFixture) -> None:
    before = snapshot(warehouse)
    rows = [{"q": "fine", "opts": ["a", "b"], "gold": 1}, {"q": "broken", "opts": ["a", "b"], "gold": 2}]
    write(tmp_path / "scenarios" / "d.jsonl", "\n".join(json.dumps(r) for r in rows))
    spec = write(tmp_path / "scenarios" / "local.yaml", SCENARIO.format(file="d.jsonl"))
    code, err = run(warehouse, capsys, str(spec))
    assert code == 2
    # (Prefect may also log to the stderr it captured earlier in the session; the CLI's message is the point.)
    assert err.endswith(
        "error: validation failed:\n  instances: expect_column_pair_values_a_to_be_greater_than_b "
        '{"column_A": "n_choices", "column_B": "gold_index", "condition_parser": "pandas", '
        '"row_condition": "n_choices > 0"} failed on 1 row(s): '
        f"test-1 ({tmp_path / 'scenarios' / 'd.jsonl'} row 2)"
    )
    assert snapshot(warehouse) == before
