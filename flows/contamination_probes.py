"""`helmflow contamination --probes`: memorisation probes on a stored run's instances, with the run's own model.

No corpus is read (flows/contamination.py is the corpus check). Each instance's stored input
(`instances.input`: the question or passage, not the prompt) goes once through the model
(tasks/contamination_probes.py), and the probes read that pass:

- `ngram_completion`: the share of K = 5 starting points at which greedy decoding reproduces the next
  n = 5 tokens (Xu et al. 2024), metric `ngram_accuracy`;
- `min_k_pp`: Min-K%++ (Zhang et al. 2024) and, from the same pass, Min-K% (Shi et al. 2023); then the same
  on each input after a robustness perturbation (seeded by the run's seed and the instance id, as the run
  seeds its own), and per instance the drop `min_k_pp_drop` = unperturbed − perturbed: a memorised text
  should lose more under a perturbation than an unseen one.

Each probe's values are stored with its run record (wall seconds, forward passes, tokens) in the warehouse
(warehouse/contamination_probes.py), replacing an earlier run of the same probe on the same run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helmflow.specs.schema import ModelSpec
from helmflow.tasks.contamination_probes import (
    MIN_K_FRACTION,
    NGRAM_N,
    NGRAM_STARTS,
    TokenScores,
    min_k,
    min_k_pp,
    ngram_accuracy,
    score_texts,
)
from helmflow.tasks.models import ModelError, load_model
from helmflow.tasks.perturb import ROBUSTNESS, perturb
from helmflow.warehouse.contamination_probes import ProbeMean, ProbeValue
from helmflow.warehouse.store import Warehouse

Report = Callable[[str], None]
NGRAM_COMPLETION, MIN_K_PP = "ngram_completion", "min_k_pp"
PROBES = (NGRAM_COMPLETION, MIN_K_PP)
# typos: a local edit (5 % of letters become a neighbouring key) that leaves most of the text verbatim, so
# what changes is the likelihood of the edited spans. mild_mix lowercases the whole text and doubles spaces,
# which moves every text's likelihood, seen or not (licences in capitals most of all).
DEFAULT_PERTURBATIONS = ("typos",)


@dataclass(frozen=True)
class ProbeOptions:
    probes: tuple[str, ...] = PROBES
    n: int = NGRAM_N
    starts: int = NGRAM_STARTS
    k: float = MIN_K_FRACTION  # the fraction of lowest-scoring tokens Min-K%++ and Min-K% average
    perturbations: tuple[str, ...] = DEFAULT_PERTURBATIONS  # robustness perturbations for min_k_pp's comparison


@dataclass(frozen=True)
class ProbeRecord:
    """A probe's run record: what it probed and what its forward passes cost."""

    probe: str
    instances: int
    scored: int
    truncated: int
    passes: int
    tokens: int
    seconds: float


@dataclass(frozen=True)
class ProbeOutcome:
    run_id: str
    model: str
    records: list[ProbeRecord]
    values: list[ProbeValue]
    means: list[ProbeMean]
    seconds: float  # the passes' wall seconds, each pass once (the records count a shared pass in each)


@dataclass(frozen=True)
class Pass:
    """One forward pass per text over a list of texts, timed."""

    scores: list[TokenScores]
    tokens: int
    seconds: float

    @property
    def truncated(self) -> int:
        return sum(s.truncated for s in self.scores)

    @property
    def passes(self) -> int:  # a text of fewer than two tokens has nothing to score and no pass
        return sum(len(s.logprob) > 0 for s in self.scores)


def _check(options: ProbeOptions) -> None:
    unknown = [p for p in options.probes if p not in PROBES]
    if unknown or not options.probes:
        raise ValueError(f"unknown probe(s) {', '.join(unknown) or '(none given)'} (known: {', '.join(PROBES)})")
    if bad := [p for p in options.perturbations if p not in ROBUSTNESS]:
        raise ValueError(f"unknown robustness perturbation(s) {', '.join(bad)} (known: {', '.join(ROBUSTNESS)})")
    if not 0 < options.k <= 1 or options.n < 1 or options.starts < 1:
        raise ValueError("k must be in (0, 1], n and starts at least 1")


def _with_logits(model: Any, spec: ModelSpec) -> Any:
    """The model, if it gives a forward pass's full-vocabulary logits (tasks/models/hf.py's HFModel does)."""
    if not all(hasattr(model, name) for name in ("model", "tokenizer", "prompt_prefix", "_fitting")):
        raise ModelError(
            f"model '{spec.name}' ({spec.backend} backend): the probes need the log-probs of the whole vocabulary "
            "at every position, which the hf and embedded backends give and a server's API does not"
        )
    return model


def _pass(model: Any, texts: list[str], label: str, report: Report) -> Pass:
    began = time.perf_counter()
    shown = [0]  # texts done at the last line shown (a cell the callback updates)

    def progress(done: int, total: int) -> None:
        if done == total or done >= shown[0] + 256:  # a line per 256 texts or so, and the last
            shown[0] = done
            report(f"  {label}: {done} of {total} texts")

    scores = score_texts(model, texts, progress)
    tokens = sum(s.tokens + len(model.prompt_prefix) for s in scores if len(s.logprob))
    return Pass(scores, tokens, time.perf_counter() - began)


def _ngram_values(ids: list[str], scored: Pass, options: ProbeOptions) -> list[ProbeValue]:
    return [
        ProbeValue(i, "ngram_accuracy", "", ngram_accuracy(s, options.n, options.starts))
        for i, s in zip(ids, scored.scores, strict=True)
    ]


def _min_k_values(ids: list[str], original: Pass, perturbed: dict[str, Pass], k: float) -> list[ProbeValue]:
    values = []
    for index, instance_id in enumerate(ids):
        plain = min_k_pp(original.scores[index], k)
        values.append(ProbeValue(instance_id, "min_k_pp", "", plain))
        values.append(ProbeValue(instance_id, "min_k", "", min_k(original.scores[index], k)))
        for name, scored in perturbed.items():
            after = min_k_pp(scored.scores[index], k)
            values.append(ProbeValue(instance_id, "min_k_pp", name, after))
            drop = None if plain is None or after is None else plain - after
            values.append(ProbeValue(instance_id, "min_k_pp_drop", name, drop))
    return values


def run_probes(
    db: str | Path | None,
    run_id: str,
    options: ProbeOptions = ProbeOptions(),
    report: Report = lambda _: None,
    model: Any = None,
) -> ProbeOutcome:
    """Run the probes on the run's instances with the run's model (`model`: that model already loaded) and
    store each probe's values and run record."""
    _check(options)
    warehouse = Warehouse(db)
    row = warehouse.run_row(run_id, "model_json", "seed")
    _, instances = warehouse.instance_texts(run_id)
    if not instances:
        raise LookupError(f"run {run_id} has no stored instances (it is {row['status']}): nothing to probe")
    spec = ModelSpec.model_validate_json(row["model_json"])
    model = _with_logits(model if model is not None else load_model(spec), spec)
    seed, ids = int(row["seed"]), [i.instance_id for i in instances]
    report(f"run {run_id}: {len(instances)} instances, model {model.info.name} ({model.info.device})")
    original = _pass(model, [i.input for i in instances], "stored inputs", report)
    perturbed: dict[str, Pass] = {}
    if MIN_K_PP in options.probes:
        for name in options.perturbations:
            texts = [perturb(name, i.input, seed, i.instance_id) for i in instances]
            perturbed[name] = _pass(model, texts, f"inputs after {name}", report)
    outcomes = {
        NGRAM_COMPLETION: (
            _ngram_values(ids, original, options),
            [original],
            {"n": options.n, "starts": options.starts},
        ),
        MIN_K_PP: (
            _min_k_values(ids, original, perturbed, options.k),
            [original, *perturbed.values()],
            {"k": options.k, "perturbations": list(perturbed), "seed": seed},
        ),
    }
    records, values = [], []
    for probe in options.probes:
        probe_values, passes, settings = outcomes[probe]
        main_metric = "ngram_accuracy" if probe == NGRAM_COMPLETION else "min_k_pp"
        record = ProbeRecord(
            probe,
            len(instances),
            sum(v.value is not None for v in probe_values if v.metric == main_metric and not v.perturbation),
            max(p.truncated for p in passes),
            sum(p.passes for p in passes),
            sum(p.tokens for p in passes),
            sum(p.seconds for p in passes),
        )
        warehouse.record_probe(
            {
                "run_id": run_id,
                "probe": probe,
                "settings": json.dumps(settings),
                "model": model.info.name,
                "model_fingerprint": model.info.fingerprint,
                "device": model.info.device,
                "dtype": model.info.dtype,
                "instances": record.instances,
                "scored": record.scored,
                "truncated": record.truncated,
                "passes": record.passes,
                "tokens": record.tokens,
                "seconds": record.seconds,
            },
            probe_values,
        )
        records.append(record)
        values.extend(probe_values)
    total = original.seconds + sum(p.seconds for p in perturbed.values())
    return ProbeOutcome(run_id, model.info.name, records, values, warehouse.probe_means(run_id), total)


__all__ = ["DEFAULT_PERTURBATIONS", "PROBES", "ProbeOptions", "ProbeOutcome", "ProbeRecord", "run_probes"]
