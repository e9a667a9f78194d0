"""What happens before the flow, side by side: Prefect's server starts while the data is checked and
the model loads.

The first flow run of a process starts Prefect's temporary API server (a uvicorn subprocess that
imports Prefect's whole server: ~8–14 s on two cores), and until now the flow then loaded the model
(~5–8 s with torch's import). Neither needs the other. `get_ready` starts the server from a
thread, checks every scenario's data here meanwhile (bad data still stops the command before any
flow runs, with the same message) and loads the first model, which the flow's load-model task then
takes as it is (`benchmark.take_preloaded`). A run's fixed cost becomes the longer of the two, not
their sum.
"""

from __future__ import annotations

import atexit
import threading
import time

from helmflow.flows.benchmark import preflight, preload_model
from helmflow.flows.plans import ScenarioPlan
from helmflow.specs.schema import ModelSpec


class PrefectServerStart:
    """Prefect's temporary server, started from a thread. Its errors are kept, not raised: if it
    could not start, the flow starts it again itself and fails with Prefect's own message."""

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.seconds = 0.0
        self._lock = threading.Lock()
        self._abandoned = False
        self._started: object | None = None  # the server this thread started, if it started one
        self._thread = threading.Thread(target=self._start, name="prefect-server-start", daemon=True)
        atexit.register(self._at_exit)
        self._thread.start()

    def _start(self) -> None:
        began = time.perf_counter()
        try:
            from prefect.client.orchestration import get_client
            from prefect.server.api.server import SubprocessASGIServer

            with self._lock:  # `_at_exit` either comes first and nothing starts, or waits for the start
                if self._abandoned:
                    return
                running = SubprocessASGIServer._instances.get(None)
                already = running is not None and running.running
                # With no PREFECT_API_URL, creating a client starts the temporary server (once per
                # process); with one, this only builds a client and the server is the user's.
                get_client(sync_client=True)
                started = SubprocessASGIServer._instances.get(None)
                self._started = started if started is not None and not already else None
        except BaseException as exc:  # the flow reports it, when it starts the server itself
            self.error = exc
        self.seconds = time.perf_counter() - began

    def wait(self) -> None:
        # Until the server answers: Prefect marks it running before it is healthy, and a flow that
        # started meanwhile would not wait for it.
        self._thread.join()
        atexit.unregister(self._at_exit)

    def _at_exit(self) -> None:
        """The process ends before the start was waited for (bad data): keep the server from starting,
        or stop the one this thread started.

        Otherwise a command that fails on bad data exits while the thread is still importing Prefect;
        the thread then starts the server as the interpreter shuts down, after the clean-up Prefect
        registers at exit has run, and the server outlives the command. A process that goes on (a
        test session) keeps the server for its next flow, and Prefect stops it at exit.
        """
        with self._lock:
            self._abandoned = True
            if self._started is not None:
                self._started.stop()  # type: ignore[attr-defined]
                self._started = None


def get_ready(
    plans: list[ScenarioPlan], models: list[ModelSpec], seed: int, prefer: str, load_model: bool
) -> dict[str, float]:
    """Check every scenario's data and load the first model (`load_model`: the flow runs models in this
    process) while Prefect's server starts; return when all three are done, with each one's seconds.

    The data and the model load one after the other: loading them in two threads races on
    transformers' lazy imports (`datasets` reads `transformers.PreTrainedTokenizerBase` while the
    model's thread is still importing transformers).
    """
    server = PrefectServerStart()
    began = time.perf_counter()
    preflight(plans, seed, prefer)  # raises on bad data, before any flow runs
    checked = time.perf_counter()
    if load_model and models:
        preload_model(models[0])
    loaded = time.perf_counter()
    server.wait()
    return {"data_and_checks": checked - began, "model_load": loaded - checked, "prefect_server_start": server.seconds}
