"""The benchmark library: exact prompts, a never-seen format with no code change, safe templates,
and every scenario with offline data running on the embedded model (needs ../shared/data)."""

import json
from pathlib import Path

import pytest

from helmflow.flows.cli import main
from helmflow.specs.library import apply_suite_entry, find, spec_files, spec_names
from helmflow.specs.loader import SpecError, load_spec
from helmflow.specs.schema import Perturbations, ScenarioSpec
from helmflow.tasks.adapt import build_requests
from helmflow.tasks.data import DataError, load_instances, offline_available, select
from helmflow.warehouse.db import connect
from tests.conftest import needs_shared_data, write


def first_request(name: str, index: int = 0, seed: int = 0):
    loaded = find("scenario", name)
    spec = loaded.spec
    instances, _ = load_instances(spec, base_dir=loaded.path.parent)
    pool = []
    if spec.adapter.num_train:
        pool, _ = load_instances(spec, spec.adapter.fewshot_split, base_dir=loaded.path.parent)
    return build_requests(spec.adapter, [instances[index]], pool, seed)[0]


@needs_shared_data
def test_sst2_prompt() -> None:
    request = first_request("sst2")
    assert request.prompt == (
        "it 's a charming and often affecting journey . \nQuestion: Is this sentence positive or negative?\nAnswer:"
    )
    assert request.continuations == (" negative", " positive")


@needs_shared_data
def test_boolq_prompt() -> None:
    from tests.conftest import SHARED_DATA

    row = json.loads((SHARED_DATA / "superglue" / "boolq" / "val.jsonl").open().readline())
    request = first_request("boolq")
    assert request.prompt == f"{row['passage']}\nQuestion: {row['question']}?\nAnswer:"
    assert request.prompt.startswith("Ethanol fuel -- All biomass goes through at least some of these steps:")
    assert request.continuations == (" no", " yes")


def test_mmlu_zero_shot_prompt_from_the_embedded_data() -> None:
    spec = apply_suite_entry(find("scenario", "mmlu").spec, num_train=0)
    instances = select(load_instances(spec)[0], ["abstract_algebra"], None, 0)
    assert build_requests(spec.adapter, instances[:1], [], 0)[0].prompt == (
        "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
        "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\n"
        "A. 0\nB. 4\nC. 2\nD. 6\nAnswer:"
    )


NEW_FORMAT = """name: shapes
description: a made-up format with its own field names, never seen by the code
source:
  split: eval
  offline: {files: {eval: shapes.csv}, format: csv}
fields:
  id: "'shape-' ~ row_no"
  input: "Think about {{ thing }}. {{ prompt_text }}"
  choices: [opt_one, opt_two, "{{ opt_three | upper }}"]
  answer: right_one
  answer_type: text
  group: kind
adapter:
  method: multiple_choice_separate
  output_prefix: "Answer:"
metrics: [accuracy, calibration, efficiency]
"""


@pytest.mark.model
def test_a_new_format_runs_end_to_end_with_no_code_change(tmp_path: Path) -> None:
    write(
        tmp_path / "shapes.csv",
        "row_no,thing,prompt_text,opt_one,opt_two,opt_three,right_one,kind\n"
        "1,a ball,What shape is it?,round,square,flat,round,solid\n"
        "2,a box,How many corners does it have?,eight,three,none,eight,solid\n"
        "3,a sheet of paper,How thick is it?,very thick,a metre,thin,THIN,flat\n",
    )
    spec = write(tmp_path / "shapes.yaml", NEW_FORMAT)
    db = tmp_path / "new.duckdb"
    assert main(["--db", str(db), "run", str(spec)]) == 0
    with connect(db, read_only=True) as con:
        stored = con.execute("select instance_id, choices, gold_index, group_name from instances order by 1").fetchall()
        prompt = con.execute("select prompt from predictions where instance_id = 'shape-1'").fetchone()[0]
        status = con.execute("select status from runs").fetchone()[0]
    assert stored == [
        ("shape-1", ["round", "square", "FLAT"], 0, "solid"),
        ("shape-2", ["eight", "three", "NONE"], 0, "solid"),
        ("shape-3", ["very thick", "a metre", "THIN"], 2, "flat"),
    ]
    assert prompt == "Think about a ball. What shape is it?\nAnswer:"
    assert status == "succeeded"


def test_a_template_that_reaches_for_code_is_refused(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "scenarios" / "evil.yaml",
        (
            "name: evil\nsource: {offline: {files: {test: d.jsonl}}}\n"
            "fields:\n  input: \"{{ ''.__class__.__mro__[1].__subclasses__() }}\"\n"
        ),
    )
    with pytest.raises(SpecError) as err:
        load_spec(spec)
    assert f"{spec}:3: field 'fields': Value error, fields.input: '__subclasses__' is not allowed" in str(err.value)
    assert main(["specs", "validate", str(spec)]) == 2


def test_the_sandbox_also_refuses_at_render_time(tmp_path: Path) -> None:
    # |attr hides the name from the load-time check as a string constant built at run time.
    write(tmp_path / "d.jsonl", json.dumps({"q": "x", "name": "__class__"}))
    spec = ScenarioSpec.model_validate(
        {
            "name": "t",
            "source": {"offline": {"files": {"test": "d.jsonl"}}},
            "fields": {"input": "{{ q | attr(name) }}"},
        }
    )
    with pytest.raises(DataError, match="refused by the template sandbox"):
        load_instances(spec, base_dir=tmp_path)


def offline_scenarios() -> list[str]:
    names = []
    for name in spec_names("scenario"):  # files, and the scenarios suites make with for_each (BIG-bench)
        loaded = find("scenario", name)
        spec = loaded.spec
        # Its exemplars too (HELM's BoolQ reads them from the Hub's train split: it needs the Hub).
        shots = spec.adapter.fewshot_split
        exemplars = not spec.adapter.num_train or offline_available(spec, loaded.path.parent, shots)
        if spec.source.offline_sources and offline_available(spec, loaded.path.parent) and exemplars:
            names.append(name)
    return names


# Three shares of the library, so that a parallel test run (make test-parallel: two workers) can spread them.
SHARES = {
    "mmlu": lambda name: name == "mmlu",
    "bigbench": lambda name: name.startswith("bigbench_"),
    "the rest": lambda name: name != "mmlu" and not name.startswith("bigbench_"),
}


def test_the_shares_cover_the_library_once() -> None:
    names = offline_scenarios()
    assert sorted(n for share in SHARES.values() for n in names if share(n)) == sorted(names)


@needs_shared_data
@pytest.mark.model
@pytest.mark.slow
@pytest.mark.parametrize("share", SHARES)
def test_every_offline_scenario_runs_twenty_instances(share: str, tmp_path: Path) -> None:
    from helmflow.flows.benchmark import ScenarioPlan, benchmark
    from helmflow.specs.library import find_model

    assert len(offline_scenarios()) >= 20, offline_scenarios()
    names = [n for n in offline_scenarios() if SHARES[share](n)]
    plans = []
    for name in names:
        loaded = find("scenario", name)
        # Without perturbations, and at most 16 generated tokens (BBH's chains of thought may run to 1,024): this is
        # about every scenario's data and prompts running, quickly.
        spec = apply_suite_entry(loaded.spec, max_instances=20)
        adapter = spec.adapter.model_copy(update={"max_tokens": min(spec.adapter.max_tokens, 16)})
        spec = spec.model_copy(update={"perturbations": Perturbations(), "adapter": adapter})
        plans.append(ScenarioPlan(spec, str(loaded.path.parent)))
    outcomes = benchmark(plans, [find_model("smollm2-135m-instruct")], seed=0, db=str(tmp_path / "all.duckdb"))
    assert {o.scenario: o.status for o in outcomes} == dict.fromkeys(names, "succeeded")
    with connect(tmp_path / "all.duckdb", read_only=True) as con:
        sizes = dict(con.execute("select scenario, num_instances from runs").fetchall())
    # 20 each, or all a task has (some BIG-bench Lite subtasks hold 9 to 16 examples).
    available = {p.spec.name: len(load_instances(p.spec, base_dir=Path(p.base_dir or "."))[0]) for p in plans}
    assert all(n == min(20, available[name]) for name, n in sizes.items()), (sizes, available)


@needs_shared_data
def test_mmlu_five_shot_prompt_uses_the_subjects_dev_rows() -> None:
    import csv

    from tests.conftest import SHARED_DATA

    dev = list(csv.reader((SHARED_DATA / "mmlu" / "dev" / "abstract_algebra_dev.csv").open()))
    shipped = find("scenario", "mmlu").spec
    # HELM's way, seeded and label-balanced (the shipped spec takes lm-eval's first_n: see the next test).
    spec = shipped.model_copy(update={"adapter": shipped.adapter.model_copy(update={"fewshot_order": "random"})})
    instances = select(load_instances(spec)[0], ["abstract_algebra"], None, 0)
    pool, _ = load_instances(spec, "dev")

    def block(q: str, a: str, b: str, c: str, d: str) -> str:
        return f"{q.strip()}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:"

    # The five dev rows, label-balanced and shuffled with seed 0: rows 1, 0, 4, 2, 3.
    shots = "".join(block(*dev[k][:5]) + f" {dev[k][5]}\n\n" for k in (1, 0, 4, 2, 3))
    expected = (
        "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
        + shots
        + block(instances[0].input, *instances[0].choices)
    )
    assert build_requests(spec.adapter, instances[:1], pool, 0)[0].prompt == expected


@needs_shared_data
def test_shipped_mmlu_takes_the_first_five_dev_rows_in_file_order_as_lm_eval_does() -> None:
    import csv

    from tests.conftest import SHARED_DATA

    dev = list(csv.reader((SHARED_DATA / "mmlu" / "dev" / "abstract_algebra_dev.csv").open()))
    spec = find("scenario", "mmlu").spec
    assert spec.adapter.fewshot_order == "first_n"
    instances = select(load_instances(spec)[0], ["abstract_algebra"], None, 0)
    pool, _ = load_instances(spec, "dev")

    def block(q: str, a: str, b: str, c: str, d: str) -> str:
        return f"{q.strip()}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:"

    shots = "".join(block(*row[:5]) + f" {row[5]}\n\n" for row in dev[:5])
    expected = (
        "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
        + shots
        + block(instances[0].input, *instances[0].choices)
    )
    # Any seed: file order does not depend on it.
    assert {build_requests(spec.adapter, instances[:1], pool, seed)[0].prompt for seed in (0, 7)} == {expected}


def test_the_adding_a_scenario_guide_is_true(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import re

    guide = (Path(__file__).parents[1] / "docs" / "adding-a-scenario.md").read_text()
    blocks = re.findall(r"```(\w*)\n(.*?)```", guide, re.S)
    data = next(b for kind, b in blocks if kind == "csv")
    spec_text = next(b for kind, b in blocks if kind == "yaml" and b.startswith("name: support"))
    shown = next(b for kind, b in blocks if kind == "" and "continuations scored" in b)
    write(tmp_path / "scenarios" / "data" / "support.csv", data)
    spec = write(tmp_path / "scenarios" / "support.yaml", spec_text)
    assert main(["specs", "validate", str(spec)]) == 0
    capsys.readouterr()
    assert main(["specs", "show", str(spec)]) == 0
    assert shown.strip() in capsys.readouterr().out


@needs_shared_data
def test_copa_prompt_is_lm_evals() -> None:
    request = first_request("copa")
    assert request.prompt == "The man turned on the faucet therefore"
    assert request.continuations == ("  the toilet filled with water.", "  water flowed from the spout.")


def test_a_spec_read_back_from_the_warehouse_resolves_the_same_fields() -> None:
    # What --resume and rescore do: a ScenarioSpec from the run's stored spec_json. A source's fields
    # must override the scenario's just as the YAML said (MMLU's dev source names no `input`).
    from helmflow.specs.schema import ScenarioSpec
    from helmflow.tasks.data import _merge_fields

    for path in spec_files("scenario"):
        spec = load_spec(path, "scenario").spec
        back = ScenarioSpec.model_validate_json(spec.model_dump_json())
        assert back.model_dump_json() == spec.model_dump_json(), path.name
        for given, read_back in zip(spec.source.offline_sources, back.source.offline_sources, strict=True):
            assert _merge_fields(back.fields, read_back.fields) == _merge_fields(spec.fields, given.fields), path.name
