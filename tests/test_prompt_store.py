"""A run's prompts wait on disk (tasks/prompt_store.py): each request comes back whole, and the plan, the model
and the write read the same prompts the requests were built with."""

from __future__ import annotations

from pathlib import Path

import pytest

from helmflow.flows.inference import ModelIdentity, plan_inference, request_key
from helmflow.tasks.prompt_store import PromptStore
from helmflow.tasks.records import Completion, Prediction, Request
from helmflow.warehouse.rows import predictions_frame
from helmflow.warehouse.store import Warehouse

IDENTITY = ModelIdentity("fp", "float32", None, 2)


def mc(request_id: str, prompt: str) -> Request:
    return Request(request_id, request_id, "multiple_choice", prompt, (" A", " B"), ("A", "B"))


def test_a_stored_prompt_reads_back_exactly_and_the_request_keeps_everything_else() -> None:
    store = PromptStore()
    texts = {"a": "Question: 2 + 2?\nAnswer:", "b": "Größe — ¿qué? 日本語\n", "c": "x" * 70_000}
    spilled = [store.spill(mc(k, v)) for k, v in texts.items()]
    assert [r.prompt for r in spilled] == ["", "", ""]
    assert [store.text(r) for r in spilled] == list(texts.values())
    assert [store.length(r) for r in spilled] == [len(v) for v in texts.values()]  # characters, not bytes
    assert store.filled(spilled[1]) == mc("b", texts["b"])
    assert len(store) == 3


def test_a_request_never_stored_keeps_its_own_prompt() -> None:
    store = PromptStore()
    baseline = mc("a#baseline", "Answer:")
    assert store.text(baseline) == "Answer:" and store.filled(baseline) is baseline
    # An empty prompt (a language-modelling text) is not stored: nothing is written for it.
    empty = mc("lm", "")
    assert store.spill(empty) is empty and len(store) == 0


def test_a_sampled_copy_reads_its_greedy_requests_prompt() -> None:
    store = PromptStore()
    greedy = store.spill(Request("q1", "q1", "generation", "Q: one?\nA:", max_tokens=4))
    store.alias("q1#sample1", greedy.id)
    assert store.text(Request("q1#sample1", "q1", "generation", "", max_tokens=4, sample=1)) == "Q: one?\nA:"


def test_a_closed_store_says_so() -> None:
    store = PromptStore()
    spilled = store.spill(mc("a", "Question?"))
    store.close()
    with pytest.raises(ValueError, match="prompt file is closed: request a's prompt cannot be read"):
        store.text(spilled)
    with pytest.raises(ValueError, match="prompt file is closed: request b's prompt cannot be stored"):
        store.spill(mc("b", "Other?"))


def test_the_plan_keys_sorts_and_sends_the_stored_prompts(tmp_path: Path) -> None:
    """Keys, chunk order (longest prompt first) and the requests sent are those of the whole requests."""
    whole = [mc("short", "Q?"), mc("long", "A much longer question?"), mc("mid", "Medium q?")]
    store = PromptStore()
    spilled = [store.spill(r) for r in whole]
    warehouse = Warehouse(str(tmp_path / "w.duckdb"))
    plain = plan_inference(whole, IDENTITY, warehouse)
    stored = plan_inference(spilled, IDENTITY, warehouse, prompts=store)
    assert stored.keys == plain.keys == {r.id: request_key(r, IDENTITY) for r in whole}
    assert stored.chunks == plain.chunks
    assert list(stored.missing()) == list(plain.missing()) == [[whole[1], whole[2], whole[0]]]


def test_the_written_prompt_column_is_read_from_the_store() -> None:
    store = PromptStore()
    request = store.spill(mc("a", "Question: which?\nAnswer:"))
    prediction = Prediction(request, Completion("a", [-1.0, -2.0]), 0, "A", 0.73)
    frame = predictions_frame([prediction], store.text)
    assert frame.prompt.tolist() == ["Question: which?\nAnswer:"]
    assert frame.prompt.dtype == object  # the Python strings, not an Arrow copy of them
