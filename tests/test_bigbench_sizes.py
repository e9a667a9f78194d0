"""BIG-bench in its sizes: the 16 tasks of specs/suites/bigbench.yaml, BIG-bench Lite's 24 in
specs/suites/bigbench-lite.yaml, and any BIG-bench JSON task by name (`helmflow run bigbench:TASK[/SUBTASK]`,
specs/bigbench_refs.py's bigbench_scenario), each made from bigbench.yaml's for_each template."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from helmflow.flows.cli import main
from helmflow.flows.plans import run_targets, suite_plans
from helmflow.specs.bigbench_refs import (
    BIGBENCH_GENERATIVE,
    BIGBENCH_JSON_TASKS,
    bigbench_from_template,
    bigbench_kind,
    bigbench_task_files,
)
from helmflow.specs.library import LIBRARY, find, resolve_run_target
from helmflow.specs.loader import SpecError, spec_hash
from helmflow.specs.schema import ScenarioSpec
from helmflow.tasks.adapt import render_prompt
from helmflow.tasks.data import DataUnavailable, load_instances
from tests.conftest import SHARED_DATA, needs_shared_data

LITE = LIBRARY / "suites" / "bigbench-lite.yaml"
SHIPPED = LIBRARY / "suites" / "bigbench.yaml"
# BIG-bench Lite: BIG-bench's BIGBENCH_LITE_TASK_NAMES (the BIG-bench paper's BIG-bench Lite).
LITE_TASKS = {
    "auto_debugging",
    "bbq_lite_json",
    "code_line_description",
    "conceptual_combinations",
    "conlang_translation",
    "emoji_movie",
    "formal_fallacies_syllogisms_negation",
    "hindu_knowledge",
    "known_unknowns",
    "language_identification",
    "linguistics_puzzles",
    "logic_grid_puzzle",
    "logical_deduction",
    "misconceptions_russian",
    "novel_concepts",
    "operators",
    "parsinlu_reading_comprehension",
    "play_dialog_same_or_different",
    "repeat_copy_logic",
    "strange_stories",
    "strategyqa",
    "symbol_interpretation",
    "vitaminc_fact_verification",
    "winowhy",
}
LITE_GENERATIVE = {
    "auto_debugging",
    "conlang_translation",
    "linguistics_puzzles",
    "operators",
    "parsinlu_reading_comprehension",
    "repeat_copy_logic",
}


def folder_of(spec: ScenarioSpec) -> str:
    """The BIG-bench folder a scenario reads (TASK or TASK/SUBTASK), from its shared-folder file."""
    [shared] = [o for o in spec.source.offline_sources if not o.archive]
    path = shared.files[spec.source.split]
    assert isinstance(path, str)
    return path.removeprefix("{shared}/bigbench/").removesuffix("/task.json")


def lite_plans() -> list:
    return suite_plans(find("suite", "bigbench-lite").spec)  # type: ignore[arg-type]


# -- BIG-bench Lite ---------------------------------------------------------------------------------


def test_specs_validate_passes_the_lite_suite(capsys: pytest.CaptureFixture) -> None:
    assert main(["specs", "validate", str(LITE)]) == 0
    assert capsys.readouterr().out == f"ok  {LITE} (suite 'bigbench-lite'; 68 scenario(s) and 1 model(s) resolved)\n"


def test_the_lite_suite_is_bigbench_lites_24_tasks() -> None:
    plans = lite_plans()
    folders = [folder_of(p.spec) for p in plans]
    assert {f.split("/")[0] for f in folders} == LITE_TASKS
    assert len(set(folders)) == len(folders) == 68
    # One scenario per subtask, named as bigbench:TASK/SUBTASK names it; logical_deduction/three_objects is
    # bigbench.yaml's bigbench_logical_deduction.
    for plan, folder in zip(plans, folders, strict=True):
        expected = "bigbench_logical_deduction" if folder == "logical_deduction/three_objects" else None
        assert plan.spec.name == (expected or "bigbench_" + folder.replace("/", "_"))
    subtasks = {t: sum(f.startswith(t + "/") for f in folders) for t in LITE_TASKS}
    assert {t: n for t, n in subtasks.items() if n} == {
        "bbq_lite_json": 18,
        "conceptual_combinations": 6,
        "conlang_translation": 16,
        "logical_deduction": 3,
        "strange_stories": 2,
        "symbol_interpretation": 5,
    }


def test_the_lite_suite_reuses_bigbench_yamls_scenarios_and_makes_no_name_twice() -> None:
    shipped = {e.scenario for e in find("suite", "bigbench").spec.scenarios}  # type: ignore[union-attr]
    lite = [e.scenario for e in find("suite", "bigbench-lite").spec.scenarios]  # type: ignore[union-attr]
    assert len(set(lite)) == len(lite)
    assert set(lite) & shipped == {
        "bigbench_known_unknowns",
        "bigbench_logical_deduction",
        "bigbench_repeat_copy_logic",
        "bigbench_strategyqa",
        "bigbench_winowhy",
    }
    for name in set(lite) & shipped:  # the very scenario, found where bigbench.yaml makes it
        assert str(find("scenario", name).origin).startswith(f"for_each item at {SHIPPED}:")


def test_the_lite_template_is_bigbench_yamls_but_for_the_description() -> None:
    def template(path: Path) -> dict:
        [entry] = [e for e in yaml.safe_load(path.read_text())["scenarios"] if "for_each" in e]
        return entry["template"]

    lite, shipped = template(LITE), template(SHIPPED)
    assert lite.pop("description").startswith("${description} The task.json comes from ../shared/data")
    assert shipped.pop("description") == "${description}"
    assert lite == shipped


def test_each_lite_scenario_is_the_kind_its_task_file_says() -> None:
    """Multiple choice where the examples have target_scores, generation with exact match where they have only
    targets: from the task file where it is here, else from BIG-bench's task list (as bigbench:TASK decides)."""
    for plan in lite_plans():
        spec, task = plan.spec, folder_of(plan.spec).split("/")[0]
        here = [p for p in bigbench_task_files(spec) if p.is_file()]
        kind = bigbench_kind(here[0]) if here else ("generation" if task in BIGBENCH_GENERATIVE else "multiple_choice")
        assert kind == ("generation" if task in LITE_GENERATIVE else "multiple_choice"), spec.name
        if kind == "generation":
            assert (spec.adapter.method, spec.main_metric) == ("generation", "exact_match"), spec.name
            assert spec.fields.references == "targets" and spec.fields.choices is None
        else:
            assert spec.adapter.method == "multiple_choice_separate", spec.name
        assert spec.source.hub is not None and spec.source.hub.name == task  # the Hub has no config per subtask


# -- bigbench:TASK ------------------------------------------------------------------------------------


def test_bigbench_navigate_is_the_librarys_bigbench_navigate() -> None:
    library = find("scenario", "bigbench_navigate")
    by_name = resolve_run_target("bigbench:navigate")
    assert by_name.spec == library.spec and spec_hash(by_name.spec) == spec_hash(library.spec)
    assert find("scenario", "bigbench:navigate").spec == library.spec
    # The template alone makes the same scenario but for the description, which bigbench.yaml writes by hand.
    made = bigbench_from_template("bigbench:navigate").spec
    assert made.model_dump(exclude={"description"}) == library.spec.model_dump(exclude={"description"})
    assert made.description != library.spec.description


def test_a_lite_task_by_name_is_the_lite_suites_scenario() -> None:
    for ref, name in [
        ("bigbench:auto_debugging", "bigbench_auto_debugging"),
        ("bigbench:bbq_lite_json/ses_ambig", "bigbench_bbq_lite_json_ses_ambig"),
        ("bigbench:logical_deduction/three_objects", "bigbench_logical_deduction"),
    ]:
        loaded = resolve_run_target(ref)
        assert loaded.spec == find("scenario", name).spec, ref
        # The template makes the same scenario but for the description (and the name, for the subtask that
        # bigbench.yaml names bigbench_logical_deduction).
        made = bigbench_from_template(ref).spec
        assert made.name == "bigbench_" + ref.removeprefix("bigbench:").replace("/", "_")
        differ = {"description", "name"}
        assert made.model_dump(exclude=differ) == loaded.spec.model_dump(exclude=differ), ref


@needs_shared_data
def test_any_task_by_name_takes_its_kind_from_its_task_file() -> None:
    generative = resolve_run_target("bigbench:codenames")
    assert generative.spec.name == "bigbench_codenames"
    assert (generative.spec.adapter.method, generative.spec.adapter.max_tokens) == ("generation", 64)
    assert f"from the task file {SHARED_DATA / 'bigbench' / 'codenames' / 'task.json'}" in generative.origin
    choice = resolve_run_target("bigbench:hhh_alignment/honest")
    assert choice.spec.name == "bigbench_hhh_alignment_honest"
    assert choice.spec.adapter.method == "multiple_choice_separate"
    assert choice.spec.source.hub is not None and choice.spec.source.hub.name == "hhh_alignment"
    assert folder_of(choice.spec) == "hhh_alignment/honest"


def test_without_the_task_file_the_kind_comes_from_bigbench_s_task_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HELMFLOW_SHARED_DATA", str(tmp_path / "shared"))
    monkeypatch.setenv("HELMFLOW_CACHE", str(tmp_path / "cache"))
    assert len(BIGBENCH_JSON_TASKS) == 167 and BIGBENCH_GENERATIVE < BIGBENCH_JSON_TASKS
    codenames = resolve_run_target("bigbench:codenames")
    assert codenames.spec.adapter.method == "generation" and "from BIG-bench's task list" in codenames.origin
    assert resolve_run_target("bigbench:misconceptions").spec.adapter.method == "multiple_choice_separate"
    # The sources bigbench.yaml lists: the shared folder, the sdist, the Hub.
    source = codenames.spec.source
    assert [(o.archive, o.files) for o in source.offline_sources] == [
        (None, {"default": "{shared}/bigbench/codenames/task.json"}),
        ("bigbench==1.0.0", {"default": "bigbench/benchmark_tasks/codenames/task.json"}),
    ]
    assert source.hub is not None and (source.hub.path, source.hub.name) == ("tasksource/bigbench", "codenames")


def test_the_specs_layer_finds_the_files_where_tasks_reads_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from helmflow.specs import bigbench_refs as library
    from helmflow.tasks import sources

    assert library._bigbench_shared() == sources.shared_data()
    assert library._bigbench_cache() == sources.cache_root()
    monkeypatch.setenv("HELMFLOW_SHARED_DATA", str(tmp_path / "s"))
    monkeypatch.setenv("HELMFLOW_CACHE", str(tmp_path / "c"))
    assert library._bigbench_shared() == sources.shared_data()
    spec = bigbench_from_template("bigbench:navigate").spec
    shared, archive = bigbench_task_files(spec)
    second = spec.source.offline_sources[1]
    assert shared == sources.shared_data() / "bigbench" / "navigate" / "task.json"
    assert archive == sources.cache_root() / "sdist-files" / "bigbench-1.0.0" / second.files["default"]


def test_a_task_that_is_not_here_resolves_and_its_data_says_what_it_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HELMFLOW_SHARED_DATA", str(tmp_path / "shared"))
    monkeypatch.setenv("HELMFLOW_CACHE", str(tmp_path / "cache"))
    [plan] = run_targets(["bigbench:hindu_knowledge"]).plans
    assert plan.spec.name == "bigbench_hindu_knowledge"
    with pytest.raises(DataUnavailable) as err:
        load_instances(plan.spec, base_dir=Path(plan.base_dir or "."), prefer="offline")
    assert str(tmp_path / "shared" / "bigbench" / "hindu_knowledge" / "task.json") in str(err.value)
    assert "\n" not in str(err.value)


def test_an_unknown_task_is_a_clear_error() -> None:
    with pytest.raises(SpecError, match=r"unknown BIG-bench task 'bigbench:nope': 'nope' is not one of BIG-bench's"):
        resolve_run_target("bigbench:nope")
    with pytest.raises(SpecError, match=r"did you mean bigbench:navigate\?"):
        find("scenario", "bigbench:navigat")
    for bad in ("bigbench:", "bigbench:Navigate", "bigbench:a/b/c", "bigbench:../etc", "bigbench:navigate/"):
        with pytest.raises(SpecError, match="name a BIG-bench task as bigbench:TASK or bigbench:TASK/SUBTASK"):
            resolve_run_target(bad)


def test_helmflow_run_of_an_unknown_task_says_so_in_one_line(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    assert main(["--db", str(tmp_path / "w.duckdb"), "run", "bigbench:nope"]) != 0
    err = capsys.readouterr().err
    assert err.startswith("error: unknown BIG-bench task 'bigbench:nope'") and err.count("\n") == 1


@needs_shared_data
def test_a_task_with_subtasks_asks_for_one() -> None:
    with pytest.raises(SpecError, match=r"the task has subtasks.*bigbench:logical_deduction/three_objects"):
        resolve_run_target("bigbench:logical_deduction")


# -- the first prompts, from the shared data (no model) -------------------------------------------------


def first(ref: str) -> tuple[ScenarioSpec, str, tuple[str, ...], tuple[str, ...], int | None]:
    [plan] = run_targets([ref]).plans
    instances, _ = load_instances(plan.spec, base_dir=Path(plan.base_dir or "."))
    inst = instances[0]
    return plan.spec, render_prompt(plan.spec.adapter, inst, []), inst.choices, inst.references, inst.gold_index


@needs_shared_data
def test_a_generative_task_by_name_builds_its_first_prompt() -> None:
    spec, prompt, choices, references, gold = first("bigbench:codenames")
    assert spec.adapter.method == "generation"
    assert prompt == (
        "Q: Try to identify the 4 words best associated with the word DRIVE-IN from the following list: locust, "
        "fever, street, sherwood, kiss, popcorn, craft, ant, crystal, tear, cowboy, government, pine, mountie, soap, "
        "genie, king arthur, sphinx, director, bride, razor, fog, whistle. Give your answer in alphabetical order.\nA: "
    )
    assert (choices, references, gold) == ((), ("director, kiss, popcorn, street",), None)


@needs_shared_data
def test_a_multiple_choice_task_by_name_builds_its_first_prompt() -> None:
    spec, prompt, choices, _, gold = first("bigbench:misconceptions")
    assert spec.adapter.method == "multiple_choice_separate"
    # The task's own prefix; its choices are not listed (append_choices_to_input: false).
    assert prompt == (
        "Is the following statement true or false? Output T for true and F for false.\n"
        "Q: Twinkies are edible for decades or longer.\nA: "
    )
    assert (choices, gold) == (("T", "F"), 1)


@needs_shared_data
def test_a_lite_subtask_builds_its_first_prompt() -> None:
    spec, prompt, choices, _, gold = first("bigbench:conceptual_combinations/homonyms")
    assert spec.name == "bigbench_conceptual_combinations_homonyms"  # bigbench-lite.yaml's
    options = (
        "Alort boxers wear gloves.",
        "Alort boxers have wrinkly faces.",
        "Alort boxers are airier than briefs.",
        "Alort boxers put things in boxes.",
    )
    # The subtask's own prefixes: "\n" before the input, "\n option: " before each choice, "\nAnswer: " after.
    assert prompt == (
        "The word 'alort' is an adjective for things that are athletes. Question: Which of the following sentences "
        "best characterizes alort boxers?" + "".join(f"\n option: {o}" for o in options) + "\nAnswer: "
    )
    assert (choices, gold) == (options, 0)
