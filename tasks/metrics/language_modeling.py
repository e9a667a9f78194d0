"""Language modelling: how well the model predicts a text itself (adapter method `language_modeling`).

Each instance's text is scored whole (the hf backend reads a text longer than its window in lm-eval's
rolling windows: tasks/models/hf_tokens.py), giving its log-likelihood ll in nats. As in HELM
(`_compute_perplexity_metrics`) and lm-evaluation-harness (`weighted_perplexity`, `bits_per_byte`), the run's
values are ratios of sums over the run's texts, not means of each text's value:

- `bits_per_byte` = -Σll / Σbytes / ln 2 (HELM's and lm-eval's headline for the Pile and wikitext);
- `byte_perplexity` = exp(-Σll / Σbytes), `word_perplexity` = exp(-Σll / Σwords) (lm-eval's);
- `perplexity` = exp(-Σll / Σtokens), tokens of the model's own tokenizer (HELM's; not comparable across
  tokenizers, which is why the other three exist);
- `logprob`: the mean over texts of each text's ll (HELM's logprob).

Words and bytes are counted as lm-eval counts them: `len(re.split(r"\\s+", text))` and the UTF-8 length of the
text scored — or, where a task counts them on another text (lm-eval's wikitext counts the page before it is
detokenised, in its process_results), the instance's `words` and `bytes` extras. Per instance, each metric's
own value for that text alone is stored too (the instance browser's numbers). All lower is better but logprob.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from helmflow.tasks.metrics.scoring import LANGUAGE_MODELING, MetricRecord, Scoring
from helmflow.tasks.records import Instance, Metric, Prediction, Stat

# The ratio metrics: which count divides the log-likelihood, and how the ratio r = Σll / Σcount is shown.
_LN2 = math.log(2)
_EXP_LIMIT = 700.0  # exp of more overflows a float; a perplexity that large is shown as e^700


def _perplexity(ratio: float) -> float:
    return math.exp(min(-ratio, _EXP_LIMIT))


RATIOS = {
    "bits_per_byte": ("bytes", lambda ratio: -ratio / _LN2),
    "byte_perplexity": ("bytes", _perplexity),
    "word_perplexity": ("words", _perplexity),
    "perplexity": ("tokens", _perplexity),
}


def count_words(text: str) -> int:
    """lm-eval's ConfigurableTask.count_words: the pieces between runs of whitespace (a leading space counts one)."""
    return len(re.split(r"\s+", text))


def count_bytes(text: str) -> int:
    return len(text.encode("utf-8"))


@dataclass(frozen=True)
class Scored:
    """One text's log-likelihood and the counts its ratios divide by."""

    instance_id: str
    logprob: float
    counts: dict[str, int]


def _count(inst: Instance, key: str, text: str) -> int:
    given = inst.extra.get(key)
    if given is None or given == "":
        return count_words(text) if key == "words" else count_bytes(text)
    try:
        return int(given)
    except ValueError:
        raise ValueError(f"{inst.origin or inst.id}: its '{key}' count is {given!r}, not a whole number") from None


def scored_texts(scoring: Scoring) -> list[Scored]:
    """Each unperturbed, answered language-modelling prediction's log-likelihood and counts, in run order."""
    out = []
    for pred in scoring.unperturbed:
        if pred.completion.error or pred.request.sample or not pred.completion.logprobs:
            continue
        out.append(_scored(scoring.by_id[pred.request.instance_id], pred))
    return out


def _scored(inst: Instance, pred: Prediction) -> Scored:
    text = pred.request.continuations[0] if pred.request.continuations else inst.input
    tokens = sum(pred.completion.continuation_tokens) or 0
    counts = {"words": _count(inst, "words", text), "bytes": _count(inst, "bytes", text), "tokens": tokens}
    return Scored(inst.id, float(sum(pred.completion.logprobs)), counts)


def ratio_value(name: str, texts: list[Scored]) -> float | None:
    """The run's (or a group's) value of a ratio metric; None when nothing was counted."""
    key, shown = RATIOS[name]
    total = sum(t.counts[key] for t in texts)
    return shown(sum(t.logprob for t in texts) / total) if total > 0 else None


def _instance_stats(scoring: Scoring) -> list[Stat]:
    stats = []
    for text in scored_texts(scoring):
        stats.append(Stat(text.instance_id, "accuracy", "logprob", text.logprob))
        for name in RATIOS:
            if scoring.wants(name):
                stats.append(Stat(text.instance_id, "accuracy", name, ratio_value(name, [text])))
    return stats


def _rows(scoring: Scoring, name: str) -> list[Metric]:
    texts = scored_texts(scoring)
    if not texts:
        return []
    lower = name in RATIOS
    headline = name == scoring.spec.main_metric

    def value(chosen: list[Scored]) -> float | None:
        if name in RATIOS:
            return ratio_value(name, chosen)
        return sum(t.logprob for t in chosen) / len(chosen)

    out = [Metric("accuracy", name, value(texts), len(texts), lower_is_better=lower, headline=headline)]
    by_group: dict[str, list[Scored]] = {}
    for text in texts:
        group = scoring.groups.get(text.instance_id)
        if group:
            by_group.setdefault(group, []).append(text)
    if len(by_group) > 1:
        out += [
            Metric("accuracy", name, value(v), len(v), lower_is_better=lower, group=g)
            for g, v in sorted(by_group.items())
        ]
    return out


def _record(name: str, display_name: str, description: str, higher_is_better: bool = False) -> MetricRecord:
    return MetricRecord(
        name=name,
        category="accuracy",
        function=lambda scoring: _rows(scoring, name),
        higher_is_better=higher_is_better,
        display_name=display_name,
        methods=LANGUAGE_MODELING,
        stats=_instance_stats,
        description=description,
    )


METRICS = [
    _record("bits_per_byte", "Bits per byte", "-Σ log-likelihood / Σ UTF-8 bytes / ln 2 over the run's texts"),
    _record("byte_perplexity", "Byte perplexity", "exp(-Σ log-likelihood / Σ UTF-8 bytes)"),
    _record("logprob", "Log-likelihood", "mean over texts of each text's log-likelihood (nats)", True),
    _record("perplexity", "Perplexity (tokens)", "exp(-Σ log-likelihood / Σ tokens of the model's tokenizer)"),
    _record("word_perplexity", "Word perplexity", "exp(-Σ log-likelihood / Σ whitespace-separated words)"),
]

NAMES = frozenset(record.name for record in METRICS)
