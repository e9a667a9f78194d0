"""Jinja2 in specs, sandboxed: how a field of the spec reads a value out of a data row.

A field value in a spec is one of three things:
- a column name of the row (`question`, or `#1 String`: any key the row has);
- a text template, when it contains `{{` or `{%` (`"{{ passage }}\\nQuestion: {{ question }}?"`);
- otherwise a Jinja expression giving any value (`choices.text`, `['no', 'yes']`, `label | int`).

Templates run in Jinja's immutable sandbox with no loader, so a spec cannot call unsafe methods,
reach Python internals through `__class__` and friends, read files or change data. Templates are
also checked when a spec is loaded: names with a leading underscore, `include`, `import` and
`extends` are refused there, with the field named.
"""

from __future__ import annotations

from functools import cache, lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment


class TemplateError(ValueError):
    """A template that is unsafe, malformed, or fails on a row; the message names the field."""


@cache
def environment() -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


def is_template(value: str) -> bool:
    return "{{" in value or "{%" in value


_FORBIDDEN_NODES = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)


def check(value: str, where: str) -> None:
    """Refuse a template or expression that reaches for internals or files (at spec load time)."""
    source = value if is_template(value) else "{{ " + value + " }}"
    try:
        tree = environment().parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"{where}: not a valid template or expression: {exc.message}") from None
    for node in tree.find_all((nodes.Getattr, nodes.Name, nodes.Const, *_FORBIDDEN_NODES)):
        if isinstance(node, _FORBIDDEN_NODES):
            raise TemplateError(f"{where}: templates cannot include, import or extend other templates")
        name = getattr(node, "attr", None) or getattr(node, "name", None)
        if isinstance(node, nodes.Const) and isinstance(node.value, str):
            name = node.value if node.value.startswith("__") else None  # x['__class__']
        if isinstance(name, str) and name.startswith("_"):
            raise TemplateError(f"{where}: '{name}' is not allowed in a template (no access to Python internals)")


@lru_cache(maxsize=512)
def _template(source: str) -> Any:
    return environment().from_string(source)


@lru_cache(maxsize=512)
def _expression(source: str) -> Any:
    return environment().compile_expression(source, undefined_to_none=False)


def value_of(spec_value: str, row: dict[str, Any], where: str) -> Any:
    """Read one spec field from a row: a column, a rendered text template, or an expression's value."""
    try:
        if spec_value in row:
            return row[spec_value]
        if is_template(spec_value):
            return _template(spec_value).render(**row)
        result = _expression(spec_value)(**row)
        if isinstance(result, Undefined):
            raise TemplateError(f"{where}: '{spec_value}' is not a field of the row (the row has: {', '.join(row)})")
        return result
    except TemplateError:
        raise
    except SecurityError as exc:
        raise TemplateError(f"{where}: refused by the template sandbox: {exc}") from None
    except UndefinedError as exc:
        raise TemplateError(f"{where}: {exc.message} (the row has: {', '.join(row)})") from None
    except TemplateSyntaxError as exc:
        raise TemplateError(f"{where}: '{spec_value}' is not a column, template or expression: {exc.message}") from None
    except Exception as exc:  # a type error inside an expression, say
        raise TemplateError(f"{where}: '{spec_value}' failed: {type(exc).__name__}: {exc}") from None
