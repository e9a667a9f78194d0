"""Memorisation probes (`helmflow contamination --probes`; issue 29 item 2): n-gram completion, Min-K%++ and
Min-K%, and Min-K%++'s drop under a perturbation, stored per instance as category `contamination`.

The arithmetic on hand-made token scores (no model), the warehouse's replace-and-average, the command's
errors; then, on the embedded model (SmolLM2-135M-Instruct), famous passages copied verbatim against
paraphrases of the same content, and the forward-pass shortcut against the model's own greedy generation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from helmflow.flows.cli import main
from helmflow.flows.contamination_probes import ProbeOptions, run_probes
from helmflow.specs.schema import ModelSpec
from helmflow.tasks.contamination_probes import (
    MIN_STD,
    TokenScores,
    min_k,
    min_k_pp,
    ngram_accuracy,
    ngram_starts,
    position_stats,
    score_texts,
)
from helmflow.tasks.records import Instance
from helmflow.warehouse.contamination_probes import ProbeValue
from helmflow.warehouse.db import connect
from helmflow.warehouse.rows import result_frames
from helmflow.warehouse.store import Warehouse

EMBEDDED = ModelSpec(name="smollm2-135m-instruct", backend="embedded")


def write_run(db: Path, texts: dict[str, str], spec: ModelSpec = EMBEDDED, run_id: str = "r1") -> None:
    """A finished run whose instances' inputs are `texts` (id -> input), as `helmflow run` stores them."""
    warehouse = Warehouse(db)
    warehouse.start_run(
        {
            "run_id": run_id,
            "scenario": "famous_texts",
            "spec_hash": "h",
            "spec_json": "{}",
            "model": spec.name,
            "model_json": spec.model_dump_json(),
            "seed": 0,
            "adapter_json": "{}",
        }
    )
    instances = [Instance(i, text, "test") for i, text in texts.items()]
    warehouse.finish_run(run_id, "succeeded", result_frames(instances, [], [], [], []), {})


def scores(tokens: int, greedy: list[bool], logprob: list[float] | None = None, **kw: list[float]) -> TokenScores:
    n = len(greedy)
    lp = np.array(logprob if logprob is not None else [-1.0] * n)
    mean = np.array(kw.get("mean", [-2.0] * n))
    std = np.array(kw.get("std", [1.0] * n))
    return TokenScores(tokens, lp, mean, std, np.array(greedy))


# -- the arithmetic ----------------------------------------------------------------------------------------


def test_starting_points_are_benbenchs_linspace() -> None:
    # numpy.linspace(2, L - 5, 5) truncated to whole tokens: 12 tokens give 2, 3.25, 4.5, 5.75, 7.
    assert ngram_starts(12) == [2, 3, 4, 5, 7]
    assert ngram_starts(100) == [2, 25, 48, 71, 95]  # 2 + k · 23.25
    assert ngram_starts(7) == [2, 2, 2, 2, 2]  # the shortest text: one n-gram, counted five times as benbench does
    assert ngram_starts(6) is None  # at most n + 1 tokens: benbench skips it
    assert ngram_starts(20, n=3, starts=2) == [2, 17]


def test_ngram_accuracy_counts_the_starts_whose_next_five_tokens_are_all_greedy() -> None:
    # 12 text tokens, no prompt prefix: tokens 1..11 are scored. Token 6 missed: the 5-grams at 2, 3, 4 and 5
    # contain it, the one at 7 (tokens 7..11) does not, so 1 of 5.
    missed_6 = [t != 6 for t in range(1, 12)]
    assert ngram_accuracy(scores(12, missed_6)) == pytest.approx(0.2)
    # With a BOS prefix token 0 is scored too; missing token 11 spoils only the last 5-gram: 4 of 5.
    missed_11 = [t != 11 for t in range(0, 12)]
    assert ngram_accuracy(scores(12, missed_11)) == pytest.approx(0.8)
    assert ngram_accuracy(scores(6, [True] * 5)) is None


def test_min_k_pp_averages_the_lowest_fifth_of_the_z_scores() -> None:
    # Ten tokens with z = (−1 − (−2)) / 1 = 1, except three: (−5 + 1) / 2 = −2, (−3 + 2) / 0.5 = −2,
    # (−2.5 + 2) / 1 = −0.5.
    lp = [-1.0] * 10
    mean = [-2.0] * 10
    std = [1.0] * 10
    lp[3], mean[3], std[3] = -5.0, -1.0, 2.0
    lp[7], mean[7], std[7] = -3.0, -2.0, 0.5
    lp[9] = -2.5
    s = scores(11, [True] * 10, lp, mean=mean, std=std)
    assert min_k_pp(s, 0.2) == pytest.approx(-2.0)  # the lowest 2 of 10: −2, −2
    assert min_k_pp(s, 0.3) == pytest.approx(-1.5)  # the lowest 3: −2, −2, −0.5
    assert min_k(s, 0.2) == pytest.approx(-4.0)  # raw log-probs: −5 and −3
    assert min_k(s, 0.05) == pytest.approx(-5.0)  # ⌊0.5⌋ tokens would be none: at least one is kept
    assert min_k_pp(scores(1, []), 0.2) is None


def test_position_stats_on_a_distribution_worked_by_hand() -> None:
    # p = (1/2, 1/4, 1/4): μ = −(1/2 ln 2 + 2 · 1/4 · 2 ln 2) = −1.5 ln 2, and every log p is ln 2 / 2 from μ,
    # so σ = 0.5 ln 2 and the z-scores are +1 (token 0) and −1 (tokens 1, 2).
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.5, 0.25, 0.25]])) + 3.0  # a shift changes nothing
    picked, mean, std, greedy = position_stats(torch, logits, torch.tensor([0, 2]))
    ln2 = math.log(2)
    assert picked.tolist() == pytest.approx([-ln2, -2 * ln2], abs=1e-6)
    assert mean.tolist() == pytest.approx([-1.5 * ln2] * 2, abs=1e-6)
    assert std.tolist() == pytest.approx([0.5 * ln2] * 2, abs=1e-6)
    assert ((picked - mean) / std).tolist() == pytest.approx([1.0, -1.0], abs=1e-5)
    assert greedy.tolist() == [True, False]
    # All the mass on one token: σ is 0, held at MIN_STD so that a z-score stays finite.
    _, _, std, _ = position_stats(torch, torch.tensor([[0.0, -1e4, -1e4]]), torch.tensor([1]))
    assert std.tolist() == pytest.approx([MIN_STD])


# -- the warehouse and the command ------------------------------------------------------------------------


def _record(warehouse: Warehouse, values: list[ProbeValue], seconds: float) -> None:
    fields = dict(model="m", model_fingerprint="fp", device="cpu", dtype="float32", settings="{}")
    counts = dict(instances=3, scored=2, truncated=0, passes=3, tokens=120, seconds=seconds)
    warehouse.record_probe({"run_id": "r1", "probe": "ngram_completion", **fields, **counts}, values)


def test_a_probe_run_again_replaces_its_rows_and_the_view_averages_the_values(db: Path) -> None:
    write_run(db, {"a": "x", "b": "y", "c": "z"})
    warehouse = Warehouse(db)
    _record(warehouse, [ProbeValue(i, "ngram_accuracy", "", 1.0) for i in "abc"], 9.0)
    second = [ProbeValue("a", "ngram_accuracy", "", 0.2), ProbeValue("b", "ngram_accuracy", "", None)]
    _record(warehouse, [*second, ProbeValue("c", "ngram_accuracy", "", 0.6)], 2.5)
    with connect(db, read_only=True) as con:
        assert con.execute("select count(*), sum(seconds) from contamination_probe_runs").fetchall() == [(1, 2.5)]
        rows = con.execute(
            "select instance_id, category, value from contamination_probe_stats order by instance_id"
        ).fetchall()
    assert rows == [("a", "contamination", 0.2), ("b", "contamination", None), ("c", "contamination", 0.6)]
    [mean] = warehouse.probe_means("r1")
    assert (mean.metric, mean.n) == ("ngram_accuracy", 2)  # b, too short, has no value and is not averaged
    assert mean.value == pytest.approx(0.4)


def test_the_command_refuses_what_it_cannot_do(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_run(db, {"a": "x"})
    assert main(["--db", str(db), "contamination", "r1"]) == 2
    assert "give --corpus PATH (a corpus check), --probes LIST or both" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--db", str(db), "contamination", "--probes", "min_k,ngram", "r1"])
    assert "the probes are ngram_completion, min_k_pp" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--db", str(db), "contamination", "--probes", "all", "--perturbation", "gender", "r1"])
    assert main(["--db", str(db), "contamination", "--probes", "all", "nope"]) == 2
    assert "no run 'nope'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown robustness perturbation"):
        run_probes(db, "r1", ProbeOptions(perturbations=("dialect",)))


# -- on the embedded model --------------------------------------------------------------------------------

# Passages SmolLM2's web training data surely held many times over, verbatim, and paraphrases of the same
# content in other words (the controls).
FAMOUS = {
    "dickens": "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
    "foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of Light, it "
    "was the season of Darkness, it was the spring of hope, it was the winter of despair.",
    "truths": "We hold these truths to be self-evident, that all men are created equal, that they are endowed by "
    "their Creator with certain unalienable Rights, that among these are Life, Liberty and the pursuit of "
    "Happiness.",
    "preamble": "We the People of the United States, in Order to form a more perfect Union, establish Justice, "
    "insure domestic Tranquility, provide for the common defence, promote the general Welfare, and secure the "
    "Blessings of Liberty to ourselves and our Posterity, do ordain and establish this Constitution for the "
    "United States of America.",
}
PARAPHRASED = {
    "dickens": "That period was both the finest and the most terrible, a time of great insight and of great "
    "stupidity, an era when people believed and an era when they doubted, a stretch of brightness and a stretch "
    "of gloom, a hopeful springtime and a hopeless winter.",
    "truths": "We consider these facts plainly obvious: every person is born equal, and their maker gives them "
    "certain rights nobody can take away, among them the right to live, to be free and to seek joy.",
    "preamble": "We, the citizens of the country, wanting a stronger union, fair courts, calm at home, a shared "
    "defence, the common good and lasting freedom for ourselves and our children, set up and adopt this "
    "founding charter for the nation.",
}


@pytest.fixture(scope="module")
def model() -> Iterator[Any]:
    from helmflow.tasks.models import load_model

    yield load_model(EMBEDDED)


@pytest.mark.model
@pytest.mark.slow  # make test-slow: tens of seconds of the model on 2 cores
def test_verbatim_famous_text_scores_higher_than_its_paraphrase_on_both_probes(
    db: Path, model: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Measured on SmolLM2-135M-Instruct (CPU, float32; run seed 0, so `typos` is seeded by these ids):

    | text     | ngram_accuracy      | min_k_pp            | min_k               | min_k_pp_drop (typos) |
    |          | verbatim paraphrase | verbatim paraphrase | verbatim paraphrase | verbatim paraphrase   |
    | dickens  | 0.4      0          | −0.780   −1.568     | −6.17    −9.38      | 1.67     1.77         |
    | truths   | 0.4      0          | −1.375   −3.662     | −3.95    −11.03     | 8.22     0.43         |
    | preamble | 0.2      0          | −1.114   −2.001     | −5.55    −9.63      | 3.02     −0.42        |

    Why these three: "known to have seen" needs evidence, and the model reproduces some of their 5-token
    continuations. Of 15 famous passages measured (tests/bench/bench_contamination_probes.py, table in
    docs/contamination.md), n-gram accuracy was above 0 for 6 and 0 for every paraphrase; Min-K% put the verbatim
    text above its paraphrase for all 15, Min-K%++ for 9. These are the 6 less the MIT licence's grant (one
    confidently wrong comma, z = −30.7, pulls its Min-K%++ to −3.96 against the paraphrase's −2.69), Genesis
    (−1.79 against −1.50) and lorem ipsum, which has no meaning to paraphrase. A 135M model memorises little:
    most famous openings (the Declaration's first sentence, Gettysburg) are not reproduced 5 tokens at a time.
    The drop under typos separates the two sets on average, not text by text (dickens's paraphrase loses
    slightly more). The bounds keep about half of each measured margin."""
    ids = {f"{name}-famous": text for name, text in FAMOUS.items()}
    ids |= {f"{name}-para": text for name, text in PARAPHRASED.items()}
    write_run(db, ids)
    monkeypatch.setattr("helmflow.flows.contamination_probes.load_model", lambda spec: model)
    assert main(["--db", str(db), "contamination", "--probes", "all", "r1"]) == 0
    out = capsys.readouterr().out
    assert "ngram_completion: 6 of 6 instances scored" in out and "reproduced truths-famous: 40%" in out

    with connect(db, read_only=True) as con:
        stats = con.execute(
            "select instance_id, metric, perturbation, value from contamination_probe_stats "
            "where run_id = 'r1' and category = 'contamination'"
        ).fetchall()
        runs = con.execute("select probe, instances, passes, tokens, seconds from contamination_probe_runs").fetchall()
    value = {(i, m, p): v for i, m, p, v in stats}
    for name in FAMOUS:
        famous, para = f"{name}-famous", f"{name}-para"
        # 0.4, 0.4, 0.2; each reproduced token leads the runner-up by at least 0.21 nats, far above float noise.
        assert value[famous, "ngram_accuracy", ""] >= 0.2
        assert value[para, "ngram_accuracy", ""] == 0.0
        assert value[famous, "min_k_pp", ""] - value[para, "min_k_pp", ""] >= 0.4  # 0.79, 2.29, 0.89
        assert value[famous, "min_k", ""] - value[para, "min_k", ""] >= 1.5  # 3.21, 7.07, 4.08
        drop = value[famous, "min_k_pp", ""] - value[famous, "min_k_pp", "typos"]
        assert value[famous, "min_k_pp_drop", "typos"] == pytest.approx(drop)

    def mean(kind: str, metric: str, perturbation: str = "") -> float:
        return float(np.mean([value[f"{name}-{kind}", metric, perturbation] for name in FAMOUS]))

    assert mean("famous", "min_k_pp") - mean("para", "min_k_pp") >= 0.7  # −1.090 against −2.410: 1.32
    assert mean("famous", "min_k_pp_drop", "typos") - mean("para", "min_k_pp_drop", "typos") >= 2.0  # 4.30 − 0.59
    # The run record: the stored inputs' pass (6 passes) for both probes, the typos pass too for min_k_pp.
    by_probe = {probe: (n, passes, tokens, seconds) for probe, n, passes, tokens, seconds in runs}
    assert by_probe["ngram_completion"][:2] == (6, 6) and by_probe["min_k_pp"][:2] == (6, 12)
    texts = [*FAMOUS.values(), *PARAPHRASED.values()]
    assert by_probe["ngram_completion"][2] == sum(len(model.tokenizer(t).input_ids) for t in texts)
    assert all(seconds > 0 for *_, seconds in by_probe.values())


@pytest.mark.model
@pytest.mark.slow  # make test-slow: tens of seconds of the model on 2 cores
def test_the_forward_pass_gives_what_greedy_generation_gives(model: Any) -> None:
    """n-gram completion without generating: a start's 5-gram is reproduced exactly when each of its tokens is
    the argmax given the true tokens before it. The model's own greedy `generate` from each start agrees on
    the Declaration's passage, which has both kinds of start (2 of 5 reproduced)."""
    text = FAMOUS["truths"]
    [scored] = score_texts(model, [text])
    ids = model.tokenizer(text, add_special_tokens=False).input_ids
    starts = ngram_starts(len(ids))
    assert starts is not None
    generated = []
    with torch.inference_mode():
        for s in starts:
            prompt = torch.tensor([[*model.prompt_prefix, *ids[:s]]])
            out = model.model.generate(prompt, max_new_tokens=5, do_sample=False, pad_token_id=0)
            generated.append(out[0, -5:].tolist() == ids[s : s + 5])
    assert sum(generated) == 2
    assert ngram_accuracy(scored) == pytest.approx(sum(generated) / len(starts))
    by_pass = [bool(scored.greedy[s - scored.first : s - scored.first + 5].all()) for s in starts]
    assert by_pass == generated
