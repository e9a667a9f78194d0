"""SIGTERM as a normal way out of the `helmflow` command: every child process ends with it.

By default SIGTERM ends Python at once: no `finally` block, no exit hook. The children then lived on:
the Great Expectations worker (flows/validation_process.py) waited forever on its queue, keeping
multiprocessing's resource tracker alive with it. Here the first SIGTERM raises `Terminated` in the main
thread instead, so the command unwinds as on Ctrl-C: a local Dask or Ray cluster is shut down by its
task runner, the validation worker is stopped, then the exit hooks stop Prefect's temporary server.
A second SIGTERM ends the process at once (the children then end by PR_SET_PDEATHSIG).

Inside a flow run Prefect has a SIGTERM handler of its own: it marks the flow run crashed, puts this one
back and sends the signal again, which then raises `Terminated` here.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

EXIT_TERMINATED = 128 + signal.SIGTERM  # what a shell reports for a process that SIGTERM ended

_terminating = False


class Terminated(BaseException):
    """The process was sent SIGTERM (a BaseException, as KeyboardInterrupt: `except Exception` lets it by)."""


def _on_sigterm(signal_number: int, frame: FrameType | None) -> None:
    global _terminating
    if _terminating:  # asked twice: stop unwinding, end now
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    _terminating = True
    raise Terminated


def install() -> None:
    """From now on SIGTERM raises Terminated in the main thread (call it there)."""
    signal.signal(signal.SIGTERM, _on_sigterm)


def uninstall() -> None:
    """Back to SIGTERM's default: past its work, the command ends at once if asked to, rather than raise in
    the middle of its exit hooks."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def stop_children() -> None:
    """What the exit hooks would wait for: the validation worker, which may be mid-check (or mid-import)."""
    if "helmflow.flows.validation_process" in sys.modules:
        from helmflow.flows import validation_process

        validation_process.stop()
