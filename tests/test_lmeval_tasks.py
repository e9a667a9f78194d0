"""`lmeval:TASK` against lm-evaluation-harness itself: for fixed documents, helmflow's prompts, scored continuations,
stop strings and targets equal, byte for byte, what lm-eval 0.4.13's own ConfigurableTask builds from the same YAML.

Each lm-eval task is built as lm_eval/tasks/_factory.py builds it (its YAML read by lm-eval's loader, includes
and `!function` hooks resolved there), with its download replaced by the documents below, then asked for its
requests as lm_eval/evaluator.py asks (num_fewshot, fewshot seed 1234). helmflow's side is the translated spec
(specs/lmeval_translate.py) through the rows-to-instances path and tasks/adapt.py's build_requests. Skipped when
lm_eval is not installed (`pip install -e '.[lmeval]'`, which make install does).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

pytest.importorskip("lm_eval.api.task", reason="lm-evaluation-harness is not installed: pip install -e '.[lmeval]'")

from helmflow.specs.library import apply_suite_entry
from helmflow.specs.lmeval_refs import SETTINGS, lmeval_scenario
from helmflow.specs.lmeval_tasks import find_entry, task_config
from helmflow.specs.lmeval_translate import translate
from helmflow.tasks.adapt import build_requests
from helmflow.tasks.data import DataError, fewshot_pool, load_instances, load_rows, to_instances
from helmflow.tasks.lmeval_hooks import apply_hooks
from tests.conftest import SHARED_DATA, needs_shared_data

Docs = dict[str, list[dict[str, Any]]]


def lmeval_built(name: str, docs: Docs, shots: int | None) -> list[dict[str, Any]]:
    """lm-eval's contexts, continuations, generation settings and gold target, doc by doc."""
    import datasets
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    config = load_yaml(find_entry(name).path, resolve_func=True)
    for key in ("tag", "group", "task_list"):
        config.pop(key, None)

    def download(self: ConfigurableTask, *args: Any, **kwargs: Any) -> None:
        self.dataset = datasets.DatasetDict({split: datasets.Dataset.from_list(rows) for split, rows in docs.items()})

    with mock.patch.object(ConfigurableTask, "download", download):
        task = ConfigurableTask(config=config)
    task.set_config("num_fewshot", shots if shots is not None else task.get_config("num_fewshot") or 0)
    task.set_fewshot_seed(1234)
    task.build_all_requests()
    built: dict[int, dict[str, Any]] = {}
    for request in task.instances:
        one = built.setdefault(request.doc_id, {"prompt": request.arguments[0], "continuations": []})
        assert one["prompt"] == request.arguments[0]
        if request.request_type == "loglikelihood":
            one["continuations"].append(request.arguments[1])
        else:
            one["generation"] = request.arguments[1]
    for doc_id, doc in enumerate(task.eval_docs):
        gold = task.doc_to_target(doc)
        if task.OUTPUT_TYPE == "multiple_choice":
            choices = task.doc_to_choice(doc)
            built[doc_id]["gold"] = gold if isinstance(gold, int) else choices.index(gold)
        else:
            built[doc_id]["gold"] = gold if isinstance(gold, list) else [gold]
    return [built[k] for k in sorted(built)]


def helmflow_built(name: str, docs: Docs, shots: int | None) -> list[dict[str, Any]]:
    """helmflow's requests for the same documents, from the translated scenario."""
    entry = find_entry(name)
    translation = translate(name, task_config(entry), entry.path)
    spec = translation.spec
    assert spec is not None, translation.needs
    if shots is not None:
        spec = apply_suite_entry(spec, num_train=shots)  # a suite entry's num_train, as lm-eval's --num_fewshot
    choices = spec.adapter.method.startswith("multiple_choice")

    def instances(split: str) -> list:
        rows = [(f"{split} row {n}", dict(doc)) for n, doc in enumerate(docs[split], start=1)]
        if spec.source.hooks:
            rows = apply_hooks(rows, spec.source.hooks)
        return to_instances(rows, spec.fields, split, choices)

    tested = instances(spec.source.split)
    pool = instances(spec.adapter.fewshot_split) if spec.adapter.num_train else []
    built = []
    for inst, request in zip(tested, build_requests(spec.adapter, tested, pool, seed=0), strict=True):
        one: dict[str, Any] = {"prompt": request.prompt, "continuations": list(request.continuations)}
        if choices:
            one["gold"] = inst.gold_index
        else:
            one["gold"] = list(inst.references)
            one["generation"] = {"until": list(request.stop), "max_gen_toks": request.max_tokens}
        built.append(one)
    return built


def assert_same(name: str, docs: Docs, shots: int | None = None) -> list[dict[str, Any]]:
    theirs, ours = lmeval_built(name, docs, shots), helmflow_built(name, docs, shots)
    for doc_id, (lm, hf) in enumerate(zip(theirs, ours, strict=True)):
        assert hf["prompt"] == lm["prompt"], f"{name} doc {doc_id}"
        assert hf["continuations"] == lm["continuations"], f"{name} doc {doc_id}"
        assert hf["gold"] == lm["gold"], f"{name} doc {doc_id}"
        if "generation" in lm:
            assert hf["generation"]["until"] == lm["generation"]["until"]
            assert hf["generation"]["max_gen_toks"] == lm["generation"].get("max_gen_toks", 256)
    return ours


# -- the documents: each task's Hub schema, a few rows of each split it reads ------------------------------------


def arc(n: int, tag: str) -> list[dict[str, Any]]:
    labels = ["A", "B", "C", "D"] if n % 3 else ["1", "2", "3"]  # some ARC rows have 3 choices labelled 1-3
    texts = [f"{tag} option {k} of {n}" for k in range(len(labels))]
    return [
        {"id": f"{tag}-{n}", "question": f"{tag} question {n}?", "choices": {"text": texts, "label": labels}}
        | {"answerKey": labels[n % len(labels)]}
    ]


def arc_docs() -> Docs:
    return {s: [d for n in range(k) for d in arc(n, s)] for s, k in (("train", 7), ("validation", 2), ("test", 4))}


def test_arc_easy_random_shots() -> None:
    # The default sampler from the training split (its few-shot split is not its test split: no doc left out).
    ours = assert_same("arc_easy", arc_docs(), shots=3)
    assert ours[0]["prompt"].count("Question:") == 4


def test_arc_challenge_an_include_family() -> None:
    assert_same("arc_challenge", arc_docs())


def mmlu_docs() -> Docs:
    def rows(split: str, k: int) -> list[dict[str, Any]]:
        return [
            {"question": f"  {split} physics {n}? ", "subject": "high_school_physics"}
            | {"choices": [f"{n}{c} m/s" for c in "abcd"], "answer": n % 4}
            for n in range(k)
        ]

    return {"dev": rows("dev", 5), "test": rows("test", 3)}


def test_mmlu_subject_first_n_with_description() -> None:
    ours = assert_same("mmlu_high_school_physics", mmlu_docs(), shots=5)
    assert ours[0]["prompt"].startswith("The following are multiple choice questions (with answers) about high school")
    assert ours[0]["continuations"] == [" A", " B", " C", " D"]


def boolq_docs() -> Docs:
    def rows(split: str, k: int) -> list[dict[str, Any]]:
        return [
            {"question": f"is {split} {n} true", "passage": f"Passage {n}: it is.", "idx": n, "label": n % 2}
            for n in range(k)
        ]

    return {"train": rows("train", 6), "validation": rows("validation", 4)}


def test_boolq_literal_choices_and_lm_evals_none_equals_none_exclusion() -> None:
    # No fewshot_split and no test_split: lm-eval passes the doc to its sampler (None == None), drawing k + 1.
    ours = assert_same("boolq", boolq_docs(), shots=2)
    assert ours[0]["continuations"] == [" no", " yes"]


def test_sst2_and_rte_literal_choices() -> None:
    sst2 = {
        s: [{"sentence": f"{s} film {n} ", "label": n % 2, "idx": n} for n in range(5)] for s in ("train", "validation")
    }
    assert_same("sst2", sst2, shots=2)
    rte = {
        s: [{"sentence1": f"{s} premise {n}.", "sentence2": f"h {n}", "idx": n, "label": n % 2} for n in range(4)]
        for s in ("train", "validation")
    }
    assert_same("rte", rte)


def test_piqa_openbookqa_sciq_choice_expressions() -> None:
    piqa = {
        s: [{"goal": f"{s} goal {n}", "sol1": f"do {n}", "sol2": f"undo {n}", "label": n % 2} for n in range(4)]
        for s in ("train", "validation")
    }
    assert_same("piqa", piqa)
    obqa = {
        s: [
            {
                "id": str(n),
                "question_stem": f"{s} stem {n}",
                "choices": {"text": ["w", "x", "y", "z"], "label": list("ABCD")},
            }
            | {"answerKey": " " + "ABCD"[n % 4]}  # openbookqa's target strips the key
            for n in range(4)
        ]
        for s in ("train", "validation", "test")
    }
    assert_same("openbookqa", obqa)
    sciq = {
        s: [
            {"question": f"{s} q {n}", "distractor1": "d1", "distractor2": "d2", "distractor3": "d3"}
            | {"correct_answer": f"right {n}", "support": f"\n support {n}" if n % 2 else ""}
            for n in range(4)
        ]
        for s in ("train", "validation", "test")
    }
    assert_same("sciq", sciq, shots=1)


def test_hellaswag_process_docs_hook_from_the_package() -> None:
    def rows(split: str, k: int) -> list[dict[str, Any]]:
        return [
            {"ind": n, "activity_label": f"Act {n}", "ctx_a": f"A {split} [header] man", "ctx_b": "walks", "ctx": "x"}
            | {"endings": [f"e{j} [title]  far" for j in range(4)], "source_id": "s", "split": split}
            | {"split_type": "indomain", "label": str(n % 4)}
            for n in range(k)
        ]

    assert_same("hellaswag", {"train": rows("train", 5), "validation": rows("validation", 3)}, shots=2)


def test_copa_doc_to_hooks_from_the_package() -> None:
    docs = {
        s: [
            {"premise": f"The {s} man fell {n}.", "choice1": "He slipped.", "choice2": "He flew."}
            | {"question": "cause" if n % 2 else "effect", "idx": n, "label": n % 2}
            for n in range(4)
        ]
        for s in ("train", "validation")
    }
    assert_same("copa", docs, shots=1)


def test_truthfulqa_mc1_set_statement_and_same_split_exclusion() -> None:
    # Its only split is validation, and the exemplars come from it: lm-eval leaves the doc itself out.
    docs = {
        "validation": [
            {"question": f"Q{n}?", "mc1_targets": {"choices": [f"true {n}", f"false {n}"], "labels": [1, 0]}}
            | {"mc2_targets": {"choices": ["a"], "labels": [1]}}
            for n in range(5)
        ]
    }
    assert_same("truthfulqa_mc1", docs, shots=2)


def gsm8k_docs() -> Docs:
    def rows(split: str, k: int) -> list[dict[str, Any]]:
        return [{"question": f"{split} sum {n}?", "answer": f"{n} + 1 = {n + 1}\n#### {n + 1}"} for n in range(k)]

    return {"train": rows("train", 8), "test": rows("test", 3)}


def test_gsm8k_generation_random_shots_and_filter() -> None:
    entry = find_entry("gsm8k")
    translation = translate("gsm8k", task_config(entry), entry.path)
    assert translation.spec is not None
    assert translation.spec.answer_extraction == [
        {"function": "regex", "regex_pattern": "#### (\\-?[0-9\\.\\,]+)"},
        {"function": "take_first"},
    ]
    # lm-eval removes patterns from the answers and targets before exact_match: so does exact_match_options.
    assert translation.needs == []
    assert translation.spec.exact_match_options is not None
    assert translation.spec.exact_match_options.regexes_to_ignore == [",", "\\$", "(?s).*#### ", "\\.$"]
    ours = assert_same("gsm8k", gsm8k_docs())
    assert ours[0]["generation"]["until"] == ["Question:", "</s>", "<|im_end|>"]


def test_gsm8k_cot_fixed_samples_first_n_rendered_into_the_instructions() -> None:
    ours = assert_same("gsm8k_cot", gsm8k_docs())
    assert ours[0]["prompt"].count("Q: ") == 9


def test_nq_open_and_triviaqa_list_targets() -> None:
    nq = {
        s: [{"question": f"{s} who {n}", "answer": [f"ans {n}", f"alt {n}"]} for n in range(4)]
        for s in ("train", "validation")
    }
    ours = assert_same("nq_open", nq, shots=2)
    assert ours[0]["prompt"].startswith("Answer these questions:\n\n")
    trivia = {
        s: [
            {"question": f"{s} what {n}", "question_id": str(n), "question_source": "x"}
            | {"answer": {"aliases": [f"a{n}", f"b{n}"], "value": f"a{n}", "normalized_value": f"a{n}"}}
            for n in range(4)
        ]
        for s in ("train", "validation")
    }
    assert_same("triviaqa", trivia, shots=1)


@pytest.mark.shared_data
@needs_shared_data
def test_sst2_from_a_data_dir_matches_lm_eval_on_the_same_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # --data-dir: GLUE's dev.tsv as the validation split (the Hub's columns, sentence and label), 2-shot from it.
    (tmp_path / "validation.tsv").symlink_to(SHARED_DATA / "glue" / "sst2" / "dev.tsv")
    (tmp_path / "train.tsv").symlink_to(SHARED_DATA / "glue" / "sst2" / "dev.tsv")
    monkeypatch.setattr(SETTINGS, "data_dir", tmp_path)
    loaded = lmeval_scenario("lmeval:sst2")
    spec = apply_suite_entry(loaded.spec, num_train=2)  # type: ignore[arg-type]
    rows, source = load_rows(spec, "validation", "auto", loaded.path.parent)
    assert source.kind == "offline" and len(rows) == 872
    docs = [row for _, row in rows[:40]]
    ours = assert_same("sst2", {"validation": docs, "train": docs}, shots=2)
    instances, _ = load_instances(spec, base_dir=loaded.path.parent)
    pool = fewshot_pool(spec, base_dir=loaded.path.parent)
    requests = build_requests(spec.adapter, instances, pool, seed=0)
    assert requests[0].prompt.endswith(ours[0]["prompt"].split("\n\n")[-1])


WIKITEXT_PAGES = [
    " = Robert Boulter = \n Robert Boulter is an English film , television and theatre actor . He had a guest @-@ "
    "starring role on the television series The Bill in 2000 . \n = = Career = = \n In 2006 , Boulter starred "
    "alongside Whishaw in the play Citizenship written by Mark Ravenhill . \n",
    " = Valkyria Chronicles III = \n Senjō no Valkyria 3 : Unrecorded Chronicles ( Japanese : 戦場のヴァルキュリア3 , "
    "lit . Valkyria of the Battlefield 3 ) is a tactical role @-@ playing video game . \n",
]


def test_wikitext_rolling_the_text_scored_and_the_counts_of_its_process_results() -> None:
    """A loglikelihood_rolling task: the text lm-eval scores (doc_to_target through wikitext's detokenizer hook) is
    helmflow's one continuation after an empty prompt, and the word and byte counts its metrics divide by are those
    lm-eval's process_results gives (counted on the page before detokenising, not on the text scored)."""
    import datasets
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml

    docs = {split: [{"page": page} for page in WIKITEXT_PAGES] for split in ("train", "validation", "test")}
    config = load_yaml(find_entry("wikitext").path, resolve_func=True)

    def download(self: ConfigurableTask, *args: Any, **kwargs: Any) -> None:
        self.dataset = datasets.DatasetDict({split: datasets.Dataset.from_list(rows) for split, rows in docs.items()})

    with mock.patch.object(ConfigurableTask, "download", download):
        task = ConfigurableTask(config=config)
    task.build_all_requests()
    theirs = sorted((r.doc_id, r.request_type, r.arguments) for r in task.instances)
    counts = [task.process_results(doc, [-7.5]) for doc in task.eval_docs]

    translation = translate("wikitext", task_config(find_entry("wikitext")), find_entry("wikitext").path)
    spec = translation.spec
    assert spec is not None and not translation.needs
    assert (spec.adapter.method, spec.main_metric) == ("language_modeling", "bits_per_byte")
    rows = apply_hooks([(f"test row {n}", doc) for n, doc in enumerate(docs["test"], 1)], spec.source.hooks)
    instances = to_instances(rows, spec.fields, "test", False)
    ours = build_requests(spec.adapter, instances, [], seed=0)
    assert [(r.prompt, r.continuations) for r in ours] == [("", args) for _, _, args in theirs]
    assert [kind for _, kind, _ in theirs] == ["loglikelihood_rolling"] * 2
    for inst, their in zip(instances, counts, strict=True):
        assert their["word_perplexity"] == (-7.5, int(inst.extra["words"]))
        assert their["bits_per_byte"] == their["byte_perplexity"] == (-7.5, int(inst.extra["bytes"]))
    # The page's words, not the detokenised text's: " , " joins its neighbours after detokenising.
    assert int(instances[0].extra["words"]) != len(instances[0].input.split())


def test_what_does_not_run_says_so_in_one_line(capsys: pytest.CaptureFixture) -> None:
    from helmflow.flows.cli import main

    for task, need in (("lambada_openai", "output_type loglikelihood (one"),):
        assert main(["run", f"lmeval:{task}"]) == 2
        [line] = capsys.readouterr().err.strip().splitlines()
        assert line.startswith(f"error: lmeval:{task}: helmflow cannot run it as lm-eval does: {need}")
    # winogrande's doc_to_text gives the index of the option that fills the blank: refused once its rows are read.
    entry = find_entry("winogrande")
    spec = translate("winogrande", task_config(entry), entry.path).spec
    assert spec is not None and spec.source.hooks is not None
    row = {"sentence": "The cat is bigger than the _.", "option1": "cat", "option2": "mouse", "answer": "2"}
    with pytest.raises(DataError, match="several inputs"):
        apply_hooks([("validation row 1", row)], spec.source.hooks)
