"""One lm-evaluation-harness task config (specs/lmeval_tasks.py) as a helmflow ScenarioSpec: a translation.

lm-eval 0.4.13 builds a prompt as description + exemplars (doc_to_text, target_delimiter, the target,
fewshot_delimiter) + doc_to_text (lm_eval/api/task.py, fewshot_context and build_qa_turn), which is helmflow's
instructions + exemplars + the question with every prefix and suffix empty. So doc_to_text becomes fields.input,
doc_to_choice fields.choices, doc_to_target fields.answer (an option index) or fields.references, each written as
a helmflow field that renders in helmflow's sandbox (specs/templates.py) to what lm-eval's Jinja gives:

- a name of a column stays a column (lm-eval reads `doc[name]` when the doc has it);
- a template is rendered as a template (text without `{{` is made one, for lm-eval renders every string);
- `{{ EXPR }}` alone, where lm-eval turns the rendered text back into a value (choices through ast.literal_eval,
  a target list), becomes the expression EXPR, whose value is that value;
- a target that lm-eval reads as an index when its text is digits and as a choice otherwise becomes a template
  that computes the index the same way;
- `!function` hooks become columns that tasks/lmeval_hooks.py fills before the fields are read.

What helmflow cannot do the same way is listed in Translation.needs, and such a task does not run.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from helmflow.specs.lmeval_tasks import FunctionRef, in_package, package_tasks_dir, package_version
from helmflow.specs.schema import ScenarioSpec
from helmflow.specs.templates import TemplateError, is_template, value_of

TRUST_NEED = "--trust-task-code"
LMEVAL_FEWSHOT_SEED = 1234  # lm_eval/evaluator.py's fewshot_random_seed default
DEFAULT_MAX_GEN_TOKS = 256  # lm_eval/defaults.py
# The columns a `!function` doc_to_text / doc_to_choice / doc_to_target fills (tasks/lmeval_hooks.py).
HOOK_COLUMNS = {"doc_to_text": "lmeval_text", "doc_to_choice": "lmeval_choices", "doc_to_target": "lmeval_target"}
# lm-eval filter functions tasks/extract.py applies with lm-eval's semantics (specs/ may not import tasks/).
FILTERS = {"regex", "multi_choice_regex", "take_first", "lowercase", "uppercase", "remove_whitespace", "map"}
MC_METRICS = {"acc": "exact_match", "acc_norm": "exact_match_char_norm"}
# lm-eval's exact_match options (lm_eval/api/metrics.py, exact_match_hf_evaluate): the spec's exact_match_options.
EXACT_MATCH_FLAGS = ("ignore_case", "ignore_punctuation", "ignore_numbers")
EXACT_MATCH_OPTIONS = ("regexes_to_ignore", *EXACT_MATCH_FLAGS)
_COLUMN = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_EXPRESSION = re.compile(r"\{\{-?(.*?)-?\}\}", re.DOTALL)
_JINJA = re.compile(r"\{[{%#]")
_DATA_SUFFIXES = ("jsonl", "json", "parquet", "csv", "tsv")


@dataclass
class Translation:
    task: str
    # None when the task's prompts cannot be expressed at all (an output type helmflow lacks, say).
    spec: ScenarioSpec | None
    # What helmflow does not do as lm-eval does: the task does not run (one line names them all).
    needs: list[str] = field(default_factory=list)
    hub: str = ""
    trust: bool = False  # its hooks are code outside the installed lm_eval package

    @property
    def runs(self) -> bool:
        return self.spec is not None and not self.needs


def scenario_name(task: str) -> str:
    return "lmeval_" + re.sub(r"[^a-z0-9_.\-]+", "_", task.lower())


def hook_ref(ref: FunctionRef) -> str:
    """How a spec names a hook: inside the installed package relative to its parent (`lm_eval/tasks/...`), so
    that the spec names the same code on every machine; else the file's absolute path."""
    package = package_tasks_dir()
    if package is not None and in_package(ref.file):
        return f"{ref.file.resolve().relative_to(package.resolve().parent.parent).as_posix()}:{ref.name}"
    return f"{ref.file.resolve()}:{ref.name}"


# -- fields ---------------------------------------------------------------------------------------------------


def _single(value: str) -> str | None:
    """EXPR when the value is `{{ EXPR }}` and nothing else."""
    found = _EXPRESSION.fullmatch(value)
    inner = found.group(1) if found else None
    return inner.strip() if inner is not None and "}}" not in inner and "{{" not in inner else None


def _template(value: str) -> str:
    # lm-eval renders every string that is not a column: a text without `{{` or `{%` is made a template for
    # helmflow too (an empty if-block renders nothing), so that `{# #}` and plain text render as there.
    return value if is_template(value) else "{% if true %}{% endif %}" + value


def _literal(values: list[Any]) -> str:
    """A Jinja list of texts; braces escaped, so that helmflow does not read the list as a template."""
    text = json.dumps([str(v) for v in values], ensure_ascii=False)
    return text.replace("{", "\\u007b").replace("}", "\\u007d")


def _column(value: str) -> bool:
    return bool(_COLUMN.fullmatch(value))


class _Fields:
    """doc_to_text, doc_to_choice and doc_to_target as helmflow fields, and the hooks they need."""

    def __init__(self, config: dict[str, Any], needs: list[str]) -> None:
        self.config, self.needs = config, needs
        self.columns: dict[str, FunctionRef] = {}

    def _hook(self, key: str, value: FunctionRef) -> str:
        self.columns[HOOK_COLUMNS[key]] = value
        return HOOK_COLUMNS[key]

    def text(self) -> str | None:
        value = self.config.get("doc_to_text")
        if isinstance(value, FunctionRef):
            return self._hook("doc_to_text", value)
        if isinstance(value, str):
            return value if _column(value) else _template(value)
        self.needs.append(f"doc_to_text {value!r} (an int means several inputs, one per choice, as winogrande)")
        return None

    def choices(self) -> str | None:
        value = self.config.get("doc_to_choice")
        if isinstance(value, FunctionRef):
            return self._hook("doc_to_choice", value)
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            return _literal(value)
        if isinstance(value, str) and _column(value):
            return value
        if isinstance(value, str) and _single(value):
            return _single(value)
        self.needs.append("a doc_to_choice template that renders text for ast.literal_eval (not one {{ ... }})")
        return None

    def answer(self, choices: str) -> str | None:
        """The gold option's index, as lm-eval finds it: an int is the index; a column's or hook's text is a
        choice; a template's text is the index when it is digits (ast.literal_eval), else a choice."""
        value = self.config.get("doc_to_target")
        among = choices if _column(choices) or choices.startswith("[") else f"({choices})"
        if isinstance(value, bool | int):
            return str(int(value))
        if isinstance(value, FunctionRef):
            value = self._hook("doc_to_target", value)
        if isinstance(value, str) and _column(value):  # the raw value: no digits read as an index here
            return f"{{% set t = {value} %}}{{{{ t | int if t is number else {among}.index(t) }}}}"
        if isinstance(value, str):
            body = _template(value)
            return f"{{% set t %}}{body}{{% endset %}}{{{{ t if t.isdigit() else {among}.index(t) }}}}"
        self.needs.append(f"doc_to_target {value!r} (several gold answers)")
        return None

    def document(self) -> str | None:
        """loglikelihood_rolling: the text scored, which lm-eval takes from doc_to_target (doc_to_text unused)."""
        value = self.config.get("doc_to_target")
        if isinstance(value, FunctionRef):
            return self._hook("doc_to_target", value)
        if isinstance(value, str):
            return value if _column(value) else _template(value)
        self.needs.append(f"doc_to_target {value!r} (a text to score)")
        return None

    def references(self) -> str | None:
        value = self.config.get("doc_to_target")
        if isinstance(value, FunctionRef):
            return self._hook("doc_to_target", value)
        if isinstance(value, list):
            return _literal(value)
        if isinstance(value, bool | int | float):
            return _literal([value])
        if isinstance(value, str):
            return value if _column(value) else (_single(value) or _template(value))
        self.needs.append(f"doc_to_target {value!r}")
        return None


# -- the pieces of a spec -------------------------------------------------------------------------------------


def _unsupported_keys(config: dict[str, Any], needs: list[str]) -> None:
    # A loglikelihood_rolling task's process_results only counts words and bytes its own way (wikitext counts them
    # on the page before detokenising): run once per row when it is read, for those counts (tasks/lmeval_hooks.py).
    counts_hook = config.get("output_type") == "loglikelihood_rolling" and isinstance(
        config.get("process_results"), FunctionRef
    )
    for key, what in (
        ("custom_dataset", "a custom_dataset function"),
        ("use_prompt", "a promptsource prompt (use_prompt)"),
        ("doc_to_image", "images (doc_to_image)"),
        ("doc_to_audio", "audio (doc_to_audio)"),
        ("gen_prefix", "gen_prefix (text after the question, before the answer)"),
        ("process_results", "its own scoring (process_results)"),
        ("class", "a Python task class"),
    ):
        if config.get(key) not in (None, "", False) and not (key == "process_results" and counts_hook):
            needs.append(what)
    if config.get("unsafe_code"):
        needs.append("unsafe_code (it runs generated code)")
    if int(config.get("repeats") or 1) > 1:
        needs.append(f"repeats: {config['repeats']} (several samples per question)")
    extra = sorted(set(config.get("dataset_kwargs") or {}) - {"trust_remote_code"})
    if extra:
        needs.append(f"dataset_kwargs {', '.join(extra)} (data other than a Hub dataset's config)")
    description = config.get("description") or ""
    if not isinstance(description, str) or _JINJA.search(description) or "{group" in description:
        needs.append("a description that is a template (helmflow's instructions are the same for every question)")


def _metrics(config: dict[str, Any], output: str, needs: list[str]) -> tuple[str, list[str], dict[str, Any] | None]:
    """main_metric, metrics and exact_match_options."""
    listed = config.get("metric_list") or [{"metric": m} for m in ("acc", "acc_norm")]
    if output == "generate_until" and not config.get("metric_list"):
        listed = [{"metric": "exact_match"}]
    names = [m.get("metric") if isinstance(m, dict) else m for m in listed]
    if output == "multiple_choice":
        for name in names:
            if name not in MC_METRICS:
                needs.append(f"metric {name if isinstance(name, str) else 'from a function'}")
        return "exact_match", ["accuracy", "calibration", "efficiency"], None
    options: dict[str, Any] | None = None
    for entry in listed:
        name = entry.get("metric") if isinstance(entry, dict) else entry
        if name != "exact_match":
            needs.append(f"metric {name if isinstance(name, str) else 'from a function'}")
            continue
        # lm-eval keys its metrics by name: a second exact_match entry's options replace the first's.
        options = _exact_match_options(entry if isinstance(entry, dict) else {}, needs)
    return "exact_match", ["accuracy", "efficiency"], options


def _exact_match_options(entry: dict[str, Any], needs: list[str]) -> dict[str, Any] | None:
    """An exact_match entry's options as the spec's exact_match_options (None when it has none that is set).

    lm-eval passes every key but metric, aggregation, higher_is_better and hf_evaluate to exact_match_hf_evaluate,
    which reads the flags as truth values (`if ignore_case:`) and regexes_to_ignore as a list of patterns."""
    options: dict[str, Any] = {}
    for key, value in entry.items():
        if key in ("metric", "aggregation", "higher_is_better", "hf_evaluate"):
            continue
        if key in EXACT_MATCH_FLAGS:
            options[key] = bool(value)
        elif key != "regexes_to_ignore":
            needs.append(f"exact_match's {key} (lm-eval's exact_match takes {', '.join(EXACT_MATCH_OPTIONS)})")
        elif value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            needs.append(f"exact_match's regexes_to_ignore {value!r} (not a list of patterns)")
        elif value:
            options[key] = list(value)
    return options if any(options.values()) else None


def _extraction(config: dict[str, Any], needs: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """The first filter pipeline's steps, as answer_extraction takes them (lm-eval's own keys)."""
    pipelines = config.get("filter_list") or []
    if not pipelines:
        return [], []
    if isinstance(pipelines, str) or not all(isinstance(p, dict) for p in pipelines):
        needs.append("a filter_list that is not a list of pipelines")
        return [], []
    steps = list(pipelines[0].get("filter") or [])
    for step in steps:
        name = step.get("function") if isinstance(step, dict) else None
        if not isinstance(name, str) or name not in FILTERS:
            shown = name if isinstance(name, str) else str(name)
            needs.append(f"filter {shown} (answer extraction has {', '.join(sorted(FILTERS))})")
    others = ", ".join(str(p.get("name")) for p in pipelines[1:])
    notes = [f"lm-eval's filter pipeline {pipelines[0].get('name')} only ({others} not scored)"] if others else []
    return [dict(s) for s in steps if isinstance(s, dict)], notes


def _generation(config: dict[str, Any], needs: list[str]) -> dict[str, Any]:
    kwargs = config.get("generation_kwargs")
    delimiter = config.get("fewshot_delimiter", "\n\n")
    kwargs = dict(kwargs) if isinstance(kwargs, dict) else {}
    until = kwargs.get("until", [delimiter])  # lm_eval/config/task.py: no until, the fewshot delimiter
    until = [until] if isinstance(until, str) else list(until or [])
    if kwargs.get("do_sample") or float(kwargs.get("temperature") or 0) > 0:
        needs.append("sampling (do_sample or a temperature above 0)")
    tokens = int(kwargs.get("max_gen_toks") or DEFAULT_MAX_GEN_TOKS)
    if not 1 <= tokens <= 4096:
        needs.append(f"max_gen_toks {tokens} (helmflow's max_tokens is 1 to 4096)")
        tokens = DEFAULT_MAX_GEN_TOKS
    return {"max_tokens": tokens, "stop": [str(u) for u in until]}


# -- few-shot -------------------------------------------------------------------------------------------------

_FEWSHOT_FORMAT = ("doc_to_text", "doc_to_choice", "doc_to_target", "target_delimiter", "fewshot_delimiter")


def _sample_text(value: Any, doc: dict[str, Any]) -> Any:
    """One field of a fixed exemplar, as lm-eval's doc_to_text / doc_to_target read it (no hooks)."""
    if isinstance(value, str) and value in doc:
        return doc[value]
    if isinstance(value, str):
        return str(value_of(_template(value), doc, "fewshot_config.samples"))
    return value


def _rendered_samples(config: dict[str, Any], fewshot: dict[str, Any], shots: int, needs: list[str]) -> str:
    """fewshot_config.samples taken first_n, rendered once: the same exemplars precede every question."""
    samples = fewshot.get("samples")
    if not isinstance(samples, list) or len(samples) < shots:
        needs.append(f"fewshot_config.samples with fewer than num_fewshot ({shots}) exemplars")
        return ""
    text_of, target_of = (fewshot.get(k, config.get(k)) for k in ("doc_to_text", "doc_to_target"))
    choices_of = fewshot.get("doc_to_choice", config.get("doc_to_choice"))
    if any(isinstance(v, FunctionRef) for v in (text_of, target_of, choices_of)):
        needs.append("fewshot_config.samples read through !function hooks")
        return ""
    tgt, few = (fewshot.get(k, config.get(k, d)) for k, d in (("target_delimiter", " "), ("fewshot_delimiter", "\n\n")))
    rendered = []
    try:
        for doc in samples[:shots]:
            text, target = _sample_text(text_of, doc), _sample_text(target_of, doc)
            choices = _sample_text(choices_of, doc) if choices_of else None
            if isinstance(target, str) and target.isdigit() and choices_of:
                target = int(target)
            if isinstance(choices, str):  # a rendered {{ list }}: lm-eval reads it back with ast.literal_eval
                choices = ast.literal_eval(choices)
            if isinstance(choices, dict):
                choices = list(choices.values())
            answer = choices[target] if choices and isinstance(target, int) else target
            rendered.append(f"{text}{tgt}{answer[0] if isinstance(answer, list) else answer}{few}")
    except (TemplateError, ValueError, SyntaxError, IndexError, TypeError) as exc:
        needs.append(f"fewshot_config.samples that helmflow cannot render ({exc})")
        return ""
    return "".join(rendered)


def _fewshot(config: dict[str, Any], needs: list[str]) -> tuple[dict[str, Any], str]:
    """The adapter's few-shot settings, and exemplar text to put after the description (fixed samples)."""
    fewshot = config.get("fewshot_config") or {}
    if not isinstance(fewshot, dict):
        needs.append("a fewshot_config that is not a mapping")
        return {}, ""
    shots = int(config.get("num_fewshot") or 0)
    sampler = fewshot.get("sampler", "default")
    split = fewshot.get("split", config.get("fewshot_split"))
    if shots > 64:
        needs.append(f"num_fewshot {shots} (helmflow's num_train is at most 64)")
    if sampler not in ("default", "first_n"):
        needs.append(f"the few-shot sampler {sampler}")
    if fewshot.get("samples") is not None and split is None:
        if sampler != "first_n" and shots:
            needs.append("fewshot_config.samples drawn at random (helmflow renders fixed samples once, first_n)")
            return {}, ""
        return {}, _rendered_samples(config, fewshot, shots, needs) if shots else ""
    for key in (*_FEWSHOT_FORMAT, "process_docs", "fewshot_indices"):
        if key in fewshot and fewshot[key] != config.get(key):
            needs.append(f"fewshot_config.{key} (exemplars formatted or drawn unlike lm-eval's default)")
    pool = split or config.get("training_split") or config.get("validation_split") or config.get("test_split")
    settings: dict[str, Any] = {"num_train": min(shots, 64), "fewshot_split": pool, "fewshot_order": "lmeval"}
    # lm-eval passes the evaluated doc to its sampler (drawing one more, then leaving the doc out) exactly when
    # fewshot_config's split equals test_split, None == None included (lm_eval/api/task.py, fewshot_context).
    exclude = split == config.get("test_split")
    settings["lmeval_fewshot"] = {"sampler": sampler, "seed": LMEVAL_FEWSHOT_SEED, "exclude_eval_doc": exclude}
    return (settings if pool else {}), ""


# -- the spec ---------------------------------------------------------------------------------------------------


def _data_files(data_dir: Path, config: dict[str, Any], splits: list[str]) -> dict[str, str]:
    """Each split's file in a --data-dir folder: SPLIT.jsonl (or .json, .parquet, .csv, .tsv), SPLIT-*.parquet
    or SPLIT/*.parquet, in the folder or in its DATASET_NAME subfolder."""
    folders = [data_dir / str(config["dataset_name"])] if config.get("dataset_name") else []
    found: dict[str, str] = {}
    for split in splits:
        for folder in [*folders, data_dir]:
            names = [f"{split}.{s}" for s in _DATA_SUFFIXES] + [f"{split}-*.parquet", f"{split}/*.parquet"]
            hit = next((n for n in names if sorted(folder.glob(n))), None)
            if hit:
                found[split] = str(folder / hit)
                break
    return found


def _source(config: dict[str, Any], splits: list[str], data_dir: Path | None, needs: list[str]) -> dict[str, Any]:
    source: dict[str, Any] = {"split": splits[0]}
    path = config.get("dataset_path")
    if isinstance(path, str) and path:
        source["hub"] = {"path": path, "name": config.get("dataset_name")}
    elif data_dir is None:
        needs.append("no dataset_path")
    if data_dir is not None:
        files = _data_files(data_dir, config, splits)
        if files:
            source["offline"] = {"files": files}
        elif "hub" not in source:
            needs.append(f"no files for split {splits[0]} in {data_dir}")
    return source


def _hooks(
    process: Any, columns: dict[str, FunctionRef], trusted: bool, needs: list[str], counts: Any = None
) -> dict[str, Any] | None:
    refs = [r for r in (process, counts) if isinstance(r, FunctionRef)] + list(columns.values())
    for ref in refs:
        if not ref.file.is_file():
            needs.append(f"{ref}: no such file")
    outside = sorted({str(r.file.parent) for r in refs if not in_package(r.file)})
    if outside and not trusted:
        needs.append(f"{TRUST_NEED} (its !function hooks are code in {', '.join(outside)})")
    if not refs:
        return None
    hooks: dict[str, Any] = {"columns": {name: hook_ref(ref) for name, ref in columns.items()}}
    if isinstance(process, FunctionRef):
        hooks["process_docs"] = hook_ref(process)
    if isinstance(counts, FunctionRef):
        hooks["counts"] = hook_ref(counts)
    return hooks


def _description(task: str, config: dict[str, Any], path: Path | None, output: str, notes: list[str]) -> str:
    version = (config.get("metadata") or {}).get("version")
    package = package_tasks_dir()
    if path is not None and package is not None and in_package(path):
        where = f"lm-eval {package_version()} ({path.resolve().relative_to(package.resolve().parent).as_posix()})"
    else:
        where = f"from {path}"
    shape = {
        "multiple_choice": "each choice scored as a continuation (acc is exact_match, acc_norm exact_match_char_norm)",
        "generate_until": "a greedy completion up to its until strings",
        "loglikelihood_rolling": "each document's log-likelihood in rolling windows (perplexity, bits per byte)",
    }.get(output, output)
    data = f"{config.get('dataset_path')}" + (f" ({config['dataset_name']})" if config.get("dataset_name") else "")
    said = "".join(f" Not as in lm-eval: {n}." for n in notes)
    return (
        f"lm-evaluation-harness task {task}, version {version}, {where}: the prompts lm-eval builds, {shape}; "
        f"data {data}.{said}"
    )


def translate(
    task: str, config: dict[str, Any], path: Path | None, *, data_dir: Path | None = None, trusted: bool = False
) -> Translation:
    """The scenario of one task config (its includes merged, a group's settings applied), or what it needs."""
    needs: list[str] = []
    output = config.get("output_type", "generate_until")
    rolling = output == "loglikelihood_rolling"
    if output not in ("multiple_choice", "generate_until", "loglikelihood_rolling"):
        what = {
            "loglikelihood": "one continuation's log-likelihood and whether greedy decoding gives it",
        }.get(output, "unknown")
        needs.append(f"output_type {output} ({what})")
    _unsupported_keys(config, needs)
    splits = [s for s in (config.get("test_split") or config.get("validation_split"),) if s]
    if not splits:
        needs.append("neither test_split nor validation_split")
    fields_of = _Fields(config, needs)
    fields: dict[str, Any] = {"input": fields_of.document() if rolling else fields_of.text()}
    if output == "multiple_choice":
        fields["choices"] = fields_of.choices()
        fields["answer"] = fields_of.answer(fields["choices"]) if fields["choices"] else None
    elif not rolling:
        if config.get("doc_to_choice") is not None:
            needs.append("doc_to_choice in a generate_until task")
        fields["references"] = fields_of.references()
    fewshot, shots_text = _fewshot(config, needs)
    # An output type helmflow lacks has metrics of its own: saying the type says it all.
    scored = output in ("multiple_choice", "generate_until", "loglikelihood_rolling")
    if rolling:
        main, metrics, options = _rolling_metrics(config, needs), ["accuracy", "efficiency"], None
        if fewshot.get("num_train") or shots_text or config.get("description"):
            needs.append("exemplars or a description before a text scored as a language model reads it")
        fewshot, shots_text = {}, ""
        if isinstance(config.get("process_results"), FunctionRef):
            fields["extra"] = {"words": "{{ lmeval_words }}", "bytes": "{{ lmeval_bytes }}"}
    else:
        main, metrics, options = _metrics(config, output, needs) if scored else ("exact_match", [], None)
    extraction, more = _extraction(config, needs)
    if extraction and output != "generate_until":
        needs.append("filters on scored choices")
    if fewshot.get("fewshot_split") and fewshot["fewshot_split"] not in splits:
        splits.append(fewshot["fewshot_split"])
    source = _source(config, splits or ["test"], data_dir, needs)
    counts = config.get("process_results") if rolling else None
    hooks = _hooks(config.get("process_docs"), fields_of.columns, trusted, needs, counts)
    if hooks:
        source["hooks"] = hooks
    adapter: dict[str, Any] = {
        "method": {"multiple_choice": "multiple_choice_separate", "loglikelihood_rolling": "language_modeling"}.get(
            output, "generation"
        ),
        "instructions": str(config.get("description") or "") + shots_text,
        "input_prefix": "",
        "input_suffix": "",
        "output_prefix": "",
        "target_delimiter": str(config.get("target_delimiter", " ")),
        "fewshot_delimiter": str(config.get("fewshot_delimiter", "\n\n")),
        **fewshot,
        **(_generation(config, needs) if output == "generate_until" else {}),
    }
    if rolling:
        adapter = {"method": "language_modeling"}
    hub = source.get("hub", {})
    shown = f"{hub['path']}" + (f" ({hub['name']})" if hub.get("name") else "") if hub else ""
    trust = bool(hooks) and any(not r.startswith("lm_eval/") for r in _refs(hooks))
    if any(v is None for v in fields.values()) or not scored:
        return Translation(task, None, needs, shown, trust)
    raw = {
        "name": scenario_name(task),
        "description": _description(task, config, path, output, more),
        "source": source,
        "fields": {k: v for k, v in fields.items() if v is not None},
        "adapter": adapter,
        "main_metric": main,
        "metrics": metrics,
        "answer_extraction": extraction,
        **({"exact_match_options": options} if options else {}),
    }
    try:
        spec = ScenarioSpec.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return Translation(task, None, [*needs, f"a setting helmflow refuses ({problems})"], shown, trust)
    # Built even when something is missing (a metric, trust): its prompts can be shown and checked all the same.
    return Translation(task, spec, needs, shown, trust)


def _refs(hooks: dict[str, Any]) -> list[str]:
    return [*hooks.get("columns", {}).values(), *(hooks[k] for k in ("process_docs", "counts") if k in hooks)]


# lm-eval's metrics of a loglikelihood_rolling task, each helmflow's of the same name (metrics/language_modeling.py).
ROLLING_METRICS = ("word_perplexity", "byte_perplexity", "bits_per_byte")


def _rolling_metrics(config: dict[str, Any], needs: list[str]) -> str:
    """The main metric of a loglikelihood_rolling task: bits_per_byte (HELM's headline) when listed, else the first."""
    listed = config.get("metric_list") or [{"metric": m} for m in ROLLING_METRICS]
    names = [m.get("metric") if isinstance(m, dict) else m for m in listed]
    for name in names:
        if name not in ROLLING_METRICS:
            needs.append(f"metric {name if isinstance(name, str) else 'from a function'}")
    known = [n for n in names if n in ROLLING_METRICS]
    return "bits_per_byte" if "bits_per_byte" in known else (known[0] if known else "bits_per_byte")
