"""The registries: the model backends, metrics and data formats a spec may name, read from entry points.

helmflow's own and a separately installed package's register the same way, as entry points
(`importlib.metadata`) of three groups, so a plugin adds one without a line of helmflow changed
(docs/adding-a-backend-or-category.md walks through all three):

| group | an entry point's name | what it points to |
| --- | --- | --- |
| `helmflow.backends` | the backend (`backend:` of a model spec) | a `Backend` (tasks/models/base.py) |
| `helmflow.metrics` | a label (helmflow's: the category) | a `MetricRecord` or a list of them (tasks/metrics) |
| `helmflow.sources` | a data format (`format:` of an offline source) | a reader: `(path, offline source) -> rows` |

Backend and format names are the entry points' own, so listing them loads nothing (an `openai` run
never imports torch); each is loaded when it is used. Metric records are loaded the first time a
spec's `metrics:` is checked, since only the records say which names are categories and which are
metrics. This module imports nothing of tasks/: it reads a record's fields by name.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from typing import Any

BACKENDS_GROUP = "helmflow.backends"
METRICS_GROUP = "helmflow.metrics"
SOURCES_GROUP = "helmflow.sources"
OWN = "helmflow"

# helmflow's own categories, in the order result tables show them; plugins' come after (categories()).
CATEGORIES = (
    "accuracy",
    "calibration",
    "robustness",
    "fairness",
    "bias",
    "toxicity",
    "efficiency",
)
# The adapter methods (AdapterSpec.method; a test keeps the two the same). A metric applies to some of them.
# The last scores a text itself, not an answer to a question (a language model's perplexity, HELM's language
# modelling): only the metrics that say so apply to it (tasks/metrics/language_modeling.py).
METHODS = (
    "multiple_choice_joint",
    "multiple_choice_separate",
    "multiple_choice_calibrated",
    "generation",
    "language_modeling",
)


class PluginError(LookupError):
    """An entry point that cannot be used: it does not import, or it clashes with another's name.

    A LookupError, as an unknown spec name is, so every command says it in one line (flows/cli.py)."""


@dataclass(frozen=True)
class Plugin:
    """One entry point, and the distribution that declares it."""

    group: str
    name: str
    value: str  # "module:attribute"
    distribution: str
    version: str
    entry_point: metadata.EntryPoint

    @property
    def own(self) -> bool:
        return self.distribution == OWN

    def describe(self) -> str:
        return f"entry point '{self.name} = {self.value}' (group {self.group}) of {self.distribution} {self.version}"

    def load(self) -> Any:
        try:
            return self.entry_point.load()
        except Exception as exc:  # anything its import raises: the user needs to know whose it is
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())
            raise PluginError(f"{self.describe()} failed to load: {reason}") from exc


def _plugin(group: str, ep: metadata.EntryPoint) -> Plugin:
    dist = getattr(ep, "dist", None)
    name = dist.name if dist is not None else "(unknown distribution)"
    return Plugin(group, ep.name, ep.value, name, dist.version if dist is not None else "?", ep)


# While set, only helmflow's own entry points count: the published JSON Schemas list no plugin's names.
_OWN_ONLY: ContextVar[bool] = ContextVar("own_only", default=False)


@contextmanager
def own_only() -> Iterator[None]:
    token = _OWN_ONLY.set(True)
    try:
        yield
    finally:
        _OWN_ONLY.reset(token)


@cache
def _all_plugins(group: str) -> tuple[Plugin, ...]:
    found = [_plugin(group, ep) for ep in metadata.entry_points(group=group)]
    return tuple(sorted(found, key=lambda p: (not p.own, p.distribution, p.name)))


def plugins(group: str) -> tuple[Plugin, ...]:
    """A group's entry points: helmflow's own first, then other distributions', each sorted by name."""
    found = _all_plugins(group)
    return tuple(p for p in found if p.own) if _OWN_ONLY.get() else found


def refresh() -> None:
    """Read the entry points again (after a test changed sys.path, say)."""
    _all_plugins.cache_clear()
    _named.cache_clear()
    _metrics.cache_clear()


def _names(group: str) -> dict[str, Plugin]:
    return _named(group, _OWN_ONLY.get())


@cache
def _named(group: str, own_only: bool) -> dict[str, Plugin]:
    """Name -> entry point; two distributions giving one name is refused, naming both.

    `own_only` keys the cache only: plugins() reads the same setting."""
    named: dict[str, Plugin] = {}
    for plugin in plugins(group):
        if plugin.name in named:
            first = named[plugin.name]
            raise PluginError(f"{plugin.describe()} clashes with {first.describe()}: both name '{plugin.name}'")
        named[plugin.name] = plugin
    return named


def backend_names() -> tuple[str, ...]:
    return tuple(_names(BACKENDS_GROUP))


def source_names() -> tuple[str, ...]:
    return tuple(_names(SOURCES_GROUP))


def backend(name: str) -> Plugin:
    """The entry point of a backend (KeyError for an unknown name: callers check backend_names first)."""
    return _names(BACKENDS_GROUP)[name]


def source(name: str) -> Plugin:
    return _names(SOURCES_GROUP)[name]


# -- metrics -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricInfo:
    """What the spec language and the listings need of a metric record, and the record itself."""

    name: str
    category: str
    higher_is_better: bool
    display_name: str
    methods: tuple[str, ...]
    description: str
    named_only: bool  # a category does not stand for it (scoring.MetricRecord.named_only)
    plugin: Plugin
    record: Any  # a tasks.metrics.scoring.MetricRecord: scoring reads its functions


def _info(plugin: Plugin, record: Any) -> MetricInfo:
    try:
        info = MetricInfo(
            name=record.name,
            category=record.category,
            higher_is_better=bool(record.higher_is_better),
            display_name=record.display_name or record.name,
            methods=tuple(record.methods),
            description=getattr(record, "description", ""),
            named_only=bool(getattr(record, "named_only", False)),
            plugin=plugin,
            record=record,
        )
    except AttributeError as exc:
        raise PluginError(f"{plugin.describe()} gives {type(record).__name__}, not a MetricRecord: {exc}") from None
    for field in ("name", "category"):
        value = getattr(info, field)
        if not isinstance(value, str) or not value or value != "".join(value.split()):
            raise PluginError(f"{plugin.describe()}: metric {field} {value!r} is not a name (text without spaces)")
    unknown = [m for m in info.methods if m not in METHODS]
    if unknown or not info.methods:
        raise PluginError(
            f"{plugin.describe()}: metric '{info.name}' methods {list(info.methods)} are not adapter methods "
            f"(some of {', '.join(METHODS)})"
        )
    return info


def _records(plugin: Plugin) -> list[Any]:
    value = plugin.load()
    return list(value) if isinstance(value, list | tuple) else [value]


def metrics() -> dict[str, MetricInfo]:
    """Every metric by name, in scoring order: by category (categories()), then as declared.

    A name given twice, or a metric named like a category, is refused: `metrics:` names both kinds.
    """
    return _metrics(_OWN_ONLY.get())


@cache
def _metrics(own_only: bool) -> dict[str, MetricInfo]:  # own_only keys the cache, as in _named
    found: dict[str, MetricInfo] = {}
    for plugin in plugins(METRICS_GROUP):
        for record in _records(plugin):
            info = _info(plugin, record)
            if info.name in found:
                first = found[info.name]
                whose = "helmflow's own metric" if first.plugin.own else f"the metric of {first.plugin.describe()}"
                raise PluginError(
                    f"{plugin.describe()}: metric '{info.name}' clashes with {whose} '{first.name}' "
                    f"(category {first.category}); a plugin's metric needs a name of its own"
                )
            found[info.name] = info
    clash = [i for i in found.values() if i.name in {j.category for j in found.values()} | set(CATEGORIES)]
    if clash:
        raise PluginError(f"{clash[0].plugin.describe()}: metric '{clash[0].name}' has the name of a category")
    order = {c: k for k, c in enumerate(_categories_of(found.values()))}
    return {i.name: i for i in sorted(found.values(), key=lambda i: order[i.category])}  # stable: declared order


def _categories_of(infos: Iterable[MetricInfo]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*CATEGORIES, *(i.category for i in infos)]))


def categories() -> tuple[str, ...]:
    """helmflow's categories in table order, then those plugins add, in the order they were found."""
    return _categories_of(metrics().values())


def metric_names() -> tuple[str, ...]:
    return tuple(metrics())


def spec_metric_names() -> tuple[str, ...]:
    """What `metrics:` may name: the categories, then the metrics."""
    return categories() + metric_names()


def unknown_metric(name: str) -> str | None:
    """Why `name` is neither a category nor a metric, or None when it is one."""
    known = categories()
    names = metric_names()
    if name in known or name in names:
        return None
    close = difflib.get_close_matches(name, [*known, *names], n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return (
        f"unknown metric or category '{name}'{hint} (categories: {', '.join(known)}; metrics: {', '.join(names)}; "
        f"a plugin adds metrics through the entry point group {METRICS_GROUP})"
    )


def inapplicable(names: Sequence[str], method: str) -> str | None:
    """Why a metric named on its own cannot be measured with this adapter method, or None."""
    for name in names:
        info = metrics().get(name)
        if info is not None and method not in info.methods:
            applies = ", ".join(info.methods)
            return f"metric '{name}' does not apply to adapter method {method} (it applies to {applies})"
    return None


def selected(names: Sequence[str], main_metric: str, method: str) -> list[MetricInfo]:
    """The metrics a spec's `metrics:` asks for, in scoring order (categories(), accuracy first).

    A category stands for its metrics that apply to the adapter method, less those computed only where they
    are named (MetricRecord.named_only: ROUGE-2, classification F1). The main metric is always
    measured: other categories read it. A spec that names only categories also gets the whole of
    accuracy, as every spec did before single metrics could be named.
    """
    every = metrics()
    wanted_categories = {n for n in names if n in categories()}
    singles = {n for n in names if n not in wanted_categories}
    if not singles:
        wanted_categories.add("accuracy")
    chosen = singles | {main_metric}
    return [
        info
        for info in every.values()
        if info.name in chosen
        or (info.category in wanted_categories and method in info.methods and not info.named_only)
    ]


def measured_categories(names: Sequence[str], main_metric: str, method: str) -> set[str]:
    """The categories with at least one metric the spec asks for (what a run must prepare: perturbations, a
    toxicity classifier)."""
    return {info.category for info in selected(names, main_metric, method)}
