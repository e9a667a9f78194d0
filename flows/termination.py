"""SIGTERM as a normal way out of the `helmflow` command: every child process ends with it.

By default SIGTERM ends Python at once: no `finally` block, no exit hook. The children then lived on:
the Great Expectations worker (flows/validation_process.py) waited forever on its queue, keeping
multiprocessing's resource tracker alive with it. Here the first SIGTERM raises `Terminated` in the main
thread instead, so the command unwinds as on Ctrl-C: a local Dask or Ray cluster is shut down by its
task runner, `helmflow.evaluate` stops the validation worker it started, then the exit hooks stop
Prefect's temporary server. A second SIGTERM ends the process at once (the children then end by
PR_SET_PDEATHSIG).

Inside a flow run Prefect has a SIGTERM handler of its own: it marks the flow run crashed, puts this one
back and sends the signal again, which then raises `Terminated` here.
"""

from __future__ import annotations

import os
import signal
from types import FrameType

EXIT_TERMINATED = 128 + signal.SIGTERM  # what a shell reports for a process that SIGTERM ended


class Terminated(BaseException):
    """The process was sent SIGTERM (a BaseException, as KeyboardInterrupt: `except Exception` lets it by)."""


class SigtermHandler:
    """The handler `install` puts in place: the first signal raises Terminated, the second ends the process."""

    __slots__ = ("asked",)

    def __init__(self) -> None:
        self.asked = False

    def __call__(self, signal_number: int, frame: FrameType | None) -> None:
        if self.asked:  # asked twice: stop unwinding, end now
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        self.asked = True
        raise Terminated


def install() -> SigtermHandler:
    """From now on SIGTERM raises Terminated in the main thread (call it there)."""
    handler = SigtermHandler()
    signal.signal(signal.SIGTERM, handler)
    return handler


def uninstall() -> None:
    """Back to SIGTERM's default: past its work, the command ends at once if asked to, rather than raise in
    the middle of its exit hooks."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
