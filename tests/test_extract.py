"""tasks/extract.py: answer extraction as lm-eval's filter pipelines do it, checked by hand and against lm-eval.

The tables marked "lm-eval 0.4.13 printed these" are the outputs of lm-eval 0.4.13's own filter classes
(lm_eval/filters/extraction.py RegexFilter, MultiChoiceRegexFilter, WhitespaceFilter; transformation.py
LowercaseFilter, UppercaseFilter, MapFilter; a FilterEnsemble built by lm_eval.filters.build_filter_ensemble),
printed by a throwaway script (/tmp/lmeval_agree/print_expected.py, run with lm-eval 0.4.13's own Python
3.11.7) on these completions, and pasted here as literals: the test needs no lm-eval.
"""

from __future__ import annotations

import re

import pytest

from helmflow.tasks import extract as ex
from helmflow.tasks.extract import (
    RegexTimeoutError,
    Step,
    extract,
    lowercase,
    map_label,
    multi_choice_regex,
    parse_steps,
    regex,
    strip,
    uppercase,
)

# lm-eval's patterns: gsm8k-cot.yaml strict-match and flexible-extract (group_select -1), gsm8k.yaml
# strict-match, bbh/cot_fewshot/_cot_fewshot_template_yaml get-answer, mmlu/flan_cot_zeroshot strict-match
# (nested groups, so findall gives tuples).
GSM8K_COT_STRICT = r"The answer is (\-?[0-9\.\,]+)."
GSM8K_FLEXIBLE = r"(-?[$0-9.,]{2,})|(-?[0-9]+)"
GSM8K_STRICT = r"#### (\-?[0-9\.\,]+)"
BBH_COT = r"(?<=the answer is )(.*)(?=.)"
MMLU_FLAN_STRICT = (
    r"((?<=The answer is )(.*)(?=.)|(?<=answer is )(.*)(?=.)|(?<=The answer: )(.*)(?=.)"
    r"|(?<=The final answer: )(.*)(?=.))"
)


# --- by hand ---------------------------------------------------------------------------------------------


def test_gsm8k_hashes() -> None:
    assert regex("So 6 * 7 = 42.\n#### 42", GSM8K_STRICT) == "42"
    assert regex("#### -1,234.5", GSM8K_STRICT) == "-1,234.5"


def test_the_answer_is() -> None:
    # The pattern's final "." is any character: it eats the full stop after the number.
    assert regex("6 * 7 = 42. The answer is 42.", GSM8K_COT_STRICT) == "42"


def test_bbh_so_the_answer_is() -> None:
    # (.*) stops one character before the line's end, (?=.): the full stop stays out.
    assert regex("Let's think step by step. ... So the answer is (B).", BBH_COT) == "(B)"


def test_fallback() -> None:
    assert regex("no answer here", GSM8K_STRICT) == "[invalid]"
    assert regex("no answer here", GSM8K_STRICT, fallback="none") == "none"
    assert regex("", GSM8K_STRICT) == "[invalid]"


def test_negative_group_select_takes_from_the_end() -> None:
    text = "First 3 apples, then 12 pears, so 15 fruit."
    assert regex(text, r"(\d+)", group_select=-1) == "15"
    assert regex(text, r"(\d+)", group_select=-2) == "12"
    assert regex(text, r"(\d+)", group_select=1) == "12"


def test_group_select_beyond_the_matches_gives_the_fallback() -> None:
    # lm-eval raises IndexError here (ending the run); one odd completion should not.
    assert regex("only 3", r"(\d+)", group_select=1) == "[invalid]"
    assert regex("only 3", r"(\d+)", group_select=-2) == "[invalid]"


def test_tuple_groups_first_non_empty_one() -> None:
    # findall gives ('', '5') for "5": the first alternative needs two characters.
    assert regex("3 + 2 = 5", GSM8K_FLEXIBLE, group_select=-1) == "5"
    assert regex("costs $18 or 3", GSM8K_FLEXIBLE, group_select=0) == "$18"
    # Nested groups: the outer one comes first; (?=.) keeps the last character out.
    assert regex("The final answer: (D) because.", MMLU_FLAN_STRICT) == "(D) because"


def test_whole_match_without_groups_and_strip() -> None:
    assert regex("answer:   B  \n", r"(?<=answer:)[ A-D]+") == "B"


def test_tuple_of_empty_groups_strips_the_fallback_as_lm_eval_does() -> None:
    # lm-eval 0.4.13 printed these: the fallback goes through .strip() when every group is empty only.
    assert regex("zzz", r"(x)?(y)?", fallback=" [none] ") == "[none]"
    assert regex("zzz", r"(x)", fallback=" [none] ") == " [none] "


def test_case_and_whitespace_steps() -> None:
    assert lowercase("So The Answer Is (B)") == "so the answer is (b)"
    assert uppercase("yes") == "YES"
    assert strip("\t (B) \n") == "(B)"
    assert strip("a  b") == "a  b"  # remove_whitespace keeps the inside


def test_map_label() -> None:
    assert map_label("A", {"A": "0"}) == "0"
    assert map_label("E", {"A": "0"}) is None
    assert map_label("E", {"A": "0"}, default="-1") == "-1"


def test_patterns_read_as_re_reads_them() -> None:
    # regex.V0: "[[a]b]" is the set {[, a} then "b]", as in re (V1 would read a nested set {a, b}).
    assert regex("ab]", r"[[a]b]") == "ab]"
    for pattern, text in [(GSM8K_FLEXIBLE, "I paid $1,000 for 3 of them."), (BBH_COT, "so the answer is no.")]:
        assert ex._findall(ex.compile_pattern(pattern), text) == re.findall(pattern, text)


# --- lm-eval 0.4.13 printed these -------------------------------------------------------------------------

# (completion, gsm8k-cot strict-match, gsm8k flexible-extract, gsm8k strict-match, bbh cot_fewshot, mmlu flan strict)
REGEX_TABLE = [
    (
        "Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips altogether in April and May.\n#### 72",
        "[invalid]",
        "72",
        "72",
        "[invalid]",
        "[invalid]",
    ),
    (
        "She has 16 - 3 - 4 = 9 eggs. She makes 9 * 2 = $18. The answer is 18.",
        "18",
        "18.",
        "[invalid]",
        "[invalid]",
        "18",
    ),
    ("The answer is 1,000.000.", "1,000.000", "1,000.000.", "[invalid]", "[invalid]", "1,000.000"),
    ("The answer is -5. Q: next question", "-5.", "-5.", "[invalid]", "[invalid]", "-5. Q: next questio"),
    ("The answer is 3.5 dollars.", "3.5", "3.5", "[invalid]", "[invalid]", "3.5 dollars"),
    ("So she earns $18 every day.\nThe answer is $18.", "[invalid]", "$18.", "[invalid]", "[invalid]", "$18"),
    ("I think the answer is 42.", "[invalid]", "42.", "[invalid]", "42", "42"),
    ("The answer is 42", "4", "42", "[invalid]", "[invalid]", "4"),
    ("", "[invalid]", "[invalid]", "[invalid]", "[invalid]", "[invalid]"),
    ("No numbers here.", "[invalid]", "[invalid]", "[invalid]", "[invalid]", "[invalid]"),
    ("Let's think step by step. 5 + 7 = 12. So the answer is (B).", "[invalid]", "12.", "[invalid]", "(B)", "(B)"),
    ("So the answer is No.", "[invalid]", "[invalid]", "[invalid]", "No", "No"),
    ("Step one.\nSo the answer is valid.\n\nQ: what next?", "[invalid]", "[invalid]", "[invalid]", "valid", "valid"),
    (
        "so the answer is (A). Actually the answer is (C).",
        "[invalid]",
        "[invalid]",
        "[invalid]",
        "(A). Actually the answer is (C)",
        "(A). Actually the answer is (C)",
    ),
    ("The Answer Is 7.", "[invalid]", "7.", "[invalid]", "[invalid]", "[invalid]"),
    ("The answer is 12.\nThe answer is 13.", "12", "13.", "[invalid]", "[invalid]", "12"),
    ("There are 3 cars and 2 more arrive: 3 + 2 = 5 cars.", "[invalid]", "5", "[invalid]", "[invalid]", "[invalid]"),
    ("Total: 1,234,567 dollars, or 1.2 million.", "[invalid]", "1.2", "[invalid]", "[invalid]", "[invalid]"),
    ("The price fell by -3.50 today, ending at 10.", "[invalid]", "10.", "[invalid]", "[invalid]", "[invalid]"),
    ("   The answer is 8.   ", "8.", "8.", "[invalid]", "[invalid]", "8."),
    ("#### 1,234\n#### 99", "[invalid]", "99", "1,234", "[invalid]", "[invalid]"),
    ("The final answer: (D) because of X.", "[invalid]", "[invalid]", "[invalid]", "[invalid]", "(D) because of X"),
    ("Reasoning... answer is 77 apples", "[invalid]", "77", "[invalid]", "[invalid]", "77 apple"),
    ("The answer is  .", "[invalid]", "[invalid]", "[invalid]", "[invalid]", ""),
    ("The answer is 5,", "5", "5,", "[invalid]", "[invalid]", "5"),
    ("We get -12 and then 0.5 so -0.5 total", "[invalid]", "-0.5", "[invalid]", "[invalid]", "[invalid]"),
]


@pytest.mark.parametrize("row", REGEX_TABLE, ids=range(len(REGEX_TABLE)))
def test_regex_agrees_with_lm_eval(row: tuple[str, ...]) -> None:
    text, cot_strict, flexible, strict, bbh, mmlu = row
    assert regex(text, GSM8K_COT_STRICT) == cot_strict
    assert regex(text, GSM8K_FLEXIBLE, group_select=-1) == flexible
    assert regex(text, GSM8K_STRICT) == strict
    assert regex(text, BBH_COT) == bbh
    assert regex(text, MMLU_FLAN_STRICT) == mmlu


CITIES = ["London", "Paris", "Berlin", "Madrid"]
FILMS = ["Guilty", "Guilty of Romance", "Cold Fish", "Himizu"]
# (choices, completion, as gpqa's flexible-extract configures it, with group_select 0 and regexes_to_ignore)
MULTI_CHOICE_TABLE = [
    (CITIES, "Let me think. The answer is (C).", "(C)", "(C)"),
    (CITIES, "I believe the correct choice is Paris.", "(B)", "(B)"),
    (CITIES, "I believe the correct choice is PARIS!", "(B)", "[invalid]"),
    (CITIES, "Answer: D", "(D)", "(D)"),
    (CITIES, "Answer:B is best", "(B)", "(B)"),
    (CITIES, "Hmm, nothing fits.", "[invalid]", "[invalid]"),
    (CITIES, "(A) or (B)? Final: (B)", "(B)", "(A)"),
    (FILMS, "The film is Guilty of Romance", "(B)", "(B)"),
    (FILMS, "guilty, I think", "(A)", "[invalid]"),
    (["St. Louis", "New York", "Boston", "Chicago"], "It must be St Louis", "(A)", "[invalid]"),
    (CITIES, "Berlin or London? I say London", "(A)", "(C)"),
    (["4", "5", "6", "7"], "x = 5, so (a) is wrong; the value is 6", "(C)", "(B)"),
]


@pytest.mark.parametrize("row", MULTI_CHOICE_TABLE, ids=range(len(MULTI_CHOICE_TABLE)))
def test_multi_choice_regex_agrees_with_lm_eval(row: tuple) -> None:
    choices, text, gpqa, plain = row
    gpqa_like = {"group_select": -1, "ignore_case": True, "ignore_punctuation": True}
    assert multi_choice_regex(text, r"(\([A-Z]\))", choices, **gpqa_like) == gpqa
    assert multi_choice_regex(text, r"(\([A-Z]\))", choices, regexes_to_ignore=[r"\bthe\b"]) == plain


def test_case_whitespace_and_map_agree_with_lm_eval() -> None:
    texts = ["ÉCOLE Straße", "  (B)\n", "Yes", "MiXeD 123 ǅ"]
    assert [lowercase(t) for t in texts] == ["école straße", "  (b)\n", "yes", "mixed 123 ǆ"]
    assert [uppercase(t) for t in texts] == ["ÉCOLE STRASSE", "  (B)\n", "YES", "MIXED 123 Ǆ"]
    assert [strip(t) for t in texts] == ["ÉCOLE Straße", "(B)", "Yes", "MiXeD 123 ǅ"]  # remove_whitespace
    mapping = {"A": "0", "B": "1", "C": "2", "D": "3"}
    keys = ["A", "B", "D", "E", "[invalid]", "a", ""]
    assert [map_label(k, mapping, "-1") for k in keys] == ["0", "1", "3", "-1", "-1", "-1", "-1"]
    assert [map_label(k, mapping) for k in keys] == ["0", "1", "3", None, None, None, None]


def test_a_chain_agrees_with_lm_eval() -> None:
    # lm-eval: build_filter_ensemble("chain", [regex, uppercase, map, take_first]) on one completion each.
    steps = parse_steps(
        [
            {"function": "regex", "regex_pattern": r"answer is \(?([A-Da-d])\)?", "fallback": "[invalid]"},
            {"function": "uppercase"},
            {"function": "map", "mapping_dict": {"A": 0, "B": 1, "C": 2, "D": 3}, "default_value": -1},
            {"function": "take_first"},
        ]
    )
    expected = [("so the answer is (b).", "1"), ("The answer is D", "3"), ("answer is e", "-1"), ("no idea", "-1")]
    assert [(t, extract(t, steps)) for t, _ in expected] == expected


# --- the pipeline -------------------------------------------------------------------------------------------


def test_lm_eval_filter_lists_paste_unchanged() -> None:
    # gsm8k-cot.yaml's two filter lists, as yaml.safe_load reads them.
    strict = parse_steps([{"function": "regex", "regex_pattern": GSM8K_COT_STRICT}, {"function": "take_first"}])
    flexible = parse_steps(
        [{"function": "regex", "group_select": -1, "regex_pattern": GSM8K_FLEXIBLE}, {"function": "take_first"}]
    )
    assert strict == [Step("regex", {"pattern": GSM8K_COT_STRICT}), Step("take_first")]
    text = "9 * 2 = $18. The answer is 18."
    assert extract(text, strict) == "18"
    assert extract(text, flexible) == "18."


def test_multi_choice_step_needs_the_choices() -> None:
    steps = parse_steps(
        [
            {"function": "multi_choice_regex", "regex_pattern": r"(\([A-Z]\))", "ignore_case": True},
            {"function": "strip"},
        ]
    )
    assert extract("I pick berlin", steps, choices=CITIES) == "(C)"
    with pytest.raises(ValueError, match="needs the instance's choices"):
        extract("I pick berlin", steps)


def test_map_without_entry_or_default_gives_the_empty_answer() -> None:
    steps = parse_steps([{"function": "map", "mapping_dict": {"A": "0"}}, {"function": "uppercase"}])
    assert extract("Z", steps) == ""
    assert extract("A", steps) == "0"


def test_no_steps_keeps_the_text() -> None:
    assert extract(" as is ", []) == " as is "


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            [{"function": "regex", "regex_pattern": "x"}, {"function": "regx"}],
            r"answer_extraction\[1\]: unknown function 'regx' \(known: regex, multi_choice_regex, lowercase, ",
        ),
        ([{"function": "regex"}], r"answer_extraction\[0\]: regex needs 'regex_pattern' \(a string\)"),
        (
            [{"function": "regex", "regex_pattern": "x", "group_select": "-1"}],
            r"answer_extraction\[0\]: regex's 'group_select' must be an integer, got '-1'",
        ),
        (
            [{"function": "regex", "regex_pattern": "x", "group_select": True}],
            r"\[0\]: regex's 'group_select' must be an integer, got True",
        ),
        ([{"function": "regex", "regex_pattern": 3}], r"\[0\]: regex's 'regex_pattern' must be a string"),
        (
            [{"function": "regex", "regex_pattern": "x", "regex_patern": "y"}],
            r"\[0\]: regex has no field 'regex_patern' \(fields: regex_pattern, group_select, fallback\)",
        ),
        (
            [{"function": "lowercase"}, {"function": "regex", "regex_pattern": "(unclosed"}],
            r"answer_extraction\[1\]: regex's 'regex_pattern': regex '\(unclosed' does not compile",
        ),
        (
            [{"function": "multi_choice_regex", "regex_pattern": "x", "regexes_to_ignore": ["ok", "[bad"]}],
            r"\[0\]: multi_choice_regex's 'regexes_to_ignore\[1\]': regex '\[bad' does not compile",
        ),
        (
            [{"function": "multi_choice_regex", "regex_pattern": "x", "ignore_case": "yes"}],
            r"\[0\]: multi_choice_regex's 'ignore_case' must be true or false",
        ),
        ([{"function": "map"}], r"\[0\]: map needs 'mapping_dict'"),
        ([{"function": "map", "mapping_dict": {1: "one"}}], r"\[0\]: map's 'mapping_dict' must be a mapping"),
        ([{"function": "lowercase", "x": 1}], r"\[0\]: lowercase has no field 'x' \(fields: none\)"),
        ([{"function": "majority_vote"}], r"\[0\]: 'majority_vote' works across samples.*maj@k"),
        ([{"function": "take_first_k", "k": 8}], r"\[0\]: 'take_first_k' works across samples"),
        ([{"regex_pattern": "x"}], r"answer_extraction\[0\]: must be a mapping with a 'function' name"),
        (["regex"], r"answer_extraction\[0\]: must be a mapping"),
        ({"function": "regex"}, r"answer_extraction: must be a list of steps"),
    ],
)
def test_parse_steps_names_the_step_and_the_field(raw: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_steps(raw)


def test_parse_steps_where_names_the_spec_field() -> None:
    with pytest.raises(ValueError, match=r"^filter\[0\]: unknown function"):
        parse_steps([{"function": "nope"}], where="filter")


def test_map_numbers_become_text() -> None:
    # polemo2's map: `A: 0`, default_value: -1 (YAML numbers); helmflow compares answers as text.
    (step,) = parse_steps([{"function": "map", "mapping_dict": {"A": 0, "B": 1.5}, "default_value": -1}])
    assert step.params == {"mapping": {"A": "0", "B": "1.5"}, "default": "-1"}


# --- safety -----------------------------------------------------------------------------------------------


def test_a_backtracking_pattern_times_out_with_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ex, "REGEX_TIMEOUT_S", 0.1)  # keep the test short
    with pytest.raises(RegexTimeoutError, match=r"regex '\(a\|aa\)\+\$' ran over 0.1 s on a 61-character text"):
        regex("a" * 60 + "b", r"(a|aa)+$")
    assert issubclass(RegexTimeoutError, TimeoutError)  # a caller may catch either


def test_regexes_to_ignore_are_guarded_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ex, "REGEX_TIMEOUT_S", 0.1)
    with pytest.raises(RegexTimeoutError, match=r"\(a\|aa\)\+\$"):
        multi_choice_regex("a" * 60 + "b", r"\(([A-Z])\)", ["x"], regexes_to_ignore=[r"(a|aa)+$"])


def test_a_regex_sees_the_last_max_text_chars() -> None:
    filler = "x" * ex.MAX_TEXT_CHARS
    assert regex("#### 7\n" + filler, GSM8K_STRICT) == "[invalid]"  # past the cap, at the head
    assert regex(filler + "\n#### 7", GSM8K_STRICT) == "7"  # the tail is kept


def test_invalid_pattern_given_directly() -> None:
    with pytest.raises(ValueError, match=r"regex '\(' does not compile"):
        regex("text", "(")


def test_map_maps_the_whole_text_unlike_lm_eval_after_take_first() -> None:
    # lm-eval 0.4.13 printed [['0', '1'], ...] for MapFilter after TakeFirstFilter on "AB": it iterates over the
    # string's characters. Here the text is one label, as MapFilter sees it before take_first.
    assert map_label("AB", {"A": "0", "B": "1"}, "-1") == "-1"
