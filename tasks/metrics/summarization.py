"""Summarisation metrics of HELM's CNN/DailyMail and XSUM scenarios: ROUGE-1/2/L and extractiveness.

What HELM does (src/helm/benchmark/metrics/summarization_metrics.py, SummarizationMetric):

* ROUGE: `get_rouge_function` in evaluate_reference_metrics.py builds one `rouge_score.RougeScorer([kind],
  use_stemmer=True)` per kind, for kind in rouge1, rouge2 and rougeL (not rougeLsum), with rouge_score's own
  tokeniser (lower-case, every run of characters outside [a-z0-9] is a separator, Porter stemming of tokens
  longer than 3 characters). A stat is the F-measure of `scorer.score(reference, prediction)`, the maximum over
  the correct references; HELM names them rouge_1, rouge_2 and rouge_l.
* Extractiveness: summ_eval's `DataStatsMetric().evaluate_example(prediction, article)`, which is the Newsroom
  code (Grusky et al. 2018, lil-lab/newsroom newsroom/analyze/fragments.py, copied into summ_eval as
  data_stats_utils.Fragments). Both texts are tokenised by spaCy's `en_core_web_sm` (tagger, parser and NER off,
  so only its rule-based tokeniser runs), every token is lower-cased for matching (`case=False`), the greedy
  fragments are found, and coverage = sum |f| / |S|, density = sum |f|^2 / |S|, compression = |A| / |S|,
  where |S| and |A| are the numbers of spaCy tokens (punctuation included) of summary and article. A division
  by zero gives 0: an empty summary has coverage, density and compression 0. HELM reports them as
  summarization_coverage, summarization_density and summarization_compression.
* Before all this HELM strips the completion, and drops one leading "{" and one trailing "}" from the completion,
  the article and each reference (`_remove_braces`: its old prompts put the document in braces). `summary_stats`
  strips both texts; the braces are the caller's business (helmflow's prompts have none).

Where this module differs from HELM: spaCy is not a dependency of helmflow, so `spacy_like_tokens` re-implements
spaCy's English tokeniser (its algorithm and English rules; see its docstring for what it leaves out). Checked
against spaCy 3.8's English tokeniser while writing it, it gave the same tokens on the 21,589 passages and
sentences of the SuperGLUE and GLUE data in shared/data (672,680 tokens), and on all but 8 of 60,000 random
strings of words, digits, punctuation, symbols and whitespace (those 8 have emoticons back to back, ":):)").
The fragment algorithm, the three statistics and their zero cases are HELM's.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any, NamedTuple

from helmflow.tasks.metrics.scoring import GENERATION, MetricRecord, Scoring
from helmflow.tasks.metrics.spacy_tokens import spacy_like_tokens
from helmflow.tasks.records import Metric, Stat

ROUGE_KINDS = ("rouge1", "rouge2", "rougeL")
# HELM's stat name for each kind.
HELM_ROUGE_NAMES = {"rouge_1": "rouge1", "rouge_2": "rouge2", "rouge_l": "rougeL"}


@cache
def _scorer(kind: str) -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer([kind], use_stemmer=True)


def rouge(prediction: str, reference: str, kind: str) -> float:
    """ROUGE F-measure of `prediction` against one reference, as HELM scores it (stemmer on).

    `kind` is rouge1, rouge2 or rougeL. HELM takes the maximum over the references; so should the caller.
    An empty prediction or reference (no [a-z0-9] token) scores 0.
    """
    if kind not in ROUGE_KINDS:
        raise ValueError(f"unknown ROUGE kind {kind!r}: expected one of {', '.join(ROUGE_KINDS)}")
    return float(_scorer(kind).score(reference, prediction)[kind].fmeasure)


# ---------------------------------------------------------------------------------------------------------------
# Extractive fragments (Grusky et al. 2018, "Newsroom", section 4.1 and Algorithm 1)


class Fragment(NamedTuple):
    """A shared run of tokens: where it starts in the summary and in the article, and how many tokens it has."""

    summary_start: int
    article_start: int
    length: int


def extractive_fragments(article_tokens: Sequence[str], summary_tokens: Sequence[str]) -> list[Fragment]:
    """The greedy extractive fragments of a summary in its article; tokens are compared exactly as given.

    From the first summary token on: of every place in the article where the current summary token occurs, take
    the one whose run of equal tokens (article and summary advancing together) is longest, the earliest on ties;
    keep it as a fragment and go on after it in the summary; a token found nowhere is skipped.

    As in the paper's Algorithm 1 and the Newsroom code HELM runs, the article scan resumes after the end of each
    run it tried, so a longer run that starts inside a shorter one tried before is not seen: with article
    [x, x, x, y] and summary [x, x, y], the run at article 0 is [x, x] and the article scan goes on at 2, where
    the run is [x]; the fragments are [x, x] and then [y], not [x, x, y] from article 1.
    """
    positions: dict[str, list[int]] = {}
    for j, token in enumerate(article_tokens):
        positions.setdefault(token, []).append(j)
    fragments = []
    i = 0
    while i < len(summary_tokens):
        best = Fragment(i, -1, 0)
        resume = 0  # article positions before this lie inside a run already tried for this summary token
        for j in positions.get(summary_tokens[i], ()):
            if j < resume:
                continue
            length = 1
            while (
                i + length < len(summary_tokens)
                and j + length < len(article_tokens)
                and summary_tokens[i + length] == article_tokens[j + length]
            ):
                length += 1
            if length > best.length:
                best = Fragment(i, j, length)
            resume = j + length
        if best.length:
            fragments.append(best)
            i += best.length
        else:
            i += 1
    return fragments


def coverage(fragments: Sequence[Fragment], summary_length: int) -> float:
    """Share of summary tokens that lie in a fragment, in [0, 1]; 0 for an empty summary (as Newsroom)."""
    return sum(f.length for f in fragments) / summary_length if summary_length else 0.0


def density(fragments: Sequence[Fragment], summary_length: int) -> float:
    """Mean length of the fragment each summary token lies in: sum |f|^2 / |S|; 0 for an empty summary."""
    return sum(f.length**2 for f in fragments) / summary_length if summary_length else 0.0


def compression(article_length: int, summary_length: int) -> float:
    """Article tokens per summary token, |A| / |S|; 0 for an empty summary (Newsroom's ZeroDivisionError case)."""
    return article_length / summary_length if summary_length else 0.0


def summary_stats(article: str, summary: str) -> dict[str, float]:
    """HELM's summarization_coverage, summarization_density and summarization_compression of one summary.

    Both texts are stripped (HELM strips the completion; its articles have no outer whitespace), tokenised like
    spaCy's English tokeniser (`spacy_like_tokens`), lower-cased for the matching, and the statistics computed
    on the fragments. An empty summary gives 0 for all three (HELM's values); an empty article gives coverage
    and density 0 (nothing is shared) and compression 0 / |S| = 0.
    """
    article_tokens = [t.lower() for t in spacy_like_tokens(article.strip())]
    summary_tokens = [t.lower() for t in spacy_like_tokens(summary.strip())]
    fragments = extractive_fragments(article_tokens, summary_tokens)
    return {
        "summarization_coverage": coverage(fragments, len(summary_tokens)),
        "summarization_density": density(fragments, len(summary_tokens)),
        "summarization_compression": compression(len(article_tokens), len(summary_tokens)),
    }


# -- as helmflow metrics: category "summarization", as HELM's "Summarization metrics" group ------------------

CATEGORY = "summarization"
STAT_NAMES = ("summarization_coverage", "summarization_density", "summarization_compression")


def _instance_stats(scoring: Scoring) -> list[Stat]:
    """The three statistics of every unperturbed answer against its instance's input (the article)."""
    stats = []
    for prediction in scoring.unperturbed:
        if prediction.request.kind != "generation" or prediction.completion.error:
            continue
        inst = scoring.by_id[prediction.request.instance_id]
        values = summary_stats(str(inst.input), prediction.predicted_text)
        stats += [Stat(inst.id, CATEGORY, name, values[name]) for name in STAT_NAMES if scoring.wants(name)]
    return stats


def _mean_rows(scoring: Scoring, name: str) -> list[Metric]:
    values = [s.value for s in scoring.stats if s.metric == name and s.value is not None]
    return [Metric(CATEGORY, name, sum(values) / len(values), len(values))] if values else []


def _record(name: str, display_name: str, description: str) -> MetricRecord:
    return MetricRecord(
        name=name,
        category=CATEGORY,
        function=lambda scoring: _mean_rows(scoring, name),
        display_name=display_name,
        methods=GENERATION,
        stats=_instance_stats,
        description=description,
    )


METRICS = [
    _record("summarization_coverage", "Coverage", "share of summary tokens inside a fragment of the article"),
    _record("summarization_density", "Density", "mean squared fragment length per summary token"),
    _record("summarization_compression", "Compression", "article tokens per summary token"),
]
