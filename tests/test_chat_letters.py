"""How multiple choice reads a chat model's answer (tasks/models/openai.py, chat_letter): a leading
letter that stands alone, else the first stated answer; no server needed."""

import pytest

from helmflow.tasks.models.openai import chat_letter


@pytest.mark.parametrize(
    ("answer", "letter"),
    [
        # A leading letter, standing alone.
        ("D", "D"),
        ("D.", "D"),
        ("D) Paris", "D"),
        ("(D)", "D"),
        ("**D**", "D"),
        (" B. Paris", "B"),
        ("B, since", "B"),
        ("[C]", "C"),
        ("C\nbecause it is", "C"),
        # A stated answer.
        ("The answer is D.", "D"),
        ("The answer is (D)", "D"),
        ("The answer is (D", "D"),  # cut short by the token budget
        ("Answer: D", "D"),
        ("answer: d", "D"),  # a small letter that ends the answer is that option
        ("the answer is d.", "D"),
        ("The correct answer is D: Paris", "D"),
        ("The answer is: **D**", "D"),
        ("**Answer:** D", "D"),
        ("**Answer**: D", "D"),
        ("The answer is option D", "D"),
        ("The answer is D because", "D"),
        ("E.g., the answer is B", "B"),
        ("The answer is unclear. Answer: C", "C"),  # the first statement that names a letter
        ("A. The answer is B", "A"),  # a leading letter comes first
        # A letter, whether or not it is an option: the caller checks (E for four options is no answer).
        ("E", "E"),
        ("The answer is E.", "E"),
    ],
)
def test_a_letter_is_read(answer: str, letter: str) -> None:
    assert chat_letter(answer) == letter


@pytest.mark.parametrize(
    "answer",
    [
        "I'm not sure",
        "E.g., A/B testing",
        "D-Day",
        "A/B",
        "A good one",  # the article
        "A good question.",
        "the answer is a cat",  # the article, after "answer is"
        "The answer is A/B",
        "The answer is D-Day",
        "Answer: I'm not sure",
        "answered B",
        "The answers: B",
        "So the answer is",
        "",
    ],
)
def test_no_letter_is_read(answer: str) -> None:
    assert chat_letter(answer) is None
