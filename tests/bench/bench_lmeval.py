"""`make bench-lmeval`: helmflow and lm-evaluation-harness on the same requests, timed in one session.

    python -m tests.bench.bench_lmeval [--limit N] [--shape NAME ...] [--repeat N] [--keep]

For each shape, in turn: `helmflow run` of the shape's scenario into a fresh warehouse (so its
inference cache serves nothing), then `lm_eval` on a task made from that run's requests (the same
instances and byte-identical prompts and continuations), each timed as a whole command, start-up
included. lm-eval runs in its own virtual environment under the helmflow cache, installed once
with the same torch and transformers pins, on the embedded SmolLM2's safetensors copy, offline.
With --repeat N the pair runs N times, alternating, and each tool's fastest run is the one compared:
on a shared machine a run is only ever slowed by what else runs, so the fastest is the least disturbed.

Prints one table (docs/benchmarks.md explains its columns); progress goes to stderr. Exits 1 when
a run fails, or any prompt or extracted answer differs between the two tools. --limit (or
HELMFLOW_BENCH_LMEVAL_LIMIT) caps every shape's instances, for a quick check.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from helmflow.specs.library import find_model
from helmflow.tasks.models.chat_format import chat_format_for
from tests.bench.bench import SUBJECTS
from tests.bench.bench_lmeval_tasks import (
    LM_EVAL_VERSION,
    Agreement,
    Shape,
    compare,
    helmflow_scores,
    lm_eval_venv,
    lmeval_scores,
    read_run,
    read_samples,
    worst,
    write_chat_tasks,
    write_data,
    write_lmeval_own_task,
    write_task,
)

MODEL = "smollm2-135m-instruct"
LM_EVAL_BATCH_SIZE = 8
SHAPES = (
    Shape("mmlu_0shot", "mmlu", groups=tuple(SUBJECTS), num_train=0),
    Shape("mmlu_5shot", "mmlu", groups=("abstract_algebra", "college_chemistry"), num_train=5),
    Shape("arc_challenge", "arc_challenge", max_instances=300),
    Shape("object_counting", "bigbench_object_counting", max_instances=100),
    # Issue 27: MMLU inside the chat template, exemplars as turns; lm-eval builds its prompts from the parts.
    Shape(
        "mmlu_5shot_chat",
        "mmlu",
        groups=("abstract_algebra", "college_chemistry"),
        num_train=5,
        model="smollm2-135m-instruct-chat",
        chat=True,
    ),
    # Chain of thought with answer extraction (lm-eval's filter on its side), generation capped for the CPU.
    Shape("bbh_boolean_cot", "bbh_boolean_expressions", max_instances=40, max_tokens=128),
    # Answer extraction on real answers: BIG-bench arithmetic's 2-digit products, 5-shot "Q: What is 50 times 20?\nA:
    # 1000" blocks, a number of at most 8 tokens up to a newline, read out by BIG-bench's own output_regex (lm-eval's
    # regex filter, then take_first) on both sides. The task file is multiple choice (target_scores): made generative
    # here against its `target`, its options not listed.
    Shape(
        "bigbench_arithmetic",
        "bigbench:arithmetic/2_digit_multiplication",
        max_instances=100,
        max_tokens=8,
        overrides={
            "description": (
                "BIG-bench arithmetic, 2_digit_multiplication, generative and 5-shot (the task file's first 5 "
                "examples): the number read out of the completion by BIG-bench's output_regex, exact match."
            ),
            "source": {"hub": None},  # offline only: the Hub's rows carry BIG-bench's own prompt
            "fields": {"input": "input", "choices": None, "answer": None, "references": "targets"},
            "adapter": {
                "method": "generation",
                "input_prefix": "Q: ",
                "input_suffix": "\n",
                "output_prefix": "A:",
                "target_delimiter": " ",
                "fewshot_delimiter": "\n\n",
                "num_train": 5,
                "fewshot_split": "default",
                "fewshot_order": "first_n",
                "stop": ["\n"],
            },
            "answer_extraction": [
                {"function": "regex", "regex_pattern": r"[-+]?\d+", "group_select": 0, "fallback": "[invalid]"},
                {"function": "take_first"},
            ],
            "main_metric": "exact_match",
        },
    ),
    # Issue 28: lm-eval's own arc_easy YAML against helmflow's translation of it (`lmeval:arc_easy`), both on
    # the first 300 rows of ../shared/data's ARC-Easy test set in the Hub's schema.
    Shape("arc_easy_lmeval", "lmeval:arc_easy", max_instances=300, lmeval_task="arc_easy"),
)
# Both tools read only local files: a request to the Hub is a bug here, not a slow start.
OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


@dataclass(frozen=True)
class Result:
    shape: str
    instances: int
    helmflow_runs: tuple[float, ...]  # wall seconds of each repeat, in order
    lm_eval_runs: tuple[float, ...]
    agreement: Agreement  # the weakest over the repeats
    helmflow_batch: int
    # lm-eval-task shapes: acc and acc_norm as helmflow stored them and as lm-eval reported them (last repeat).
    scores: tuple[dict[str, float], dict[str, float]] | None = None

    @property
    def helmflow_s(self) -> float:
        return min(self.helmflow_runs)

    @property
    def lm_eval_s(self) -> float:
        return min(self.lm_eval_runs)


def timed(command: list[str], log: Path, env: dict[str, str]) -> float:
    """Wall seconds of a whole command; its output goes to `log`. Raises when it fails."""
    began = time.perf_counter()
    with log.open("w") as out:
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env).returncode
    seconds = time.perf_counter() - began
    if code != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-20:])
        raise RuntimeError(f"{Path(command[0]).name} exited {code} after {seconds:.0f} s ({log}):\n{tail}")
    return seconds


def helmflow_command() -> list[str]:
    script = Path(sys.executable).parent / "helmflow"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "helmflow.flows.cli"]


def bench_shape(
    shape: Shape, work: Path, limit: int | None, venv: Path, model_dir: Path, env: dict[str, str], repeat: int = 1
) -> Result:
    """helmflow, then lm-eval on the requests helmflow made, each timed, `repeat` times; then the comparison."""
    folder = work / shape.name
    data_file = None
    if shape.lmeval_task:  # one local file for both tools, cut to the shape's size here: the same rows
        caps = [n for n in (shape.max_instances, limit) if n is not None]
        data_file = write_data(shape, folder, min(caps))
        shape = replace(shape, max_instances=None)
    spec = shape.write_spec(folder, None if data_file else limit, data_file)
    helmflow_runs: list[float] = []
    lm_eval_runs: list[float] = []
    agreement: Agreement | None = None
    task = ""
    scores = None
    for k in range(repeat):
        db = folder / f"helmflow-{k}.duckdb"  # fresh: nothing in its inference cache
        helmflow = [*helmflow_command(), "--db", str(db), "run", str(spec), "--model", shape.model, "--seed", "0"]
        helmflow_runs.append(timed([*helmflow, "--source", "offline"], folder / f"helmflow-{k}.log", env))
        run = read_run(db, spec, chat_format_for(find_model(shape.model)))
        if run.cache_hits:
            raise RuntimeError(f"{shape.name}: the fresh warehouse served {run.cache_hits} cached answers")
        if shape.lmeval_task:
            assert data_file is not None
            task = task or write_lmeval_own_task(shape, venv, data_file, folder / "task")
        else:
            write = write_chat_tasks if shape.chat else write_task
            task = task or write(shape.name, run, folder / "task")
        lm_eval = [
            str(venv / "bin" / "lm_eval"),
            *("--model", "hf", "--model_args", f"pretrained={model_dir},dtype=float32"),
            *("--device", "cpu", "--batch_size", str(LM_EVAL_BATCH_SIZE)),
            *("--tasks", task, "--include_path", str(folder / "task")),
            *("--output_path", str(folder / f"lm-eval-{k}"), "--log_samples"),
            *(("--apply_chat_template", "--fewshot_as_multiturn") if shape.chat else ()),
        ]
        lm_eval_runs.append(timed(lm_eval, folder / f"lm-eval-{k}.log", env))
        this = compare(run, read_samples(folder / f"lm-eval-{k}", task, by_row=bool(shape.lmeval_task)))
        agreement = this if agreement is None else worst(agreement, this)
        if shape.lmeval_task:
            scores = (helmflow_scores(db, run.run_id), lmeval_scores(folder / f"lm-eval-{k}", task))
    assert agreement is not None  # repeat >= 1
    return Result(
        shape.name, len(run.requests), tuple(helmflow_runs), tuple(lm_eval_runs), agreement, run.batch_size, scores
    )


def _fraction(n: int | None, total: int) -> str:
    return "-" if n is None else f"{n}/{total}"


def table(results: list[Result]) -> list[str]:
    width = max([16, *(len(r.shape) + 2 for r in results)])
    header = (
        f"{'shape':<{width}}{'instances':>10}{'helmflow_s':>12}{'helmflow_i/s':>14}{'lm_eval_s':>11}"
        f"{'lm_eval_i/s':>13}{'ratio':>7}{'same_prompts':>14}{'max_abs_dlogp':>15}{'same_argmax':>13}"
        f"{'same_text':>11}{'same_extracted':>16}{'real_extracted':>16}"
    )
    lines = [header]
    for r in results:
        a, n = r.agreement, r.instances
        ours, theirs = n / r.helmflow_s, n / r.lm_eval_s
        diff = "-" if a.max_abs_logprob_diff is None else f"{a.max_abs_logprob_diff:.2e}"
        lines.append(
            f"{r.shape:<{width}}{n:>10}{r.helmflow_s:>12.1f}{ours:>14.2f}{r.lm_eval_s:>11.1f}{theirs:>13.2f}"
            f"{ours / theirs:>7.2f}{_fraction(a.same_prompts, n):>14}{diff:>15}"
            f"{_fraction(a.same_argmax, n):>13}{_fraction(a.same_text, n):>11}"
            f"{_fraction(a.same_extracted, n):>16}{_fraction(a.real_extracted, n):>16}"
        )
    return lines


def disagreements(results: list[Result]) -> list[str]:
    """What fails the comparison, a line each: prompts that differ, and extracted answers that differ (what both
    tools score; generated texts alone may differ by a float32 tie between two tokens)."""
    lines = []
    prompts = [r.shape for r in results if r.agreement.same_prompts != r.instances]
    if prompts:
        lines.append(f"prompts differ in: {', '.join(prompts)}")
    answers = [r.shape for r in results if r.agreement.same_extracted not in (None, r.instances)]
    if answers:
        lines.append(f"extracted answers differ in: {', '.join(answers)}")
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_limit = os.environ.get("HELMFLOW_BENCH_LMEVAL_LIMIT")
    parser.add_argument(
        "--limit",
        type=int,
        default=int(default_limit) if default_limit else None,
        help="at most N instances per shape (default: $HELMFLOW_BENCH_LMEVAL_LIMIT, else the full shapes)",
    )
    parser.add_argument("--shape", action="append", choices=[s.name for s in SHAPES], help="only these (repeatable)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run each shape's pair N times, alternating, and compare each tool's fastest run (default 1)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (specs, warehouses, logs, samples)")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from helmflow.tasks.models.embedded import converted_dir

    venv, install_s = lm_eval_venv()
    model_dir, fingerprint = converted_dir()
    work = Path(tempfile.mkdtemp(prefix="helmflow-bench-lmeval-"))
    env = {**os.environ, **OFFLINE, "HF_DATASETS_CACHE": str(work / "hf-datasets")}
    shapes = [s for s in SHAPES if not args.shape or s.name in args.shape]
    results, failed = [], False
    for k, shape in enumerate(shapes, 1):
        print(f"[{k}/{len(shapes)}] {shape.name}", file=sys.stderr, flush=True)
        try:
            results.append(bench_shape(shape, work, args.limit, venv, model_dir, env, args.repeat))
        except Exception as exc:  # the other shapes still run; the exit status says it failed
            print(f"{shape.name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            failed = True
    installed = f"installed now in {install_s:.0f} s" if install_s is not None else "installed"
    batches = "/".join(sorted({str(r.helmflow_batch) for r in results})) or "-"
    print(
        f"helmflow vs lm-evaluation-harness {LM_EVAL_VERSION} ({installed}): {MODEL} ({fingerprint}), "
        f"cpu, float32, batch size helmflow {batches}, lm-eval {LM_EVAL_BATCH_SIZE}"
    )
    fastest = f", the fastest of {args.repeat} alternating runs each" if args.repeat > 1 else ""
    print(f"wall seconds of each whole command, start-up included{fastest}; ratio = helmflow i/s / lm-eval i/s")
    print("\n".join(table(results)))
    if args.repeat > 1:
        for r in results:
            each = " / ".join(f"{h:.1f} vs {e:.1f}" for h, e in zip(r.helmflow_runs, r.lm_eval_runs, strict=True))
            print(f"{r.shape}: helmflow vs lm-eval, run by run: {each}")
    for r in results:
        if r.scores:
            ours, theirs = r.scores
            each = ", ".join(
                f"{m} {ours.get(m, float('nan')):.4f} vs {theirs.get(m, float('nan')):.4f}" for m in theirs
            )
            print(f"{r.shape}: helmflow vs lm-eval's own task: {each}")
    differing = disagreements(results)
    for line in differing:
        print(line, file=sys.stderr)
    if failed or differing or args.keep:
        print(f"work folder kept: {work}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed or differing else 0


if __name__ == "__main__":
    sys.exit(main())
