from collections import Counter

from helmflow.specs.library import find_scenario
from helmflow.tasks.adapt import build_requests, choose_exemplars
from helmflow.tasks.instances import Instance


def mc(i: int, gold: int, group: str = "abstract_algebra") -> Instance:
    return Instance(
        id=f"{group}-{i}",
        input=f"Question {i}?",
        split="test",
        choices=("w", "x", "y", "z"),
        gold_index=gold,
        group=group,
    )


def test_mmlu_zero_shot_prompt_is_lm_eval_format() -> None:
    adapter = find_scenario("mmlu").adapter
    request = build_requests(adapter, [mc(0, 2)], [], seed=0)[0]
    assert request.prompt == (
        "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
        "Question 0?\nA. w\nB. x\nC. y\nD. z\nAnswer:"
    )
    assert request.continuations == (" A", " B", " C", " D")


def test_two_shot_prompt_puts_exemplars_with_answers_first() -> None:
    adapter = find_scenario("mmlu").adapter.model_copy(update={"num_train": 2, "fewshot_split": "dev"})
    pool = [mc(10, 0), mc(11, 3)]
    prompt = build_requests(adapter, [mc(0, 1)], pool, seed=0)[0].prompt
    shots = {
        10: "Question 10?\nA. w\nB. x\nC. y\nD. z\nAnswer: A\n\n",
        11: "Question 11?\nA. w\nB. x\nC. y\nD. z\nAnswer: D\n\n",
    }
    header = "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
    tail = "Question 0?\nA. w\nB. x\nC. y\nD. z\nAnswer:"
    assert prompt in (header + shots[10] + shots[11] + tail, header + shots[11] + shots[10] + tail)


def test_exemplars_are_label_balanced_seeded_and_same_group() -> None:
    pool = [mc(i, 0) for i in range(10)] + [mc(i, 1) for i in range(10, 14)] + [mc(99, 2, "anatomy")]
    chosen = choose_exemplars(pool, 4, seed=3, group="abstract_algebra")
    assert Counter(e.gold_index for e in chosen) == {0: 2, 1: 2}
    assert chosen == choose_exemplars(pool, 4, seed=3, group="abstract_algebra")
    assert {e.id for e in chosen} != {e.id for e in choose_exemplars(pool, 4, seed=4, group="abstract_algebra")}
