"""Jinja2 in specs, sandboxed: how a field of the spec reads a value out of a data row.

A field value in a spec is one of three things:
- a column name of the row (`question`, or `#1 String`, `Tweet text`: any key the row has); in a template,
  `row['Tweet text']` reads a column whose name is no Jinja name;
- a text template, when it contains `{{` or `{%` (`"{{ passage }}\\nQuestion: {{ question }}?"`);
- otherwise a Jinja expression giving any value (`choices.text`, `['no', 'yes']`, `label | int`).

Templates run in Jinja's immutable sandbox with no loader, so a spec cannot call unsafe methods,
reach Python internals through `__class__` and friends, read files or change data. Templates are
also checked when a spec is loaded: names with a leading underscore, `include`, `import` and
`extends` are refused there, with the field named.

Templates are also bounded, so that a spec cannot make rendering run for minutes or fill memory
(`{{ question * 10**9 }}`, `{{ 9 ** 9 ** 9 }}`, loops in loops). The sandbox's own hooks do it:
- `*`, `**`, `%` and `+` are intercepted (`call_binop`) and refused *before* computing a result
  larger than MAX_VALUE_SIZE characters or items, or an integer of more than MAX_INT_BITS bits;
- calls (`call`) and filters are checked the same way: widths (`center`, `'%09999d'`, `'{:>9999}'`)
  are at most MAX_FIELD_CHARS, `range` and `lipsum` are bounded, `replace` and `join` are sized
  before they run, and only builtin methods that cannot build huge values may be called;
- every value a template builds counts against MAX_RENDER_ALLOCATION for the rendering, and a
  rendering stops after RENDER_SECONDS (checked in every hook and in every loop iteration);
- a rendered field is at most MAX_FIELD_CHARS characters, checked as the text streams out.
Literal payloads (`'a' * 10**10`, `range(10**6)`) are refused when the spec is loaded; the rest
stop while rendering, with the row and the field named.

A rendered text template is a TemplateText: it knows which of its characters are the row's own text
(what `{{ ... }}` printed) and which are scaffold (the template's literal text, and what the
`scaffold` and `scaffold_around` filters mark), so that perturbations change only the former.
"""

from __future__ import annotations

import math
import re
import string
import time
import types
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache, lru_cache, wraps
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, filters, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.runtime import LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace, generate_lorem_ipsum, pass_environment, pass_eval_context
from jinja2.visitor import NodeTransformer

# A field value that is a column's name even though it is no Jinja expression: words, digits, spaces and
# punctuation that Jinja gives no meaning to (RAFT's "Tweet text", "Abstract Note").
_COLUMN_NAME = re.compile(r"[\w#][\w# .\-/?:,;&]*")
# A rendered field (a prompt, an option, a reference) is at most this many characters.
MAX_FIELD_CHARS = 100_000
# Any one string or list a template builds on the way (counting shared parts each time they appear).
MAX_VALUE_SIZE = 1_000_000
# All the values one rendering builds, together: bounds loops that grow a value step by step.
MAX_RENDER_ALLOCATION = 10_000_000
# Wall time of one rendering of one field for one row.
RENDER_SECONDS = 2.0
# Integers: 100,000 bits is about 30,000 digits, far past any number a field needs.
MAX_INT_BITS = 100_000
# The longest range() (Jinja's sandbox has the same limit).
MAX_RANGE = 100_000
MAX_LIPSUM_PARAGRAPHS = 100
MAX_LIPSUM_WORDS = 1_000


class TemplateError(ValueError):
    """A template that is unsafe, malformed, or fails on a row; the message names the field."""


class TemplateLimitError(SecurityError):
    """A template stopped before it uses too much time or memory; value_of adds the field and row.

    A SecurityError, not a ValueError, so that filters which catch ValueError (`int`, `float`)
    cannot swallow it.
    """


# -- the current rendering's clock and allocation count --------------------------------------------


@dataclass
class _Render:
    deadline: float
    built: int = 0


# A context variable, not a global: renderings in different threads keep their own count.
_RENDER: ContextVar[_Render | None] = ContextVar("helmflow_template_render", default=None)


@contextmanager
def _rendering() -> Iterator[None]:
    token = _RENDER.set(_Render(deadline=time.monotonic() + RENDER_SECONDS))
    try:
        yield
    finally:
        _RENDER.reset(token)


def _tick() -> None:
    """Stop a rendering that has run out of time (outside a rendering, e.g. constant folding, no clock)."""
    state = _RENDER.get()
    if state is not None and time.monotonic() > state.deadline:
        raise TemplateLimitError(f"it ran longer than {RENDER_SECONDS:g} s")


_TEXT = (str, bytes, bytearray)
_VIEWS = (type({}.keys()), type({}.values()), type({}.items()))
_SEQUENCES = (list, tuple, set, frozenset, *_VIEWS)


def size_of(value: Any, limit: int = MAX_VALUE_SIZE) -> int:
    """About how long `value` is as text, shared parts counted each time; stops soon after `limit`.

    Sharing is what makes `[s] * n` cheap to build and huge to print, so it must count.
    Only type checks and len() are used: a value may be an Undefined, which fails on anything else.
    """
    total, stack = 0, [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, _TEXT):
            total += len(item)
        elif isinstance(item, dict):
            total += len(item)
            if total <= limit:
                stack.extend(item.keys())
                stack.extend(item.values())
        elif isinstance(item, _SEQUENCES):
            total += len(item)
            if total <= limit:
                stack.extend(item)
        elif isinstance(item, range):
            total += len(item)
        elif isinstance(item, bool | float | complex) or item is None:
            total += 1
        elif isinstance(item, int):
            total += 1 + item.bit_length() // 3  # about its decimal digits
        elif isinstance(item, Namespace):
            stack.append(item._Namespace__attrs)  # type: ignore[attr-defined]
        else:
            total += 1
    return total


def _check_size(size: int, what: str) -> None:
    if size > MAX_VALUE_SIZE:
        raise TemplateLimitError(f"{what} would be {size:,} characters or items long (the limit is {MAX_VALUE_SIZE:,})")


def _built(value: Any) -> Any:
    """Count a value the template made against the per-value and per-rendering bounds; return it."""
    _tick()
    size = size_of(value)
    _check_size(size, "a value it builds")
    state = _RENDER.get()
    if state is not None:
        state.built += size
        if state.built > MAX_RENDER_ALLOCATION:
            raise TemplateLimitError(f"it builds more than {MAX_RENDER_ALLOCATION:,} characters or items in all")
    return value


def _check_inputs(values: Iterable[Any]) -> None:
    for value in values:
        _check_size(size_of(value), "an argument")


# -- sizes of results, worked out before computing them ---------------------------------------------


def _check_width(width: Any) -> None:
    if isinstance(width, int) and width > MAX_FIELD_CHARS:
        raise TemplateLimitError(f"a width of {width:,} (the limit is {MAX_FIELD_CHARS:,})")


def _check_multiply(left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int):
        bits = left.bit_length() + right.bit_length()
        if bits > MAX_INT_BITS:
            raise TemplateLimitError(f"a product of about {bits:,} bits (the limit is {MAX_INT_BITS:,})")
        return
    for seq, times in ((left, right), (right, left)):
        if isinstance(seq, (*_TEXT, list, tuple)) and isinstance(times, int) and times > 0:
            # An empty value still counts 1: repeating it 10**20 times is refused like any huge repeat.
            _check_size(max(size_of(seq), 1) * times, f"repeating a value {times:,} times")


def _check_power(base: Any, exponent: Any) -> None:
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        bits = exponent * math.log2(abs(base))
        if bits > MAX_INT_BITS:
            raise TemplateLimitError(f"a power of about {bits:,.0f} bits (the limit is {MAX_INT_BITS:,})")


# `%` conversions: %(name)-08.3f and friends; `*` takes the width from the arguments.
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?([a-zA-Z%])")


def _largest(values: Iterable[Any]) -> int:
    return max((size_of(v) for v in values), default=0)


def _check_percent(fmt: str | bytes, args: Any) -> None:
    """`fmt % args`: every width and precision bounded, the result sized (each conversion can show any argument)."""
    text = fmt.decode("latin-1") if isinstance(fmt, bytes) else fmt
    conversions, widths = 0, 0
    for match in _PERCENT_SPEC.finditer(text):
        width, precision, kind = match.groups()
        if kind == "%":
            continue
        if "*" in (width, precision):
            raise TemplateLimitError("a '*' width in % formatting is not allowed in a field template")
        for number in (int(width or 0), int(precision or 0)):
            _check_width(number)
            widths += number
        conversions += 1
    values = args.values() if isinstance(args, dict) else args if isinstance(args, tuple) else (args,)
    _check_size(len(text) + widths + conversions * _largest(values), "the formatted text")


def _check_format(fmt: str, args: Iterable[Any]) -> None:
    """`fmt.format(...)`: as `%`, and a width taken from an argument (`{:>{}}`) is not allowed."""
    fields, widths = 0, 0
    for _, name, spec, _ in string.Formatter().parse(fmt):
        if name is None:
            continue
        if spec and "{" in spec:
            raise TemplateLimitError("a width taken from an argument ('{:{}}') is not allowed in a field template")
        numbers = [int(n) for n in re.findall(r"\d+", spec or "")]
        for number in numbers:
            _check_width(number)
        widths += max(numbers, default=0)
        fields += 1
    _check_size(len(fmt) + widths + fields * _largest(args), "the formatted text")


def _check_replace(text: Any, old: Any, new: Any, count: Any) -> None:
    kind = str if isinstance(text, str) else bytes if isinstance(text, bytes | bytearray) else None
    if kind and isinstance(old, kind) and isinstance(new, kind) and len(new) > len(old):
        times = text.count(old)  # counts len + 1 places for old == ''
        if isinstance(count, int) and count >= 0:
            times = min(times, count)
        _check_size(len(text) + times * (len(new) - len(old)), "the replaced text")


def _check_join(separator: Any, items: list[Any]) -> None:
    total = len(separator) * max(len(items) - 1, 0) if isinstance(separator, _TEXT) else 0
    for item in items:
        total += size_of(item)
        if total > MAX_VALUE_SIZE:
            break
    _check_size(total, "the joined text")


def _check_range(*args: int) -> range:
    numbers = range(*args)
    try:
        count = len(numbers)
    except OverflowError:  # more numbers than an index can hold
        count = MAX_RANGE + 1
    if count > MAX_RANGE:
        raise TemplateLimitError(f"a range of more than {MAX_RANGE:,} numbers")
    return numbers


def _check_lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> None:
    # The same parameters as Jinja's lipsum(), so that a call's arguments can be checked as they are.
    if n > MAX_LIPSUM_PARAGRAPHS or min > MAX_LIPSUM_WORDS or max > MAX_LIPSUM_WORDS:
        limits = f"{MAX_LIPSUM_PARAGRAPHS} paragraphs of {MAX_LIPSUM_WORDS:,} words"
        raise TemplateLimitError(f"lipsum() of more than {limits}")


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    _check_lipsum(n, html, min, max)
    return str(generate_lorem_ipsum(n, html, min, max))


# -- methods of builtin values: those that cannot build huge values, and those sized first ---------

_BUILTIN_VALUES = (str, bytes, bytearray, int, float, complex, list, tuple, dict, set, frozenset)
_SAFE_METHODS = frozenset(
    {
        # str and bytes: results no longer than the value (or a few times it, for encode and hex)
        *("capitalize", "casefold", "count", "decode", "encode", "endswith", "find", "index", "isalnum"),
        *("isalpha", "isascii", "isdecimal", "isdigit", "isidentifier", "islower", "isnumeric", "isprintable"),
        *("isspace", "istitle", "isupper", "lower", "lstrip", "partition", "removeprefix", "removesuffix"),
        *("rfind", "rindex", "rpartition", "rsplit", "rstrip", "split", "splitlines", "startswith", "strip"),
        *("swapcase", "title", "upper"),
        # numbers
        *("bit_length", "bit_count", "as_integer_ratio", "conjugate", "is_integer", "hex", "fromhex"),
        # lists, dicts and sets (the immutable sandbox already refuses the methods that change them)
        *("copy", "get", "items", "keys", "values", "union", "intersection", "difference"),
        *("symmetric_difference", "isdisjoint", "issubset", "issuperset"),
    }
)

Arguments = tuple[tuple[Any, ...], dict[str, Any]]


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, default: Any) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


def _sized_pad(owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Arguments:
    _check_width(_arg(args, kwargs, 0, "width", 0))
    return args, kwargs


def _sized_expandtabs(owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Arguments:
    tabsize = _arg(args, kwargs, 0, "tabsize", 8)
    if isinstance(tabsize, int):
        _check_width(tabsize)
        tabs = owner.count("\t" if isinstance(owner, str) else b"\t")
        _check_size(len(owner) + tabs * tabsize, "the expanded text")
    return args, kwargs


def _sized_replace(owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Arguments:
    old, new = _arg(args, kwargs, 0, "old", ""), _arg(args, kwargs, 1, "new", "")
    _check_replace(owner, old, new, _arg(args, kwargs, 2, "count", -1))
    return args, kwargs


def _sized_join(owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Arguments:
    if len(args) != 1 or kwargs:
        return args, kwargs  # str.join raises its own TypeError
    items = list(_Ticking(args[0]))  # a generator can be read once: size the list, then join it
    _check_join(owner, items)
    return (items,), {}


def _sized_format(owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Arguments:
    if isinstance(owner, str):
        _check_format(owner, (*args, *kwargs.values()))
    return args, kwargs


def _sized_format_map(owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Arguments:
    if isinstance(owner, str) and len(args) == 1 and isinstance(args[0], dict):
        _check_format(owner, args[0].values())
    return args, kwargs


_SIZED_METHODS: dict[str, Callable[[Any, tuple[Any, ...], dict[str, Any]], Arguments]] = {
    "center": _sized_pad,
    "ljust": _sized_pad,
    "rjust": _sized_pad,
    "zfill": _sized_pad,
    "expandtabs": _sized_expandtabs,
    "replace": _sized_replace,
    "join": _sized_join,
    "format": _sized_format,
    "format_map": _sized_format_map,
}


def _builtin_method(obj: Any) -> tuple[Any, str] | None:
    """The builtin value a method is bound to and the method's name (the sandbox wraps str.format)."""
    target = getattr(obj, "__wrapped__", obj)
    owner = getattr(target, "__self__", None)
    if isinstance(target, types.BuiltinMethodType) and isinstance(owner, _BUILTIN_VALUES):
        return owner, target.__name__
    return None


def _check_method(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Arguments:
    found = _builtin_method(obj)
    if found is None:
        return args, kwargs
    owner, name = found
    if name in _SIZED_METHODS:
        return _SIZED_METHODS[name](owner, args, kwargs)
    if name not in _SAFE_METHODS:
        raise TemplateLimitError(f"the method .{name}() is not allowed in a field template")
    return args, kwargs


# -- filters that take a size, replaced by sized versions ------------------------------------------


def _center(value: str, width: int = 80) -> str:
    _check_width(width)
    return filters.do_center(value, width)


def _indent(s: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    step = len(width) if isinstance(width, str) else width
    _check_width(step)
    if isinstance(s, str) and isinstance(step, int):
        _check_size(len(s) + (s.count("\n") + 1) * step, "the indented text")
    return filters.do_indent(s, width, first, blank)


def _format(value: str, *args: Any, **kwargs: Any) -> str:
    if isinstance(value, str):
        _check_percent(value, kwargs or args)
    return filters.do_format(value, *args, **kwargs)


@pass_environment
def _wordwrap(
    environment: Any,
    s: str,
    width: int = 79,
    break_long_words: bool = True,
    wrapstring: str | None = None,
    break_on_hyphens: bool = True,
) -> str:
    if isinstance(s, str) and isinstance(width, int):
        breaks = len(s) // max(width, 1) + s.count("\n") + 1
        _check_size(len(s) + breaks * len(wrapstring or "\n"), "the wrapped text")
    return filters.do_wordwrap(environment, s, width, break_long_words, wrapstring, break_on_hyphens)


def _batch(value: Iterable[Any], linecount: int, fill_with: Any = None) -> Iterator[list[Any]]:
    if isinstance(linecount, int) and linecount > MAX_RANGE:
        raise TemplateLimitError(f"batches of more than {MAX_RANGE:,} items")
    return filters.do_batch(value, linecount, fill_with)


def _slice(value: Iterable[Any], slices: int, fill_with: Any = None) -> Iterator[list[Any]]:
    if isinstance(slices, int) and slices > MAX_RANGE:
        raise TemplateLimitError(f"more than {MAX_RANGE:,} slices")
    return filters.sync_do_slice(value, slices, fill_with)  # type: ignore[arg-type]


@pass_eval_context
def _replace(eval_ctx: Any, s: str, old: str, new: str, count: int | None = None) -> str:
    _check_replace(str(s), str(old), str(new), -1 if count is None else count)
    return filters.do_replace(eval_ctx, s, old, new, count)


@pass_eval_context
def _join(eval_ctx: Any, value: Iterable[Any], d: str = "", attribute: str | int | None = None) -> str:
    items = list(_Ticking(value))
    _check_join(d, items)
    return filters.sync_do_join(eval_ctx, items, d, attribute)


@pass_environment
def _sum(environment: Any, iterable: Iterable[Any], attribute: str | int | None = None, start: Any = 0) -> Any:
    items = list(_Ticking(iterable))
    if not isinstance(start, int | float):
        # Summing lists copies the running total at each step: bound its size, and that copying.
        total = size_of(start) + sum(size_of(item) for item in items)
        _check_size(total, "the sum")
        if total * len(items) > 100 * MAX_VALUE_SIZE:
            raise TemplateLimitError(f"summing {len(items):,} lists of {total:,} items in all copies too much")
    return filters.sync_do_sum(environment, items, attribute, start)


@pass_eval_context
def _tojson(eval_ctx: Any, value: Any, indent: int | None = None) -> Any:
    if isinstance(indent, int) and indent > 8:
        raise TemplateLimitError("a tojson indent of more than 8")
    return filters.do_tojson(eval_ctx, value, indent)


_SIZED_FILTERS: dict[str, Callable[..., Any]] = {
    "center": _center,
    "indent": _indent,
    "format": _format,
    "wordwrap": _wordwrap,
    "batch": _batch,
    "slice": _slice,
    "replace": _replace,
    "join": _join,
    "sum": _sum,
    "tojson": _tojson,
}


def _guarded_filter(func: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that checks the clock and its inputs' sizes first, and counts what it built."""

    @wraps(func)  # keeps jinja_pass_arg, so Jinja still passes the context or environment first
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _tick()
        _check_inputs((*args, *kwargs.values()))
        return _built(func(*args, **kwargs))

    return guarded


# -- scaffold and the row's own text ----------------------------------------------------------------

# A piece of rendered text and whether it is the row's own text (True) or scaffold (False).
Part = tuple[str, bool]


class TemplateText(str):
    """A rendered text template that knows which of its characters are scaffold.

    `parts` are (text, own) pairs that join to the string: `own` is True for what `{{ ... }}` printed
    from the row (the instance's own words: a question, a passage) and False for scaffold: the
    template's literal text ("Q: ", "\\nA:"), also inside macros and `{% set %}` blocks, and what the
    `scaffold` and `scaffold_around` filters mark. Perturbations change only the row's text
    (tasks/perturb), so that a prompt's scaffold is byte-identical under every perturbation.

    Everything else sees an ordinary string: equal to, and hashed as, the same plain text. `str()`
    returns the object itself, so that code which keeps `str(value)` (tasks/data.py builds an
    instance's input so) keeps the parts; slicing, string methods, `~` and `+` give plain strings, whose
    text then counts as the row's.
    """

    parts: tuple[Part, ...]

    def __new__(cls, parts: Iterable[Part]) -> TemplateText:
        # Neighbours of one kind are merged, each run joined once (adding piece by piece would be
        # quadratic, and a loop may print 100,000 pieces).
        merged: list[Part] = []
        run: list[str] = []
        kind = False
        for text, own in parts:
            if text:
                if run and own != kind:
                    merged.append(("".join(run), kind))
                    run = []
                run.append(text)
                kind = own
        if run:
            merged.append(("".join(run), kind))
        self = super().__new__(cls, "".join(text for text, _ in merged))
        self.parts = tuple(merged)
        return self

    def __str__(self) -> str:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (TemplateText, (self.parts,))


def text_parts(value: str) -> tuple[Part, ...]:
    """A text's (text, own) parts: a TemplateText's own, or all of a plain string as the row's text
    (a column used as it is, `input: question`, is the row's text whole)."""
    if isinstance(value, TemplateText):
        return value.parts
    return ((value, True),) if value else ()


def _printable(value: Any) -> str:
    if value is None:  # as _finalize: a null printed into a prompt is an error, not the text "None"
        raise UndefinedError("a value printed by the template is null")
    return str(value)  # an Undefined (a missing or null column) raises here, naming it


def _scaffold(value: Any) -> TemplateText:
    """`{{ x | scaffold }}`: x printed as scaffold, as if written in the template (a list of options the
    template itself prints, which perturbations should leave as the scored options are)."""
    return TemplateText([(_printable(value), False)])


def _scaffold_around(value: Any, own: Any) -> TemplateText:
    """`{{ prompt | scaffold_around(input) }}`: value whose first occurrence of `own` is the row's text and
    the rest scaffold. A BIG-bench `prompt` holds the task's prefixes and listed choices around the
    example's `input`; only the input is the instance's own text. Where `own` does not occur, all of
    value is the row's text, as a plain `{{ value }}` would be."""
    text, inner = _printable(value), _printable(own)
    at = text.find(inner)  # an empty input is found at 0: all of value is scaffold
    if at < 0:
        return TemplateText([(text, True)])
    return TemplateText([(text[:at], False), (inner, True), (text[at + len(inner) :], False)])


_SCAFFOLD_FILTERS: dict[str, Callable[..., Any]] = {"scaffold": _scaffold, "scaffold_around": _scaffold_around}


def _joined(chunks: Iterable[str]) -> str:
    """Jinja's concat for what macros and `{% set %}` blocks collect: their template text stays scaffold."""
    items = list(chunks)
    if not any(isinstance(item, TemplateText) for item in items):
        return "".join(items)
    return TemplateText(part for item in items for part in text_parts(item))


# -- the environment: hooks, and the template tree rewritten so that loops, `~` and text are counted -


class _Ticking:
    """An iterable whose every step checks the clock: nested loops stop even when they output nothing."""

    def __init__(self, iterable: Iterable[Any]) -> None:
        self._iterable = iterable

    def __iter__(self) -> Iterator[Any]:
        for item in self._iterable:
            _tick()
            yield item

    def __len__(self) -> int:  # loop.length reads it; a generator's TypeError makes LoopContext count
        return len(self._iterable)  # type: ignore[arg-type]


def _concat(*parts: Any) -> str:
    """`a ~ b`, sized before anything is turned into text."""
    _check_size(sum(size_of(part) for part in parts), "the joined text")
    return _built("".join(map(str, parts)))


@lru_cache(maxsize=4096)
def _literal(text: str) -> TemplateText:
    """Template text, returned through a call so that it goes through finalize (and is counted), marked
    as scaffold (Jinja prints it with str(), which keeps a TemplateText). Cached: a loop prints the same
    template text once per step, and a rendering may take 100,000 steps."""
    return TemplateText([(text, False)])


def _finalize(value: Any) -> Any:
    """Every `{{ ... }}` and text piece on its way out, in templates and in macros alike.

    A null printed into a prompt would become the text "None": it is an error instead (a spec that
    means to allow nulls says so with `| default('')` or `is none`).
    """
    if value is None:
        raise UndefinedError("a value printed by the template is null")
    return _built(value)


# The internal helpers the rewritten tree calls (as environment attributes; templates cannot name them).
_HELPERS: dict[str, Callable[..., Any]] = {
    "helmflow_iter": _Ticking,
    "helmflow_concat": _concat,
    "helmflow_literal": _literal,
    "helmflow_value": _built,
}


def _helper_call(name: str, *args: nodes.Expr, lineno: int) -> nodes.Call:
    return nodes.Call(nodes.EnvironmentAttribute(name, lineno=lineno), list(args), [], None, None, lineno=lineno)


_LITERAL_NODES = (nodes.Const, nodes.List, nodes.Tuple, nodes.Dict, nodes.Pair)


class _Guard(NodeTransformer):
    """Route the places the sandbox has no hook for through the helpers above.

    - a `for` loop iterates through helmflow_iter (a clock check per step);
    - `a ~ b` goes through helmflow_concat (Jinja joins it with str() and no hook);
    - template text (and a printed constant) goes through helmflow_literal, so that finalize counts it
      too (macros and `{% set %}` blocks collect text without any hook), and it is marked as scaffold;
    - a list, tuple or dict literal holding variables goes through helmflow_value: `[b, b, b]`
      shares b three times, and three levels of that are a billion characters to print.
    """

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _helper_call("helmflow_iter", node.iter, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _helper_call("helmflow_concat", *node.nodes, lineno=node.lineno)

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        node.nodes = [self._printed(child) for child in node.nodes]
        return node

    @staticmethod
    def _printed(child: nodes.Expr) -> nodes.Expr:
        # Text written in the spec is scaffold, whether as template text or as a printed constant ({{ 'Q:' }}).
        if isinstance(child, nodes.TemplateData):
            text = child.data
        elif isinstance(child, nodes.Const) and child.value is not None:
            text = str(child.value)
        else:
            return child
        return _helper_call("helmflow_literal", nodes.Const(text, lineno=child.lineno), lineno=child.lineno)

    def _sized_literal(self, node: nodes.Expr) -> nodes.Node:
        self.generic_visit(node)
        if isinstance(node, nodes.Tuple) and node.ctx != "load":  # an assignment target
            return node
        if all(isinstance(child, _LITERAL_NODES) for child in node.find_all(nodes.Node)):
            return node  # constants only: as big as the spec's text, no bigger
        return _helper_call("helmflow_value", node, lineno=node.lineno)

    visit_List = visit_Tuple = visit_Dict = _sized_literal


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%", "+"})
    concat = staticmethod(_joined)

    def __init__(self) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True, finalize=_finalize)
        # Filters that take a size get sized versions; then every filter checks the clock and counts
        # what it builds (map() and select() look filters up here by name, so they get these too).
        self.filters.update(_SIZED_FILTERS)
        self.filters.update(_SCAFFOLD_FILTERS)
        self.filters = {name: _guarded_filter(func) for name, func in self.filters.items()}
        self.globals["range"] = _check_range
        self.globals["lipsum"] = _lipsum
        for name, helper in _HELPERS.items():
            setattr(self, name, helper)

    def _generate(
        self, source: nodes.Template, name: str | None, filename: str | None, defer_init: bool = False
    ) -> str:
        # Every template and expression compiles through here (compile_expression too).
        tree = _Guard().visit(source)
        tree.set_environment(self)
        return super()._generate(tree, name, filename, defer_init)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _tick()
        if operator == "*":
            _check_multiply(left, right)
        elif operator == "**":
            _check_power(left, right)
        elif operator == "%" and isinstance(left, str | bytes):
            _check_percent(left, right)
        return _built(super().call_binop(context, operator, left, right))

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        _tick()
        # Inside loops and blocks Jinja passes its scope along for Context.call; it is not an argument.
        scope = {key: kwargs.pop(key) for key in ("_loop_vars", "_block_vars") if key in kwargs}
        if any(obj is helper for helper in _HELPERS.values()):  # identity: `obj` may be unhashable, or Undefined
            return obj(*args, **kwargs)
        if isinstance(obj, LoopContext) and args:  # loop(children) in a recursive loop iterates again
            args = (_Ticking(args[0]), *args[1:])
        _check_inputs((*args, *kwargs.values()))
        args, kwargs = _check_method(obj, args, kwargs)
        return _built(super().call(context, obj, *args, **kwargs, **scope))


@cache
def environment() -> ImmutableSandboxedEnvironment:
    return _BoundedEnvironment()


def is_template(value: str) -> bool:
    return "{{" in value or "{%" in value


# -- load-time checks ------------------------------------------------------------------------------

_FORBIDDEN_NODES = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)


def check(value: str, where: str) -> None:
    """Refuse, at spec load time, a template or expression that reaches for internals or files, or whose
    literal numbers already break a bound (`'a' * 10**10`); the rest of the bounds hold while rendering."""
    source = value if is_template(value) else "{{ " + value + " }}"
    try:
        tree = environment().parse(source)
    except TemplateSyntaxError as exc:
        if not is_template(value) and _COLUMN_NAME.fullmatch(value):
            return  # a column whose name is no expression ("Tweet text"): read as it is, or "not a field of the row"
        raise TemplateError(f"{where}: not a valid template or expression: {exc.message}") from None
    for node in tree.find_all((nodes.Getattr, nodes.Name, nodes.Const, *_FORBIDDEN_NODES)):
        if isinstance(node, _FORBIDDEN_NODES):
            raise TemplateError(f"{where}: templates cannot include, import or extend other templates")
        name = getattr(node, "attr", None) or getattr(node, "name", None)
        if isinstance(node, nodes.Const) and isinstance(node.value, str):
            name = node.value if node.value.startswith("__") else None  # x['__class__']
        if isinstance(name, str) and name.startswith("_"):
            raise TemplateError(f"{where}: '{name}' is not allowed in a template (no access to Python internals)")
    try:
        _check_constants(tree)
    except TemplateLimitError as exc:
        raise TemplateError(f"{where}: template refused: {exc}") from None


def _static_int(node: nodes.Node) -> int | None:
    """The value of an integer written in the template (`10**9`, `-3`), bounded as at render; else None."""
    if isinstance(node, nodes.Const):
        return node.value if isinstance(node.value, int) else None
    if isinstance(node, nodes.Neg | nodes.Pos):
        value = _static_int(node.node)
        return None if value is None else -value if isinstance(node, nodes.Neg) else value
    if isinstance(node, nodes.Add | nodes.Sub | nodes.Mul | nodes.Pow):
        left, right = _static_int(node.left), _static_int(node.right)
        if left is None or right is None:
            return None
        if isinstance(node, nodes.Add):
            return left + right
        if isinstance(node, nodes.Sub):
            return left - right
        if isinstance(node, nodes.Mul):
            _check_multiply(left, right)
            return left * right
        _check_power(left, right)
        return left**right if right >= 0 else None
    return None


def _literal_size(node: nodes.Node) -> int | None:
    if isinstance(node, nodes.Const) and isinstance(node.value, str):
        return len(node.value)
    if isinstance(node, nodes.List | nodes.Tuple):
        return len(node.items)
    return None


def _check_constants(tree: nodes.Template) -> None:
    """Refuse what the spec's text alone shows to be too big: `'a' * 10**10`, `9 ** 9 ** 9`, `range(10**6)`."""
    for node in tree.find_all((nodes.Mul, nodes.Pow, nodes.Mod, nodes.Call)):
        if isinstance(node, nodes.Pow):
            _static_int(node)
        elif isinstance(node, nodes.Mul):
            for seq, times in ((node.left, node.right), (node.right, node.left)):
                size, count = _literal_size(seq), _static_int(times)
                if size is not None and count is not None and count > 0:
                    _check_size(max(size, 1) * count, f"repeating a value {count:,} times")
        elif isinstance(node, nodes.Mod):
            if isinstance(node.left, nodes.Const) and isinstance(node.left.value, str):
                _check_percent(node.left.value, ())
        else:
            _check_constant_call(node)


def _check_constant_call(node: nodes.Call) -> None:
    callee = node.node
    if isinstance(callee, nodes.Name) and callee.name in ("range", "lipsum"):
        args = [_static_int(a) for a in node.args]
        kwargs = {k.key: _static_int(k.value) for k in node.kwargs}
        if all(v is not None for v in (*args, *kwargs.values())) and not node.dyn_args and not node.dyn_kwargs:
            with suppress(TypeError):  # wrong arguments: rendering says so
                (_check_range if callee.name == "range" else _check_lipsum)(*args, **kwargs)  # type: ignore[arg-type]
    elif (
        isinstance(callee, nodes.Getattr)
        and callee.attr in ("format", "format_map")
        and isinstance(callee.node, nodes.Const)
        and isinstance(callee.node.value, str)
    ):
        with suppress(ValueError):  # a malformed format string: rendering says so
            _check_format(callee.node.value, ())


# -- rendering -------------------------------------------------------------------------------------


@lru_cache(maxsize=512)
def _template(source: str) -> Any:
    return environment().from_string(source)


@lru_cache(maxsize=512)
def _expression(source: str) -> Any:
    return environment().compile_expression(source, undefined_to_none=False)


def _names(row: dict[str, Any]) -> dict[str, Any]:
    """What a template sees: every column by name, and the row itself as `row` (`row['Tweet text']` reads a
    column whose name is no Jinja name); a column named "row" keeps its name."""
    return {"row": row, **row}


def _render_text(template: Any, row: dict[str, Any]) -> TemplateText:
    """The template's text, streamed so that an over-long field stops as soon as it is too long.

    Template text reaches here as a TemplateText (scaffold); what `{{ ... }}` printed from the row as a
    plain string (the row's own text)."""
    parts: list[Part] = []
    length = 0
    for chunk in template.generate(**_names(row)):
        length += len(chunk)
        if length > MAX_FIELD_CHARS:
            raise TemplateLimitError(f"the rendered text is longer than {MAX_FIELD_CHARS:,} characters")
        if isinstance(chunk, TemplateText):
            parts.extend(chunk.parts)
        else:
            parts.append((chunk, True))
    return TemplateText(parts)


def value_of(spec_value: str, row: dict[str, Any], where: str) -> Any:
    """Read one spec field from a row: a column, a rendered text template (a TemplateText, which knows its
    scaffold), or an expression's value."""
    try:
        if spec_value in row:
            return row[spec_value]
        with _rendering():
            if is_template(spec_value):
                return _render_text(_template(spec_value), row)
            result = _expression(spec_value)(**_names(row))
            if isinstance(result, Undefined):
                raise TemplateError(
                    f"{where}: '{spec_value}' is not a field of the row (the row has: {', '.join(row)})"
                )
            if size_of(result, MAX_FIELD_CHARS) > MAX_FIELD_CHARS:
                raise TemplateLimitError(f"its value is longer than {MAX_FIELD_CHARS:,} characters")
            return result
    except TemplateError:
        raise
    except TemplateLimitError as exc:
        raise TemplateError(f"{where}: template stopped: {exc}") from None
    except SecurityError as exc:
        raise TemplateError(f"{where}: refused by the template sandbox: {exc}") from None
    except UndefinedError as exc:
        raise TemplateError(f"{where}: {exc.message} (the row has: {', '.join(row)})") from None
    except TemplateSyntaxError as exc:
        raise TemplateError(f"{where}: '{spec_value}' is not a column, template or expression: {exc.message}") from None
    except Exception as exc:  # a type error inside an expression, say
        raise TemplateError(f"{where}: '{spec_value}' failed: {type(exc).__name__}: {exc}") from None
