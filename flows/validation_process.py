"""Great Expectations in a process of its own, started beside the model load.

Importing Great Expectations costs 3–5 s of Python, and a run needs it before its first flow task (the
instances are checked before the model loads). In the `helmflow` command that import sat on the one
busy core while the other had only Prefect's server to start. `start` opens a one-worker process pool
whose worker imports it at once; every check of this process then runs there. The checks and their
records are the same functions (`tasks/validate.py`); only the process differs. A process that never
calls `start` (a test calling a flow, a Dask worker) checks in-process, as before.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import ParamSpec, TypeVar

from helmflow.tasks.validate import warm  # Great Expectations itself is imported by warm(), in the worker

Args = ParamSpec("Args")
Out = TypeVar("Out")

_pool: ProcessPoolExecutor | None = None


def start() -> None:
    """Start the worker (once per process); it imports Great Expectations while this process goes on."""
    global _pool
    if _pool is None:
        # spawn, not fork: by now this process may hold threads (Prefect's) that a fork would copy mid-work.
        _pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        _pool.submit(warm)  # the worker's first job: the import


def run(check: Callable[Args, Out], *args: Args.args, **kwargs: Args.kwargs) -> Out:
    """check(*args, **kwargs) in the worker when one was started, else here."""
    return submit(check, *args, **kwargs).result()


def submit(check: Callable[Args, Out], *args: Args.args, **kwargs: Args.kwargs) -> Future[Out]:
    """check(*args, **kwargs) started in the worker, or run here now when there is none."""
    if _pool is not None:
        return _pool.submit(check, *args, **kwargs)
    done: Future[Out] = Future()
    try:
        done.set_result(check(*args, **kwargs))
    except Exception as exc:
        done.set_exception(exc)
    return done
