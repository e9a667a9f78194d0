"""Bad input stops with a short error naming the file, field or row, and the warehouse is unchanged."""

import json
from pathlib import Path

import pytest

from helmflow.flows.cli import main
from helmflow.specs.library import LIBRARY
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
        f"error: unknown model 'gpt-9': no gpt-9.yaml in {LIBRARY / 'models'} (known: smollm2-135m-instruct, "
        "smollm2-135m-instruct-chat; "
        "HELMFLOW_SPEC_PATH adds folders, each holding scenarios/, models/ and suites/); "
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
        '"ignore_row_if": "either_value_is_missing", "row_condition": "n_choices > 0"} failed on 1 row(s): '
        f"test-1 ({tmp_path / 'scenarios' / 'd.jsonl'} row 2)"
    )
    assert snapshot(warehouse) == before


def test_an_exemplar_gold_index_out_of_range(tmp_path: Path, warehouse: Path, capsys: pytest.CaptureFixture) -> None:
    """An exemplar's answer is in every prompt ("Answer: F" for option 5 of 2): it is checked like an instance."""
    folder = tmp_path / "scenarios"
    write(folder / "d.jsonl", json.dumps({"q": "fine", "opts": ["a", "b"], "gold": 1}))
    write(
        folder / "dev.jsonl", "\n".join(json.dumps({"q": f"ex{n}", "opts": ["a", "b"], "gold": n * 5}) for n in (0, 1))
    )
    spec_text = (
        "name: local\nsource:\n  offline:\n    files: {test: d.jsonl, dev: dev.jsonl}\n"
        "fields: {input: q, choices: opts, answer: gold}\nadapter: {num_train: 2, fewshot_split: dev}\n"
    )
    spec = write(folder / "local.yaml", spec_text)
    code, err = run(warehouse, capsys, str(spec))
    assert code == 2
    assert err.endswith(f"failed on 1 row(s): fewshot:dev-1 ({folder / 'dev.jsonl'} row 2)"), err


def test_multiple_choice_without_answers(tmp_path: Path, warehouse: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "scenarios"
    write(folder / "d.jsonl", json.dumps({"q": "fine", "opts": ["a", "b"]}))
    spec = write(folder / "local.yaml", "name: local\nsource: {offline: {files: {test: d.jsonl}}}\n"
                 "fields: {input: q, choices: opts}\n")  # fmt: skip
    code, err = run(warehouse, capsys, str(spec))
    assert code == 2
    assert err.endswith(
        'instances: expect_column_values_to_not_be_null {"column": "gold_index", "condition_parser": "pandas", '
        f'"row_condition": "n_choices > 0"}} failed on 1 row(s): test-0 ({folder / "d.jsonl"} row 1)'
    ), err


# -- found before the model loads (and before Prefect starts): exit 2, exact message, nothing written --

ROWS_OK = [{"q": "fine", "opts": ["a", "b"], "gold": 1}]


def bad_run(tmp_path: Path, warehouse: Path, capsys: pytest.CaptureFixture, rows: list, spec_text: str) -> str:
    folder = tmp_path / "scenarios"
    write(folder / "d.jsonl", "\n".join(json.dumps(r) for r in rows))
    spec = write(folder / "bad.yaml", spec_text)
    before = snapshot(warehouse)
    code, err = run(warehouse, capsys, str(spec))
    assert code == 2
    assert snapshot(warehouse) == before  # no failed run row either
    return err.replace(str(folder), "<dir>")


def test_a_row_with_no_options(tmp_path: Path, warehouse: Path, capsys: pytest.CaptureFixture) -> None:
    rows = [*ROWS_OK, {"q": "broken", "opts": [], "gold": 0}]
    err = bad_run(tmp_path, warehouse, capsys, rows, SCENARIO.format(file="d.jsonl"))
    assert err == "error: <dir>/d.jsonl row 2: fields.choices: no options"


def test_more_options_than_letters(tmp_path: Path, warehouse: Path, capsys: pytest.CaptureFixture) -> None:
    rows = [*ROWS_OK, {"q": "many", "opts": [f"o{k}" for k in range(27)], "gold": 26}]
    err = bad_run(tmp_path, warehouse, capsys, rows, SCENARIO.format(file="d.jsonl"))
    assert err == (
        "error: <dir>/d.jsonl row 2: 27 options, but multiple_choice_joint letters them A to Z (26 at most); "
        "score them with adapter.method multiple_choice_separate"
    )


def test_a_null_input(tmp_path: Path, warehouse: Path, capsys: pytest.CaptureFixture) -> None:
    rows = [*ROWS_OK, {"q": None, "opts": ["a", "b"], "gold": 0}]
    err = bad_run(tmp_path, warehouse, capsys, rows, SCENARIO.format(file="d.jsonl"))
    assert err == "error: <dir>/d.jsonl row 2: fields.input: column 'q' is null"


def test_duplicate_ids_name_both_rows(tmp_path: Path, warehouse: Path, capsys: pytest.CaptureFixture) -> None:
    rows = [{**ROWS_OK[0], "id": "q1"}, {**ROWS_OK[0], "id": "q2"}, {**ROWS_OK[0], "id": "q1"}]
    spec = SCENARIO.format(file="d.jsonl").replace("fields: {", "fields: {id: id, ")
    err = bad_run(tmp_path, warehouse, capsys, rows, spec)
    assert err == "error: duplicate instance id 'q1': <dir>/d.jsonl row 1 and <dir>/d.jsonl row 3"


def test_an_empty_file(tmp_path: Path, warehouse: Path, capsys: pytest.CaptureFixture) -> None:
    err = bad_run(tmp_path, warehouse, capsys, [], SCENARIO.format(file="d.jsonl"))
    assert err == "error: <dir>/d.jsonl: no rows"


def test_a_misspelt_column_in_a_template(tmp_path: Path, warehouse: Path, capsys: pytest.CaptureFixture) -> None:
    spec = SCENARIO.format(file="d.jsonl").replace("input: q,", 'input: "{{ qestion }}",')
    err = bad_run(tmp_path, warehouse, capsys, ROWS_OK, spec)
    assert err == (
        "error: <dir>/d.jsonl row 1: fields.input: 'qestion' is undefined (the row has: q, opts, gold, source_file)"
    )


def test_a_data_path_outside_the_allowed_folders(
    tmp_path: Path, warehouse: Path, capsys: pytest.CaptureFixture
) -> None:
    spec = SCENARIO.format(file="../../../../../../../../etc/hostname")
    err = bad_run(tmp_path, warehouse, capsys, ROWS_OK, spec)
    assert err.startswith(
        "error: data file <dir>/../../../../../../../../etc/hostname (which resolves to /etc/hostname)"
    )
    assert err.endswith("add its folder to HELMFLOW_DATA_PATH to allow it")


def test_a_huge_max_instances(tmp_path: Path, warehouse: Path, capsys: pytest.CaptureFixture) -> None:
    spec = SCENARIO.format(file="d.jsonl") + "max_instances: 99999999999999999999999\n"
    err = bad_run(tmp_path, warehouse, capsys, ROWS_OK, spec)
    assert err == ("error: <dir>/bad.yaml:6: field 'max_instances': Input should be less than or equal to 10000000")


def test_a_negative_max_instances_flag(warehouse: Path, capsys: pytest.CaptureFixture) -> None:
    before = snapshot(warehouse)
    with pytest.raises(SystemExit) as exit_:
        main(["--db", str(warehouse), "run", "mmlu", "--max-instances", "-3"])
    assert exit_.value.code == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(
            "helmflow run: error: argument --max-instances: -3 is out of range: the number of instances is between 1 "
            "and 10000000"
        )
    )
    assert snapshot(warehouse) == before


def test_a_warehouse_path_that_is_not_duckdb_is_named_first(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    not_a_warehouse = write(tmp_path / "notes.duckdb", "these are my notes\n")
    code, err = run(not_a_warehouse, capsys, "mmlu")
    assert code == 2
    assert err == (
        f'error: {not_a_warehouse}: cannot open the warehouse: IO Error: The file "{not_a_warehouse}" exists, '
        "but it is not a valid DuckDB database file!"
    )
    assert not_a_warehouse.read_text() == "these are my notes\n"


def test_a_multiple_choice_spec_that_maps_no_options(
    tmp_path: Path, warehouse: Path, capsys: pytest.CaptureFixture
) -> None:
    spec = SCENARIO.format(file="d.jsonl").replace(" choices: opts,", "")
    err = bad_run(tmp_path, warehouse, capsys, ROWS_OK, spec)
    assert err == (
        "error: <dir>/bad.yaml: adapter.method multiple_choice_joint scores options, but fields.choices is not set "
        "(map the options' column, or use method: generation)"
    )


@pytest.mark.model
def test_nan_log_probs_land_as_validation_failed_with_the_rows_named(
    tmp_path: Path, warehouse: Path, capsys: pytest.CaptureFixture
) -> None:
    """Calibration cannot be fitted on NaN confidences: the run still lands, validation_failed, its checks
    naming the requests, instead of failing with scikit-learn's message and no validation rows."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.tiny_models import save_tiny

    folder = save_tiny(tmp_path / "broken", LlamaConfig, LlamaForCausalLM, nan=True)
    model = write(tmp_path / "broken.yaml", f"name: broken\nbackend: hf\npath: {folder}\n")
    rows = [{"q": f"{n} + {n}?", "opts": [str(2 * n), str(n)], "gold": n % 2} for n in range(4)]
    write(tmp_path / "scenarios" / "d.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    spec = write(
        tmp_path / "scenarios" / "local.yaml",
        SCENARIO.format(file="d.jsonl") + "metrics: [accuracy, calibration]\n",
    )
    code, err = run(warehouse, capsys, str(spec), "--model", str(model))
    assert code == 1, err
    with connect(warehouse, read_only=True) as con:
        [(status, error)] = con.execute("select status, error from runs where run_id != 'old'").fetchall()
        assert con.execute("select count(*) from predictions where run_id != 'old'").fetchall() == [(4,)]
        failing = con.execute(
            "select expectation, unexpected_ids from validations where run_id != 'old' and not success order by 1"
        ).fetchall()
    assert status == "validation_failed"
    assert "not scored (ValueError: Input X contains NaN" in error
    # log-probs finite, confidence finite: both fail on every request
    assert [(name, sorted(ids)) for name, ids in failing] == [
        ("expect_column_values_to_be_in_set", ["test-0", "test-1", "test-2", "test-3"])
    ] * 2
