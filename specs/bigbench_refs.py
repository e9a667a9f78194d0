"""`bigbench:TASK[/SUBTASK]`: any BIG-bench JSON task as a scenario without a spec file of its own.

The library scenario that reads that task file when a suite makes one (bigbench:navigate is bigbench.yaml's
bigbench_navigate); otherwise bigbench.yaml's own for_each template filled in, multiple choice or generation
as the task file says when it is on this machine (else by lm-evaluation-harness's list of BIG-bench's
generative tasks). specs/library.py's `find` and `resolve_run_target` send such names here.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import replace
from pathlib import Path

from helmflow.specs.compose import Node, from_plain, read
from helmflow.specs.library import BIGBENCH_PREFIX, LIBRARY, _named, library_roots, root_expansions
from helmflow.specs.loader import LoadedSpec, SpecError
from helmflow.specs.loader import _expand as expand_for_each
from helmflow.specs.loader import _validate as validate_node
from helmflow.specs.schema import ForEach, ScenarioSpec

# -- bigbench:TASK: any BIG-bench JSON task by name, from bigbench.yaml's template ------------------

# The suite whose for_each template `bigbench:TASK` fills in (the library's own, whatever HELMFLOW_SPEC_PATH adds).
BIGBENCH_SUITE = LIBRARY / "suites" / "bigbench.yaml"
_BIGBENCH_PART = re.compile(r"[a-z0-9][a-z0-9_]*")


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# BIG-bench's JSON tasks: the configs of tasksource/bigbench and hails/bigbench, as lm-evaluation-harness 0.4.13
# lists them (lm_eval/tasks/bigbench/generate_tasks.py, all_subtasks). A name that is neither here nor a task
# file on this machine is refused as unknown; a subtask's name is not checked (its task.json says at run time).
BIGBENCH_JSON_TASKS = _names(
    """
    abstract_narrative_understanding anachronisms analogical_similarity analytic_entailment arithmetic
    ascii_word_recognition authorship_verification auto_categorization auto_debugging bbq_lite_json
    bridging_anaphora_resolution_barqa causal_judgment cause_and_effect checkmate_in_one chess_state_tracking
    chinese_remainder_theorem cifar10_classification code_line_description codenames color common_morpheme
    conceptual_combinations conlang_translation contextual_parametric_knowledge_conflicts crash_blossom crass_ai
    cryobiology_spanish cryptonite cs_algorithms dark_humor_detection date_understanding disambiguation_qa
    discourse_marker_prediction disfl_qa dyck_languages elementary_math_qa emoji_movie emojis_emotion_prediction
    empirical_judgments english_proverbs english_russian_proverbs entailed_polarity entailed_polarity_hindi
    epistemic_reasoning evaluating_information_essentiality fact_checker fantasy_reasoning few_shot_nlg
    figure_of_speech_detection formal_fallacies_syllogisms_negation gem gender_inclusive_sentences_german
    general_knowledge geometric_shapes goal_step_wikihow gre_reading_comprehension hhh_alignment
    hindi_question_answering hindu_knowledge hinglish_toxicity human_organs_senses hyperbaton identify_math_theorems
    identify_odd_metaphor implicatures implicit_relations intent_recognition international_phonetic_alphabet_nli
    international_phonetic_alphabet_transliterate intersect_geometry irony_identification kanji_ascii kannada
    key_value_maps known_unknowns language_games language_identification linguistic_mappings linguistics_puzzles
    list_functions logic_grid_puzzle logical_args logical_deduction logical_fallacy_detection logical_sequence
    mathematical_induction matrixshapes metaphor_boolean metaphor_understanding minute_mysteries_qa misconceptions
    misconceptions_russian mnist_ascii modified_arithmetic moral_permissibility movie_dialog_same_or_different
    movie_recommendation mult_data_wrangling multiemo natural_instructions navigate nonsense_words_grammar
    novel_concepts object_counting odd_one_out operators paragraph_segmentation parsinlu_qa
    parsinlu_reading_comprehension penguins_in_a_table periodic_elements persian_idioms phrase_relatedness
    physical_intuition physics physics_questions play_dialog_same_or_different polish_sequence_labeling
    presuppositions_as_nli qa_wikidata question_selection real_or_fake_text reasoning_about_colored_objects
    repeat_copy_logic rephrase riddle_sense ruin_names salient_translation_error_detection scientific_press_release
    semantic_parsing_in_context_sparc semantic_parsing_spider sentence_ambiguity similarities_abstraction
    simp_turing_concept simple_arithmetic_json simple_arithmetic_json_multiple_choice
    simple_arithmetic_json_subtasks simple_arithmetic_multiple_targets_json simple_ethical_questions
    simple_text_editing snarks social_iqa social_support sports_understanding strange_stories strategyqa
    sufficient_information suicide_risk swahili_english_proverbs swedish_to_german_proverbs symbol_interpretation
    temporal_sequences tense timedial topical_chat tracking_shuffled_objects understanding_fables undo_permutation
    unit_conversion unit_interpretation unnatural_in_context_learning vitaminc_fact_verification what_is_the_tao
    which_wiki_edit winowhy word_sorting word_unscrambling
    """
)
# Those of them whose examples have no target_scores (lm-eval 0.4.13 found no multiple_choice_targets in them and
# made no multiple-choice task of them): generative. Used only when the task file is not on this machine.
BIGBENCH_GENERATIVE = _names(
    """
    ascii_word_recognition auto_categorization auto_debugging bridging_anaphora_resolution_barqa chess_state_tracking
    chinese_remainder_theorem codenames conlang_translation cryptonite disfl_qa few_shot_nlg gem
    gender_inclusive_sentences_german hindi_question_answering international_phonetic_alphabet_transliterate
    language_games linguistic_mappings linguistics_puzzles list_functions matrixshapes minute_mysteries_qa
    modified_arithmetic mult_data_wrangling natural_instructions object_counting operators paragraph_segmentation
    parsinlu_reading_comprehension physics_questions polish_sequence_labeling qa_wikidata repeat_copy_logic rephrase
    scientific_press_release semantic_parsing_in_context_sparc semantic_parsing_spider simp_turing_concept
    simple_arithmetic_json simple_arithmetic_json_multiple_choice simple_arithmetic_json_subtasks
    simple_arithmetic_multiple_targets_json simple_text_editing sufficient_information tense topical_chat
    unnatural_in_context_learning word_sorting word_unscrambling
    """
)
# The override that makes the template's multiple-choice scenario generative: bigbench.yaml's object_counting's,
# with BIG-bench's output length (64 tokens: the BIG-bench paper's, and HELM's max_tokens for BIG-bench).
BIGBENCH_GENERATION: dict[str, object] = {
    "source": {"hub": {"fields": {"choices": None, "answer": None, "references": "targets"}}},
    "fields": {"choices": None, "answer": None, "references": "targets"},
    "adapter": {"method": "generation", "target_delimiter": None, "max_tokens": 64, "stop": ["\n"]},
    "main_metric": "exact_match",
}
_DATA_TAIL = (
    "The task.json comes from ../shared/data when it is there, else from the PyPI sdist bigbench==1.0.0 "
    "(downloaded once into the helmflow cache, never installed), else from tasksource/bigbench on the Hub "
    "(its validation split, about a fifth of the task{hub})."
)


def _bigbench_shared() -> Path:
    """The shared data folder, as tasks/sources.py's shared_data() finds it (specs/ may not import tasks/)."""
    return Path(os.environ.get("HELMFLOW_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def _bigbench_cache() -> Path:
    """The helmflow cache, as tasks/sources.py's cache_root() finds it: an sdist's files are unpacked under it."""
    return Path(os.environ.get("HELMFLOW_CACHE", Path.home() / ".cache" / "helmflow"))


def bigbench_parts(ref: str) -> tuple[str, str | None]:
    """`bigbench:TASK` or `bigbench:TASK/SUBTASK` as (task, subtask)."""
    parts = ref.removeprefix(BIGBENCH_PREFIX).split("/")
    if not 1 <= len(parts) <= 2 or not all(_BIGBENCH_PART.fullmatch(p) for p in parts):
        raise SpecError(
            f"'{ref}': name a BIG-bench task as bigbench:TASK or bigbench:TASK/SUBTASK, in lowercase letters, digits "
            "and _ (e.g. bigbench:navigate, bigbench:logical_deduction/five_objects)"
        )
    return parts[0], parts[1] if len(parts) == 2 else None


def bigbench_task_files(spec: ScenarioSpec) -> list[Path]:
    """Where the spec's task.json is read without a download, in order: the shared folder's copy, the sdist's
    copy unpacked in the helmflow cache (tasks/sources.py's split_files and archive_member read these)."""
    paths = []
    for offline in spec.source.offline_sources:
        name = offline.files.get(spec.source.split)
        if not isinstance(name, str) or offline.format != "bigbench":
            continue
        if offline.archive:
            paths.append(_bigbench_cache() / "sdist-files" / offline.archive.replace("==", "-") / name)
        else:
            paths.append(Path(os.path.expandvars(name.replace("{shared}", str(_bigbench_shared())))))
    return paths


def bigbench_kind(path: Path) -> str | None:
    """A task file's kind as read_bigbench (tasks/data.py) makes its rows: "multiple_choice" when every example has
    target_scores (the options), else "generation" (the targets); None without examples (a task with subtasks)."""
    try:
        task = json.loads(path.read_bytes())
    except (OSError, ValueError):  # not readable or not JSON: loading the rows says where
        return "multiple_choice"
    examples = task.get("examples") if isinstance(task, dict) else None
    if not isinstance(examples, list) or not examples:
        return None
    scored = all(
        isinstance(e, dict) and isinstance(e.get("target_scores"), dict) and e["target_scores"] for e in examples
    )
    return "multiple_choice" if scored else "generation"


def _bigbench_description(folder: str, kind: str) -> str:
    task, _, subtask = folder.partition("/")
    what = f"BIG-bench {task}, subtask {subtask}" if subtask else f"BIG-bench {task}"
    if kind == "generation":
        how = (
            "generative (its examples have targets and no target_scores): the completion after the task's own "
            "prefixes (at most 64 tokens, BIG-bench's output length, and up to a newline) must equal one of the "
            "targets, BIG-bench's exact_str_match"
        )
    else:
        how = (
            "multiple choice (its examples have target_scores): each option scored as a continuation after the "
            "task's own prefixes, BIG-bench's multiple_choice_grade"
        )
    hub = f"; for a subtask, the Hub's {task} config, which mixes the task's subtasks" if subtask else ""
    return f"{what}, by name (bigbench:{folder}): {how}, zero-shot. " + _DATA_TAIL.format(hub=hub)


def _bigbench_template() -> Node:
    """bigbench.yaml's for_each entry (its template and items), as written."""
    tree = read(BIGBENCH_SUITE)
    entries = tree.value.get("scenarios") if tree is not None and tree.is_mapping else None
    for entry in entries.value if entries is not None and isinstance(entries.value, list) else []:
        template = entry.value.get("template") if entry.is_mapping else None
        if template is not None and template.is_mapping and "for_each" in entry.value:
            return entry
    raise SpecError(f"{BIGBENCH_SUITE}: no for_each entry with a template written in it, for bigbench:TASK")


def bigbench_from_template(ref: str, kind: str | None = None) -> LoadedSpec:
    """`bigbench:TASK[/SUBTASK]` made from bigbench.yaml's template: the scenario `bigbench_<task>[_<subtask>]`
    reading the folder TASK[/SUBTASK]. Its kind (`kind`, else decided here): the task file's own (bigbench_kind)
    when it is on this machine; else from BIGBENCH_GENERATIVE. The library is not consulted (bigbench_scenario is)."""
    task, subtask = bigbench_parts(ref)
    folder = f"{task}/{subtask}" if subtask else task
    entry = _bigbench_template()

    def made(kind: str, decided: str) -> LoadedSpec:
        override: dict[str, object] = json.loads(json.dumps(BIGBENCH_GENERATION)) if kind == "generation" else {}
        if subtask:  # the Hub has no config per subtask: the task's
            source = override.setdefault("source", {})
            source.setdefault("hub", {})["name"] = task  # type: ignore[union-attr]
        item = {"task": folder.replace("/", "_"), "folder": folder, "description": _bigbench_description(folder, kind)}
        one = replace(
            entry,
            value={**entry.value, "for_each": from_plain([{**item, "override": override}], entry.file, entry.line)},
        )
        block = validate_node(ForEach, one)
        [(_, loaded)] = expand_for_each(block, one, BIGBENCH_SUITE, (BIGBENCH_SUITE,), "bigbench")
        origin = f"bigbench:{folder}, bigbench.yaml's for_each template ({entry.where}) filled in: {decided}"
        return replace(loaded, origin=origin)

    if kind is not None:
        return made(kind, f"{kind}, as asked")
    spec = made("multiple_choice", "multiple_choice").spec
    assert isinstance(spec, ScenarioSpec)
    here = next((p for p in bigbench_task_files(spec) if p.is_file()), None)
    if here is not None:
        kind = bigbench_kind(here)
        if kind is None:
            _refuse_parent(ref, here)
            kind = "multiple_choice"  # no examples and no subtasks here: loading the rows says so
        return made(kind, f"{kind}, from the task file {here}")
    if task not in BIGBENCH_JSON_TASKS:
        raise _unknown_bigbench(ref, task)
    kind = "generation" if task in BIGBENCH_GENERATIVE else "multiple_choice"
    return made(kind, f"{kind}, from BIG-bench's task list (the task file is not on this machine)")


def _refuse_parent(ref: str, here: Path) -> None:
    subtasks = sorted(p.parent.name for p in here.parent.glob("*/task.json"))
    if subtasks:
        names = ", ".join(f"{BIGBENCH_PREFIX}{here.parent.name}/{s}" for s in subtasks)
        raise SpecError(
            f"'{ref}': the task has subtasks, each its own task.json; name one (those in {here.parent}: {names})"
        )


def _unknown_bigbench(ref: str, task: str) -> SpecError:
    here = _bigbench_shared() / "bigbench"
    local = {p.parent.name for p in here.glob("*/task.json")} | {
        p.parent.parent.name for p in here.glob("*/*/task.json")
    }
    close = difflib.get_close_matches(task, sorted(BIGBENCH_JSON_TASKS | local), n=3)
    hint = f"; did you mean {', '.join(BIGBENCH_PREFIX + c for c in close)}?" if close else ""
    return SpecError(
        f"unknown BIG-bench task '{ref}': '{task}' is not one of BIG-bench's {len(BIGBENCH_JSON_TASKS)} JSON tasks "
        f"and has no task.json in {here}{hint}"
    )


def _task_read(spec: ScenarioSpec) -> tuple:
    """What identifies the BIG-bench task file a scenario reads: its bigbench offline sources."""
    return tuple(
        (o.archive, json.dumps(o.files, sort_keys=True)) for o in spec.source.offline_sources if o.format == "bigbench"
    )


def bigbench_scenario(ref: str) -> LoadedSpec:
    """What `bigbench:TASK[/SUBTASK]` names: the library scenario that reads that task file, when a suite makes one
    (`bigbench:navigate` is bigbench.yaml's bigbench_navigate, its description and settings included); else
    bigbench_from_template's. A name the library gives to another task's file is refused, not shadowed."""
    task, subtask = bigbench_parts(ref)
    folder = f"{task}/{subtask}" if subtask else task
    key = _task_read(bigbench_from_template(ref, "multiple_choice").spec)  # type: ignore[arg-type]
    for root in library_roots():
        for loaded in root_expansions(root).values():
            if _task_read(loaded.spec) == key:  # type: ignore[arg-type]
                return loaded
    built = bigbench_from_template(ref)
    clash = _named("scenario", built.spec.name)
    if clash is not None:
        raise SpecError(
            f"'{ref}' would be the scenario '{built.spec.name}', a name the library gives to another task file "
            f"({clash.origin or clash.path}); bigbench:{folder} has no name of its own here"
        )
    return built
