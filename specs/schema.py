"""The spec language, v1: what a scenario, a model and a suite file may say.

Every model forbids unknown keys, so a misspelt field is an error that names the field
rather than a setting silently ignored.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    ValidationInfo,
    WithJsonSchema,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from helmflow.specs import registry
from helmflow.specs.regexes import compile_pattern

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.\-]*$"

# Upper bounds of numeric fields: a number past these is a typo, and the warehouse stores them as
# 32-bit INTEGERs, so without a bound it would pass `specs validate` and fail later inside DuckDB.
MAX_INSTANCES = 10_000_000
MAX_SEED = 2**31 - 1
MAX_OPTION_INDEX = 1_000

# A Hugging Face hub id: "name" or "org/name" of letters, digits, '-', '_' and '.', without "--" or ".."
# (huggingface_hub's own rule; anything else it refuses with "Repo id must be in the form ...").
HUB_ID = re.compile(r"^(?!.*(?:--|\.\.))(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _RegistryEnum:
    """The JSON Schema of a name from a registry: an enum of the names known when the schema is made.

    Read then, not when this module is imported: the metric records live in tasks/, which imports this
    module, and a plugin installed later should show in `helmflow specs schema`.
    """

    def __init__(self, names: Callable[[], Sequence[str]]) -> None:
        self.names = names

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: GetJsonSchemaHandler) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.names())}


def _unknown_backend(name: str) -> str:
    if name in registry.backend_names():
        return name
    raise PydanticCustomError(
        "unknown_backend",
        "unknown backend '{name}' (known: {known}; a plugin adds one through the entry point group {group})",
        {"name": name, "known": ", ".join(registry.backend_names()), "group": registry.BACKENDS_GROUP},
    )


def _unknown_metric(name: str) -> str:
    problem = registry.unknown_metric(name)
    if problem:
        raise PydanticCustomError("unknown_metric", problem)
    return name


def _unknown_format(name: str) -> str:
    if name in registry.source_names():
        return name
    raise PydanticCustomError(
        "unknown_format",
        "unknown data format '{name}' (known: {known}; a plugin adds one through the entry point group {group})",
        {"name": name, "known": ", ".join(registry.source_names()), "group": registry.SOURCES_GROUP},
    )


# Names checked against specs/registry.py when a spec is validated, so a plugin's names are as good as
# helmflow's own; the JSON Schema lists the names known when it is made.
MetricName = Annotated[str, AfterValidator(_unknown_metric), _RegistryEnum(registry.spec_metric_names)]
BackendName = Annotated[str, AfterValidator(_unknown_backend), _RegistryEnum(registry.backend_names)]
FormatName = Annotated[str, AfterValidator(_unknown_format), _RegistryEnum(registry.source_names)]


class FieldMap(Strict):
    """Where the canonical instance fields come from in a data row.

    Each value is a column name, a Jinja text template (`"{{ passage }}\\nQuestion: {{ question }}?"`)
    or a Jinja expression (`choices.text`, `['no', 'yes']`); see tasks/templates.py.
    `choices` is one value giving a list, or a list of values (one per option).
    `answer_type` says how the `answer` value names the gold option.
    """

    id: str | None = None
    input: str | None = None
    choices: str | list[str] | None = None
    answer: str | None = None
    answer_type: Literal["index", "letter", "text", "label"] = "index"
    # For answer_type 'label': raw label value -> option index (e.g. {"positive": 1}).
    labels: dict[str, Annotated[int, Field(ge=0, le=MAX_OPTION_INDEX)]] | None = None
    references: str | None = None
    group: str | None = None
    # Groups are compared and stored as snake_case when true ("abstract algebra" -> "abstract_algebra").
    group_snake_case: bool = False
    # More per-instance values some metrics need (e.g. BBQ's question polarity): name -> value.
    extra: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _templates_are_safe(self) -> FieldMap:
        from helmflow.specs.templates import check

        for name in ("id", "input", "answer", "references", "group"):
            value = getattr(self, name)
            if value is not None:
                check(value, f"fields.{name}")
        choices = [self.choices] if isinstance(self.choices, str) else (self.choices or [])
        for k, value in enumerate(choices):
            check(value, f"fields.choices[{k}]" if isinstance(self.choices, list) else "fields.choices")
        for key, value in self.extra.items():
            check(value, f"fields.extra.{key}")
        return self


def given_fields(fields: FieldMap | None) -> dict[str, Any] | None:
    """A source's `fields` as written: only the keys the spec gives.

    They override the scenario's fields key by key. Writing the rest (their defaults) would make a
    spec read back from the warehouse (--resume, rescore) override the scenario's `input` with null
    and its `answer_type` with "index".
    """
    return None if fields is None else fields.model_dump(mode="json", exclude_unset=True)


class HubSource(Strict):
    """A dataset on the Hugging Face Hub, loaded with `datasets.load_dataset(path, name)`."""

    path: str
    name: str | None = None
    revision: str | None = None
    # The hub's name for the split, when it differs from the scenario's (`source.split`).
    split: str | None = None
    fields: FieldMap | None = None
    _fields = field_serializer("fields")(lambda self, fields: given_fields(fields))


class OfflineSource(Strict):
    """Files keyed by split name: on disk, inside an installed package, or inside a PyPI sdist.

    Paths are relative to the spec's folder (or to `package`, or inside `archive`); they may be
    globs, and `{shared}` stands for the shared benchmark data folder (HELMFLOW_SHARED_DATA, by
    default ../shared/data beside the repository). Every row also gets `source_file`, the name of
    the file it came from (MMLU's CSVs carry their subject only in the file name).
    """

    package: str | None = None
    # A PyPI source distribution whose tarball holds the files, e.g. "bigbench==1.0.0"; it is
    # downloaded once (pip download) into the helmflow cache and read without being installed.
    archive: str | None = None
    files: dict[str, str | list[str]]
    # bigbench: a BIG-bench task.json (multiple choice from target_scores, generation from target).
    # A plugin adds formats (the helmflow.sources entry points); null: from the files' suffix.
    format: FormatName | None = None
    # For header-less CSV/TSV files.
    column_names: list[str] | None = None
    # Rows whose listed fields all equal these values are dropped (e.g. header rows repeated in a file).
    exclude_where: dict[str, str] | None = None
    fields: FieldMap | None = None

    _fields = field_serializer("fields")(lambda self, fields: given_fields(fields))


class DocHooks(Strict):
    """Python functions each row passes through before the field map: lm-evaluation-harness's `!function`
    hooks, as specs/lmeval_translate.py writes them and tasks/lmeval_hooks.py runs them. Each is "FILE:FUNCTION":
    a FILE under `lm_eval/` is read from the installed lm_eval package (code that came with it); any other is
    someone's code and runs only with --trust-task-code (HELMFLOW_TRUST_TASK_CODE=1)."""

    # lm-eval's process_docs: the split's rows (a datasets.Dataset) in, the rows the task reads out.
    process_docs: str | None = None
    # Columns added to each row: name -> a function of the row (a doc_to_text, doc_to_choice or doc_to_target hook).
    columns: dict[str, str] = Field(default_factory=dict)
    # A loglikelihood_rolling task's process_results, run on each row with a stand-in log-likelihood for the word
    # and byte counts it gives (columns lmeval_words, lmeval_bytes); left out of dumps when unset.
    counts: str | None = Field(None, exclude_if=lambda value: value is None)


class Source(Strict):
    hub: HubSource | None = None
    # Alternatives, tried in order; the first that has the split and whose files are there is used.
    offline: OfflineSource | list[OfflineSource] | None = None
    split: str = "test"
    # A list column to turn into one row per element (tasks/unnest.py): a query's passages, one row each.
    # Left out of dumps when unset, so every spec written before it keeps its hash (cached answers, refresh).
    unnest: str | None = Field(None, exclude_if=lambda value: value is None)
    # Python hooks the rows pass through first (DocHooks); left out of dumps when unset, as unnest is.
    hooks: DocHooks | None = Field(None, exclude_if=lambda value: value is None)

    @property
    def offline_sources(self) -> list[OfflineSource]:
        if self.offline is None:
            return []
        return self.offline if isinstance(self.offline, list) else [self.offline]

    @model_validator(mode="after")
    def _one_at_least(self) -> Source:
        if self.hub is None and self.offline is None:
            raise ValueError("a source needs 'hub' or 'offline' (or both)")
        return self


class LmevalFewshot(Strict):
    """lm-evaluation-harness's few-shot sampling (lm_eval/api/samplers.py), for fewshot_order "lmeval": one
    random.Random(seed) for the whole run, from which each instance in turn draws its exemplars (sampler
    "default": random.sample over the few-shot rows; "first_n": the first rows); with exclude_eval_doc, one row
    more is drawn and the instance itself left out, as lm-eval does when its few-shot split is its test split."""

    sampler: Literal["default", "first_n"] = "default"
    seed: int = Field(1234, ge=0, le=MAX_SEED)
    exclude_eval_doc: bool = False


class AdapterSpec(Strict):
    """How instances become prompts. Defaults reproduce lm-evaluation-harness's MMLU format."""

    # multiple_choice_joint: lettered options in the prompt, letters scored (lm-eval's MMLU).
    # multiple_choice_separate: each choice scored as a continuation (lm-eval's acc / acc_norm).
    # multiple_choice_calibrated: separate, minus the choice's log-prob after the bare output prefix (HELM).
    # language_modeling: the instance's input text is scored itself, whole (its log-likelihood; perplexity and
    # bits per byte: tasks/metrics/language_modeling.py); no question, prefixes or exemplars.
    method: Literal[
        "multiple_choice_joint",
        "multiple_choice_separate",
        "multiple_choice_calibrated",
        "generation",
        "language_modeling",
    ] = "multiple_choice_joint"
    # Python format fields: {group} and {group_words} (underscores as spaces).
    instructions: str = ""
    # A file whose text is the instructions (a benchmark's own few-shot prompt file), given as data files are
    # ({shared}, $VARS, relative to the spec's folder) and allowed from the same folders. The loader reads it
    # (specs/loader.py) into `instructions`, byte for byte, so the text is part of the spec hash; the path stays
    # as written. Both keys written in a spec is an error. A file not on this machine leaves `instructions`
    # empty, and a run of the scenario fails at preflight saying so (flows/prepare.py). Left out of dumps when
    # unset, so every spec written before it keeps its hash.
    instructions_file: str | None = Field(None, min_length=1, exclude_if=lambda value: value is None)
    input_prefix: str = ""
    input_suffix: str = "\n"
    option_format: str = "{letter}. {text}\n"
    output_prefix: str = "Answer:"
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    num_train: int = Field(0, ge=0, le=64)
    fewshot_split: str | None = None
    # How the num_train exemplars are picked from fewshot_split (the instance's own group when it has
    # rows there): "random", HELM's way (label-balanced, shuffled with the run's seed), or "first_n",
    # lm-evaluation-harness's (the first rows in file order, as its MMLU tasks take them).
    # "lmeval": as lm-evaluation-harness draws them, for prompts byte-identical to its own (lmeval_fewshot).
    fewshot_order: Literal["random", "first_n", "lmeval"] = "random"
    # fewshot_order "lmeval"'s settings (its defaults when unset); left out of dumps when unset.
    lmeval_fewshot: LmevalFewshot | None = Field(None, exclude_if=lambda value: value is None)
    # Generation only.
    max_tokens: int = Field(32, ge=1, le=4096)
    stop: list[str] = Field(default_factory=lambda: ["\n"])
    # Generation: this many sampled completions per instance besides its greedy one (tasks/samples.py), each at
    # `temperature` with nucleus `top_p` and a seed of its own drawn from the run's seed, scored as maj@k and
    # pass@k (tasks/metrics/sampling.py). 0: greedy only. The three keys are left out of dumps at their
    # defaults, so every spec written before them keeps its hash.
    num_samples: int = Field(0, ge=0, le=1024, exclude_if=lambda value: value == 0)
    temperature: float = Field(1.0, gt=0, le=10, exclude_if=lambda value: value == 1.0)
    top_p: float = Field(1.0, gt=0, le=1, exclude_if=lambda value: value == 1.0)

    @model_validator(mode="after")
    def _consistent(self) -> AdapterSpec:
        if self.num_train > 0 and not self.fewshot_split:
            raise ValueError("num_train > 0 needs fewshot_split (the split exemplars come from)")
        if self.method == "multiple_choice_calibrated" and not self.output_prefix.strip():
            raise ValueError("multiple_choice_calibrated needs an output_prefix (the bare answer prompt)")
        if self.method == "language_modeling" and (self.num_train or self.instructions or self.instructions_file):
            raise ValueError(
                "language_modeling scores each text by itself: it takes no exemplars (num_train 0) or instructions"
            )
        if self.num_samples and self.method != "generation":
            raise ValueError("num_samples needs method generation (multiple choice is scored, not sampled)")
        if not self.num_samples and {"temperature", "top_p"} & self.model_fields_set:
            # Greedy decoding has neither: a value set here would change nothing, silently.
            raise ValueError("temperature and top_p apply to sampled completions only: set num_samples too")
        return self


RobustnessName = Literal["lowercase", "contractions", "expansions", "misspellings", "extra_space", "typos", "mild_mix"]
FairnessName = Literal["gender", "race_names", "dialect"]


class Perturbations(Strict):
    """Perturbed copies of each instance's input, scored through the same inference path."""

    robustness: list[RobustnessName] = Field(default_factory=list)
    fairness: list[FairnessName] = Field(default_factory=list)


def _compiles(pattern: str) -> str:
    # Untrusted text: compiled as tasks/extract.py's patterns are (the regex module, read as `re` reads it).
    try:
        compile_pattern(pattern)
    except ValueError as exc:
        raise PydanticCustomError("bad_regex", str(exc)) from None
    return pattern


class ExactMatchOptions(Strict):
    """Generation's exact_match as lm-evaluation-harness 0.4.13 computes it with its metric_list options
    (lm_eval/api/metrics.py, exact_match_hf_evaluate): every match of each regex, in order, deleted from the answer
    and from each reference (re.sub), then both lower-cased, then ASCII punctuation (string.punctuation) deleted,
    then ASCII digits; equal texts score 1. Texts are compared as they are, whitespace included (helmflow's
    exact_match without these options strips both). tasks/metrics/accuracy.py applies them."""

    regexes_to_ignore: list[Annotated[str, AfterValidator(_compiles)]] = Field(default_factory=list)
    ignore_case: bool = False
    ignore_punctuation: bool = False
    ignore_numbers: bool = False


class ScenarioSpec(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    source: Source
    fields: FieldMap = FieldMap()
    adapter: AdapterSpec = AdapterSpec()
    main_metric: Literal[
        "exact_match",
        "quasi_exact_match",
        "prefix_exact_match",
        "quasi_prefix_exact_match",
        "f1_score",
        "rouge_l",
        "rouge_1",
        "rouge_2",
        "rr_at_10",
        "ndcg_at_10",
        "exact_match_token_norm",
        "exact_match_char_norm",
        "bits_per_byte",
        "byte_perplexity",
        "word_perplexity",
        "perplexity",
        "logprob",
    ] = "exact_match"
    # Categories (each stands for its metrics) or single metrics, helmflow's or a plugin's: specs/registry.py.
    # Checked even when left out, so a metric plugin that does not load is said when a spec is checked.
    metrics: list[MetricName] = Field(
        default_factory=lambda: ["accuracy", "calibration", "efficiency"], validate_default=True
    )
    perturbations: Perturbations = Perturbations()
    # alt-profanity-check (default, offline), detoxify, or an http(s) URL; see tasks/metrics/toxicity.py.
    toxicity_classifier: str = "alt-profanity-check"
    # Generation: how the answer is read out of the completion before it is scored, as lm-evaluation-harness's
    # filter steps with its own keys (`- {function: regex, regex_pattern: "The answer is (\\-?[0-9.,]+)"}`,
    # then `take_first`, `lowercase`, `map`, ...): tasks/extract.py, checked when the spec is (flows/plans.py).
    # Left out of dumps when empty, so every spec written before it keeps its hash.
    answer_extraction: list[dict[str, Any]] = Field(default_factory=list, exclude_if=lambda value: not value)
    # Generation: exact_match scored as lm-evaluation-harness's, with its metric_list options (ExactMatchOptions):
    # `{regexes_to_ignore: [",", "\\$"], ignore_case: true}`. Left out of dumps when unset, as answer_extraction.
    exact_match_options: ExactMatchOptions | None = Field(None, exclude_if=lambda value: value is None)
    # Restrict to these groups (e.g. MMLU subjects). Empty means all.
    groups: list[str] = Field(default_factory=list)
    max_instances: int | None = Field(None, ge=1, le=MAX_INSTANCES)

    @field_validator("metrics")
    @classmethod
    def _metrics_apply(cls, names: list[str], info: ValidationInfo) -> list[str]:
        # A metric named on its own must fit the adapter method (a category just skips what does not).
        adapter = info.data.get("adapter")
        problem = registry.inapplicable(names, adapter.method) if isinstance(adapter, AdapterSpec) else None
        if problem:
            raise PydanticCustomError("inapplicable_metric", problem)
        return names

    @field_validator("exact_match_options")
    @classmethod
    def _exact_match_options_apply(
        cls, options: ExactMatchOptions | None, info: ValidationInfo
    ) -> ExactMatchOptions | None:
        # They change how a generated text is compared; a chosen option is compared by its index.
        adapter = info.data.get("adapter")
        if options is not None and isinstance(adapter, AdapterSpec) and adapter.method != "generation":
            raise PydanticCustomError(
                "inapplicable_options",
                "exact_match_options compare generated text: adapter.method {method} generates none",
                {"method": adapter.method},
            )
        return options

    @model_validator(mode="after")
    def _main_metric_applies(self) -> ScenarioSpec:
        # The main metric is measured whatever the method (other categories read it), so it must fit the method:
        # a text has no gold answer to match, and a question no perplexity.
        problem = registry.inapplicable([self.main_metric], self.adapter.method)
        if problem:
            raise ValueError(f"main_metric: {problem}")
        if self.adapter.method == "language_modeling" and (
            self.perturbations.robustness or self.perturbations.fairness or self.answer_extraction
        ):
            raise ValueError(
                "language_modeling scores the text as written: it takes no perturbations or answer_extraction"
            )
        return self

    def measures(self, category: str) -> bool:
        """Whether the spec asks for any metric of a category (so a run prepares its perturbations or classifier)."""
        return category in registry.measured_categories(self.metrics, self.main_metric, self.adapter.method)


def expand_path(value: str) -> str:
    """`~` and `$VAR` / `${VAR}` expanded as a shell would; an unset variable stays as written."""
    return os.path.expandvars(os.path.expanduser(value))


def looks_local(path: str) -> bool:
    """Whether a model path is written as a local folder rather than a hub id.

    The rule (docs/spec-reference.md, "Model paths"): a path that starts with `/`, `~`, `.` or `$`, or has
    more than one `/` (or a `\\` on Windows), is local; `org/name` and `name` are hub ids. A local folder
    that exists wins over a hub id of the same spelling (model_path_problem), as in transformers.
    """
    if path.startswith(("/", "~", ".", "$")):
        return True
    separators = {os.sep, os.altsep or os.sep} - {"/"}
    return path.count("/") > 1 or any(sep in path for sep in separators)


def model_path_problem(path: str, written: str | None = None) -> str | None:
    """Why an `hf` model path cannot be loaded, or None: a local path (looks_local) whose folder is not
    there, a file where a folder is needed, or text that is neither a local folder nor a hub id.
    `written` is the path as the spec wrote it, named in the message when expansion changed it.
    Relative folders are read from the current directory, as transformers reads them."""
    shown = path if written in (None, path) else f"{path} (written {written})"
    if Path(path).is_dir():
        if (Path(path) / "config.json").is_file():
            return None
        return f"{shown} is a folder without config.json: not a transformers model folder (save_pretrained writes one)"
    if Path(path).exists():
        return f"{shown} is a file; a local model is a folder (config.json and the weights)"
    if looks_local(path):
        unset = sorted({v for v in re.findall(r"\$\{?(\w+)", path) if v not in os.environ})
        note = f"; {', '.join('$' + v for v in unset)} {'is' if len(unset) == 1 else 'are'} not set" if unset else ""
        where = "" if Path(path).is_absolute() or path.startswith(("$", "~")) else f" (in {Path.cwd()})"
        return f"no such local folder: {shown}{where}{note}"
    if not HUB_ID.fullmatch(path):
        return f"{path!r} is neither a local folder nor a hub id (org/name: letters, digits, '-', '_', '.')"
    return None


class ModelSpec(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    backend: BackendName
    # hf: a hub id or a local directory. openai: the server's base URL (http://host:port/v1).
    # embedded: ignored (the packaged SmolLM2 is used).
    path: str | None = None
    # openai: the model name the server knows (default: this spec's name).
    remote_model: str | None = None
    # openai: seconds per request, and retries with exponential back-off for transient errors.
    timeout_s: float = Field(60.0, gt=0, le=3600)
    retries: int = Field(3, ge=0, le=10)
    retry_backoff_s: float = Field(1.0, ge=0, le=60)
    # openai: requests in flight at once, and at most this many started per minute (a server's rate limit),
    # per process: each dask/ray worker keeps its own (docs/servers.md).
    concurrency: int = Field(8, ge=1, le=256)
    max_requests_per_minute: float | None = Field(None, gt=0, le=1_000_000)
    # openai: generation through /chat/completions (the prompt is the user message, after system_prompt
    # when set). A chat API gives no prompt log-probs, so multiple choice is answered by generating the
    # option letter, as HELM does for chat models; the model fingerprint says so.
    chat: bool = False
    # openai chat: the system message. hf/embedded: the system message inside the chat template (with the
    # scenario's instructions after it, as lm-evaluation-harness's --system_instruction), or, without a
    # template, text before the instructions.
    system_prompt: str | None = None
    # hf/embedded: prompts are the tokenizer's chat template applied to the conversation (lm-evaluation-harness's
    # --apply_chat_template): the instructions as the system message, the question as the user turn, the
    # generation prompt after it; a choice is scored as the assistant's answer (docs/spec-reference.md).
    apply_chat_template: bool = False
    # With apply_chat_template: each exemplar is its own user turn and assistant answer (lm-eval's
    # --fewshot_as_multiturn), instead of all exemplars and the question in one user turn.
    fewshot_as_multiturn: bool = False
    # openai: the environment variable that holds the API key, read at run time and sent as a Bearer
    # token. Only the variable's name is part of the spec (and so of the warehouse and Prefect's parameters).
    api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    # openai: max_tokens of a log-likelihood (echo) request. 0 on OpenAI and vLLM; llama-cpp-python reads
    # 0 as "no limit", so there use 1, as lm-eval's gguf model does (the generated token is not scored).
    echo_max_tokens: int = Field(0, ge=0, le=1)
    revision: str | None = None
    # hf/embedded: "auto" is bfloat16 on a GPU and float32 on the CPU; device "auto" is CUDA when present.
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    device: str = "cpu"
    # hf/embedded: rows per forward pass; "auto" sizes it from free GPU memory (16 on the CPU).
    # openai: prompts per completions request (`prompt` as a list; 1 unless the server takes lists).
    batch_size: Annotated[int, Field(ge=1, le=1024)] | Literal["auto"] = 16
    # Multiple choice: at most this many padded tokens (rows × the longest row) in one forward pass.
    max_batch_tokens: int = Field(4096, ge=16, le=1_048_576)
    # hf/embedded multiple choice: tokens that requests share at their start (few-shot exemplars, an
    # instance's context before each of its choices) are computed once and reused from their key/value
    # cache. Log-probs equal the unshared computation's to float rounding (tests/test_shared_prefix.py).
    share_prefixes: bool = True
    max_length: int = Field(2048, ge=16, le=1_048_576)
    # hf/embedded: whether every prompt starts with the tokenizer's beginning-of-sequence token. null: the
    # tokenizer's own default, as lm-evaluation-harness and HELM tokenise (Llama 3 and Gemma tokenizers
    # add it, SmolLM2's adds none); a prompt whose text already starts with it gets no second one.
    add_bos_token: bool | None = None

    @field_validator("path")
    @classmethod
    def _expand_user_and_variables(cls, value: str | None) -> str | None:
        # transformers reads "~/models/x" as a malformed hub id ("Repo id must be in the form ..."). Expanded
        # once here, the run, the model fingerprint and the warehouse all see the folder's real path.
        if value is None or value.startswith(("http://", "https://")):
            return value
        return expand_path(value)

    @model_validator(mode="before")
    @classmethod
    def _remote_batch_default(cls, data: object) -> object:
        # Most servers take one prompt per request; batching there means several requests in flight.
        if isinstance(data, dict) and data.get("backend") == "openai" and "batch_size" not in data:
            return {**data, "batch_size": 1}
        return data

    @model_validator(mode="after")
    def _needs_path(self) -> ModelSpec:
        if self.backend == "hf" and not self.path:
            raise ValueError("backend 'hf' needs 'path' (a hub id or a local directory)")
        if self.backend == "openai" and not (self.path or "").startswith(("http://", "https://")):
            raise ValueError("backend 'openai' needs 'path': the server's base URL, e.g. http://127.0.0.1:8000/v1")
        if self.backend == "openai" and self.batch_size == "auto":
            raise ValueError("backend 'openai' needs a number as batch_size (prompts per request)")
        if self.apply_chat_template and self.backend not in ("hf", "embedded"):
            raise ValueError(
                "apply_chat_template is for backends hf and embedded (helmflow applies the tokenizer's template); "
                "an openai server applies its own with chat: true"
            )
        if self.fewshot_as_multiturn and not self.apply_chat_template:
            raise ValueError("fewshot_as_multiturn needs apply_chat_template: true (exemplars become chat turns)")
        return self


class SuiteEntry(Strict):
    scenario: str
    max_instances: int | None = Field(None, ge=1, le=MAX_INSTANCES)
    groups: list[str] | None = None
    num_train: int | None = Field(None, ge=0, le=64)
    # The row of the suite's layout (flows/layout.py) the entry is shown in, when several entries make one row
    # (HELM's core table has one RAFT row for its 11 subsets); by default its scenario's own row.
    row: str | None = Field(None, exclude_if=lambda value: value is None)


FOR_EACH_ITEMS_SCHEMA = {
    "type": "array",
    "minItems": 1,
    "items": {
        "anyOf": [
            {"type": "string"},
            {
                "type": "object",
                "properties": {
                    "override": {
                        "type": "object",
                        "description": "merged over this item's scenario as `extends:` merges (null removes a key)",
                    }
                },
                "propertyNames": {"pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"},
                "additionalProperties": {"type": "string"},
            },
        ]
    },
}


class ForEach(Strict):
    """A suite entry that makes one scenario per item from a template: docs/spec-reference.md, `for_each`.

    The loader expands it into plain entries (specs/loader.py) before the suite is validated, so a
    SuiteSpec only ever holds SuiteEntry; this model checks the entry's shape and feeds the JSON Schema.
    Items are checked by the loader, which knows their lines.
    """

    # Plain values (with `as`), or mappings of variable -> text (plus an optional `override` mapping).
    for_each: Annotated[list[Any], WithJsonSchema(FOR_EACH_ITEMS_SCHEMA)] = Field(min_length=1)
    as_: str | None = Field(None, alias="as", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    # A scenario file (relative to the suite) or the scenario itself, written inline; either may use `extends:`.
    template: str | Annotated[dict[str, Any], WithJsonSchema({"type": "object"})]
    # The overrides a plain entry takes, applied to every scenario made.
    max_instances: int | None = Field(None, ge=1, le=MAX_INSTANCES)
    groups: list[str] | None = None
    num_train: int | None = Field(None, ge=0, le=64)

    def overrides(self) -> dict[str, Any]:
        return self.model_dump(include={"max_instances", "groups", "num_train"}, exclude_none=True)


class Notify(Strict):
    """Who hears about a regression found by a scheduled refresh."""

    # A shell command run with the message in $HELMFLOW_MESSAGE (and on its standard input).
    command: str | None = None
    # An http(s) URL that receives POST {"text": message, "regressions": [...]}.
    webhook: str | None = None


class SuiteSpec(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    models: list[str] = Field(default_factory=list)
    scenarios: list[SuiteEntry] = Field(min_length=1)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    # A refresh re-runs a model × scenario whose latest run is older than this ("12h", "7d").
    max_age: str | None = Field(None, pattern=r"^\d+(\.\d+)?[smhdw]$")
    notify: Notify = Notify()
    # Where inference runs: local, dask, ray (a local cluster), or dask://HOST:PORT / ray://HOST:PORT.
    runner: str | None = Field(None, pattern=r"^(local|dask|ray)(://\S+)?$")

    @property
    def max_age_seconds(self) -> float | None:
        if self.max_age is None:
            return None
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
        return float(self.max_age[:-1]) * units[self.max_age[-1]]

    @field_validator("scenarios", mode="before")
    @classmethod
    def _allow_bare_names(cls, value: object) -> object:
        # `- mmlu` is shorthand for `- scenario: mmlu`.
        if isinstance(value, list):
            return [{"scenario": v} if isinstance(v, str) else v for v in value]
        return value


SPEC_KINDS: dict[str, type[Strict]] = {"scenario": ScenarioSpec, "model": ModelSpec, "suite": SuiteSpec}


def group_words(group: str | None) -> str:
    return re.sub(r"_+", " ", group or "").strip()
