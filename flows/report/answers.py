"""Which option a multiple-choice run's model picked, against which option was right: a model that
answers one letter whatever the question scores the share of gold answers with that letter (0.25 on
MMLU's four options), which reads like a weak model; the spread of its answers shows what it is.

Pure counting, no SQL and no pandas: the run page (report) and `helmflow run`'s results (CLI) both
use it, and the CLI imports it after a run without loading the report's templates and charts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from helmflow.tasks.records import LETTERS

# When one option "takes most predictions" enough to say so: more than half of all predictions
# (MOST_PREDICTIONS) and at least ABOVE_GOLD (25 points) more than its share of gold answers. The
# first alone would flag any run whose data is mostly one letter (a yes/no task that is 70% yes); the
# second asks that the model's preference be well beyond what the data gives that letter: 100% "A"
# against 20% gold "A" is 80 points, while a model that says "yes" 65% of the time on a task that is
# 55% yes (10 points) is left alone. In small runs one letter takes most answers by chance: a model
# guessing at random among four options gives one letter 6 or more of 10 answers in 8% of runs, 11 of
# 20 in 1.6%; so runs under MIN_PREDICTIONS show the counts without the warning.
MOST_PREDICTIONS = 0.5
ABOVE_GOLD = 0.25
MIN_PREDICTIONS = 20
WARNING_RULE = (
    f"more than {MOST_PREDICTIONS:.0%} of the predictions and at least {ABOVE_GOLD * 100:.0f} percentage points "
    f"more than its share of the gold answers, in a run of {MIN_PREDICTIONS} instances or more"
)


@dataclass(frozen=True)
class OptionCount:
    """How often one option was predicted and how often it was the gold answer."""

    letter: str
    predicted: int
    gold: int


@dataclass(frozen=True)
class AnswerSpread:
    """Predicted options against gold options over a run's unperturbed multiple-choice instances."""

    options: list[OptionCount]
    total: int  # unperturbed instances with a gold option: each column sums to this (with `unanswered`)
    unanswered: int  # predictions that chose no option (an error, a chat answer with no letter)
    warning: str | None  # one line when one option takes most predictions (see MOST_PREDICTIONS)

    def share(self, count: int) -> float:
        return count / self.total if self.total else 0.0


def letter(index: int) -> str:
    return LETTERS[index] if 0 <= index < len(LETTERS) else str(index + 1)


def _percent(count: int, total: int) -> str:
    return f"{100 * count / total:.0f}%"


def one_letter_warning(options: list[OptionCount], total: int) -> str | None:
    """The warning line, or None: see MOST_PREDICTIONS for when, and why these thresholds."""
    if total < MIN_PREDICTIONS or not options:
        return None
    top = max(options, key=lambda o: (o.predicted, -o.gold))
    predicted, gold = top.predicted / total, top.gold / total
    if predicted <= MOST_PREDICTIONS or predicted - gold < ABOVE_GOLD:
        return None
    return (
        f"{top.letter} took {top.predicted} of {total} predictions ({_percent(top.predicted, total)}) against "
        f"{top.gold} of {total} gold answers ({_percent(top.gold, total)}): the model may be answering one letter "
        "whatever the question"
    )


def answer_spread(rows: Iterable[tuple[int | None, int, int, int]]) -> AnswerSpread | None:
    """rows: (predicted option or None, gold option, number of options, how many such instances), for the
    unperturbed instances of one multiple-choice run. None when there are none (not a multiple-choice run)."""
    predicted: Counter[int] = Counter()
    gold: Counter[int] = Counter()
    options = total = unanswered = 0
    for chosen, right, count_of_options, count in rows:
        total += count
        gold[right] += count
        options = max(options, count_of_options, right + 1)
        if chosen is None:
            unanswered += count
        else:
            predicted[chosen] += count
            options = max(options, chosen + 1)
    if not total:
        return None
    counts = [OptionCount(letter(k), predicted[k], gold[k]) for k in range(options)]
    return AnswerSpread(counts, total, unanswered, one_letter_warning(counts, total))
