"""The worked example of docs/adding-a-backend-or-category.md: a backend, a metric and a data format from a plugin.

The page's package is installed here by hand (its module and a .dist-info with its entry points, what pip
would write) into a folder put on sys.path, so importlib.metadata finds it as it finds any distribution.
tests/test_plugins.py installs one with pip and runs `helmflow run` on it.
"""

from __future__ import annotations

import re
import sys
import tomllib
import typing
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from helmflow.flows.inference import infer
from helmflow.specs import registry
from helmflow.specs.schema import AdapterSpec, ModelSpec, ScenarioSpec
from helmflow.tasks.adapt import build_requests
from helmflow.tasks.data import load_instances
from helmflow.tasks.metrics import score, to_prediction
from helmflow.tasks.models import fingerprint_of, load_model
from helmflow.tasks.records import Instance
from helmflow.tasks.samples import with_samples
from tests.conftest import REPO

DOC = REPO / "docs" / "adding-a-backend-or-category.md"
GENERATION_ACCURACY = {
    "exact_match", "quasi_exact_match", "prefix_exact_match", "quasi_prefix_exact_match", "f1_score", "rouge_l"
}  # fmt: skip


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), re.S)


def install_by_hand(site: Path, pyproject: dict, module: str, source: str) -> None:
    """A distribution as pip lays it out: the module, and METADATA and entry_points.txt in its .dist-info."""
    name, version = pyproject["project"]["name"], pyproject["project"]["version"]
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(source)
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    groups = pyproject["project"]["entry-points"]
    (info / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n" for group, eps in groups.items()
        )
    )


@pytest.fixture
def echo_plugin(tmp_path: Path) -> Iterator[Path]:
    """The page's package, on sys.path for this test only."""
    [pyproject] = blocks("toml")
    site = tmp_path / "site"
    install_by_hand(site, tomllib.loads(pyproject), "helmflow_echo", "\n\n".join(blocks("python")))
    sys.path.insert(0, str(site))
    registry.refresh()
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        sys.modules.pop("helmflow_echo", None)
        registry.refresh()


def test_the_plugin_backend_runs_through_inference_and_scoring(echo_plugin: Path, tmp_path: Path) -> None:
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
    # brevity's one metric applies to generation only: on multiple choice the category has nothing to add
    assert {m.metric: m.value for m in metrics if not m.group} == {"exact_match": 0.5, "quasi_exact_match": 0.5}


def test_the_plugin_metric_scores_generations_by_category_or_by_name(echo_plugin: Path) -> None:
    model = load_model(ModelSpec(name="toy", backend="echo"))
    instances = [
        Instance("a", "Say hi", "test", references=("hi",)),
        Instance("b", "Say bye", "test", references=("bye",)),
    ]
    for asked in (["brevity"], ["answer_chars"]):
        scenario = ScenarioSpec.model_validate(
            {
                "name": "toy",
                "source": {"offline": {"files": {"test": "x.jsonl"}}},
                "adapter": {"method": "generation"},
                "metrics": asked,
            }
        )
        requests = build_requests(scenario.adapter, instances, [], seed=0)
        predictions = [to_prediction(r, c) for r, c in zip(requests, model.generate(requests), strict=True)]
        stats, metrics = score(scenario, instances, predictions)
        lengths = [len(p.predicted_text) for p in predictions]
        assert [s.value for s in stats if s.category == "brevity"] == lengths
        [brevity] = [m for m in metrics if m.category == "brevity"]
        assert (brevity.value, brevity.n, brevity.headline, brevity.lower_is_better) == (
            sum(lengths) / 2,
            2,
            True,
            True,
        )
        # a category alone keeps the whole of accuracy, as before; a single metric only adds the main metric
        accuracy = {m.metric for m in metrics if m.category == "accuracy"}
        assert accuracy == ({"exact_match"} if asked == ["answer_chars"] else GENERATION_ACCURACY)


def test_the_plugin_format_reads_rows(echo_plugin: Path, tmp_path: Path) -> None:
    (tmp_path / "q.lines").write_text("first question\n\nsecond question\n")
    spec = ScenarioSpec.model_validate(
        {
            "name": "toy",
            "source": {"offline": {"files": {"test": "q.lines"}}},
            "fields": {"input": "text"},
            "adapter": {"method": "generation"},
        }
    )
    instances, source = load_instances(spec, base_dir=tmp_path)
    assert [i.input for i in instances] == ["first question", "second question"]
    assert source.kind == "offline"


def test_the_plugin_names_are_listed_after_helmflows_own(echo_plugin: Path) -> None:
    assert registry.backend_names() == ("embedded", "hf", "openai", "echo")
    assert registry.categories()[-1] == "brevity" and registry.metric_names()[-1] == "answer_chars"
    assert registry.metrics()["answer_chars"].plugin.distribution == "helmflow-echo"
    assert "lines" in registry.source_names()


def test_an_unregistered_name_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown backend 'echo' \(known: embedded, hf, openai; a plugin adds one"):
        ModelSpec(name="toy", backend="echo")


def test_the_registry_knows_the_adapter_methods_of_the_spec_language() -> None:
    assert typing.get_args(AdapterSpec.model_fields["method"].annotation) == registry.METHODS


# -- the metric registry: one record per metric, and only what a spec asks for is computed -------------------


def scenario(metrics: list[str], method: str = "multiple_choice_separate", **more: object) -> ScenarioSpec:
    body = {"name": "toy", "source": {"offline": {"files": {"test": "x.jsonl"}}}, "adapter": {"method": method}}
    return ScenarioSpec.model_validate({**body, "metrics": metrics, **more})


class Tox:
    name, version = "fake", "1"

    def score(self, texts: list[str]) -> list[float]:
        return [len(t) % 2 for t in texts]


def scored(spec: ScenarioSpec) -> tuple[list, list]:
    """A small run of every kind a metric reads: groups, perturbations, BBQ and MS MARCO extras, generations, token
    counts."""
    from helmflow.tasks.records import Completion

    bbq = {
        "polarity": "neg",
        "condition": "ambig",
        "answer_info": '{"ans0": ["a", "old"], "ans1": ["b", "young"], "ans2": ["c", "unknown"]}',
        "stereotyped_groups": '["old"]',
    }
    ranked = {"query_id": "q", "relevance": "1"}  # MS MARCO's: the six are one query's passages, all relevant
    generation = spec.adapter.method == "generation"
    instances = [
        Instance(f"i{k}", f"Q{k}", "test", () if generation else ("he a", "she b", "c"), None if generation else k % 3,
                 references=("he is a doctor",) if generation else (), group=f"g{k % 2}", extra={**bbq, **ranked})
        for k in range(6)
    ]  # fmt: skip
    requests = build_requests(spec.adapter, instances, [], seed=0)
    perturbed = [*spec.perturbations.robustness, *spec.perturbations.fairness]
    requests += [replace(r, id=r.id + p, perturbation=p) for p in perturbed for r in requests]
    requests = with_samples(requests, spec.adapter, 0)  # what maj@k and pass@k read, with num_samples
    completions = [
        Completion(r.id, logprobs=[-1.0 - (k + len(r.id)) % 3 for k in range(max(len(r.continuations), 1))],
                   continuation_tokens=[1 + k for k in range(len(r.continuations))], text="he is a nurse",
                   prompt_tokens=5 + k, output_tokens=2, latency_s=0.1 + k / 100, prompt_tokens_requested=9,
                   prompt_tokens_computed=4.5)
        for k, r in enumerate(requests)
    ]  # fmt: skip
    predictions = [to_prediction(r, c) for r, c in zip(requests, completions, strict=True)]
    return score(spec, instances, predictions, 1000, Tox())


PERTURBED = {"perturbations": {"robustness": ["lowercase"], "fairness": ["gender"]}}


def test_single_metrics_compute_only_those_and_the_main_metric(monkeypatch: pytest.MonkeyPatch) -> None:
    from helmflow.tasks.metrics import calibration

    def not_asked(*args: object) -> None:
        raise AssertionError("Platt scaling computed for a spec that did not ask for it")

    monkeypatch.setattr(calibration, "platt_scaled", not_asked)
    stats, metrics = scored(scenario(["exact_match_token_norm", "ece_10_bin"]))
    assert {(m.category, m.metric) for m in metrics} == {
        ("accuracy", "exact_match"),  # the main metric, which calibration reads
        ("accuracy", "exact_match_token_norm"),
        ("calibration", "ece_10_bin"),
    }
    assert {(s.category, s.metric) for s in stats} == {
        ("accuracy", "exact_match"),
        ("accuracy", "exact_match_token_norm"),
        ("calibration", "confidence"),
    }


def test_every_metric_record_says_its_rows_direction_and_category() -> None:
    """Each metric scored alone gives rows of its own category whose lower_is_better is its record's."""
    for info in registry.metrics().values():
        method = "generation" if info.methods == ("generation",) else "multiple_choice_separate"
        main = (
            {"main_metric": "f1_score", "adapter": {"method": method, "num_samples": 2}}
            if method == "generation"
            else {}
        )
        if info.methods == ("language_modeling",):  # a text scored by itself: no perturbations, its own main metric
            spec = scenario([info.name], "language_modeling", main_metric="bits_per_byte")
        else:
            spec = scenario([info.name], method, **PERTURBED, **main)
        _, metrics = scored(spec)
        # A family named `x@k` (maj@k, pass@k) stores its rows as x@<k>.
        name = re.escape(info.name).replace("@k", r"@\d+")
        own = [
            m
            for m in metrics
            if m.category == info.category and (m.category != "accuracy" or re.fullmatch(name, m.metric))
        ]
        assert own, info.name
        assert {m.lower_is_better for m in own} == {not info.higher_is_better}, info.name


def test_a_category_stands_for_its_metrics_that_apply_to_the_method() -> None:
    _, metrics = scored(scenario(["accuracy", "bias"], "multiple_choice_joint"))
    assert {(m.category, m.metric) for m in metrics if not m.group} == {
        ("accuracy", "exact_match"),
        ("accuracy", "quasi_exact_match"),
        ("bias", "bbq_bias_ambiguous"),
        ("bias", "bbq_bias_disambiguated"),
    }


def test_a_metric_that_does_not_fit_the_method_or_is_unknown_is_refused_at_its_line(tmp_path: Path) -> None:
    from helmflow.specs.loader import SpecError, load_spec

    path = tmp_path / "s.yaml"
    path.write_text("name: s\nsource: {offline: {files: {test: d.jsonl}}}\nmetrics: [rouge_l]\n")
    with pytest.raises(SpecError) as refused:
        load_spec(path)
    assert str(refused.value) == (
        f"{path}:3: field 'metrics': metric 'rouge_l' does not apply to adapter method multiple_choice_joint "
        "(it applies to generation)"
    )
    path.write_text("name: s\nsource: {offline: {files: {test: d.jsonl}}}\nmetrics: [accuracy, ece_10_bins]\n")
    with pytest.raises(SpecError, match=r"s.yaml:3: field 'metrics.1': unknown metric or category 'ece_10_bins'; "
                       r"did you mean 'ece_10_bin'\? \(categories: accuracy, calibration, "):  # fmt: skip
        load_spec(path)


def test_specs_metrics_prints_the_registry_as_a_markdown_table(capsys: pytest.CaptureFixture) -> None:
    from helmflow.flows.cli import main

    assert main(["specs", "metrics"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| metric | category | better | adapter methods | display name | from | description |"
    assert (
        "| `exact_match` | accuracy | higher | mc joint, mc separate, mc calibrated, generation | Exact match | "
        "helmflow | the chosen option, or the stripped text, equals the gold |"
    ) in lines
    assert "| `ece_10_bin` | calibration | lower |" in "\n".join(lines)
