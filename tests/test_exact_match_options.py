"""A scenario's exact_match_options: generation's exact_match as lm-evaluation-harness 0.4.13 computes it with its
metric_list options (regexes_to_ignore, ignore_case, ignore_punctuation, ignore_numbers), checked with the spec,
scored through the pipeline, and written by the lm-eval translation (gsm8k, nq_open, triviaqa)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from helmflow.specs.lmeval_translate import translate
from helmflow.specs.loader import SpecError, load_spec
from helmflow.specs.schema import ExactMatchOptions, ScenarioSpec
from helmflow.tasks import extract
from helmflow.tasks.adapt import Request
from helmflow.tasks.extract import RegexTimeoutError, parse_steps
from helmflow.tasks.instances import Instance
from helmflow.tasks.metrics import score, to_prediction
from helmflow.tasks.metrics.accuracy import ignoring, instance_accuracy, lmeval_exact_match
from helmflow.tasks.metrics.sampling import instance_values
from helmflow.tasks.models.base import Completion

# lm-eval's gsm8k.yaml (and gsm8k_cot's) exact_match options, as its YAML writes them.
GSM8K_REGEXES = [",", "\\$", "(?s).*#### ", "\\.$"]
GSM8K = ExactMatchOptions(regexes_to_ignore=GSM8K_REGEXES, ignore_case=True)
# nq_open's: an article before a word, then case and punctuation.
NQ_OPEN = ExactMatchOptions(
    regexes_to_ignore=["\\b(?:The |the |An |A |The |a |an )"], ignore_case=True, ignore_punctuation=True
)


# -- each option by hand ---------------------------------------------------------------------------------------


def test_regexes_to_ignore_delete_every_match_of_each_pattern_in_turn() -> None:
    # "$1,234." -> (",") "$1234." -> ("\$") "1234." -> ("(?s).*#### ") unchanged -> ("\.$") "1234".
    assert ignoring("$1,234.", GSM8K) == "1234"
    assert lmeval_exact_match("$1,234.", "1234", GSM8K) == 1.0
    # A gsm8k target is the whole worked answer: "(?s).*#### " deletes everything up to its final "#### ".
    target = "Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips.\n#### 1,072"
    assert ignoring(target, GSM8K) == "1072"
    assert lmeval_exact_match("$1,072.", target, GSM8K) == 1.0
    assert lmeval_exact_match("1072.5", target, GSM8K) == 0.0  # "\.$" takes a final dot only
    # Only the patterns, nothing else: "1.234" keeps its inner dot.
    assert ignoring("1.234", ExactMatchOptions(regexes_to_ignore=["\\.$"])) == "1.234"


def test_texts_are_compared_as_they_are_not_stripped() -> None:
    # lm-eval compares the filtered answer with the target as is: " 72" is not "72" (helmflow's own exact_match,
    # without options, strips both).
    assert lmeval_exact_match(" 72", "#### 72", GSM8K) == 0.0
    assert lmeval_exact_match("72", "#### 72", GSM8K) == 1.0
    assert lmeval_exact_match(" 72", "72", ExactMatchOptions()) == 0.0


def test_ignore_case_lowers_both_texts() -> None:
    case = ExactMatchOptions(ignore_case=True)
    assert lmeval_exact_match("PARIS", "Paris", case) == 1.0
    assert lmeval_exact_match("Paris.", "paris", case) == 0.0  # punctuation still counts
    assert lmeval_exact_match("PARIS", "Paris", ExactMatchOptions()) == 0.0


def test_ignore_punctuation_deletes_ascii_punctuation_only() -> None:
    punctuation = ExactMatchOptions(ignore_punctuation=True)
    # string.punctuation, as lm-eval's translate table: "U.S.A.!" -> "USA".
    assert ignoring("U.S.A.!", punctuation) == "USA"
    assert lmeval_exact_match("U.S.A.!", "USA", punctuation) == 1.0
    assert lmeval_exact_match("usa", "USA", punctuation) == 0.0  # case kept
    # Not Unicode punctuation (guillemets, an en dash), and spaces and articles stay: unlike quasi_exact_match.
    assert ignoring("«USA» 1–2", punctuation) == "«USA» 1–2"
    assert lmeval_exact_match("the USA", "USA", ExactMatchOptions(ignore_case=True, ignore_punctuation=True)) == 0.0


def test_ignore_numbers_deletes_ascii_digits() -> None:
    numbers = ExactMatchOptions(ignore_numbers=True)
    assert ignoring("Room 101, floor 2", numbers) == "Room , floor "
    assert lmeval_exact_match("abc123", "abc", numbers) == 1.0
    assert lmeval_exact_match("abc١", "abc", numbers) == 0.0  # an Arabic-Indic digit is not in string.digits


def test_options_apply_in_lm_evals_order_regexes_then_case_then_punctuation() -> None:
    # The regexes see the text before it is lowered: "X" is case-sensitive, so "x1" keeps its x.
    upper_x = ExactMatchOptions(regexes_to_ignore=["X"], ignore_case=True)
    assert (ignoring("X1", upper_x), ignoring("x1", upper_x)) == ("1", "x1")
    # ... and before punctuation goes: "#### " still matches, so the target becomes "12".
    hashes = ExactMatchOptions(regexes_to_ignore=["(?s).*#### "], ignore_punctuation=True)
    assert lmeval_exact_match("12", "work\n#### 12", hashes) == 1.0
    # nq_open: "The Beatles" -> (article) "Beatles" -> "beatles"; "the beatles!" -> "beatles!" -> "beatles".
    assert lmeval_exact_match("The Beatles", "the beatles!", NQ_OPEN) == 1.0
    assert lmeval_exact_match("Beatles", "Theatles", NQ_OPEN) == 0.0  # "\b" keeps the pattern to whole words


def test_the_same_as_lm_evals_own_exact_match() -> None:
    metrics = pytest.importorskip("lm_eval.api.metrics", reason="lm-evaluation-harness is not installed")
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("$1,234.", "1234", {"regexes_to_ignore": GSM8K_REGEXES, "ignore_case": True}),
        ("72", "a\nb = 72\n#### 72", {"regexes_to_ignore": GSM8K_REGEXES, "ignore_case": True}),
        (" 72", "#### 72", {"regexes_to_ignore": GSM8K_REGEXES, "ignore_case": True}),
        ("The Beatles", "the beatles!", NQ_OPEN.model_dump()),
        ("Beatles", "Theatles", NQ_OPEN.model_dump()),
        ("U.S.A.!", "usa", {"ignore_case": True, "ignore_punctuation": True}),
        ("«USA»", "USA", {"ignore_punctuation": True}),
        ("abc123", "ABC", {"ignore_case": True, "ignore_numbers": True}),
        ("X1", "x1", {"regexes_to_ignore": ["X"], "ignore_case": True}),
        ("12", "work\n#### 12", {"regexes_to_ignore": ["(?s).*#### "], "ignore_punctuation": True}),
        (" 72", "72", {}),
    ]
    for prediction, reference, options in cases:
        theirs = metrics.exact_match_hf_evaluate([prediction], [reference], **options)["exact_match"]
        ours = lmeval_exact_match(prediction, reference, ExactMatchOptions.model_validate(options))
        assert ours == theirs, (prediction, reference, options)
    # Where they differ, on purpose: lm-eval lowers a numpy array of fixed width, which cuts a text that lowering
    # lengthens ("İ" becomes "i" and a combining dot): "İstanbul" becomes "i̇stanbu" there, and equals nothing.
    here = lmeval_exact_match("İstanbul", "i̇stanbul", ExactMatchOptions(ignore_case=True))
    there = metrics.exact_match_hf_evaluate(["İstanbul"], ["i̇stanbul"], ignore_case=True)["exact_match"]
    assert (here, there) == (1.0, 0.0)


# -- scoring ---------------------------------------------------------------------------------------------------


def test_instance_accuracy_takes_the_options_for_exact_match_only_and_any_reference() -> None:
    inst = Instance(id="g", input="?", split="test", references=("New York", "NYC"))
    names = ("exact_match", "quasi_exact_match", "prefix_exact_match", "f1_score")  # ROUGE's scorer is slow to load
    before = instance_accuracy(inst, None, "nyc", names=names)
    after = instance_accuracy(inst, None, "nyc", names=names, exact_match_options=ExactMatchOptions(ignore_case=True))
    # lm-eval's list of targets scores 1 when any one matches; the other metrics are as without options.
    assert (before["exact_match"], after["exact_match"]) == (0.0, 1.0)
    assert {k: v for k, v in after.items() if k != "exact_match"} == {
        k: v for k, v in before.items() if k != "exact_match"
    }
    # Multiple choice compares the chosen option's index: no text, so the options change nothing.
    choice = Instance(id="c", input="?", split="test", choices=("A", "a"), gold_index=0)
    assert instance_accuracy(choice, 1, "a", exact_match_options=ExactMatchOptions(ignore_case=True)) == {
        "exact_match": 0.0,
        "quasi_exact_match": 0.0,
    }


def _spec(**more: Any) -> ScenarioSpec:
    raw = {"name": "sums", "source": {"hub": {"path": "x/y"}}, "fields": {"input": "q", "references": "a"}}
    return ScenarioSpec.model_validate(raw | {"adapter": {"method": "generation"}, "metrics": ["exact_match"]} | more)


def test_a_run_scores_exact_match_with_the_specs_options_and_without_them_as_before() -> None:
    strict = [{"function": "regex", "regex_pattern": "#### (\\-?[0-9\\.\\,]+)"}, {"function": "take_first"}]
    spec = _spec(answer_extraction=strict, exact_match_options=GSM8K.model_dump())
    targets = ["3 + 4 = 7\n#### 7", "1,000 + 234 = 1,234\n#### 1,234", "2 * 5 = 10\n#### 10"]
    instances = [Instance(f"i{k}", "?", "test", references=(t,)) for k, t in enumerate(targets)]
    texts = ["So 7.\n#### 7", "In all #### 1,234", "It is 10. #### 11"]
    steps = parse_steps(spec.answer_extraction)
    predictions = [
        to_prediction(Request(f"i{k}", f"i{k}", "generation", "?"), Completion(f"i{k}", text=t), steps)
        for k, t in enumerate(texts)
    ]
    stats, _ = score(spec, instances, predictions)
    assert [s.value for s in stats if s.metric == "exact_match"] == [1.0, 1.0, 0.0]
    # Without options the stripped texts are compared: "7" is not the whole worked answer.
    plain = _spec(answer_extraction=strict)
    stats, _ = score(plain, instances, predictions)
    assert [s.value for s in stats if s.metric == "exact_match"] == [0.0, 0.0, 0.0]
    assert "exact_match_options" not in plain.model_dump(mode="json")  # unset: no key, the spec's hash as before


def test_maj_at_k_votes_and_scores_with_the_options() -> None:
    inst = Instance("x", "q", "test", references=("work\n#### 1,234",))
    values = instance_values(inst, ["$1,234.", "1234", "99"], "exact_match", 3, GSM8K)
    assert values == {"maj@3": 1.0, "pass@1": pytest.approx(2 / 3), "pass@3": 1.0}
    assert instance_values(inst, ["$1,234.", "1234", "99"], "exact_match", 3)["pass@1"] == 0.0


def test_a_backtracking_regex_to_ignore_times_out_with_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(extract, "REGEX_TIMEOUT_S", 0.05)  # keep the test short
    slow = ExactMatchOptions(regexes_to_ignore=["(a|aa)+$"])
    with pytest.raises(RegexTimeoutError, match=r"regex '\(a\|aa\)\+\$' ran over"):
        lmeval_exact_match("a" * 60 + "b", "x", slow)


# -- the spec --------------------------------------------------------------------------------------------------


def test_a_bad_regex_is_an_error_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as caught:
        _spec(exact_match_options={"regexes_to_ignore": [",", "[bad"]})
    [error] = caught.value.errors()
    assert error["loc"] == ("exact_match_options", "regexes_to_ignore", 1)
    assert error["msg"].startswith("regex '[bad' does not compile")
    # From a file: the file, the line and the field.
    path = tmp_path / "sums.yaml"
    path.write_text(
        "name: sums\nsource: {hub: {path: x/y}}\nfields: {input: q, references: a}\nadapter: {method: generation}\n"
        "exact_match_options:\n  regexes_to_ignore:\n    - ','\n    - '(unclosed'\n"
    )
    with pytest.raises(SpecError, match=r"sums\.yaml:8: field 'exact_match_options\.regexes_to_ignore\.1': regex"):
        load_spec(path)


def test_the_options_are_strict_and_for_generation_only() -> None:
    with pytest.raises(ValidationError, match="ignore_whitespace"):
        _spec(exact_match_options={"ignore_whitespace": True})
    with pytest.raises(ValidationError, match="regexes_to_ignore"):
        _spec(exact_match_options={"regexes_to_ignore": ","})  # a list of patterns, not one
    with pytest.raises(ValidationError, match="ignore_case"):
        _spec(exact_match_options={"ignore_case": "sometimes"})
    with pytest.raises(ValidationError, match=r"adapter\.method multiple_choice_separate generates none"):
        _spec(adapter={"method": "multiple_choice_separate"}, fields={"input": "q", "choices": "c"},
              exact_match_options={"ignore_case": True})  # fmt: skip
    assert _spec(exact_match_options={}).exact_match_options == ExactMatchOptions()


# -- the lm-eval translation -----------------------------------------------------------------------------------


def _config(**entry: Any) -> dict[str, Any]:
    return {
        "task": "toy",
        "dataset_path": "someone/toy",
        "output_type": "generate_until",
        "test_split": "test",
        "doc_to_text": "Q: {{q}}\nA:",
        "doc_to_target": "{{a}}",
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True, **entry}],
    }


def test_the_translation_carries_lm_evals_options_as_lm_eval_reads_them() -> None:
    ran = translate("toy", _config(ignore_case=True, regexes_to_ignore=["\\$"]), None)
    assert ran.runs and ran.spec is not None and ran.spec.main_metric == "exact_match"
    assert ran.spec.exact_match_options == ExactMatchOptions(regexes_to_ignore=["\\$"], ignore_case=True)
    # A flag is read for its truth, as lm-eval's `if ignore_punctuation:` reads it (45 lm-eval YAMLs write a
    # string there); none set: helmflow's exact_match, as before.
    odd = translate("toy", _config(ignore_punctuation='true - "."'), None).spec
    assert odd is not None and odd.exact_match_options == ExactMatchOptions(ignore_punctuation=True)
    plain = translate("toy", _config(ignore_case=False, regexes_to_ignore=None), None).spec
    assert plain is not None and plain.exact_match_options is None
    # What lm-eval's exact_match does not take, a regex list that is not one, a regex that does not compile.
    assert translate("toy", _config(ignore_whitespace=True), None).needs == [
        "exact_match's ignore_whitespace (lm-eval's exact_match takes regexes_to_ignore, ignore_case, "
        "ignore_punctuation, ignore_numbers)"
    ]
    assert translate("toy", _config(regexes_to_ignore=","), None).needs == [
        "exact_match's regexes_to_ignore ',' (not a list of patterns)"
    ]
    [refused] = translate("toy", _config(regexes_to_ignore=["(x"]), None).needs
    assert refused.startswith("a setting helmflow refuses (exact_match_options.regexes_to_ignore.0: regex '(x'")


@pytest.mark.parametrize(
    ("task", "options"),
    [
        ("gsm8k", GSM8K),
        ("gsm8k_cot", GSM8K),
        ("nq_open", NQ_OPEN),
        ("triviaqa", ExactMatchOptions(ignore_case=True, ignore_punctuation=True)),
    ],
)
def test_lm_eval_tasks_with_options_now_translate_with_them(task: str, options: ExactMatchOptions) -> None:
    pytest.importorskip("lm_eval", reason="lm-evaluation-harness is not installed: pip install -e '.[lmeval]'")
    from helmflow.specs.lmeval_tasks import find_entry, task_config

    entry = find_entry(task)
    translation = translate(task, task_config(entry), entry.path)
    assert translation.runs, translation.needs
    assert translation.spec is not None and translation.spec.main_metric == "exact_match"
    assert translation.spec.exact_match_options == options
    assert "quasi_exact_match" not in translation.spec.description
