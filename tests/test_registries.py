"""The worked examples of docs/adding-a-backend-or-category.md: a new backend and a new category by registration."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

from helmflow.flows.inference import infer
from helmflow.specs import registry
from helmflow.specs.schema import ModelSpec, ScenarioSpec
from helmflow.tasks.adapt import build_requests
from helmflow.tasks.metrics import score, to_prediction
from helmflow.tasks.models import fingerprint_of, load_model
from helmflow.tasks.records import Instance
from tests.conftest import REPO

DOC = REPO / "docs" / "adding-a-backend-or-category.md"


def module_from_doc(name: str, heading: str, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """Load the python block that follows `heading` in the doc as the module `name`."""
    text = DOC.read_text()
    block = re.search(re.escape(heading) + r".*?```python\n(.*?)```", text, re.S)
    assert block, heading
    module = types.ModuleType(name)
    exec(compile(block.group(1), f"{DOC}:{name}", "exec"), module.__dict__)
    monkeypatch.setitem(sys.modules, name, module)
    return module


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    module_from_doc("helmflow.tasks.models.echo", "## A backend", monkeypatch)
    module_from_doc("helmflow.tasks.metrics.brevity", "## A category", monkeypatch)
    monkeypatch.setattr(registry, "BACKENDS", (*registry.BACKENDS, "echo"))
    monkeypatch.setattr(registry, "CATEGORIES", (*registry.CATEGORIES, "brevity"))


def test_a_registered_backend_runs_through_inference_and_scoring(registered: None, tmp_path: Path) -> None:
    spec = ModelSpec(name="toy", backend="echo")
    assert fingerprint_of(spec) == "echo@1"
    model = load_model(spec)
    scenario = ScenarioSpec.model_validate(
        {"name": "toy", "source": {"offline": {"files": {"test": "x.jsonl"}}}, "metrics": ["accuracy", "brevity"]}
    )
    instances = [
        Instance("a", "Sky?", "test", ("blue", "green"), 0),
        Instance("b", "Grass?", "test", ("blue", "green"), 1),
    ]
    requests = build_requests(scenario.adapter, instances, [], seed=0)
    result = infer(model, requests, str(tmp_path / "w.duckdb"), "run-1")
    predictions = [to_prediction(r, result.completions[r.id]) for r in requests]
    assert [p.predicted_index for p in predictions] == [0, 0]
    _, metrics = score(scenario, instances, predictions)
    assert {m.metric: m.value for m in metrics if not m.group} == {
        "exact_match": 0.5,
        "quasi_exact_match": 0.5,
        "answer_chars": None,  # brevity reads generations; this run has none
    }


def test_a_registered_category_scores_generations(registered: None) -> None:
    scenario = ScenarioSpec.model_validate(
        {
            "name": "toy",
            "source": {"offline": {"files": {"test": "x.jsonl"}}},
            "adapter": {"method": "generation"},
            "metrics": ["brevity"],
        }
    )
    model = load_model(ModelSpec(name="toy", backend="echo"))
    instances = [
        Instance("a", "Say hi", "test", references=("hi",)),
        Instance("b", "Say bye", "test", references=("bye",)),
    ]
    requests = build_requests(scenario.adapter, instances, [], seed=0)
    predictions = [to_prediction(r, c) for r, c in zip(requests, model.generate(requests), strict=True)]
    stats, metrics = score(scenario, instances, predictions)
    lengths = [len(p.predicted_text) for p in predictions]
    assert [s.value for s in stats if s.category == "brevity"] == lengths
    [brevity] = [m for m in metrics if m.category == "brevity"]
    assert (brevity.value, brevity.n, brevity.headline, brevity.lower_is_better) == (sum(lengths) / 2, 2, True, True)


def test_an_unregistered_name_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="Input should be 'embedded' or 'hf' or 'openai'"):
        ModelSpec(name="toy", backend="echo")
