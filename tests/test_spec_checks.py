"""`specs validate` maps a scenario's first rows when its data is here, says so when it is not, and
refuses numbers the warehouse cannot store, naming the file and the line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helmflow.flows.cli import main
from tests.conftest import write

ROWS = [{"question": f"Is {n} even?", "label": n % 2 == 0} for n in range(5)]


def data_file(folder: Path, rows: list[dict] = ROWS) -> Path:
    return write(folder / "d.jsonl", "".join(json.dumps(r) + "\n" for r in rows)).resolve()


def scenario(folder: Path, name: str, fields: str, source: str = "{offline: {files: {test: d.jsonl}}}") -> Path:
    return write(folder / f"{name}.yaml", f"name: {name}\nsource: {source}\nfields:\n{fields}")


YES_NO = "  choices: \"['no', 'yes']\"\n  answer: label\n  answer_type: label\n  labels: {'false': 0, 'true': 1}\n"


def validate(path: Path, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    status = main(["specs", "validate", str(path)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_a_good_scenario_says_which_rows_it_rendered(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data_file(tmp_path)
    spec = scenario(tmp_path, "good", '  input: "{{ question }}"\n' + YES_NO)
    assert validate(spec, capsys) == (0, f"ok  {spec} (scenario 'good'; rendered the first 3 rows of test)\n", "")


def test_a_misspelt_column_in_a_template_fails_validate(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = data_file(tmp_path)
    spec = scenario(tmp_path, "typo", '  input: "Q: {{ questoin }}"\n' + YES_NO)
    status, out, err = validate(spec, capsys)
    assert (status, out) == (2, "")
    assert err == (
        f"{spec}: {data} row 1: fields.input: 'questoin' is undefined (the row has: question, label, source_file)\n"
    )


def test_a_misspelt_column_name_fails_validate(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = data_file(tmp_path)
    spec = scenario(tmp_path, "typo", "  input: question\n" + YES_NO.replace("answer: label", "answer: lable"))
    status, out, err = validate(spec, capsys)
    assert (status, out) == (2, "")
    assert err == (
        f"{spec}: {data} row 1: fields.answer: 'lable' is not a field of the row "
        "(the row has: question, label, source_file)\n"
    )


def test_a_bad_row_among_the_first_three_fails_validate(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = data_file(tmp_path, [*ROWS[:2], {"label": True}, *ROWS[3:]])
    spec = scenario(tmp_path, "gap", "  input: question\n" + YES_NO)
    status, _, err = validate(spec, capsys)
    assert status == 2
    why = "'question' is not a field of the row (the row has: label, source_file)"
    assert err == f"{spec}: {data} row 3: fields.input: {why}\n"


def test_missing_offline_files_are_reported_not_a_bare_ok(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = scenario(tmp_path, "away", "  input: question\n")
    missing = (tmp_path / "d.jsonl").resolve()
    assert validate(spec, capsys) == (
        0,
        f"ok  {spec} (scenario 'away'; data not reachable here: test: data file not found: {missing})\n",
        "",
    )


def test_hub_only_data_is_reported_not_fetched(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = scenario(tmp_path, "remote", "  input: question\n", source="{hub: {path: someone/somewhere}}")
    why = "no offline files for split 'test' (the Hub, someone/somewhere, is not contacted by validate)"
    assert validate(spec, capsys) == (0, f"ok  {spec} (scenario 'remote'; data not reachable here: test: {why})\n", "")


def test_the_fewshot_split_is_checked_too(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data_file(tmp_path)
    source = "{offline: {files: {test: d.jsonl, dev: dev.jsonl}}}"
    spec = write(
        tmp_path / "shots.yaml",
        f"name: shots\nsource: {source}\nfields:\n  input: question\n{YES_NO}"
        "adapter: {num_train: 2, fewshot_split: dev}\n",
    )
    missing = (tmp_path / "dev.jsonl").resolve()
    status, out, _ = validate(spec, capsys)
    assert status == 0
    assert out == (
        f"ok  {spec} (scenario 'shots'; rendered the first 3 rows of test; "
        f"data not reachable here: dev: data file not found: {missing})\n"
    )


def test_a_huge_max_instances_is_refused_with_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data_file(tmp_path)
    spec = write(
        tmp_path / "scenarios" / "big.yaml",
        "name: big\nsource: {offline: {files: {test: d.jsonl}}}\nmax_instances: 99999999999999999999999\n"
        "fields: {input: question}\n",
    )
    status, out, err = validate(spec, capsys)
    assert (status, out) == (2, "")
    assert err == f"{spec}:3: field 'max_instances': Input should be less than or equal to 10000000\n"


def test_suite_numbers_are_bounded_with_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    suite = write(
        tmp_path / "suites" / "big.yaml",
        "name: big\nscenarios:\n  - scenario: mmlu\n    max_instances: 99999999999999999999999\nseed: 4294967296\n",
    )
    status, _, err = validate(suite, capsys)
    assert status == 2
    assert err.splitlines() == [
        f"{suite}:4: field 'scenarios.0.max_instances': Input should be less than or equal to 10000000",
        f"{suite}:5: field 'seed': Input should be less than or equal to 2147483647",
    ]


def test_model_numbers_are_bounded(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model = write(
        tmp_path / "models" / "slow.yaml",
        "name: slow\nbackend: embedded\ntimeout_s: 1e12\nretry_backoff_s: 1e12\nmax_length: 99999999999\n",
    )
    status, _, err = validate(model, capsys)
    assert status == 2
    assert err.splitlines() == [
        f"{model}:3: field 'timeout_s': Input should be less than or equal to 3600",
        f"{model}:4: field 'retry_backoff_s': Input should be less than or equal to 60",
        f"{model}:5: field 'max_length': Input should be less than or equal to 1048576",
    ]


def test_a_hostile_template_is_refused_by_validate(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = scenario(tmp_path, "bomb", "  input: \"{{ 'a' * 10**10 }}\"\n")
    status, _, err = validate(spec, capsys)
    assert status == 2
    assert err == (
        f"{spec}:3: field 'fields': Value error, fields.input: template refused: repeating a value "
        "10,000,000,000 times would be 10,000,000,000 characters or items long (the limit is 1,000,000)\n"
    )


def test_a_hostile_template_on_a_column_is_stopped_by_validate(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = data_file(tmp_path)
    spec = scenario(tmp_path, "bomb", '  input: "{{ question * 1000000000 }}"\n')
    status, _, err = validate(spec, capsys)
    assert status == 2
    assert err.startswith(f"{spec}: {data} row 1: fields.input: template stopped: repeating a value 1,000,000,000")


def test_a_suite_is_validated_as_running_it_would_resolve_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    good = write(
        tmp_path / "good.yaml", "name: good\nmodels: [smollm2-135m-instruct]\nscenarios:\n  - scenario: sst2\n"
    )
    assert validate(good, capsys) == (0, f"ok  {good} (suite 'good'; 1 scenario(s) and 1 model(s) resolved)\n", "")
    override = write(tmp_path / "o.yaml", "name: o\nscenarios:\n  - scenario: arc_easy\n    num_train: 3\n")
    assert validate(override, capsys) == (
        2,
        "",
        f"{override}: suite 'o', entry 'arc_easy': scenario 'arc_easy' with the overrides {{num_train: 3}}: "
        "adapter: Value error, num_train > 0 needs fewshot_split (the split exemplars come from)\n",
    )
    ghost = write(tmp_path / "g.yaml", "name: g\nmodels: [nope]\nscenarios:\n  - scenario: sst2\n")
    status, out, err = validate(ghost, capsys)
    assert (status, out) == (2, "") and err.startswith(f"{ghost}: suite 'g', models: unknown model 'nope'")
    # helmflow run says the same before anything starts
    assert main(["run", str(override)]) == 2
    assert "entry 'arc_easy': scenario 'arc_easy' with the overrides {num_train: 3}" in capsys.readouterr().err
