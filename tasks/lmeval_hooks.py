"""A scenario's Python hooks (source.hooks): lm-evaluation-harness's `!function` process_docs and doc_to_* run
on the rows before the field map, as lm-eval runs them on its docs (specs/lmeval_translate.py writes them).

A hook is code, so where it may come from is checked here, when it is about to run, not only when the spec was
made: a FILE under `lm_eval/` is read inside the installed lm_eval package (the code that came with lm-eval's
own task YAMLs, `..` refused); any other file is someone's code, and runs only when the user said
--trust-task-code for this run (HELMFLOW_TRUST_TASK_CODE=1). A spec read back from the warehouse (--resume)
is checked the same way.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from helmflow.specs.lmeval_tasks import TRUST_VARIABLE, package_tasks_dir
from helmflow.specs.schema import DocHooks
from helmflow.tasks.data import DataError, Rows


def trusted() -> bool:
    return os.environ.get(TRUST_VARIABLE, "").strip().lower() in {"1", "true", "yes", "on"}


def _file(ref: str) -> tuple[Path, str]:
    """The hook's file and function name, where it may be read from; DataError otherwise."""
    written, _, name = ref.rpartition(":")
    if not written or not name:
        raise DataError(f"hook '{ref}': write it as FILE:FUNCTION")
    if written.startswith("lm_eval/"):
        package = package_tasks_dir()
        if package is None:
            raise DataError(f"hook '{ref}' is lm-evaluation-harness code, and lm_eval is not installed here")
        top = package.parent.resolve()
        path = (top.parent / written).resolve()
        if not path.is_relative_to(top):
            raise DataError(f"hook '{ref}' points outside the installed lm_eval package")
    else:
        path = Path(written)
        if not trusted():
            raise DataError(
                f"hook '{ref}' is code outside the installed lm_eval package: run with --trust-task-code "
                f"({TRUST_VARIABLE}=1) to allow it"
            )
    if not path.is_file():
        raise DataError(f"hook '{ref}': no such file {path}")
    return path, name


def _module(path: Path) -> ModuleType:
    # Named as lm-eval names it (lm_eval/tasks/_yaml_loader.py), so that a hook module is loaded once.
    text = path.as_posix()
    marker = "/lm_eval/tasks/"
    name = "lm_eval.tasks." + text.split(marker, 1)[1][:-3].replace("/", ".") if marker in text else text[:-3]
    found = sys.modules.get(name)
    if found is not None and getattr(found, "__file__", None) == str(path):
        return found
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise DataError(f"{path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise DataError(f"{path} failed to import: {type(exc).__name__}: {exc}") from exc
    return module


def function(ref: str) -> Callable[..., Any]:
    path, name = _file(ref)
    found = getattr(_module(path), name, None)
    if not callable(found):
        raise DataError(f"hook '{ref}': {path} has no function {name}")
    return found


def _processed(rows: Rows, ref: str) -> Rows:
    import datasets

    docs = datasets.Dataset.from_list([row for _, row in rows])
    try:
        out = list(function(ref)(docs))
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"process_docs hook '{ref}' failed: {type(exc).__name__}: {exc}") from exc
    if len(out) == len(rows):  # one doc per row: the rows keep their origins
        return [(origin, dict(doc)) for (origin, _), doc in zip(rows, out, strict=True)]
    first = rows[0][0].rsplit(" row ", 1)[0] if rows else "rows"
    return [(f"{first} doc {n} (after process_docs)", dict(doc)) for n, doc in enumerate(out, start=1)]


def apply_hooks(rows: Rows, hooks: DocHooks) -> Rows:
    """The rows through process_docs, then each with its hook columns added."""
    if hooks.process_docs:
        rows = _processed(rows, hooks.process_docs)
    columns = {name: function(ref) for name, ref in hooks.columns.items()}
    if hooks.counts:
        counter = function(hooks.counts)  # found once: its file is checked and imported once, not per row
        rows = [(origin, {**row, **_counts(origin, row, hooks.counts, counter)}) for origin, row in rows]
    if not columns:
        return rows
    out: Rows = []
    for origin, row in rows:
        added = dict(row)
        for name, fn in columns.items():
            try:
                added[name] = fn(row)
            except Exception as exc:
                raise DataError(f"{origin}: hook {hooks.columns[name]} failed: {type(exc).__name__}: {exc}") from exc
        if isinstance(added.get("lmeval_text"), int) and not isinstance(added["lmeval_text"], bool):
            raise DataError(
                f"{origin}: doc_to_text gave a choice index ({added['lmeval_text']}): an lm-eval task with several "
                "inputs, one per choice (as winogrande), which helmflow does not score"
            )
        out.append((origin, added))
    return out


# What the counts hook is given as the text's log-likelihood: it only passes it on beside its counts.
_STAND_IN = -1.0
# lm-eval's rolling metrics, and the count each divides the log-likelihood by.
_COUNTED = {"word_perplexity": "lmeval_words", "byte_perplexity": "lmeval_bytes", "bits_per_byte": "lmeval_bytes"}


def _counts(origin: str, row: dict[str, Any], ref: str, counter: Callable[..., Any]) -> dict[str, int]:
    """A loglikelihood_rolling task's process_results on one row: the word and byte counts its metrics divide by.

    lm-eval calls it after scoring with (doc, [loglikelihood]) and reads {metric: (loglikelihood, count)}; the
    counts depend on the doc only, so they are read here, once, with a stand-in log-likelihood, which each pair
    must give back unchanged (a hook that computes with it is a scoring of its own: refused)."""
    try:
        given = counter(row, [_STAND_IN])
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{origin}: process_results hook {ref} failed: {type(exc).__name__}: {exc}") from exc
    out: dict[str, int] = {}
    for metric, column in _COUNTED.items():
        pair = given.get(metric) if isinstance(given, dict) else None
        if pair is None:
            continue
        ok = isinstance(pair, tuple | list) and len(pair) == 2 and pair[0] == _STAND_IN and isinstance(pair[1], int)
        if not ok:
            raise DataError(
                f"{origin}: process_results hook {ref} gave {metric}: {pair!r}; helmflow reads only "
                "(the log-likelihood passed in, a whole-number count) from it"
            )
        out[column] = pair[1]
    if not out:
        raise DataError(f"{origin}: process_results hook {ref} gave none of {', '.join(_COUNTED)}")
    return out
