# ruff: noqa: E501  (the exemplars below are lm-eval's texts, one string each, kept whole for comparison)
"""GSM8K as lm-evaluation-harness's gsm8k_cot runs it (specs/scenarios/gsm8k_cot.yaml): the prompt equals
lm-eval's layout of its 8 chain-of-thought exemplars byte for byte, rows in openai/gsm8k's schema load through
`datasets` as from the Hub, and the answer read out of a chain of thought is what is scored."""

from __future__ import annotations

import pytest

from helmflow.flows.stages import predictions_of
from helmflow.specs.library import find_scenario
from helmflow.tasks.adapt import Request, render_prompt
from helmflow.tasks.data import load_instances
from helmflow.tasks.metrics import score
from helmflow.tasks.models.base import Completion
from tests.hub_rows import HubDataset, write_dataset

# lm-eval 0.4.13's lm_eval/tasks/gsm8k/gsm8k-cot.yaml, fewshot_config.samples (question, target), in order.
EXEMPLARS = [
    (
        "There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are done, there will be 21 trees. How many trees did the grove workers plant today?",
        "There are 15 trees originally. Then there were 21 trees after some more were planted. So there must have been 21 - 15 = 6. The answer is 6.",
    ),
    (
        "If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?",
        "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. The answer is 5.",
    ),
    (
        "Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in total?",
        "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. After eating 35, they had 74 - 35 = 39. The answer is 39.",
    ),
    (
        "Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How many lollipops did Jason give to Denny?",
        "Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave Denny 20 - 12 = 8. The answer is 8.",
    ),
    (
        "Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many toys does he have now?",
        "Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more toys. 5 + 4 = 9. The answer is 9.",
    ),
    (
        "There were nine computers in the server room. Five more computers were installed each day, from monday to thursday. How many computers are now in the server room?",
        "There were originally 9 computers. For each of 4 days, 5 more computers were added. So 5 * 4 = 20 computers were added. 9 + 20 is 29. The answer is 29.",
    ),
    (
        "Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. How many golf balls did he have at the end of wednesday?",
        "Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. After losing 2 more, he had 35 - 2 = 33 golf balls. The answer is 33.",
    ),
    (
        "Olivia has $23. She bought five bagels for $3 each. How much money does she have left?",
        "Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has 23 - 15 dollars left. 23 - 15 is 8. The answer is 8.",
    ),
]

GSM8K = HubDataset(
    "main",
    {
        "test": [
            {
                "question": "Janet has 3 apples and buys 1,000 more. How many apples does she have?",
                "answer": "She has 3 + 1000 = <<3+1000=1003>>1003 apples.\n#### 1003",
            },
            {"question": "What is 2 + 2?", "answer": "2 + 2 = <<2+2=4>>4\n#### 4"},
        ]
    },
    {"question": "string", "answer": "string"},
    layout="{config}/{split}-00000-of-00001.parquet",
)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    folder = write_dataset(tmp_path_factory.mktemp("gsm8k"), GSM8K)
    spec = find_scenario("gsm8k_cot")
    assert spec.source.hub is not None
    hub = spec.source.hub.model_copy(update={"path": str(folder)})
    spec = spec.model_copy(update={"source": spec.source.model_copy(update={"hub": hub})})
    instances, _ = load_instances(spec, prefer="hub")
    return spec, instances


def test_the_prompt_is_lm_eval_s_eight_shot_chain_of_thought(loaded: tuple) -> None:
    spec, instances = loaded
    assert [i.references for i in instances] == [("1003",), ("4",)]  # answer.split('####')[-1].strip()
    # lm-eval: each exemplar doc_to_text ("Q: {question}\nA:") + target_delimiter " " + its target, joined and
    # ended by fewshot_delimiter "\n\n", then the question's doc_to_text.
    shots = "".join(f"Q: {q}\nA: {a}\n\n" for q, a in EXEMPLARS)
    assert render_prompt(spec.adapter, instances[1], []) == shots + "Q: What is 2 + 2?\nA:"


def test_the_answer_is_read_out_of_the_chain_of_thought(loaded: tuple) -> None:
    spec, instances = loaded
    texts = ["She had 3. 3 + 1,000 = 1,003. The answer is 1,003.\n\n", "2 + 2 = 4, so it is 4."]
    requests = [Request(i.id, i.id, "generation", "?") for i in instances]
    completions = {i.id: Completion(i.id, text=t) for i, t in zip(instances, texts, strict=True)}
    predictions = predictions_of(requests, {}, completions, spec)
    assert [p.predicted_text for p in predictions] == ["1,003", "[invalid]"]  # strict-match: no "The answer is"
    _, metrics = score(spec, instances, predictions)
    values = {m.metric: m.value for m in metrics if not m.group and not m.perturbation}
    # "1,003" against "1003": quasi-exact (punctuation removed) 1, exact 0; the second is lm-eval's fallback.
    assert (values["quasi_exact_match"], values["exact_match"]) == (0.5, 0.0)
