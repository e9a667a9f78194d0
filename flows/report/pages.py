"""One run's instances for the report's instance browser, in pages (site.write_instances writes them).

The encoding below keeps a run of any size quick to open from the file system: a small index, then
pages loaded on demand, with a few-shot prompt's long shared head stored once per page.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from helmflow.flows.report.content import listed, number
from helmflow.tasks.records import LETTERS

#
# The instance browser's data (site.write_instances) is a small index and pages of about PAGE_ROWS
# predictions, each a script that calls window.HELMFLOW_PAGE(run id, page number, page as JSON text).
# A page holds whole instances:
#
#   index     window.HELMFLOW_INSTANCES = {"run", "scenario", "model", "metric", "rows": count,
#             "groups": [name, ...], "perturbations": [name, ...], "letters": "ABC...",
#             "pages": [[script, first row number, rows, [groups in it]], ...]}
#   page      {"heads": [text, ...], "instances": [instance, ...]}
#   instance  [id, group (index into the index's groups), input, options, gold, [variant, ...]]
#   variant   [perturbation (index into the index's perturbations), prompt, answer, log-probs, score]
#
# A prompt is stored as [head, a, middle, b]: the page's heads[head] (none where head is -1), then the
# first `a` characters of the instance's first variant's rest, `middle`, and its last `b` characters
# (for the first variant itself, a = b = 0 and middle is its whole rest). A few-shot prompt's head (the
# instructions and the exemplars, thousands of characters shared by every instance of a group) is so
# stored once per page, and a perturbed copy, whose question differs in a few words, stores only the
# words from its first change to its last. A variant whose prompt equals an earlier variant's is that
# variant's number (an int). The input is [start, length] within the first variant's rest where it is
# there, its text where it is not, and null where the instance has none (the browser shows the end of
# the prompt). Options are the instance's choices, each, like the input, where the prompt has it or as
# its text; an answer or a gold answer that is option k is k (the browser shows the letter and the
# option), other answers are their text. Lengths and offsets count UTF-16 code units, as JavaScript's
# strings do.

PAGE_ROWS = 2000  # predictions per data page (a page ends with an instance: it may hold a few more)
HEAD_MIN = 200  # characters a shared prompt beginning needs to be stored once as a head
_HEAD_KEY = 48  # heads are found by their first characters
_HEADS_KEPT = 512  # heads (and groups' last prompts) remembered while writing a run: the least recently used go
_OPTION_PLACED = 8  # an option longer than this is stored as where the prompt has it


def _units(text: str) -> int:
    """The length of a text in UTF-16 code units: what JavaScript's length and slice() count."""
    return len(text) if text.isascii() else len(text.encode("utf-16-le")) // 2


def common_prefix(a: str, b: str) -> int:
    """The length of the longest common beginning of two texts (by bisection: compares in C)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[low:middle] == b[low:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def common_suffix(a: str, b: str, most: int) -> int:
    """The length of the longest common end of two texts, at most `most`."""
    low, high = 0, min(len(a), len(b), most)
    while low < high:
        middle = (low + high + 1) // 2
        if a[len(a) - middle : len(a) - low] == b[len(b) - middle : len(b) - low]:
            low = middle
        else:
            high = middle - 1
    return low


class PromptHeads:
    """The long beginnings prompts share (a few-shot prompt's instructions and exemplars), found as the
    run is read: two instances of a group whose prompts begin with the same HEAD_MIN or more characters
    share that head, cut after the last line break in common; later prompts that begin with it use it.
    A head ends with a line break: the browser's search, which has none, looks in heads and rests apart."""

    def __init__(self) -> None:
        self._kept: OrderedDict[str, None] = OrderedDict()  # least recently used first
        self._by_key: dict[str, list[str]] = {}
        self._by_group: OrderedDict[str, str] = OrderedDict()  # each group's last head
        self._last: OrderedDict[str, str] = OrderedDict()  # each group's last prompt that had no head

    def split(self, prompt: str, group: str) -> tuple[str, str]:
        """(head, rest): head + rest == prompt; the head is "" where none fits."""
        head = self._find(prompt, group)
        if not head:
            last = self._last.get(group)
            if last is not None:
                cut = prompt.rfind("\n", 0, common_prefix(prompt, last)) + 1
                if cut >= HEAD_MIN:
                    head = prompt[:cut]
            _remember(self._last, group, prompt)
        if head:
            self._keep(head)
            _remember(self._by_group, group, head)
        return head, prompt[len(head) :]

    def _find(self, prompt: str, group: str) -> str:
        head = self._by_group.get(group, "")
        if head and prompt.startswith(head):
            return head
        fits = [h for h in self._by_key.get(prompt[:_HEAD_KEY], ()) if prompt.startswith(h)]
        return max(fits, key=len, default="")

    def _keep(self, head: str) -> None:
        if head in self._kept:
            self._kept.move_to_end(head)
            return
        self._kept[head] = None
        self._by_key.setdefault(head[:_HEAD_KEY], []).append(head)
        if len(self._kept) > _HEADS_KEPT:
            gone, _ = self._kept.popitem(last=False)
            self._by_key[gone[:_HEAD_KEY]].remove(gone)


def _remember(memory: OrderedDict[str, str], key: str, value: str) -> None:
    """Set a key as the most recently used, forgetting the least recently used beyond _HEADS_KEPT."""
    memory[key] = value
    memory.move_to_end(key)
    if len(memory) > _HEADS_KEPT:
        memory.popitem(last=False)


def _rounded(value: Any) -> Any:
    """A score as the browser needs it: null, or a number (1 rather than 1.0: the data is smaller)."""
    value = number(value)
    return int(value) if value is not None and value.is_integer() else value


def _option_or_text(index: Any, options: list[Any], text: str) -> Any:
    """Option k as k where the browser can show it (its letter and text), otherwise the text shown."""
    if index is not None and not pd.isna(index) and 0 <= int(index) < min(len(options), len(LETTERS)):
        return int(index)
    return text


def _answer(row: dict[str, Any], options: list[Any]) -> Any:
    """The model's answer: the chosen option, the completion, or the error."""
    if isinstance(row["error"], str):
        return f"error: {row['error']}"
    chosen = row["predicted_index"]
    if options and chosen is not None and not pd.isna(chosen):
        return _option_or_text(chosen, options, str(int(chosen)))
    answer = row["completion"] if isinstance(row["completion"], str) else ""
    raw = row.get("raw_completion")
    # The answer read out of a longer completion (answer_extraction), and what the model wrote.
    return f"{answer} ← {raw}" if isinstance(raw, str) else answer


def _gold(row: dict[str, Any], options: list[Any]) -> Any:
    gold = row["gold_index"]
    if options and gold is not None and not pd.isna(gold):
        return _option_or_text(gold, options, str(int(gold)))
    return " | ".join(str(r) for r in listed(row["reference_texts"]))


@dataclass
class InstancePage:
    """One data page as it is written: the instances, their row count and the groups they are in."""

    start: int = 0  # the run's row number of its first row
    instances: list[list[Any]] = field(default_factory=list)
    heads: dict[str, int] = field(default_factory=dict)  # head text -> its index in this page
    rows: int = 0
    groups: set[int] = field(default_factory=set)

    def head(self, text: str) -> int:
        return self.heads.setdefault(text, len(self.heads)) if text else -1

    def data(self) -> dict[str, Any]:
        return {"heads": list(self.heads), "instances": self.instances}


class InstancePages:
    """Turns report_instance_batches' rows (dicts of INSTANCE_COLUMNS) into data pages, holding one page
    and one instance's rows: `add` each row in order, take the pages `ready` returns as they come, and
    the last ones from `finish`."""

    def __init__(self, page_rows: int = PAGE_ROWS) -> None:
        self.page_rows = page_rows
        self.heads = PromptHeads()
        self.groups: dict[str, int] = {}
        self.perturbations: dict[str, int] = {}
        self.total = 0
        self.page = InstancePage()
        self._rows: list[dict[str, Any]] = []  # the instance being read: its variants
        self._done: list[InstancePage] = []

    def add(self, row: dict[str, Any]) -> None:
        if self._rows and row["instance_id"] != self._rows[0]["instance_id"]:
            self._end_instance()
        self._rows.append(row)

    def ready(self) -> list[InstancePage]:
        """The pages completed since the last call (a page is complete once the next one has begun)."""
        done, self._done = self._done, []
        return done

    def finish(self) -> list[InstancePage]:
        self._end_instance()
        done = self.ready()
        return [*done, self.page] if self.page.rows else done

    def _end_instance(self) -> None:
        rows, self._rows = self._rows, []
        if not rows:
            return
        if self.page.rows >= self.page_rows:
            self._done.append(self.page)
            self.page = InstancePage(start=self.total)
        first = rows[0]
        group = self.groups.setdefault(first["group_name"] or "", len(self.groups))
        self.page.groups.add(group)
        options = [str(o) for o in listed(first["choices"])]
        prompts = [row["prompt"] or "" for row in rows]
        encoded, rest = self._prompts(prompts, first["group_name"] or "")
        variants = [
            [
                self.perturbations.setdefault(row["perturbation"] or "", len(self.perturbations)),
                prompt,
                _answer(row, options),
                [round(float(x), 4) for x in listed(row["choice_logprobs"])],
                _rounded(row["score"]),
            ]
            for row, prompt in zip(rows, encoded, strict=True)
        ]
        input_ = first["input"] if isinstance(first["input"], str) else None
        stored = [_placed(input_, rest, 0), [_placed(option, rest, _OPTION_PLACED) for option in options]]
        self.page.instances.append([first["instance_id"], group, *stored, _gold(first, options), variants])
        self.page.rows += len(rows)
        self.total += len(rows)

    def _prompts(self, prompts: list[str], group: str) -> tuple[list[Any], str]:
        """One instance's variants' prompts as the page stores them, and the first one's rest."""
        distinct = list(dict.fromkeys(prompts))  # a perturbation that changed nothing: the same prompt, once
        splits = [self.heads.split(prompt, group) for prompt in distinct]
        head, rest = splits[0]
        if not head:  # the group's first instance: its perturbed copies may have found the head
            head = next((h for h, _ in splits[1:] if h and distinct[0].startswith(h)), "")
            rest = distinct[0][len(head) :]
        stored = {distinct[0]: [self.page.head(head), 0, rest, 0]}
        for prompt, (own_head, own_rest) in zip(distinct[1:], splits[1:], strict=True):
            a = common_prefix(own_rest, rest)
            b = common_suffix(own_rest[a:], rest[a:], len(own_rest) - a)
            ends = [_units(rest[:a]), _units(rest[len(rest) - b :]) if b else 0]
            stored[prompt] = [self.page.head(own_head), ends[0], own_rest[a : len(own_rest) - b], ends[1]]
        seen: dict[str, int] = {}
        encoded = []
        for k, prompt in enumerate(prompts):
            encoded.append(seen[prompt] if prompt in seen else stored[prompt])
            seen.setdefault(prompt, k)
        return encoded, rest


def _placed(text: str | None, rest: str, shortest: int) -> Any:
    """A text the prompt usually holds (the input, an option) as [start, length] within the first
    variant's rest where it is there and longer than `shortest`, otherwise as itself (None: null)."""
    at = rest.find(text) if text and len(text) > shortest else -1
    return [_units(rest[:at]), _units(text)] if text is not None and at >= 0 else text
