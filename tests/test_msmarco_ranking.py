"""MS MARCO's regular track end to end without the Hub: rows in microsoft/ms_marco v2.1's exact schema, read by
`datasets` from a local folder laid out as the hub repository (the same load_dataset call as the Hub), unnested
into (query, passage) instances, prompted as HELM's binary ranking adapter prompts, and scored RR@10 / NDCG@10 by
hand."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from helmflow.specs.library import find_scenario
from helmflow.specs.schema import ScenarioSpec
from helmflow.tasks.adapt import Request, render_prompt
from helmflow.tasks.data import load_instances
from helmflow.tasks.metrics import score, to_prediction
from helmflow.tasks.models.base import Completion

README = """---
configs:
- config_name: v2.1
  data_files:
  - split: validation
    path: v2.1/validation-*
---
"""


def _hub_folder(root: Path) -> Path:
    """Two queries of three passages each, in the features the hub dataset declares."""
    import datasets

    features = datasets.Features(
        {
            "answers": datasets.Sequence(datasets.Value("string")),
            "passages": datasets.Sequence(
                {
                    "is_selected": datasets.Value("int32"),
                    "passage_text": datasets.Value("string"),
                    "url": datasets.Value("string"),
                }
            ),
            "query": datasets.Value("string"),
            "query_id": datasets.Value("int32"),
            "query_type": datasets.Value("string"),
            "wellFormedAnswers": datasets.Sequence(datasets.Value("string")),
        }
    )
    passages = [
        {"is_selected": [0, 1, 0], "passage_text": ["a zero", "a one", "a two"], "url": ["u"] * 3},
        {"is_selected": [1, 0, 0], "passage_text": ["b zero", "b one", "b two"], "url": ["u"] * 3},
    ]
    rows = {
        "answers": [["x"], ["y"]],
        "passages": passages,
        "query": ["what is a", "what is b"],
        "query_id": [11, 22],
        "query_type": ["DESCRIPTION", "DESCRIPTION"],
        "wellFormedAnswers": [[], []],
    }
    (root / "v2.1").mkdir(parents=True)
    datasets.Dataset.from_dict(rows, features=features).to_parquet(root / "v2.1" / "validation-00000-of-00001.parquet")
    (root / "README.md").write_text(README)
    return root


@pytest.fixture(scope="module")
def spec_and_instances(tmp_path_factory: pytest.TempPathFactory) -> tuple[ScenarioSpec, list]:
    folder = _hub_folder(tmp_path_factory.mktemp("ms_marco"))
    spec = find_scenario("helm_msmarco_regular")
    assert spec.source.hub is not None
    local = spec.model_copy(
        update={
            "source": spec.source.model_copy(update={"hub": spec.source.hub.model_copy(update={"path": str(folder)})})
        }
    )
    instances, _ = load_instances(local, prefer="hub")
    return local, instances


def test_each_passage_is_an_instance_prompted_as_helm_s_binary_ranking_adapter(spec_and_instances: tuple) -> None:
    spec, instances = spec_and_instances
    assert [i.id for i in instances] == ["11-0", "11-1", "11-2", "22-0", "22-1", "22-2"]
    assert [i.references for i in instances] == [("No",), ("Yes",), ("No",), ("Yes",), ("No",), ("No",)]
    assert [(i.extra["query_id"], i.extra["relevance"]) for i in instances[:3]] == [
        ("11", "0"),
        ("11", "1"),
        ("11", "0"),
    ]
    # HELM: reference_prefix "Passage: ", input_prefix "Query: " (each line ends "\n"), output_prefix "Does the
    # passage answer the query?\nAnswer: " (rstripped for the instance asked about); an exemplar's answer is
    # followed by output_suffix "\n" and the blocks are joined by instance_prefix "\n".
    exemplar = instances[3]
    assert render_prompt(spec.adapter, instances[1], [exemplar]) == (
        "Passage: b zero\nQuery: what is b\nDoes the passage answer the query?\nAnswer: Yes\n\n"
        "Passage: a one\nQuery: what is a\nDoes the passage answer the query?\nAnswer:"
    )


def test_rr_and_ndcg_at_10_by_hand(spec_and_instances: tuple) -> None:
    spec, instances = spec_and_instances
    answers = {
        # Query 11 (gold: 11-1): Yes 0.9 (11-0), Yes 0.6 (11-1), No 0.8 (11-2) -> 11-0, 11-1, 11-2: the gold at
        # rank 2, RR 1/2; NDCG = (1 / log2 3) / (1 / log2 2) = 0.6309.
        "11-0": ("Yes", 0.9),
        "11-1": (" Yes", 0.6),
        "11-2": ("No", 0.8),
        # Query 22 (gold: 22-0): Yes 0.7 first; No 0.9 (score 2.1) after No 0.5 (2.5); "Maybe" last: RR 1, NDCG 1.
        "22-0": ("Yes", 0.7),
        "22-1": ("No", 0.9),
        "22-2": ("Maybe", 0.99),
    }
    predictions = [
        to_prediction(
            Request(i.id, i.id, "generation", "?"),
            Completion(request_id=i.id, text=answers[i.id][0], logprobs=[math.log(answers[i.id][1])]),
        )
        for i in instances
    ]
    stats, metrics = score(spec, instances, predictions)
    values = {m.metric: m.value for m in metrics if not m.group and not m.perturbation}
    assert values["rr_at_10"] == pytest.approx(0.75)
    assert values["ndcg_at_10"] == pytest.approx((1 / math.log2(3) + 1) / 2)
    # One value per query, on its first passage's instance.
    assert sorted((s.instance_id, s.value) for s in stats if s.metric == "rr_at_10") == [("11-0", 0.5), ("22-0", 1.0)]
    # The binary answers themselves: 11-0 says Yes to a No passage, 22-2 says Maybe: 4 of 6 right.
    assert values["quasi_exact_match"] == pytest.approx(4 / 6)


def test_the_trec_track_reads_graded_judgements_and_counts_grades_2_and_3_as_relevant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    folder = tmp_path / "msmarco"
    folder.mkdir()
    query = {
        "query_id": 7,
        "query": "q",
        "passages": [
            {"passage_id": "p1", "passage_text": "one", "relevance": 1},
            {"passage_id": "p3", "passage_text": "three", "relevance": 3},
            {"passage_id": "p0", "passage_text": "zero", "relevance": 0},
        ],
    }
    (folder / "trec_dl_2019.jsonl").write_text(json.dumps(query) + "\n")
    (folder / "train.jsonl").write_text(json.dumps(query) + "\n")
    monkeypatch.setenv("HELMFLOW_SHARED_DATA", str(tmp_path))
    spec = find_scenario("helm_msmarco_trec")
    instances, _ = load_instances(spec, prefer="offline")
    assert [(i.id, i.references, i.extra["relevance"]) for i in instances] == [
        ("7-p1", ("No",), "1"),
        ("7-p3", ("Yes",), "3"),
        ("7-p0", ("No",), "0"),
    ]
    # The model ranks p1 (grade 1), p3 (grade 3), p0. RR@10 counts grade >= 2: p3 at rank 2 -> 1/2 (regular
    # relevance, grade >= 1, would give 1). NDCG@10: DCG = 1/log2(2) + 3/log2(3) = 1 + 1.8928 = 2.8928; ideal
    # p3, p1: 3 + 1/log2(3) = 3.6309; NDCG = 0.79672.
    answers = {"7-p1": 0.9, "7-p3": 0.8, "7-p0": 0.7}
    predictions = [
        to_prediction(
            Request(i.id, i.id, "generation", "?"),
            Completion(request_id=i.id, text="Yes", logprobs=[math.log(answers[i.id])]),
        )
        for i in instances
    ]
    _, metrics = score(spec, instances, predictions)
    values = {m.metric: m.value for m in metrics if not m.group and not m.perturbation}
    assert values["rr_at_10"] == pytest.approx(0.5)
    assert values["ndcg_at_10"] == pytest.approx((1 + 3 / math.log2(3)) / (3 + 1 / math.log2(3)))
