"""The pure helpers of tests/bench/bench_serving_run.py (make bench-serving): no server, no run."""

from __future__ import annotations

import pytest
import yaml

from helmflow.specs.schema import ModelSpec
from tests.bench import bench_serving_run as b
from tests.bench.bench_serving import Result


def test_parse_stat_reads_a_command_name_with_spaces_and_parentheses() -> None:
    fields = ["S", "41", *["0"] * 9, "150", "25", *["0"] * 8, "3000", "0"]
    stat = b.parse_stat("123 (python (x) y) " + " ".join(fields))
    assert stat == b.ProcStat(pid=123, ppid=41, cpu_ticks=175, rss_pages=3000)


def test_parse_pss_kib() -> None:
    assert b.parse_pss_kib("Rss:   2048 kB\nPss:   1500 kB\nPss_Anon: 3 kB\n") == 1500
    assert b.parse_pss_kib("") == 0


def test_descendants_are_the_whole_subtree_and_nothing_else() -> None:
    parents = {1: 0, 10: 1, 11: 10, 12: 10, 13: 12, 20: 1, 21: 20}
    assert b.descendants(10, parents) == {10, 11, 12, 13}
    assert b.descendants(99, parents) == {99}


COMMAND = ["python", "-m", "helmflow.flows.cli", "run"]
TRACKER = ["python", "-c", "from multiprocessing.resource_tracker import main"]
WORKER = ["python", "-c", "from multiprocessing.spawn import spawn_main"]


@pytest.mark.parametrize(
    ("cmdline", "root", "label"),
    [
        (COMMAND, None, "helmflow (the command)"),
        (COMMAND, COMMAND, "a fork of the command"),
        (["python", "-c", "import uvicorn", "123", "--factory"], COMMAND, "Prefect's temporary server"),
        (TRACKER, COMMAND, "multiprocessing's resource tracker"),
        (WORKER, COMMAND, "validation worker (Great Expectations)"),
        (["/usr/bin/thing", "--x"], COMMAND, "thing (--x)"),
        ([], COMMAND, "?"),
    ],
)
def test_process_label(cmdline: list[str], root: list[str] | None, label: str) -> None:
    assert b.process_label(cmdline, root) == label


def test_parse_sizes() -> None:
    assert b.parse_sizes("2000,14042") == [2000, 14042]
    assert b.parse_sizes(" 200 ,") == [200]
    for bad in ("", "0", "-5,10"):
        with pytest.raises(ValueError):
            b.parse_sizes(bad)


def test_model_yaml_is_a_valid_openai_spec() -> None:
    spec = ModelSpec.model_validate(yaml.safe_load(b.model_yaml("http://127.0.0.1:9/v1", 64, 1)))
    assert (spec.backend, spec.path, spec.remote_model) == ("openai", "http://127.0.0.1:9/v1", "fake")
    assert (spec.concurrency, spec.batch_size) == (64, 1)


def test_run_command_asks_for_n_questions_offline() -> None:
    command = b.helmflow_run_command(b.Path("/t/w.duckdb"), "mmlu", b.Path("/t/m.yaml"), 2000)
    assert command[1:] == [
        *("-m", "helmflow.flows.cli", "--db", "/t/w.duckdb", "run", "mmlu", "--model", "/t/m.yaml"),
        *("--source", "offline", "--max-instances", "2000"),
    ]
    assert "--max-instances" not in b.helmflow_run_command(b.Path("w"), "s.yaml", b.Path("m"), None)


def test_synthetic_rows_repeat_the_items_with_shuffled_options_and_the_same_gold_text() -> None:
    items = [(f"s-{k}", f"question {k}", ("w", "x", "y", "z"), k % 4, "anatomy") for k in range(5)]
    rows = b.synthetic_rows(items, 13)
    assert len(rows) == 13 and len({r["id"] for r in rows}) == 13
    assert [r["choices"] for r in rows[:5]] == [["w", "x", "y", "z"]] * 5  # copy 0 as it is
    for row in rows:
        k = int(row["id"].split("-")[1])
        assert row["choices"][row["answer"]] == "wxyz"[k % 4] and row["subject"] == "anatomy"
    for row in rows[5:]:  # later copies never repeat copy 0's options order (so never its prompt)
        assert row["choices"] != ["w", "x", "y", "z"]
    assert b.synthetic_rows(items, 13) == rows  # seeded


def test_synthetic_spec_is_a_valid_scenario_with_mmlu_perturbations() -> None:
    from helmflow.specs.library import find_scenario
    from helmflow.specs.schema import ScenarioSpec

    mmlu = find_scenario("mmlu")
    spec = ScenarioSpec.model_validate(b.synthetic_spec(mmlu))
    assert spec.perturbations == mmlu.perturbations and spec.adapter == mmlu.adapter
    assert spec.metrics == mmlu.metrics


def run(requests: int = 10_000, cpu_s: float = 4.0, server_cpu_s: float = 6.0, peak: float = 900) -> b.RunMeasure:
    return b.RunMeasure(
        label="x", run_id="r", questions=2000, prompts=2500, requests=requests, wall_s=10.0, cpu_s=cpu_s,
        command_cpu_s=3.0, server_cpu_s=server_cpu_s, peak_command_rss=0, peak_tree_rss=int(peak * b.MIB),
        peak_tree_pss=0, warehouse_bytes=0,
    )  # fmt: skip


def test_acceptance_lines_pass_and_fail_on_the_limits() -> None:
    report = b.ReportMeasure(1.0, 50 * b.MB, 10, "p.html", "id", [1.0, 1.2, 2.0], [4.0, 2.0, 2.5])
    size = b.SizeResult(
        14042,
        run(),  # 0.4 ms/request whole run, the server 0.6
        report,
        transport=Result("t", 10_000, 5.0, 3.0, 6.0),  # 0.3 ms
        lm_eval=Result("lm", 10_000, 9.0, 10.0, 6.0),  # 1.0 ms
    )
    lines = b.acceptance([size], run(requests=40_000, peak=1000), 64, 1)
    verdicts = {line.claim.split("] ")[-1]: line.passed for line in lines}
    assert verdicts["helmflow client CPU <= 0.6 ms/request, transport"] is True
    assert verdicts["helmflow client CPU <= 0.6 ms/request, whole run"] is True
    assert verdicts["lm-eval local-completions CPU/request >= 2x helmflow's, transport"] is True  # 3.33x
    assert verdicts["lm-eval local-completions CPU/request >= 2x helmflow's, whole run"] is True  # 2.5x
    assert verdicts["helmflow total CPU/request < the fake server's"] is True
    assert verdicts["report total <= 60 MB"] is True
    assert verdicts["instance browser first rows <= 1.5 s"] is True  # the median, 1.2
    assert verdicts["search over all rows <= 3 s"] is True  # the median, 2.5
    assert lines[-2].claim.startswith("peak RSS of the helmflow tree at 14,042 questions") and lines[-2].passed
    assert lines[-1].passed is False and lines[-1].measured.startswith("1.111x")  # 1000 / 900 MiB


def test_acceptance_says_what_was_not_measured() -> None:
    size = b.SizeResult(200, run(cpu_s=8.0), None, transport=None, lm_eval="not run (--skip-lmeval)")
    lines = b.acceptance([size], None, 32, 1)
    by_claim = {line.claim: line for line in lines}
    assert (
        by_claim[
            "[200] helmflow client CPU <= 0.6 ms/request, whole run (measured at concurrency 32, batch_size 1)"
        ].passed
        is False
    )
    assert by_claim["[200] helmflow total CPU/request < the fake server's"].passed is False  # 0.8 vs 0.6 ms
    assert [line.passed for line in lines if line.measured.startswith("not measured")] == [None] * 7
    assert "the issue asks at 14,042" in lines[-2].claim
    assert "PASS" not in lines[-1].text() and "n/a" in lines[-1].text()
