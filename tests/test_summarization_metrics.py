"""HELM's summarisation metrics (tasks/metrics/summarization.py) on inputs small enough to score by hand.

ROUGE-1/2/L with the stemmer, the greedy extractive fragments of Grusky et al. (2018) with coverage, density and
compression, and the spaCy-like tokenisation that HELM's statistics count in. Every expected value is worked
out in the comment beside it, so a change of definition shows up as a wrong number, not a changed snapshot.
"""

import pytest

from helmflow.tasks.metrics import accuracy
from helmflow.tasks.metrics.summarization import (
    Fragment,
    compression,
    coverage,
    density,
    extractive_fragments,
    rouge,
    spacy_like_tokens,
    summary_stats,
)


def test_rouge_counts_unigrams_bigrams_and_the_longest_common_subsequence() -> None:
    # rouge_score lower-cases and stems (Porter, words over 3 letters): reference "police arrest man after
    # robbery" -> [polic, arrest, man, after, robberi] (5 tokens); prediction "man robbery police arrest" ->
    # [man, robberi, polic, arrest] (4 tokens).
    reference, prediction = "Police arrest man after robbery", "man robbery police arrest"
    # ROUGE-1: all 4 predicted unigrams are in the reference: P = 4/4, R = 4/5, F = 2PR/(P+R) = 1.6/1.8 = 8/9.
    assert rouge(prediction, reference, "rouge1") == pytest.approx(8 / 9)
    # ROUGE-2: predicted bigrams (man robberi), (robberi polic), (polic arrest); only (polic arrest) is among
    # the reference's 4 bigrams: P = 1/3, R = 1/4, F = 2/12 / (7/12) = 2/7.
    assert rouge(prediction, reference, "rouge2") == pytest.approx(2 / 7)
    # ROUGE-L: the longest common subsequence has 2 tokens ("polic arrest" or "man robberi"):
    # P = 2/4, R = 2/5, F = 0.4 / 0.9 = 4/9.
    assert rouge(prediction, reference, "rougeL") == pytest.approx(4 / 9)
    # The same ROUGE-L as the accuracy category's rouge_l (same scorer settings).
    assert rouge(prediction, reference, "rougeL") == pytest.approx(accuracy.rouge_l(prediction, reference))


def test_rouge_prefix_of_the_reference() -> None:
    # "the cat sat" against "the cat sat on the mat": 3 of 6 unigrams, 2 of 5 bigrams, an LCS of 3.
    # ROUGE-1 and ROUGE-L: P = 1, R = 1/2, F = 1 / 1.5 = 2/3. ROUGE-2: P = 1, R = 2/5, F = 0.8 / 1.4 = 4/7.
    assert rouge("the cat sat", "the cat sat on the mat", "rouge1") == pytest.approx(2 / 3)
    assert rouge("the cat sat", "the cat sat on the mat", "rouge2") == pytest.approx(4 / 7)
    assert rouge("the cat sat", "the cat sat on the mat", "rougeL") == pytest.approx(2 / 3)


def test_rouge_uses_the_stemmer_as_helm_does() -> None:
    # "running dogs" -> [run, dog]; "the dog runs" -> [the, dog, run]: 2 shared unigrams, P = 1, R = 2/3, F = 0.8.
    # Without the stemmer nothing would match (running != runs, dogs != dog).
    assert rouge("running dogs", "the dog runs", "rouge1") == pytest.approx(0.8)


def test_rouge_of_an_empty_text_is_zero_and_unknown_kinds_are_refused() -> None:
    assert rouge("", "the cat sat", "rouge1") == 0.0
    assert rouge("the cat sat", "", "rougeL") == 0.0
    with pytest.raises(ValueError, match="rougeLsum"):
        rouge("a", "a", "rougeLsum")


def words(text: str) -> list[str]:
    return text.split()


ARTICLE = words("the mayor of springfield opened a new bridge on monday")  # 10 tokens, indices 0..9


def test_fragments_of_a_four_word_summary() -> None:
    # Summary "mayor opens new bridge" (4 tokens, indices 0..3):
    #   s0 "mayor" is article 1; the next tokens differ ("opens" / "of"): fragment (0, 1, 1).
    #   s1 "opens" is nowhere in the article: skipped.
    #   s2 "new" is article 6, and s3 "bridge" = article 7: fragment (2, 6, 2).
    fragments = extractive_fragments(ARTICLE, words("mayor opens new bridge"))
    assert fragments == [Fragment(0, 1, 1), Fragment(2, 6, 2)]
    # coverage = (1 + 2) / 4 = 0.75; density = (1^2 + 2^2) / 4 = 1.25; compression = 10 / 4 = 2.5.
    assert coverage(fragments, 4) == 0.75
    assert density(fragments, 4) == 1.25
    assert compression(len(ARTICLE), 4) == 2.5


def test_fully_extractive_summary_has_coverage_one() -> None:
    # "opened a new bridge" is article 4..7 in one run: one fragment of 4; coverage 4/4, density 16/4.
    fragments = extractive_fragments(ARTICLE, words("opened a new bridge"))
    assert fragments == [Fragment(0, 4, 4)]
    assert (coverage(fragments, 4), density(fragments, 4)) == (1.0, 4.0)


def test_fragments_take_the_longest_run_and_the_earliest_on_ties() -> None:
    # Article [a, b, x, a, b, c]; summary [a, b, c]. s0 "a" occurs at 0 (run "a b", 2; then "c" != "x") and
    # at 3 (run "a b c", 3): the longer one wins: fragment (0, 3, 3).
    assert extractive_fragments(words("a b x a b c"), words("a b c")) == [Fragment(0, 3, 3)]
    # Summary [a, b]: both places give a run of 2; the earliest (article 0) is kept.
    assert extractive_fragments(words("a b x a b c"), words("a b")) == [Fragment(0, 0, 2)]


def test_fragment_scan_resumes_after_each_run_as_newsroom_does() -> None:
    # Article [no, no, no, way]; summary [no, no, way]. For s0 the scan tries article 0: run "no no" (then
    # "way" != "no"), length 2, and resumes at article 2 (skipping 1, where "no no way" would run for 3): run
    # "no", length 1. So fragment (0, 0, 2), then s2 "way" = article 3: fragment (2, 3, 1).
    fragments = extractive_fragments(words("no no no way"), words("no no way"))
    assert fragments == [Fragment(0, 0, 2), Fragment(2, 3, 1)]
    # density = (2^2 + 1^2) / 3 = 5/3 (it would be 9/3 = 3 with the single run of 3).
    assert density(fragments, 3) == pytest.approx(5 / 3)


def test_fragments_compare_tokens_exactly() -> None:
    # extractive_fragments does not lower-case (summary_stats does): "Mayor" is not "mayor".
    assert extractive_fragments(ARTICLE, ["Mayor"]) == []


def test_summary_stats_on_sentences() -> None:
    # spaCy tokens: article "The Mayor of Springfield opened a new bridge on Monday." -> 10 words + "." = 11;
    # summary "Mayor opens new bridge." -> [Mayor, opens, new, bridge, .] = 5. Lower-cased, the fragments are
    # "mayor" (1), "new bridge" (2) and "." (1; "new bridge ." is not in the article, whose "." ends it).
    # coverage = (1 + 2 + 1) / 5 = 0.8; density = (1 + 4 + 1) / 5 = 1.2; compression = 11 / 5 = 2.2.
    article = "The Mayor of Springfield opened a new bridge on Monday."
    expected = {
        "summarization_coverage": pytest.approx(0.8),
        "summarization_density": pytest.approx(1.2),
        "summarization_compression": pytest.approx(2.2),
    }
    assert summary_stats(article, "Mayor opens new bridge.") == expected
    # Case does not matter, and neither does whitespace around the completion (HELM strips it).
    assert summary_stats(article, "  MAYOR OPENS NEW BRIDGE.\n") == expected


def test_summary_stats_of_empty_texts() -> None:
    # An empty summary: coverage, density and compression are 0 (HELM's, i.e. Newsroom's, zero-division value).
    zero = {"summarization_coverage": 0.0, "summarization_density": 0.0, "summarization_compression": 0.0}
    assert summary_stats("The Mayor of Springfield opened a new bridge on Monday.", "") == zero
    assert summary_stats("The Mayor of Springfield opened a new bridge on Monday.", " \n ") == zero
    # An empty article: nothing is shared (coverage and density 0) and compression is 0 tokens / 5 = 0.
    assert summary_stats("", "Mayor opens new bridge.") == zero
    assert summary_stats("", "") == zero


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        # Each expected list is what spaCy 3.8's English tokeniser gives for the text.
        (
            "The U.S. economy grew 3.5% in 2013, Mr. Smith said.",
            ["The", "U.S.", "economy", "grew", "3.5", "%", "in", "2013", ",", "Mr.", "Smith", "said", "."],
        ),
        (
            'It isn\'t a "well-known" fact: $5 buys 1,000 e-mails (CNN.com).',
            words('It is n\'t a " well - known " fact : $ 5 buys 1,000 e - mails ( CNN.com ) .'),
        ),
        # Whitespace beyond the one space after a token is a token of its own.
        ("one\n\ntwo  three", ["one", "\n\n", "two", " ", "three"]),
        ("", []),
    ],
)
def test_tokens_are_spacys(text: str, tokens: list[str]) -> None:
    assert spacy_like_tokens(text) == tokens
