"""Accuracy (docs/metrics.md#accuracy): exact and quasi-exact match, per instance then the mean."""

from __future__ import annotations

import re
import string
from collections.abc import Collection
from functools import cache
from typing import Any

from helmflow.specs.schema import ExactMatchOptions
from helmflow.tasks.extract import delete_matches
from helmflow.tasks.instances import Instance
from helmflow.tasks.metrics.scoring import ALL_METHODS, GENERATION, MetricRecord, Scoring
from helmflow.tasks.metrics.summarization import rouge
from helmflow.tasks.metrics.types import Metric, Stat, mean

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
_DIGITS = str.maketrans("", "", string.digits)


def normalize_text(text: str) -> str:
    """HELM's normalisation: lowercase, no punctuation, no articles, single spaces."""
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, reference: str) -> float:
    return float(prediction.strip() == reference.strip())


def ignoring(text: str, options: ExactMatchOptions) -> str:
    """A text as lm-evaluation-harness 0.4.13's exact_match compares it (lm_eval/api/metrics.py,
    exact_match_hf_evaluate): each of regexes_to_ignore's matches deleted in turn (re.sub, with the guards of every
    spec regex: tasks/extract.py), then lower case, then string.punctuation deleted, then string.digits deleted.
    Not stripped: lm-eval compares the texts as they are."""
    for pattern in options.regexes_to_ignore:
        text = delete_matches(text, pattern)
    if options.ignore_case:
        text = text.lower()
    if options.ignore_punctuation:
        text = text.translate(_PUNCTUATION)
    if options.ignore_numbers:
        text = text.translate(_DIGITS)
    return text


def lmeval_exact_match(prediction: str, reference: str, options: ExactMatchOptions) -> float:
    """exact_match with a spec's exact_match_options: lm-eval's exact_match ("$1,234." equals "1234" when the
    regexes ",", "\\$" and "\\.$" are ignored)."""
    return float(ignoring(prediction, options) == ignoring(reference, options))


def quasi_exact_match(prediction: str, reference: str) -> float:
    return float(normalize_text(prediction) == normalize_text(reference))


def references_of(inst: Instance) -> list[str]:
    if inst.choices and inst.gold_index is not None and 0 <= inst.gold_index < len(inst.choices):
        return [inst.choices[inst.gold_index]]
    return list(inst.references)


def prefix_exact_match(prediction: str, reference: str) -> float:
    return float(prediction.strip().startswith(reference.strip()))


def quasi_prefix_exact_match(prediction: str, reference: str) -> float:
    return float(normalize_text(prediction).startswith(normalize_text(reference)))


def f1_score(prediction: str, reference: str) -> float:
    """F1 between the sets of normalised tokens (docs/metrics.md#accuracy)."""
    predicted, gold = set(normalize_text(prediction).split()), set(normalize_text(reference).split())
    common = len(predicted & gold)
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(gold)
    return 2 * precision * recall / (precision + recall)


@cache
def _rouge() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(prediction: str, reference: str) -> float:
    return float(_rouge().score(reference, prediction)["rougeL"].fmeasure)


def rouge_1(prediction: str, reference: str) -> float:
    return rouge(prediction, reference, "rouge1")


def rouge_2(prediction: str, reference: str) -> float:
    return rouge(prediction, reference, "rouge2")


GENERATION_METRICS = {
    "exact_match": exact_match,
    "quasi_exact_match": quasi_exact_match,
    "prefix_exact_match": prefix_exact_match,
    "quasi_prefix_exact_match": quasi_prefix_exact_match,
    "f1_score": f1_score,
    "rouge_l": rouge_l,
    "rouge_1": rouge_1,
    "rouge_2": rouge_2,
}
# Computed only where a spec names them (MetricRecord.named_only): HELM reports them for summaries alone.
NAMED_ONLY = frozenset({"rouge_1", "rouge_2"})


def instance_accuracy(
    inst: Instance,
    predicted_index: int | None,
    completion: str,
    normalized: dict[str, int] | None = None,
    names: Collection[str] | None = None,
    exact_match_options: ExactMatchOptions | None = None,
) -> dict[str, float]:
    """Multiple choice compares the chosen option with the gold one; generation the text with each reference.

    `names`: only these metrics (None: all that apply, less the NAMED_ONLY ones), so a metric not asked for is
    not computed. `exact_match_options` (the spec's): generation's exact_match is lm-eval's with those options.
    """

    def wanted(name: str) -> bool:
        return name in names if names is not None else name not in NAMED_ONLY

    if inst.choices:
        correct = float(predicted_index is not None and predicted_index == inst.gold_index)
        values = {name: correct for name in ("exact_match", "quasi_exact_match") if wanted(name)}
        for kind, index in (normalized or {}).items():
            if wanted(f"exact_match_{kind}_norm"):
                values[f"exact_match_{kind}_norm"] = float(index == inst.gold_index)
        return values
    refs = references_of(inst)
    if not refs:  # open-ended generation: nothing to be accurate against
        return {}
    metrics = dict(GENERATION_METRICS)
    if exact_match_options is not None:
        # lm-eval scores a list of targets 1 when any one equals the answer: the best over them, as here.
        metrics["exact_match"] = lambda p, r: lmeval_exact_match(p, r, exact_match_options)
    return {name: max(metric(completion, r) for r in refs) for name, metric in metrics.items() if wanted(name)}


def metric_rows(stats: list[Stat], name: str, main_metric: str, groups: dict[str, str | None]) -> list[Metric]:
    """One accuracy metric's mean over instances, for the whole run and per instance group ([] without stats)."""
    if not any(s.category == "accuracy" and s.metric == name for s in stats):
        return []
    values = [s.value for s in stats if s.metric == name and s.value is not None and not s.perturbation]
    out = [Metric("accuracy", name, mean(values), len(values), headline=name == main_metric)]
    by_group: dict[str, list[float]] = {}
    for s in stats:
        group = groups.get(s.instance_id)
        if s.metric == name and s.value is not None and not s.perturbation and group:
            by_group.setdefault(group, []).append(s.value)
    if len(by_group) > 1:
        out += [Metric("accuracy", name, mean(v), len(v), group=g) for g, v in sorted(by_group.items())]
    return out


def aggregate(stats: list[Stat], main_metric: str, groups: dict[str, str | None]) -> list[Metric]:
    """Means over instances of every accuracy metric in the stats, for the whole run and per instance group."""
    names = sorted({s.metric for s in stats if s.category == "accuracy"})
    return [m for name in names for m in metric_rows(stats, name, main_metric, groups)]


def _instance_stats(scoring: Scoring) -> list[Stat]:
    """Every prediction, perturbed ones included, against the instance's gold answer (the metrics asked for)."""
    stats = []
    names, options = scoring.wanted, scoring.spec.exact_match_options
    for pred in scoring.predictions:
        inst = scoring.by_id[pred.request.instance_id]
        values = instance_accuracy(
            inst, pred.predicted_index, pred.predicted_text, pred.normalized_indices, names, options
        )
        stats += [Stat(inst.id, "accuracy", name, v, pred.request.perturbation) for name, v in values.items()]
    return stats


def _record(
    name: str, display_name: str, methods: tuple[str, ...], description: str, named_only: bool = False
) -> MetricRecord:
    return MetricRecord(
        name=name,
        category="accuracy",
        function=lambda scoring: metric_rows(scoring.stats, name, scoring.spec.main_metric, scoring.groups),
        display_name=display_name,
        methods=methods,
        stats=_instance_stats,
        description=description,
        named_only=named_only,
    )


SEPARATE = ("multiple_choice_separate", "multiple_choice_calibrated")  # each choice scored as a continuation

# In name order: the order of the rows a run has always stored.
METRICS = [
    _record("exact_match", "Exact match", ALL_METHODS, "the chosen option, or the stripped text, equals the gold"),
    _record("exact_match_char_norm", "Exact match (per-character)", SEPARATE, "choice scores divided by length"),
    _record("exact_match_token_norm", "Exact match (per-token)", SEPARATE, "choice scores divided by tokens"),
    _record("f1_score", "F1", GENERATION, "F1 between the sets of normalised tokens"),
    _record("prefix_exact_match", "Prefix exact match", GENERATION, "the answer starts with a reference"),
    _record("quasi_exact_match", "Quasi-exact match", ALL_METHODS, "exact match after HELM's normalisation"),
    _record("quasi_prefix_exact_match", "Quasi-prefix exact match", GENERATION, "prefix match after normalisation"),
    _record("rouge_1", "ROUGE-1", GENERATION, "ROUGE-1 F-measure against the best reference (stemmed)", True),
    _record("rouge_2", "ROUGE-2", GENERATION, "ROUGE-2 F-measure against the best reference (stemmed)", True),
    _record("rouge_l", "ROUGE-L", GENERATION, "ROUGE-L F-measure against the best reference"),
]
