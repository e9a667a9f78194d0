"""Progress reporting from inside the flow to whoever started it (the CLI's display).

The flow runs in the CLI's process, so a module-level hook is enough and keeps display
objects out of the flow's parameters (Prefect records parameters with the flow run).
"""

from __future__ import annotations

from typing import Protocol


class Reporter(Protocol):
    def stage(self, label: str, message: str) -> None: ...

    def start_inference(self, label: str, total: int) -> None: ...

    def advance(self, done: int) -> None: ...

    def end_inference(self) -> None: ...


class Silent:
    def stage(self, label: str, message: str) -> None:
        pass

    def start_inference(self, label: str, total: int) -> None:
        pass

    def advance(self, done: int) -> None:
        pass

    def end_inference(self) -> None:
        pass


reporter: Reporter = Silent()


def set_reporter(new: Reporter) -> None:
    global reporter
    reporter = new
