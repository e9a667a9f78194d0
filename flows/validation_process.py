"""Great Expectations in a process of its own, started beside the model load.

Importing Great Expectations costs 3–5 s of Python, and a run needs it before its first flow task (the
instances are checked before the model loads). In the `helmflow` command that import sat on the one
busy core while the other had only Prefect's server to start. `start` opens a one-worker process pool
whose worker imports it at once; every check of this process then runs there. The checks and their
records are the same functions (`tasks/validate.py`); only the process differs. A process that never
calls `start` (a test calling a flow, a Dask worker) checks in-process, as before.

The worker belongs to a `ValidationWorker` that the caller owns (the run's `RunContext`, made by
`helmflow.evaluate`): nothing here is module state, and the worker lives as long as the call that started
it (`evaluate` stops it on its way out, however it leaves: returned, raised, Ctrl-C or SIGTERM), or until
the call's last run has had its checks (`RunContext.release_checks`): its ~380 MiB are then not held through
that run's write, the command's peak of memory.

If the process itself ends first, the worker ends with it: when this process is killed outright, Linux
sends the worker SIGKILL (PR_SET_PDEATHSIG, asked for first thing in the worker). Without that the
worker waited forever on a queue whose other end it holds itself, and kept multiprocessing's resource
tracker alive with it.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import ParamSpec, TypeVar

from helmflow.tasks.validate import warm  # Great Expectations itself is imported by warm(), in the worker

Args = ParamSpec("Args")
Out = TypeVar("Out")

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int, signal_number: int = signal.SIGKILL) -> None:
    """In a child process: ask Linux for `signal_number` when the parent dies, and leave at once if it has
    died already (before the request was made). Elsewhere than Linux this does nothing."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal_number)
    if os.getppid() != parent:
        os._exit(0)


def released_after(check: Callable[Args, Out], *args: Args.args, **kwargs: Args.kwargs) -> Out:
    """In the worker: the check, then the memory its table took handed back to the system. Otherwise the worker
    keeps the freed pages of a run's 84,252-row prediction table (~45 MiB) through that run's scoring, the
    command's peak of memory."""
    try:
        return check(*args, **kwargs)
    finally:
        gc.collect()
        import ctypes

        trim = getattr(ctypes.CDLL(None), "malloc_trim", None)  # glibc's; other C libraries may lack it
        if trim is not None:
            trim(0)


class ValidationWorker:
    """Where the checks run: a one-process pool once `start` was called, this process until then (and
    again after `stop`)."""

    __slots__ = ("_pool",)

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    @property
    def started(self) -> bool:
        return self._pool is not None

    def start(self) -> None:
        """Start the worker (once); it imports Great Expectations while this process goes on."""
        if self._pool is not None:
            return
        # spawn, not fork: by now this process may hold threads (Prefect's) that a fork would copy mid-work.
        context = multiprocessing.get_context("spawn")
        # Linux sends the signal when the *thread* that started the child ends: only the main thread lives
        # as long as this process (the worker is started by the submit below, in this thread).
        if threading.current_thread() is threading.main_thread():
            self._pool = ProcessPoolExecutor(
                1, mp_context=context, initializer=die_with_parent, initargs=(os.getpid(),)
            )
        else:
            self._pool = ProcessPoolExecutor(1, mp_context=context)
        self._pool.submit(warm)  # the worker's first job: the import

    def stop(self, grace_s: float = 2.0) -> None:
        """End the worker soon, whatever it is doing: an idle one leaves as on a normal exit, one still busy
        after `grace_s` (a check, the import) is terminated (a SIGTERM'd command does not wait for it)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        workers = list(getattr(pool, "_processes", {}).values())  # the executor has no public handle on them
        pool.shutdown(wait=False, cancel_futures=True)
        for worker in workers:
            # Leaving by itself, it releases what it holds: killed, it leaves its semaphores for
            # multiprocessing's resource tracker to warn about.
            worker.join(timeout=grace_s)
            if worker.is_alive():
                worker.terminate()
                worker.join(timeout=5)

    def run(self, check: Callable[Args, Out], *args: Args.args, **kwargs: Args.kwargs) -> Out:
        """check(*args, **kwargs) in the worker when one was started, else here."""
        return self.submit(check, *args, **kwargs).result()

    def submit(self, check: Callable[Args, Out], *args: Args.args, **kwargs: Args.kwargs) -> Future[Out]:
        """check(*args, **kwargs) started in the worker, or run here now when there is none."""
        if self._pool is not None:
            return self._pool.submit(released_after, check, *args, **kwargs)
        done: Future[Out] = Future()
        try:
            done.set_result(check(*args, **kwargs))
        except Exception as exc:
            done.set_exception(exc)
        return done
