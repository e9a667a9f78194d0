"""The pieces of `make bench-lmeval` around its timing loop (tests/bench/bench_lmeval.py).

- lm-evaluation-harness in a virtual environment of its own under the helmflow cache, installed
  with helmflow's pins (constraints.txt: the same torch and transformers), made once and reused
  while its stamp matches;
- each shape's scenario file: the shipped scenario, unperturbed, accuracy only, capped;
- a finished run's requests, rebuilt with helmflow's own adapter (the warehouse keeps prompts,
  not continuations) and checked against the prompts the run stored;
- the lm-eval task that asks exactly those requests: a jsonl of them and a task YAML that reads it
  from disk (`dataset_path: json`), nothing from the Hub;
- lm-eval's logged samples, compared with the run's stored answers.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from helmflow.specs.library import apply_suite_entry, find_scenario
from helmflow.specs.loader import load_spec
from helmflow.specs.schema import ScenarioSpec
from helmflow.tasks.adapt import build_requests, choose_exemplars, fill_instructions, render_block
from helmflow.tasks.chat import ChatFormat
from helmflow.tasks.data import fewshot_pool
from helmflow.tasks.extract import FALLBACK, Step, parse_steps
from helmflow.tasks.instances import Instance
from helmflow.tasks.models.embedded import cache_root
from helmflow.tasks.records import LETTERS, Completion, Request
from helmflow.warehouse.store import Warehouse

LM_EVAL_VERSION = "0.4.13"
REPO = Path(__file__).resolve().parents[2]
CONSTRAINTS = REPO / "constraints.txt"


# -- lm-evaluation-harness's own environment -------------------------------------------------------


# hf: the model `make bench-lmeval` times; api: local-completions, which tests/bench/bench_serving*.py time.
REQUIREMENT = "lm_eval[hf,api]"


def _install_key(version: str) -> str:
    """What the environment is made from: the requirement, the pins and the Python."""
    pins = hashlib.sha256(CONSTRAINTS.read_bytes()).hexdigest()[:16]
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    return f"{REQUIREMENT}=={version}\nconstraints.txt sha256:{pins}\npython {python}\n"


def lm_eval_venv(version: str = LM_EVAL_VERSION) -> tuple[Path, float | None]:
    """lm-eval's virtual environment (made when missing or stale) and the seconds making it took,
    None when it was there already. Never helmflow's own environment."""
    root = cache_root() / f"lm-eval-{version}"
    stamp = root / ".helmflow-installed"
    key = _install_key(version)
    if stamp.is_file() and stamp.read_text() == key and (root / "bin" / "lm_eval").is_file():
        return root, None
    began = time.perf_counter()
    shutil.rmtree(root, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    log = root.parent / f"lm-eval-{version}-install.log"
    print(f"installing {REQUIREMENT}=={version} into {root} (once; pins from constraints.txt)", file=sys.stderr)
    # The interpreter helmflow's venv was made from, so that both tools run the same Python.
    base = getattr(sys, "_base_executable", None) or shutil.which("python3") or "python3"
    pip = [str(root / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
    with log.open("w") as out:
        for command in ([base, "-m", "venv", str(root)], [*pip, "-c", str(CONSTRAINTS), f"{REQUIREMENT}=={version}"]):
            if subprocess.run(command, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
                raise RuntimeError(f"installing lm-eval failed: {' '.join(command)} (see {log})")
    stamp.write_text(key)
    return root, time.perf_counter() - began


# -- shapes ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """One comparison: a shipped scenario with a suite entry's overrides."""

    name: str
    scenario: str
    max_instances: int | None = None
    groups: tuple[str, ...] = ()
    num_train: int | None = None
    # A generation budget for both tools (BBH's 1,024 tokens of chain of thought would take hours on the CPU).
    max_tokens: int | None = None
    # The model spec helmflow runs; chat: its prompts are the chat template's, and lm-eval is asked for the
    # same with --apply_chat_template --fewshot_as_multiturn, building its prompts itself from the task's parts.
    model: str = "smollm2-135m-instruct"
    chat: bool = False
    # An lm-eval task run by lm-eval from its own YAML (the scenario is `lmeval:<task>`, helmflow's translation),
    # both reading the same local copy of the task's data (`prepare_data` writes it in the Hub's schema).
    lmeval_task: str | None = None
    # Merged over the scenario's spec data, key by key (a mapping into a mapping; None removes the key): what
    # makes, say, a multiple-choice BIG-bench task generative with few-shot exemplars and answer extraction.
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def spec(self, limit: int | None, data_file: Path | None = None) -> dict[str, Any]:
        """The scenario as a spec file's data: unperturbed and accuracy only (lm-eval does no more); with
        `data_file`, read from it (the test split) rather than the Hub."""
        caps = [n for n in (self.max_instances, limit) if n is not None]
        spec = apply_suite_entry(
            find_scenario(self.scenario),
            groups=list(self.groups) or None,
            num_train=self.num_train,
            max_instances=min(caps) if caps else None,
        )
        data = merged(spec.model_dump(mode="json", exclude_unset=True), self.overrides)
        data.update(metrics=["accuracy"], perturbations={"robustness": [], "fairness": []})
        if self.max_tokens is not None:
            data["adapter"]["max_tokens"] = self.max_tokens
        data["adapter"].pop("instructions_file", None)  # read already: its text is `instructions`
        if data_file is not None:
            data["source"] = {**data["source"], "offline": {"files": {"test": str(data_file)}}}
        ScenarioSpec.model_validate(data)  # still a valid spec
        return data

    def write_spec(self, folder: Path, limit: int | None, data_file: Path | None = None) -> Path:
        path = folder / "scenarios" / f"{self.name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.spec(limit, data_file), sort_keys=False, allow_unicode=True))
        return path


def merged(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` merged into a copy of `base`: a mapping into a mapping, key by key; None removes the key; any other
    value replaces."""
    out = dict(base)
    for key, value in over.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


# -- lm-eval's own task on local data --------------------------------------------------------------

ARC_EASY_TEST = Path("/work/shared/data/arc/ARC-Easy/ARC-Easy-Test.jsonl")


def arc_hub_rows(source: Path, n: int) -> list[dict[str, Any]]:
    """The first n rows of AI2's ARC jsonl in the Hub's schema (allenai/ai2_arc), which lm-eval's arc_easy reads."""
    rows = []
    for line in source.open():
        if len(rows) == n:
            break
        row = json.loads(line)
        choices = row["question"]["choices"]
        rows.append(
            {
                "id": row["id"],
                "question": row["question"]["stem"],
                "choices": {"text": [c["text"] for c in choices], "label": [c["label"] for c in choices]},
                "answerKey": row["answerKey"],
            }
        )
    return rows


def write_data(shape: Shape, folder: Path, n: int) -> Path:
    """The shape's local data: the first n rows, one file both tools read (so both evaluate the same rows)."""
    path = folder / "scenarios" / "data" / "test.jsonl"  # beside the spec: a spec reads data from its folder
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = arc_hub_rows(Path(os.environ.get("HELMFLOW_BENCH_ARC_EASY", ARC_EASY_TEST)), n)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def write_lmeval_own_task(shape: Shape, venv: Path, data_file: Path, folder: Path) -> str:
    """A task that includes lm-eval's own YAML for the shape's task and only points it at the local data."""
    assert shape.lmeval_task is not None
    [own] = sorted(venv.glob(f"lib/python*/site-packages/lm_eval/tasks/**/{shape.lmeval_task}.yaml"))
    folder.mkdir(parents=True, exist_ok=True)
    task = f"helmflow_{shape.name}"
    config = {
        "include": str(own),
        "task": task,
        "tag": [],
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {"test": str(data_file.resolve())}},
        "training_split": None,
        "validation_split": None,
        "test_split": "test",
    }
    (folder / f"{task}.yaml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return task


def lmeval_scores(folder: Path, task: str) -> dict[str, float]:
    """acc and acc_norm as lm-eval's results file gives them."""
    [results] = sorted(folder.rglob("results_*.json"))[-1:]
    values = json.loads(results.read_text())["results"][task]
    return {m: float(values[f"{m},none"]) for m in ("acc", "acc_norm") if f"{m},none" in values}


def helmflow_scores(db: Path, run_id: str) -> dict[str, float]:
    """The same two as the run stored them (exact_match, exact_match_char_norm: lm-eval's acc, acc_norm)."""
    import duckdb

    names = {"exact_match": "acc", "exact_match_char_norm": "acc_norm"}
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(
            "select metric, value from metrics where run_id = ? and perturbation = '' and group_name = '' "
            "and metric in ('exact_match', 'exact_match_char_norm')",
            [run_id],
        ).fetchall()
    return {names[m]: float(v) for m, v in rows}


# -- the helmflow run ------------------------------------------------------------------------------


@dataclass(frozen=True)
class HelmflowRun:
    run_id: str
    kind: str  # multiple_choice | generation
    # The unperturbed requests rebuilt by the adapter, the stored answers and each instance's gold.
    requests: list[Request]
    answers: dict[str, Completion]
    golds: dict[str, int | None]
    references: dict[str, tuple[str, ...]]
    # Requests whose rebuilt prompt differs from the stored one (or that the run did not store).
    prompt_mismatches: list[str]
    cache_hits: int
    batch_size: int
    spec: ScenarioSpec
    instances: list[Instance]
    exemplars: dict[str | None, list[Instance]]  # per group, as the adapter chose them
    # Generation with answer_extraction, by request id: the answer the run stored and scored (its `completion`) and
    # the text the model wrote (its `raw_completion`), as the warehouse holds them.
    extracted: dict[str, str] = field(default_factory=dict)
    raw_texts: dict[str, str] = field(default_factory=dict)


def read_run(db: Path, spec_path: Path, chat: ChatFormat | None = None) -> HelmflowRun:
    """The one run of a fresh warehouse, its requests rebuilt from its spec file and seed."""
    warehouse = Warehouse(db)
    [run_id] = warehouse.runs(10).run_id.tolist()
    row = warehouse.run_row(run_id, "seed", "cache_hits", "batch_size")
    stored = warehouse.stored_run(run_id)
    # The spec file the run was given, loaded as `helmflow run` loads it: the stored spec_json,
    # re-validated, has lost which fields were written, and per-source field maps depend on that.
    spec: ScenarioSpec = load_spec(spec_path, "scenario").spec  # type: ignore[assignment]
    if spec.model_dump_json() != stored.spec_json:
        raise ValueError(f"run {run_id} ran another spec than {spec_path}")
    adapter = spec.adapter
    pool = fewshot_pool(spec, "offline", spec_path.parent)
    # The run's own instances (its selection), no perturbations: only unperturbed requests compare.
    seed = int(row["seed"])
    requests = build_requests(adapter, stored.instances, pool, seed, chat=chat)
    exemplars = {
        group: choose_exemplars(pool, adapter.num_train, seed, group, adapter.fewshot_order)
        for group in {i.group for i in stored.instances}
    }
    answers = {r.id: c for r, c in stored.answers if r.perturbation == ""}
    prompts = {r.id: r.prompt for r, _ in stored.answers if r.perturbation == ""}
    mismatches = [r.id for r in requests if prompts.get(r.id) != r.prompt]
    mismatches += sorted(set(prompts) - {r.id for r in requests})
    extracted, raw_texts = {}, {}
    if spec.answer_extraction:
        with warehouse.connect(read_only=True) as con:
            rows = con.execute(
                "select request_id, completion, raw_completion from predictions where run_id = ? "
                "and perturbation = '' and kind = 'generation'",
                [run_id],
            ).fetchall()
        extracted = {request_id: answer or "" for request_id, answer, _ in rows}
        # null where nothing was extracted (the completion is the text as it came); "" is an empty completion
        raw_texts = {request_id: raw if raw is not None else answer or "" for request_id, answer, raw in rows}
    return HelmflowRun(
        run_id=run_id,
        kind=requests[0].kind,
        requests=requests,
        answers=answers,
        golds={i.id: i.gold_index for i in stored.instances},
        references={i.id: i.references for i in stored.instances},
        prompt_mismatches=mismatches,
        cache_hits=int(row["cache_hits"] or 0),
        batch_size=int(row["batch_size"]),
        spec=spec,
        instances=list(stored.instances),
        exemplars=exemplars,
        extracted=extracted,
        raw_texts=raw_texts,
    )


# -- the lm-eval task ------------------------------------------------------------------------------


def write_task(name: str, run: HelmflowRun, folder: Path) -> str:
    """A jsonl of the run's requests and an lm-eval task YAML that asks exactly them; the task's name.

    lm-eval builds a multiple-choice request as (context, target_delimiter + choice): with the
    prompt as the context, helmflow's continuations (which carry their leading space) as the
    choices and an empty delimiter, it scores the very strings helmflow scored. Both move the
    prompt's trailing whitespace into the continuation before tokenising. Exemplars are inside
    the prompt already, so the task is zero-shot.
    """
    folder.mkdir(parents=True, exist_ok=True)
    task = f"helmflow_{name}"
    data = folder / f"{task}.jsonl"
    with data.open("w") as out:
        for r in run.requests:
            doc: dict[str, Any] = {"id": r.instance_id, "prompt": r.prompt}
            if r.kind == "multiple_choice":
                doc.update(choices=list(r.continuations), gold=run.golds[r.instance_id])
            else:
                doc.update(target=(run.references[r.instance_id] or ("",))[0])
            out.write(json.dumps(doc, ensure_ascii=False) + "\n")
    config: dict[str, Any] = {
        "task": task,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data.resolve())}},
        "test_split": "test",
        "doc_to_text": "prompt",  # a column name: the text as it is, no template rendering
        "num_fewshot": 0,
    }
    if run.kind == "multiple_choice":
        config.update(
            output_type="multiple_choice",
            doc_to_choice="choices",
            doc_to_target="gold",
            target_delimiter="",
            metric_list=[{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        )
    else:
        first = run.requests[0]
        config.update(
            output_type="generate_until",
            doc_to_target="target",
            generation_kwargs={"until": list(first.stop), "max_gen_toks": first.max_tokens, "do_sample": False},
            metric_list=[{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
        )
        if run.spec.answer_extraction:  # helmflow's steps are lm-eval's filter syntax: the same pipeline
            config["filter_list"] = [{"name": "extracted", "filter": run.spec.answer_extraction}]
    (folder / f"{task}.yaml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return task


def write_chat_tasks(name: str, run: HelmflowRun, folder: Path) -> str:
    """lm-eval tasks (one per group: its instructions and exemplars) made of the run's parts, not its prompts:
    each question up to its output prefix, the exemplars as fixed few-shot samples in the adapter's order, the
    instructions as the description. lm-eval builds the conversation and applies the template itself
    (--apply_chat_template --fewshot_as_multiturn). Multiple choice (lettered) only. The task names, comma-joined.
    """
    adapter = run.spec.adapter
    folder.mkdir(parents=True, exist_ok=True)
    order = {r.instance_id: k for k, r in enumerate(run.requests)}
    names = []
    for k, group in enumerate(sorted(run.exemplars, key=str)):
        task = f"helmflow_{name}_{k}"
        members = sorted((i for i in run.instances if i.group == group), key=lambda i: order[i.id])

        def doc(inst: Instance) -> dict[str, Any]:
            letters = list(LETTERS[: len(inst.choices)])
            return {"id": inst.id, "question": render_block(adapter, inst), "gold": inst.gold_index, "letters": letters}

        data = folder / f"{task}.jsonl"
        data.write_text("".join(json.dumps(doc(i), ensure_ascii=False) + "\n" for i in members))
        shots = run.exemplars[group]
        config: dict[str, Any] = {
            "task": task,
            "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"test": str(data.resolve())}},
            "test_split": "test",
            "output_type": "multiple_choice",
            "description": fill_instructions(adapter.instructions, group),
            "doc_to_text": "question",
            "doc_to_choice": "letters",
            "doc_to_target": "gold",
            "target_delimiter": adapter.target_delimiter,
            "fewshot_delimiter": adapter.fewshot_delimiter,
            "num_fewshot": len(shots),
            "fewshot_config": {"sampler": "first_n", "samples": [doc(e) for e in shots]},
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        }
        (folder / f"{task}.yaml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
        names.append(task)
    return ",".join(names)


def read_samples(folder: Path, tasks: str, by_row: bool = False) -> dict[str, dict[str, Any]]:
    """lm-eval's logged samples of its tasks (--log_samples; names comma-joined), by helmflow instance id: the
    document's `id`, or with `by_row` its row in the test split (`test-<row>`: helmflow's id for a row of a file)."""
    samples = {}
    for task in tasks.split(","):
        for path in sorted(folder.rglob(f"samples_{task}_*.jsonl")):
            for line in path.open():
                sample = json.loads(line)
                samples[f"test-{sample['doc_id']}" if by_row else sample["doc"]["id"]] = sample
    return samples


# -- the comparison --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Agreement:
    same_prompts: int
    max_abs_logprob_diff: float | None = None  # multiple choice
    same_argmax: int | None = None  # multiple choice
    same_text: int | None = None  # generation: the texts as generated
    # Generation with answer_extraction: answers identical (helmflow's stored one, lm-eval's filtered_resps), and
    # answers that are real on both sides (not a step's fallback, "[invalid]"): identical fallbacks prove little.
    same_extracted: int | None = None
    real_extracted: int | None = None


def worst(a: Agreement, b: Agreement) -> Agreement:
    """The weaker agreement of two repeats of a shape, field by field."""

    def fewer(x: int | None, y: int | None) -> int | None:
        return y if x is None else x if y is None else min(x, y)

    diffs = [d for d in (a.max_abs_logprob_diff, b.max_abs_logprob_diff) if d is not None]
    return Agreement(
        min(a.same_prompts, b.same_prompts),
        max(diffs) if diffs else None,
        fewer(a.same_argmax, b.same_argmax),
        fewer(a.same_text, b.same_text),
        fewer(a.same_extracted, b.same_extracted),
        fewer(a.real_extracted, b.real_extracted),
    )


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=lambda k: values[k])


def _same_request(request: Request, arguments: list[tuple[Any, ...]]) -> bool:
    """Whether lm-eval asked what helmflow asked: the same context and continuations, or the same
    context, stop sequences and token budget."""
    if request.kind == "multiple_choice":
        return arguments == [(request.prompt, c) for c in request.continuations]
    [(context, kwargs)] = arguments
    return (
        context == request.prompt
        and list(kwargs.get("until", [])) == list(request.stop)
        and kwargs.get("max_gen_toks") == request.max_tokens
    )


def fallbacks(steps: list[Step]) -> set[str]:
    """What the steps answer when they find no answer: each regex step's fallback, a map's default."""
    out = {str(s.params.get("fallback", FALLBACK)) for s in steps if s.name in ("regex", "multi_choice_regex")}
    return out | {str(s.params["default"]) for s in steps if s.name == "map" and s.params.get("default") is not None}


def compare(run: HelmflowRun, samples: dict[str, dict[str, Any]]) -> Agreement:
    """Request by request: prompts, then log-likelihoods and argmax, or generated texts (and, with answer
    extraction, the answers each tool read out of its text with its own filter code).

    An instance lm-eval did not answer counts as a differing prompt."""
    same_prompts, same_argmax, same_text, same_extracted, real_extracted, diffs = 0, 0, 0, 0, 0, []
    mismatches = set(run.prompt_mismatches)
    steps = parse_steps(run.spec.answer_extraction) if run.spec.answer_extraction else []
    invalid = fallbacks(steps)
    for request in run.requests:
        sample = samples.get(request.instance_id)
        if sample is None:
            continue
        arguments = [tuple(a[f"arg_{j}"] for j in range(len(a))) for a in sample["arguments"].values()]
        same_prompts += _same_request(request, arguments) and request.id not in mismatches
        ours = run.answers[request.id]
        if request.kind == "multiple_choice":
            theirs = [float(r[0][0]) for r in sample["resps"]]
            diffs += [abs(a - b) for a, b in zip(ours.logprobs, theirs, strict=True)]
            same_argmax += _argmax(ours.logprobs) == _argmax(theirs)
        elif steps:  # the texts as generated, then the answers both read out of them, each with its own filter code
            ours_answer, theirs_answer = run.extracted.get(request.id), sample["filtered_resps"][0]
            same_text += run.raw_texts.get(request.id) == sample["resps"][0][0]
            same_extracted += ours_answer == theirs_answer
            real_extracted += ours_answer is not None and ours_answer not in invalid and theirs_answer not in invalid
        else:
            same_text += ours.text == sample["filtered_resps"][0]
    generation = run.kind == "generation"
    return Agreement(
        same_prompts=same_prompts,
        max_abs_logprob_diff=None if generation else max(diffs, default=float("nan")),
        same_argmax=None if generation else same_argmax,
        same_text=same_text if generation else None,
        same_extracted=same_extracted if generation and steps else None,
        real_extracted=real_extracted if generation and steps else None,
    )
