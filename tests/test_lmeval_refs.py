"""`lmeval:NAME` with a user's folder of lm-eval task YAMLs: include bases, --data-dir files, --trust-task-code for
hooks outside the installed lm_eval package, groups and tags as suites, `extends: lmeval:...`, one-line refusals,
`helmflow specs list --source lmeval`, and lm-eval's few-shot draws. None of it needs lm_eval installed: the
package's own folder is hidden here, so that only the user's folder is searched."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from helmflow.specs import lmeval_tasks
from helmflow.specs.library import load_file, resolve_run_target
from helmflow.specs.lmeval_refs import SETTINGS, lmeval_scenario
from helmflow.specs.loader import SpecError
from helmflow.specs.schema import AdapterSpec, ScenarioSpec, SuiteSpec
from helmflow.tasks.adapt import build_requests
from helmflow.tasks.data import DataError, fewshot_pool, load_instances
from helmflow.tasks.lmeval_fewshot import lmeval_exemplars
from helmflow.tasks.records import Instance
from tests.conftest import write

BASE = """\
dataset_path: someone/toy-data
output_type: multiple_choice
training_split: train
test_split: test
doc_to_text: "Q: {{question}}\\nA:"
doc_to_choice: ["no", "yes"]
doc_to_target: label
description: "Toy questions.\\n\\n"
metadata:
  version: 3.0
"""


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    tasks = tmp_path / "tasks"
    write(tasks / "_base.yaml", BASE)
    write(tasks / "toy.yaml", "include: _base.yaml\ntask: toy\ntag: toys\n")
    write(tasks / "toy_hooked.yaml", "include: _base.yaml\ntask: toy_hooked\nprocess_docs: !function hooks.upper\n")
    write(tasks / "toy_lambada.yaml", "task: toy_lambada\noutput_type: loglikelihood\ntest_split: test\n")
    write(tasks / "toy_multi.yaml", "include: _base.yaml\ntask: toy_multi\ndoc_to_text: !function hooks.index\n")
    write(tasks / "group.yaml", "group: toy_group\ntask: [toy, toy_hooked]\nnum_fewshot: 1\n")
    write(
        tasks / "hooks.py",
        "def upper(dataset):\n    return dataset.map(lambda d: {'question': d['question'].upper()})\n\n\n"
        "def index(doc):\n    return 1\n",
    )
    rows = [f'{{"question": "is {n} even", "label": {1 - n % 2}}}' for n in range(6)]
    write(tmp_path / "data" / "test.jsonl", "\n".join(rows[:3]) + "\n")
    write(tmp_path / "data" / "train.jsonl", "\n".join(rows[3:]) + "\n")
    monkeypatch.setenv(lmeval_tasks.PATH_VARIABLE, str(tasks))
    monkeypatch.delenv(lmeval_tasks.TRUST_VARIABLE, raising=False)
    monkeypatch.setattr(lmeval_tasks, "package_tasks_dir", lambda: None)  # the user's folder only
    monkeypatch.setattr(SETTINGS, "data_dir", tmp_path / "data")
    return tasks


def prompts(ref: str) -> list[str]:
    loaded = resolve_run_target(ref)
    spec = loaded.spec
    assert isinstance(spec, ScenarioSpec)
    instances, _ = load_instances(spec, base_dir=loaded.path.parent)
    pool = fewshot_pool(spec, base_dir=loaded.path.parent)
    requests = build_requests(spec.adapter, instances, pool, seed=0)
    assert all(r.continuations == (" no", " yes") for r in requests)
    return [r.prompt for r in requests]


def test_a_user_folder_task_with_an_include_reads_the_data_dir(folder: Path) -> None:
    assert prompts("lmeval:toy") == [f"Toy questions.\n\nQ: is {n} even\nA:" for n in range(3)]
    spec = resolve_run_target("lmeval:toy").spec
    assert spec.name == "lmeval_toy" and "task toy, version 3.0" in spec.description
    assert spec.source.hub.path == "someone/toy-data"  # type: ignore[union-attr]


def test_hooks_outside_the_package_run_only_with_trust(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SpecError) as refused:
        lmeval_scenario("lmeval:toy_hooked")
    assert "\n" not in str(refused.value) and "--trust-task-code" in str(refused.value)
    monkeypatch.setenv(lmeval_tasks.TRUST_VARIABLE, "1")
    assert prompts("lmeval:toy_hooked")[0] == "Toy questions.\n\nQ: IS 0 EVEN\nA:"
    # A spec made while trusted (or read back from the warehouse) runs no hook once trust is gone.
    loaded = lmeval_scenario("lmeval:toy_hooked")
    monkeypatch.delenv(lmeval_tasks.TRUST_VARIABLE)
    with pytest.raises(DataError, match="--trust-task-code"):
        load_instances(loaded.spec, base_dir=loaded.path.parent)  # type: ignore[arg-type]


def test_several_inputs_are_refused_when_the_rows_are_read(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(lmeval_tasks.TRUST_VARIABLE, "1")
    loaded = lmeval_scenario("lmeval:toy_multi")
    with pytest.raises(DataError, match="several inputs"):
        load_instances(loaded.spec, base_dir=loaded.path.parent)  # type: ignore[arg-type]


def test_a_group_and_a_tag_run_as_suites(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SpecError, match=r"cannot run 1 of its tasks.*toy_hooked \(--trust-task-code"):
        resolve_run_target("lmeval:toy_group")
    monkeypatch.setenv(lmeval_tasks.TRUST_VARIABLE, "1")
    suite = resolve_run_target("lmeval:toy_group")
    assert isinstance(suite.spec, SuiteSpec)
    assert [e.scenario for e in suite.spec.scenarios] == ["lmeval_toy", "lmeval_toy_hooked"]
    assert suite.expansions["lmeval_toy"].spec.adapter.num_train == 1  # type: ignore[union-attr]
    assert prompts("lmeval_toy")[0].startswith("Toy questions.\n\nQ: is ")  # found by name once planned
    assert [e.scenario for e in resolve_run_target("lmeval:toys").spec.scenarios] == ["lmeval_toy"]  # type: ignore[union-attr]


def test_extends_overrides_a_translated_task(folder: Path, tmp_path: Path) -> None:
    spec_file = write(
        tmp_path / "data" / "mine.yaml",
        "extends: lmeval:toy\nname: my_toy\nadapter:\n  instructions: ''\nsource:\n  offline:\n"
        "    files: {test: train.jsonl}\n",
    )
    spec = load_file(spec_file).spec
    assert isinstance(spec, ScenarioSpec)
    instances, _ = load_instances(spec, base_dir=spec_file.parent)
    assert [i.input for i in instances] == [f"Q: is {n} even\nA:" for n in range(3, 6)]


def test_unsupported_features_stop_in_one_line(folder: Path, capsys: pytest.CaptureFixture) -> None:
    from helmflow.flows.cli import main

    assert main(["run", "lmeval:toy_lambada", "--lmeval-path", str(folder)]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: lmeval:toy_lambada: helmflow cannot run it as lm-eval does: output_type loglik")


def test_specs_list_says_what_each_task_needs(folder: Path, capsys: pytest.CaptureFixture) -> None:
    from helmflow.flows.cli import main

    assert main(["specs", "list", "--source", "lmeval"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for expected in ("lmeval:toy ", "hub someone/toy-data", "lmeval:toy_group", "lmeval:toys", "needs --trust-task"):
        assert expected in out
    assert "UNSUPPORTED: output_type loglikelihood (one" in out


def test_lm_evals_draws_one_generator_for_the_run() -> None:
    pool = [Instance(id=str(n), input=f"q{n}", split="train", gold_index=n % 2, choices=("a", "b")) for n in range(9)]
    tested = [pool[2], pool[5], pool[7]]
    adapter = AdapterSpec(num_train=3, fewshot_split="train", fewshot_order="lmeval")
    rng = random.Random(1234)
    assert lmeval_exemplars(adapter, tested, pool) == [rng.sample(pool, 3) for _ in tested]
    excluding = AdapterSpec.model_validate({**adapter.model_dump(), "lmeval_fewshot": {"exclude_eval_doc": True}})
    rng = random.Random(1234)
    expected = [[p for p in rng.sample(pool, 4) if p is not inst][:3] for inst in tested]
    assert lmeval_exemplars(excluding, tested, pool) == expected
    first = AdapterSpec.model_validate({**excluding.model_dump(), "lmeval_fewshot": {"sampler": "first_n"}})
    assert lmeval_exemplars(first, tested, pool)[0] == pool[:3]
