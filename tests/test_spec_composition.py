"""Composing specs: `extends:` (a scenario deep-merged over another) and a suite's `for_each:` (a scenario
template made once per item), and the BIG-bench family as one template plus a list that resolves exactly
as its 16 files did (tests/fixtures/bigbench_resolved.json: each file's resolved spec, the keys it wrote,
and its spec hash, dumped from the files before they were replaced, for each NAME:
`spec = find("scenario", NAME).spec`; `{"spec": spec.model_dump(mode="json"),
"written": spec.model_dump(mode="json", exclude_unset=True), "spec_hash": spec_hash(spec)}`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from helmflow.flows.cli import main
from helmflow.specs.library import LIBRARY, find, resolve_run_target, spec_names
from helmflow.specs.loader import SpecError, load_spec, spec_hash
from tests.conftest import needs_shared_data, write
from tests.test_perturb_scaffold import (
    test_a_bigbench_prompt_is_perturbed_only_in_the_examples_input as check_bigbench_scaffold,
)

BIGBENCH = json.loads((Path(__file__).parent / "fixtures" / "bigbench_resolved.json").read_text())
SUITE = LIBRARY / "suites" / "bigbench.yaml"


# -- BIG-bench: one template and a list ------------------------------------------------------------


def test_the_bigbench_family_is_one_template_and_a_list() -> None:
    [entry] = yaml.safe_load(SUITE.read_text())["scenarios"]
    assert isinstance(entry["template"], dict) and len(entry["for_each"]) == 16
    assert not list((LIBRARY / "scenarios").glob("bigbench_*.yaml"))
    assert [e.scenario for e in load_spec(SUITE).spec.scenarios] == sorted(BIGBENCH)


@pytest.mark.parametrize("name", sorted(BIGBENCH))
def test_each_bigbench_scenario_resolves_as_its_file_did(name: str) -> None:
    loaded = find("scenario", name)
    spec = loaded.spec
    assert spec.model_dump(mode="json") == BIGBENCH[name]["spec"]
    # The keys written, too: suite overrides and per-source field maps build on them.
    assert spec.model_dump(mode="json", exclude_unset=True) == BIGBENCH[name]["written"]
    # The same hash: cached answers and refresh staleness are unaffected.
    assert spec_hash(spec) == BIGBENCH[name]["spec_hash"]
    assert resolve_run_target(name).spec == spec  # `helmflow run NAME`
    assert name in spec_names("scenario")


@pytest.mark.parametrize("name", sorted(BIGBENCH))
def test_each_bigbench_prompt_is_perturbed_only_in_the_examples_input(name: str, tmp_path: Path) -> None:
    # tests/test_perturb_scaffold.py's check, which finds the BIG-bench scenarios by their old file names.
    check_bigbench_scaffold(name, tmp_path)


def test_specs_validate_passes_the_bigbench_suite(capsys: pytest.CaptureFixture) -> None:
    assert main(["specs", "validate", str(SUITE)]) == 0
    assert capsys.readouterr().out == f"ok  {SUITE} (suite 'bigbench'; 16 scenario(s) and 1 model(s) resolved)\n"


def test_specs_list_names_every_bigbench_scenario(capsys: pytest.CaptureFixture) -> None:
    assert main(["specs", "list"]) == 0
    rows = [line.strip("│ ").split("│") for line in capsys.readouterr().out.splitlines() if line.startswith("│")]
    listed = {row[1].strip() for row in rows if row[0].strip() == "scenario"}
    assert set(BIGBENCH) <= listed and "mmlu" in listed


@needs_shared_data
@pytest.mark.parametrize("name", ["bigbench_navigate", "bigbench_repeat_copy_logic"])
def test_specs_show_prints_the_resolved_spec(name: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["specs", "show", name]) == 0
    out = capsys.readouterr().out
    header, rest = out.split("\n", 2)[:2], out.split("\n", 2)[2]
    assert header == [f"# {SUITE}", header[1]] and header[1].startswith(f"# for_each item at {SUITE}:")
    shown = yaml.safe_load(rest[: rest.index("# prompt for")])
    assert shown == BIGBENCH[name]["spec"]


# -- extends ---------------------------------------------------------------------------------------

BASE = """\
name: base
description: the base
source:
  split: test
  offline: {files: {test: d.jsonl}}
fields: {input: question, choices: options, answer: label}
adapter:
  method: multiple_choice_separate
  output_prefix: "A:"
  stop: ["\\n", "."]
metrics: [accuracy, calibration]
groups: [a, b]
"""


def test_extends_merges_mappings_key_by_key_and_replaces_lists(tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", BASE)
    child = write(
        tmp_path / "child.yaml",
        "extends: base.yaml\nname: child\nadapter:\n  output_prefix: 'Answer:'\n  stop: [x]\n"
        "metrics: [accuracy]\nfields: {choices: null, answer: null, references: label}\n",
    )
    loaded = load_spec(child)
    assert loaded.spec.model_dump(mode="json", exclude_unset=True) == {
        "name": "child",
        "description": "the base",
        "source": {"split": "test", "offline": {"files": {"test": "d.jsonl"}}},
        # null removes a key: the field is not set, as if the base had never written it
        "fields": {"input": "question", "references": "label"},
        "adapter": {"method": "multiple_choice_separate", "output_prefix": "Answer:", "stop": ["x"]},
        "metrics": ["accuracy"],
        "groups": ["a", "b"],
    }
    assert loaded.origin == f"extends {tmp_path / 'base.yaml'}"
    assert loaded.path == child  # relative data paths are read from the extending file's folder


def test_extends_follows_a_chain(tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", BASE)
    write(tmp_path / "mid" / "mid.yaml", "extends: ../base.yaml\nadapter: {output_prefix: 'Q:'}\ngroups: [m]\n")
    top = write(tmp_path / "top.yaml", "extends: mid/mid.yaml\nname: top\ngroups: [t]\n")
    loaded = load_spec(top)
    spec = loaded.spec
    assert (spec.name, spec.description, spec.adapter.output_prefix, spec.groups) == ("top", "the base", "Q:", ["t"])
    assert loaded.origin == f"extends {tmp_path / 'mid/mid.yaml'}, which extends {tmp_path / 'mid/../base.yaml'}"


def test_extends_a_library_scenario_by_name(tmp_path: Path) -> None:
    mine = write(tmp_path / "mine.yaml", "extends: bigbench_navigate\nname: navigate_short\nmax_instances: 50\n")
    spec = load_spec(mine).spec
    expected = {**BIGBENCH["bigbench_navigate"]["spec"], "name": "navigate_short", "max_instances": 50}
    assert spec.model_dump(mode="json") == expected
    mmlu = find("scenario", "mmlu").spec
    zero = load_spec(write(tmp_path / "z.yaml", "extends: mmlu\nname: mmlu_zero\nadapter: {num_train: 0}\n")).spec
    assert zero.adapter.num_train == 0 and zero.source == mmlu.source and zero.fields == mmlu.fields


def test_a_spec_folders_own_scenario_may_extend_the_one_it_hides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ~/team/scenarios/mmlu.yaml saying `extends: mmlu` means the library's mmlu, not itself.
    write(tmp_path / "team" / "scenarios" / "mmlu.yaml", "extends: mmlu\nmax_instances: 10\n")
    library_mmlu = find("scenario", "mmlu").spec
    monkeypatch.setenv("HELMFLOW_SPEC_PATH", str(tmp_path / "team"))
    ours = find("scenario", "mmlu").spec
    assert ours.max_instances == 10
    assert ours.model_copy(update={"max_instances": None}) == library_mmlu


def test_an_extends_cycle_names_the_files(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", "name: a\nextends: b.yaml\n")
    b = write(tmp_path / "b.yaml", "extends: a.yaml\nname: b\n")
    with pytest.raises(SpecError) as caught:
        load_spec(a)
    assert str(caught.value) == f"{b}:1: field 'extends': a cycle: {a} extends {b} extends {a}"
    alone = write(tmp_path / "self.yaml", "name: s\nextends: self.yaml\n")
    with pytest.raises(SpecError) as caught:
        load_spec(alone)
    assert str(caught.value) == f"{alone}:2: field 'extends': a cycle: {alone} extends {alone}"


def test_an_error_in_the_merged_spec_names_the_file_and_line_that_wrote_it(tmp_path: Path) -> None:
    base = write(tmp_path / "base.yaml", BASE.replace("  method: multiple_choice_separate\n", "  num_train: many\n"))
    child = write(
        tmp_path / "child.yaml", "# mine\nextends: base.yaml\nname: child\nadapter: {max_tokens: 0}\nsorce: 1\n"
    )
    with pytest.raises(SpecError) as caught:
        load_spec(child)
    assert str(caught.value).splitlines() == [
        f"{base}:8: field 'adapter.num_train': Input should be a valid integer, unable to parse string as an integer",
        f"{child}:4: field 'adapter.max_tokens': Input should be greater than or equal to 1",
        f"{child}:5: unknown field 'sorce'; did you mean 'source'? (expected one of: adapter, answer_extraction, "
        "description, exact_match_options, fields, groups, main_metric, max_instances, metrics, name, perturbations, "
        "source, toxicity_classifier)",
    ]


def test_extends_names_a_file_or_a_scenario(tmp_path: Path) -> None:
    cases = {
        "extends: nope.yaml\n": f"field 'extends': no such file {tmp_path / 'nope.yaml'}",
        "extends: [a]\n": "field 'extends': give a scenario file (relative to this one) or a library scenario name",
        "extends: no_such_scenario\n": "field 'extends': unknown scenario 'no_such_scenario': no no_such_scenario.yaml",
    }
    for text, message in cases.items():
        path = write(tmp_path / "x.yaml", text + "name: x\n")
        with pytest.raises(SpecError) as caught:
            load_spec(path)
        assert str(caught.value).startswith(f"{path}:1: {message}"), str(caught.value)


def test_extends_is_for_scenarios_only(tmp_path: Path) -> None:
    suite = write(tmp_path / "s.yaml", "extends: quickstart\nname: s\nscenarios: [mmlu]\n")
    with pytest.raises(SpecError, match=r"s.yaml:1: unknown field 'extends'"):
        load_spec(suite)


# -- for_each --------------------------------------------------------------------------------------

TEMPLATE = """\
name: t_${task}
description: "${task}: ${about}; $${task} is written so"
source: {offline: {files: {test: "data/${task}.jsonl"}}}
fields: {input: "{{ question }}", choices: "['no', 'yes']", answer: label}
adapter: {instructions: "About ${about}.\\n"}
"""


def suite_file(folder: Path, items: str, template: str = "template: t.yaml", more: str = "") -> Path:
    return write(folder / "suite.yaml", f"name: s\nscenarios:\n  - mmlu\n  - {template}\n{more}    for_each:\n{items}")


ITEMS = "      - {task: alpha, about: letters}\n      - {task: beta, about: more letters}\n"


def test_for_each_makes_one_scenario_per_item(tmp_path: Path) -> None:
    template = write(tmp_path / "t.yaml", TEMPLATE)
    suite = suite_file(tmp_path, ITEMS, more="    max_instances: 5\n")
    loaded = load_spec(suite)
    entries = [e.model_dump(exclude_none=True) for e in loaded.spec.scenarios]
    assert entries == [
        {"scenario": "mmlu"},
        {"scenario": "t_alpha", "max_instances": 5},
        {"scenario": "t_beta", "max_instances": 5},
    ]
    alpha = loaded.expansions["t_alpha"]
    assert alpha.spec.description == "alpha: letters; ${task} is written so"
    assert alpha.spec.source.offline_sources[0].files == {"test": "data/alpha.jsonl"}
    assert alpha.spec.adapter.instructions == "About letters.\n"
    assert alpha.spec.fields.input == "{{ question }}"  # Jinja is not a placeholder
    assert alpha.path == template  # data paths are read from the template's folder
    assert alpha.origin == f"for_each item at {suite}:7, template {template}"
    assert loaded.expansions["t_beta"].spec.adapter.instructions == "About more letters.\n"


def test_a_suite_given_by_path_runs_and_validates_its_for_each_scenarios(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from helmflow.flows.plans import run_targets

    write(tmp_path / "templates" / "t.yaml", TEMPLATE.replace("name: t_", "name: path_suite_"))
    suite = suite_file(tmp_path, ITEMS, template="template: templates/t.yaml")
    plans = run_targets([str(suite)]).plans
    assert [p.spec.name for p in plans] == ["mmlu", "path_suite_alpha", "path_suite_beta"]
    assert plans[1].base_dir == str(tmp_path / "templates")
    assert main(["specs", "validate", str(suite)]) == 0
    assert capsys.readouterr().out == f"ok  {suite} (suite 's'; 3 scenario(s) and 0 model(s) resolved)\n"


def test_for_each_over_plain_values_with_as_and_an_inline_template_that_extends(tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", BASE)
    inline = "template:\n      extends: base.yaml\n      name: inline_${x}\n      groups: ['${x}']\n    as: x\n"
    loaded = load_spec(suite_file(tmp_path, "      - one\n      - two\n", template=inline))
    assert {n: e.spec.groups for n, e in loaded.expansions.items()} == {"inline_one": ["one"], "inline_two": ["two"]}
    assert loaded.expansions["inline_one"].spec.description == "the base"


def test_an_items_override_is_merged_over_its_scenario(tmp_path: Path) -> None:
    write(tmp_path / "t.yaml", TEMPLATE)
    items = (
        "      - {task: alpha, about: a}\n"
        "      - task: gamma\n        about: g\n"
        "        override: {fields: {answer: null, references: label}, adapter: {method: generation}}\n"
    )
    loaded = load_spec(suite_file(tmp_path, items))
    gamma = loaded.expansions["t_gamma"].spec
    assert (gamma.fields.answer, gamma.fields.references, gamma.adapter.method) == (None, "label", "generation")
    assert loaded.expansions["t_alpha"].spec.adapter.method == "multiple_choice_joint"


def test_a_placeholder_naming_an_unknown_variable_names_the_file_and_line(tmp_path: Path) -> None:
    template = write(tmp_path / "t.yaml", TEMPLATE.replace("${about}.", "${abut}."))
    suite = suite_file(tmp_path, ITEMS)
    with pytest.raises(SpecError) as caught:
        load_spec(suite)
    assert str(caught.value) == (
        f"{template}:5: field 'adapter.instructions': ${{abut}} names no variable of the for_each item at "
        f"{suite}:6 (its variables: about, task)"
    )


def test_a_variable_that_no_placeholder_uses_is_an_error(tmp_path: Path) -> None:
    template = write(tmp_path / "t.yaml", TEMPLATE)
    suite = suite_file(tmp_path, "      - task: alpha\n        about: a\n        abuot: typo\n")
    with pytest.raises(SpecError) as caught:
        load_spec(suite)
    assert str(caught.value) == (
        f"{suite}:8: field 'scenarios.1.for_each.0.abuot': the variable 'abuot' appears in no ${{...}} placeholder "
        f"of the template {template}"
    )


HOSTILE = ["{{ 7*7 }}", "{0.__class__}", "{0.__class__.__mro__}", "${task}", "{% raw %}", "{shared}", "'\"\\"]


def test_hostile_values_are_substituted_as_text_never_evaluated(tmp_path: Path) -> None:
    write(tmp_path / "t.yaml", TEMPLATE)
    items = "".join(f"      - {{task: t{k}, about: {json.dumps(v)}}}\n" for k, v in enumerate(HOSTILE))
    loaded = load_spec(suite_file(tmp_path, items))
    for k, value in enumerate(HOSTILE):
        spec = loaded.expansions[f"t_t{k}"].spec
        assert spec.description == f"t{k}: {value}; ${{task}} is written so"
        assert spec.adapter.instructions == f"About {value}.\n"


@pytest.mark.parametrize("value", ["{{ 7*7 }}", "question ~ 'x'", "q.__class__", "7*7"])
def test_a_value_is_refused_where_it_would_be_template_code(value: str, tmp_path: Path) -> None:
    # A field map is Jinja, rendered for every row: a value there must be a plain (column) name.
    template = write(tmp_path / "t.yaml", TEMPLATE.replace('input: "{{ question }}"', 'input: "${about}"'))
    suite = suite_file(tmp_path, f"      - {{task: alpha, about: {json.dumps(value)}}}\n")
    with pytest.raises(SpecError) as caught:
        load_spec(suite)
    assert str(caught.value) == (
        f"{template}:4: field 'fields.input': the value {value!r} of ${{about}} (for_each item at {suite}:6) cannot "
        "go into a field map, which is Jinja read for every row: there a value must be a plain name "
        "(letters, digits, _)"
    )


def test_a_plain_name_in_a_field_map_is_a_column(tmp_path: Path) -> None:
    from helmflow.tasks.data import load_instances

    write(tmp_path / "data" / "alpha.jsonl", '{"question": "Why?", "text": "Because.", "label": 0}\n')
    write(tmp_path / "t.yaml", TEMPLATE.replace('input: "{{ question }}"', 'input: "${about}"'))
    loaded = load_spec(suite_file(tmp_path, "      - {task: alpha, about: text}\n"))
    instances, _ = load_instances(loaded.expansions["t_alpha"].spec, base_dir=tmp_path)
    assert [i.input for i in instances] == ["Because."]


@pytest.mark.parametrize(
    ("entry", "line", "message"),
    [
        ("    for_each: [a]\n    template: t.yaml\n", 3, "field 'scenarios.0.for_each.0': an item is a mapping"),
        ("    for_each: [{task: a}]\n    as: task\n    template: t.yaml\n", 3, "with `as: task` each item is one"),
        ("    for_each: [1]\n    as: task\n    template: t.yaml\n", 3, "with `as: task` each item is one value"),
        ("    for_each: [{task: 1}]\n    template: t.yaml\n", 3, "field 'scenarios.0.for_each.0.task': a variable's"),
        ("    for_each: [{1x: a}]\n    template: t.yaml\n", 3, "variable names are letters, digits and _"),
        ("    for_each: [{task: a, override: 3}]\n    template: t.yaml\n", 3, "0.override': a mapping of scenario"),
        ("    for_each: []\n    template: t.yaml\n", 3, "field 'scenarios.0.for_each': List should have at least 1"),
        (
            "    for_each: [a]\n    as: task\n    templat: t.yaml\n",
            5,
            "unknown field 'scenarios.0.templat'; did you mean",
        ),
        ("    for_each: [a]\n    as: task\n    template: nope.yaml\n", 5, "field 'template': no such file"),
        ("    for_each: [a, a]\n    as: task\n    template: t.yaml\n", 3, "the scenario 't_a' is made twice"),
    ],
)
def test_a_bad_for_each_entry_names_the_file_line_and_field(
    tmp_path: Path, entry: str, line: int, message: str
) -> None:
    write(tmp_path / "t.yaml", "name: t_${task}\nsource: {offline: {files: {test: d.jsonl}}}\n")
    suite = write(tmp_path / "suite.yaml", f"name: s\nscenarios:\n  - {entry.lstrip()}")
    with pytest.raises(SpecError) as caught:
        load_spec(suite)
    assert any(m.startswith(f"{suite}:{line}: ") and message in m for m in str(caught.value).splitlines()), caught.value


def test_a_template_validated_alone_says_what_it_is(tmp_path: Path) -> None:
    template = write(tmp_path / "t.yaml", TEMPLATE)
    with pytest.raises(SpecError) as caught:
        load_spec(template)
    assert str(caught.value).splitlines()[-1] == (
        f"{template}: this file has ${{...}} placeholders: it is a for_each template; "
        "validate the suite that expands it"
    )


# -- JSON Schema -----------------------------------------------------------------------------------


def test_the_json_schemas_know_extends_and_for_each() -> None:
    from jsonschema import Draft202012Validator

    from helmflow.specs.json_schema import json_schema

    scenario, suite = (Draft202012Validator(json_schema(kind)) for kind in ("scenario", "suite"))
    assert not list(suite.iter_errors(yaml.safe_load(SUITE.read_text())))
    # A file that extends writes only what it changes, and null removes a key.
    assert not list(scenario.iter_errors({"extends": "mmlu", "adapter": {"num_train": 0, "stop": None}}))
    assert [e.message for e in scenario.iter_errors({"extends": "mmlu", "adaptr": {}})] == [
        "Additional properties are not allowed ('adaptr' was unexpected)"
    ]
    assert [e.message for e in scenario.iter_errors({"name": "x"})] == ["'source' is a required property"]
    assert list(suite.iter_errors({"name": "s", "scenarios": [{"for_each": ["a"], "as": "x", "template": 3}]}))


# -- the docs' examples ----------------------------------------------------------------------------


def code_blocks(doc: str) -> list[tuple[str, str]]:
    import re

    return re.findall(r"```(\w*)\n(.*?)```", (Path(__file__).parents[1] / "docs" / doc).read_text(), re.S)


def test_the_spec_references_examples_load(tmp_path: Path) -> None:
    from helmflow.specs.schema import ForEach

    blocks = [b for kind, b in code_blocks("spec-reference.md") if kind == "yaml"]
    variant = next(b for b in blocks if b.startswith("# specs/scenarios/mmlu_zero_shot.yaml"))
    spec = load_spec(write(tmp_path / "mmlu_zero_shot.yaml", variant)).spec
    assert (spec.name, spec.adapter.num_train, spec.adapter.fewshot_split) == ("mmlu_zero_shot", 0, None)
    assert spec.source == find("scenario", "mmlu").spec.source
    suite = yaml.safe_load(next(b for b in blocks if b.startswith("scenarios:\n  - for_each:")))
    assert [len(ForEach.model_validate(entry).for_each) for entry in suite["scenarios"]] == [3, 2]


def test_the_adding_a_scenario_guides_variants_and_families_are_true(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from helmflow.flows.plans import run_targets

    blocks = code_blocks("adding-a-scenario.md")
    data = next(b for kind, b in blocks if kind == "csv")
    specs = tmp_path / "specs"
    for line in ("router", "printer"):
        write(specs / "scenarios" / "data" / f"support_{line}.csv", data)
    write(specs / "scenarios" / "data" / "support.csv", data)
    write(
        specs / "scenarios" / "support.yaml",
        next(b for k, b in blocks if k == "yaml" and b.startswith("name: support")),
    )
    for kind, block in blocks:
        if kind == "yaml" and block.startswith("# specs/"):
            write(tmp_path / block.split("\n", 1)[0].split()[1].rstrip(":"), block)
    monkeypatch.setenv("HELMFLOW_SPEC_PATH", str(specs))
    routers = find("scenario", "support_routers").spec
    assert (routers.groups, routers.adapter, routers.fields) == (
        ["router"],
        find("scenario", "support").spec.adapter,
        find("scenario", "support").spec.fields,
    )
    plans = run_targets(["support-lines"]).plans
    assert [p.spec.name for p in plans] == ["support_router", "support_printer"]
    assert plans[0].spec.source.offline_sources[0].files == {"test": "data/support_router.csv"}
    assert main(["specs", "validate", str(specs / "suites" / "support-lines.yaml")]) == 0
    capsys.readouterr()
    assert main(["specs", "show", "support_printer"]) == 0
    assert "# prompt for" in capsys.readouterr().out
