"""BIG-Bench Hard as the paper prompts it and lm-evaluation-harness's bbh_cot_fewshot scores it
(specs/suites/bbh.yaml), and the adapter key that brings the paper's prompt files in: `instructions_file`
(specs/loader.py).

The prompt is the task's cot-prompts file + "\\n\\nQ: " + input + "\\nA: Let's think step by step.", byte for
byte the prompts of the paper's own outputs (BIG-Bench-Hard's code-davinci-002-outputs). lm-eval 0.4.13 lays
out the same text with one more "\\n" at the end (its doc_to_text ends in ".\\n"), and for
sports_understanding it puts the exemplars' reasoning after a newline where the paper's file has a space.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from helmflow.flows.stages import predictions_of
from helmflow.specs import loader
from helmflow.specs.library import find, find_scenario, resolve_run_target
from helmflow.specs.loader import SpecError, load_spec, spec_hash
from helmflow.specs.schema import AdapterSpec, ScenarioSpec
from helmflow.tasks.adapt import Request, build_requests, render_prompt
from helmflow.tasks.data import load_instances
from helmflow.tasks.metrics import score
from helmflow.tasks.models.base import Completion
from tests.conftest import SHARED_DATA, needs_shared_data, write
from tests.hub_rows import HubDataset, write_dataset

BBH = SHARED_DATA / "bbh"
TASKS = sorted(p.stem for p in BBH.glob("*.json")) if BBH.is_dir() else []
COT = "\nA: Let's think step by step."


def paper_prompt(task: str, question: str) -> str:
    """The BBH paper's prompt: the task's prompt file, a blank line, the question and the chain-of-thought cue."""
    return (BBH / "cot-prompts" / f"{task}.txt").read_text(encoding="utf-8") + "\n\nQ: " + question + COT


@needs_shared_data
def test_the_suite_makes_the_27_tasks() -> None:
    assert len(TASKS) == 27
    suite = resolve_run_target("bbh")
    assert sorted(suite.expansions) == [f"bbh_{task}" for task in TASKS]


@needs_shared_data
@pytest.mark.parametrize("task", TASKS or ["absent"])
def test_the_prompt_is_the_papers_byte_for_byte(task: str) -> None:
    loaded = find("scenario", f"bbh_{task}")
    spec = loaded.spec
    assert isinstance(spec, ScenarioSpec)
    instances, _ = load_instances(spec, base_dir=loaded.path.parent)
    examples = json.loads((BBH / f"{task}.json").read_text(encoding="utf-8"))["examples"]
    assert len(instances) == len(examples)
    inst = instances[7]
    assert inst.input == examples[7]["input"]
    assert inst.references == (examples[7]["target"],)
    assert render_prompt(spec.adapter, inst, []) == paper_prompt(task, examples[7]["input"])
    [request] = build_requests(spec.adapter, [inst], [], seed=0)
    # lm-eval's generation_kwargs for bbh cot_fewshot: until ["</s>", "Q", "\n\n"], max_gen_toks 1024.
    assert (request.kind, request.stop, request.max_tokens) == ("generation", ("</s>", "Q", "\n\n"), 1024)
    assert request.prompt == paper_prompt(task, examples[7]["input"])


@needs_shared_data
def test_the_spec_keeps_the_path_as_written_and_the_text_in_its_hash() -> None:
    spec = find_scenario("bbh_navigate")
    text = (BBH / "cot-prompts" / "navigate.txt").read_text(encoding="utf-8")
    assert spec.adapter.instructions_file == "{shared}/bbh/cot-prompts/navigate.txt"  # no machine's folder
    assert spec.adapter.instructions == text
    dumped = spec.model_dump(mode="json")["adapter"]
    assert (dumped["instructions_file"], dumped["instructions"]) == (spec.adapter.instructions_file, text)
    # Read back (the warehouse's spec_json: --resume, rescore) it is the same spec, without reading the file.
    assert ScenarioSpec.model_validate_json(spec.model_dump_json()) == spec


@needs_shared_data
def test_hub_rows_give_the_same_instances(tmp_path: Path) -> None:
    spec = find_scenario("bbh_boolean_expressions")
    examples = json.loads((BBH / "boolean_expressions.json").read_text(encoding="utf-8"))["examples"][:3]
    # lukaemon/bbh: one config per task, a test split of {input, target} strings.
    dataset = HubDataset(
        "boolean_expressions",
        {"test": examples},
        {"input": "string", "target": "string"},
        layout="{config}/{split}-00000-of-00001.parquet",
    )
    assert spec.source.hub is not None
    assert (spec.source.hub.path, spec.source.hub.name, spec.source.hub.split) == (
        "lukaemon/bbh",
        "boolean_expressions",
        "test",
    )
    hub = spec.source.hub.model_copy(update={"path": str(write_dataset(tmp_path, dataset))})
    online = spec.model_copy(update={"source": spec.source.model_copy(update={"hub": hub})})
    from_hub, _ = load_instances(online, prefer="hub")
    offline, _ = load_instances(spec, prefer="offline")
    assert [(i.id, i.input, i.references) for i in from_hub] == [(i.id, i.input, i.references) for i in offline[:3]]


@needs_shared_data
def test_the_answer_after_the_answer_is_is_scored() -> None:
    spec = find_scenario("bbh_boolean_expressions")
    instances, _ = load_instances(spec)
    instances = [i for i in instances if i.references == ("False",)][:3]
    texts = [
        "not ( True ) = False. Plugging in, we get Z = False and True = False. So the answer is False.",
        "We get Z = True. So the answer is True.",
        "Z is False, I think.",  # no "the answer is ": lm-eval's regex fallback
    ]
    requests = [Request(i.id, i.id, "generation", "?") for i in instances]
    completions = {i.id: Completion(i.id, text=t) for i, t in zip(instances, texts, strict=True)}
    predictions = predictions_of(requests, {}, completions, spec)
    assert [p.predicted_text for p in predictions] == ["False", "True", "[invalid]"]
    _, metrics = score(spec, instances[:1], predictions[:1])
    values = {m.metric: m.value for m in metrics if not m.group and not m.perturbation}
    assert values["exact_match"] == 1.0
    _, metrics = score(spec, instances, predictions)
    values = {m.metric: m.value for m in metrics if not m.group and not m.perturbation}
    assert values["exact_match"] == pytest.approx(1 / 3)


# -- instructions_file -----------------------------------------------------------------------------


def scenario(instructions: str) -> str:
    return (
        "name: t\nsource: {offline: {files: {test: d.jsonl}}}\nfields: {input: q}\n"
        f"adapter:\n  method: generation\n{instructions}"
    )


def test_instructions_file_reads_a_file_beside_the_spec(tmp_path: Path) -> None:
    write(tmp_path / "prompts" / "p.txt", "Do it.\n\nQ: 1\nA: 2")
    path = write(tmp_path / "t.yaml", scenario("  instructions_file: prompts/p.txt\n"))
    spec = load_spec(path).spec
    assert isinstance(spec, ScenarioSpec)
    assert (spec.adapter.instructions, spec.adapter.instructions_file) == ("Do it.\n\nQ: 1\nA: 2", "prompts/p.txt")
    before = spec_hash(spec)
    (tmp_path / "prompts" / "p.txt").write_text("Do it again.", encoding="utf-8")
    assert spec_hash(load_spec(path).spec) != before  # the text is part of the spec


def test_a_spec_without_it_keeps_its_hash() -> None:
    spec = find_scenario("mmlu")
    assert "instructions_file" not in spec.model_dump(mode="json")["adapter"]
    assert "instructions_file" not in AdapterSpec(instructions="x").model_dump()


def test_a_missing_file_loads_and_its_run_fails_at_preflight_naming_it(tmp_path: Path) -> None:
    """As a scenario whose data files are not here: the spec loads (library lookups, validate), the run says why."""
    from helmflow.flows.plans import ScenarioPlan
    from helmflow.flows.prepare import _load
    from helmflow.tasks.data import DataUnavailable

    path = write(tmp_path / "t.yaml", scenario("  instructions_file: nothing/here.txt\n"))
    spec = load_spec(path).spec
    assert (spec.adapter.instructions, spec.adapter.instructions_file) == ("", "nothing/here.txt")
    with pytest.raises(DataUnavailable) as caught:
        _load(ScenarioPlan(spec, str(tmp_path)), 0, "auto")  # type: ignore[arg-type]
    assert str(caught.value) == (
        "scenario 't' needs its prompt file nothing/here.txt (adapter.instructions_file), which is not on this machine"
    )


def test_a_file_outside_the_allowed_folders_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELMFLOW_SHARED_DATA", str(tmp_path / "shared"))
    monkeypatch.delenv("HELMFLOW_DATA_PATH", raising=False)
    secret = write(tmp_path / "elsewhere" / "secret.txt", "not for specs")
    path = write(tmp_path / "specs" / "t.yaml", scenario("  instructions_file: ../elsewhere/secret.txt\n"))
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    message = str(caught.value)
    assert message.startswith(
        f"{path}:6: field 'adapter.instructions_file' of scenario 't' (written ../elsewhere/secret.txt): "
        f"{tmp_path / 'specs' / '..' / 'elsewhere' / 'secret.txt'} (which resolves to {secret}) is outside the "
        f"spec's folder and the allowed data folders ({tmp_path / 'specs'}, {tmp_path / 'shared'}); "
        "add its folder to HELMFLOW_DATA_PATH to allow it"
    )
    # An absolute path too; and HELMFLOW_DATA_PATH allows the folder, as it does for data files.
    absolute = write(tmp_path / "specs" / "a.yaml", scenario(f"  instructions_file: {secret}\n"))
    with pytest.raises(SpecError, match="is outside the spec's folder"):
        load_spec(absolute)
    monkeypatch.setenv("HELMFLOW_DATA_PATH", str(tmp_path / "elsewhere"))
    assert load_spec(path).spec.adapter.instructions == "not for specs"  # type: ignore[union-attr]


def test_instructions_and_instructions_file_together_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "p.txt", "Do it.")
    path = write(tmp_path / "t.yaml", scenario("  instructions: 'Hi.'\n  instructions_file: p.txt\n"))
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert str(caught.value) == (
        f"{path}:7: field 'adapter.instructions_file' of scenario 't': give instructions or instructions_file, "
        f"not both (instructions at {path}:6; to replace one a base sets, write it as null)"
    )
    # A scenario that extends one with instructions replaces them with a file by writing them as null.
    child = write(
        tmp_path / "c.yaml", "extends: t.yaml\nname: c\nadapter: {instructions: null, instructions_file: p.txt}\n"
    )
    write(tmp_path / "t.yaml", scenario("  instructions: 'Hi.'\n"))
    assert load_spec(child).spec.adapter.instructions == "Do it."  # type: ignore[union-attr]


def test_an_empty_file_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "p.txt", "")
    with pytest.raises(SpecError, match=r"t.yaml:6: field 'adapter.instructions_file' of scenario 't'.*p.txt is empty"):
        load_spec(write(tmp_path / "t.yaml", scenario("  instructions_file: p.txt\n")))


def test_the_specs_layer_allows_the_folders_tasks_allows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from helmflow.tasks import sources

    for shared, extra in ((None, None), (tmp_path / "s", os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")]))):
        if shared is not None:
            monkeypatch.setenv("HELMFLOW_SHARED_DATA", str(shared))
            monkeypatch.setenv("HELMFLOW_DATA_PATH", str(extra))
        assert loader.shared_data() == sources.shared_data()
        assert loader.allowed_roots(tmp_path) == sources.allowed_roots(tmp_path)


def test_without_the_prompt_files_the_suite_still_loads_and_other_scenarios_resolve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HELMFLOW_SHARED_DATA", str(tmp_path / "shared"))
    assert find_scenario("bigbench_navigate").name == "bigbench_navigate"  # made by another suite
    spec = find_scenario("bbh_navigate")  # loads; a run says the prompt file is not here (test above)
    assert spec.adapter.instructions == "" and spec.adapter.instructions_file
    assert resolve_run_target("bbh").kind == "suite"
