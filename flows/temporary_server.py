"""Prefect's temporary API server, started as a subprocess by helmflow instead of by Prefect.

Prefect starts the same server (`prefect.server.api.server:create_app` under uvicorn) when a flow runs
and no API is configured, but it first imports its server package into the calling process to do so.
Starting the subprocess ourselves keeps that import (4–5 s) out of this process, and lets the server
boot while the data is checked and the model loads. The process and everything it starts afterwards
(Dask or Ray workers) find the server through `PREFECT_API_URL`; it stops when the process exits.

What the server prints goes to a temporary file unless Prefect's logs are shown (`helmflow -v`): a server
stopped while it starts or works (the command refused its input meanwhile) may log its services' errors,
tracebacks included, after the command's own last line. Its last line is quoted if it fails to start.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from typing import IO

# Prefect's own exit code for "the port was taken between choosing it and binding it".
_PORT_IN_USE = 3
# The server's first lines: on Linux it asks for SIGTERM when its parent ends, however that ends (SIGKILL,
# or SIGTERM, whose Prefect handler skips the exit hooks that stop it otherwise), and leaves at once if
# the parent is gone already; then it is `python -m uvicorn`. argv[1] is the parent's pid.
_BOOT = """
import os, runpy, signal, sys
if sys.platform.startswith("linux"):
    import ctypes
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[1]):
    sys.exit(0)
sys.argv = ["uvicorn", *sys.argv[2:]]
runpy.run_module("uvicorn", run_name="__main__", alter_sys=True)
"""
# Which server this process started, where a later call in it finds it: "pid url" in the environment, as
# PREFECT_API_URL beside it (children inherit the variable, and tell by the pid that it is not theirs).
_STARTED_HERE = "HELMFLOW_TEMPORARY_PREFECT_SERVER"


class PrefectServerError(RuntimeError):
    """The temporary server did not answer."""


class TemporaryPrefectServer:
    def __init__(self, environment: dict[str, str], timeout_s: float, quiet: bool = False) -> None:
        self._environment = environment
        self._timeout_s = timeout_s
        # quiet: the server's output in a file with no name (gone with this process), for error messages only.
        # Open as long as the server runs, so not in a with block.
        self._output: IO[bytes] | None = tempfile.TemporaryFile() if quiet else None  # noqa: SIM115
        self._began = time.perf_counter()
        self.healthy_after: float | None = None  # seconds from start to the first healthy answer
        self.port = _free_port()
        self.process = self._launch()
        atexit.register(self.stop)  # registered before Prefect's own exit hooks, so it runs after them

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def _launch(self) -> subprocess.Popen[bytes]:
        import prefect

        command = [
            sys.executable, "-c", _BOOT, str(os.getpid()),
            "--app-dir", str(prefect.__module_path__.parent),
            "--factory", "prefect.server.api.server:create_app",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--log-level", "error", "--lifespan", "on",
        ]  # fmt: skip
        return subprocess.Popen(command, env=self._environment, stdout=self._output, stderr=self._output)

    def _last_words(self) -> str:
        """The server's last line of output, for an error message ("" when it printed none, or not to us)."""
        if self._output is None:
            return ""
        self._output.seek(0)
        lines = [line.strip() for line in self._output.read().decode(errors="replace").splitlines()]
        last = next((line for line in reversed(lines) if line), "")
        return f": {last}" if last else ""

    def wait_until_healthy(self) -> None:
        """Block until the server answers its health check (once; later calls return at once)."""
        if self.healthy_after is not None:
            return
        import httpx

        with httpx.Client() as client:
            while time.perf_counter() - self._began < self._timeout_s:
                code = self.process.poll()
                if code == _PORT_IN_USE:  # another process took the port first: take another one
                    self.port = _free_port()
                    _point_prefect_at(self.api_url)
                    self.process = self._launch()
                    _remember(self.api_url)
                elif code is not None:
                    raise PrefectServerError(
                        f"Prefect's temporary server exited with code {code} while starting{self._last_words()}"
                    )
                try:
                    if client.get(f"{self.api_url}/health", timeout=1.0).status_code == 200:
                        self.healthy_after = time.perf_counter() - self._began
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        raise PrefectServerError(
            f"Prefect's temporary server did not answer within {self._timeout_s:.0f} s "
            "(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS)"
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._output is not None:
            self._output.close()


class StartedEarlier:
    """A temporary server an earlier call of this process started (an `evaluate` before this one, which may
    have stopped on bad data before the server answered): waited for as that call would have."""

    def __init__(self, api_url: str, timeout_s: float) -> None:
        self.api_url = api_url
        self._timeout_s = timeout_s
        self.healthy_after: float | None = None

    def wait_until_healthy(self) -> None:
        import httpx

        began = time.perf_counter()
        with httpx.Client() as client:
            while time.perf_counter() - began < self._timeout_s:
                try:
                    if client.get(f"{self.api_url}/health", timeout=1.0).status_code == 200:
                        self.healthy_after = time.perf_counter() - began
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        raise PrefectServerError(
            f"Prefect's temporary server at {self.api_url} did not answer within {self._timeout_s:.0f} s"
        )


def start_prefect_api() -> TemporaryPrefectServer | StartedEarlier | None:
    """Start the temporary server and point this process at it, unless an API is configured already
    (`PREFECT_API_URL`, a Prefect profile: None; a server this process started earlier: that one) or the
    user turned ephemeral servers off (the flow then fails with Prefect's own message)."""
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    timeout_s = settings.server.ephemeral.startup_timeout_seconds
    if settings.api.url or not settings.server.ephemeral.enabled:
        earlier = _started_here()
        return StartedEarlier(earlier, timeout_s) if earlier and earlier == settings.api.url else None
    if _prefect_started_its_own():
        return None  # a flow of this process already runs on it (a test session): one server is enough
    environment = {
        **os.environ,
        **settings.to_environment_variables(exclude_unset=True),
        # As Prefect's own temporary server: no UI, the ephemeral set of background services.
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
    }
    # Quiet unless Prefect's logs are shown: the CLI sets PREFECT_LOGGING_LEVEL=CRITICAL without -v.
    quiet = settings.logging.level == "CRITICAL"
    server = TemporaryPrefectServer(environment, timeout_s, quiet)
    _point_prefect_at(server.api_url)
    _remember(server.api_url)
    return server


def _remember(api_url: str) -> None:
    os.environ[_STARTED_HERE] = f"{os.getpid()} {api_url}"


def _started_here() -> str | None:
    """The URL of the server this process started, if it did."""
    pid, _, url = os.environ.get(_STARTED_HERE, "").partition(" ")
    return url if pid == str(os.getpid()) else None


def _prefect_started_its_own() -> bool:
    own = sys.modules.get("prefect.server.api.server")  # not imported: Prefect started no server here
    return own is not None and any(server.running for server in own.SubprocessASGIServer._instances.values())


def _point_prefect_at(api_url: str) -> None:
    """This process and the processes it starts from now on use this API."""
    from prefect.context import refresh_global_settings_context

    os.environ["PREFECT_API_URL"] = api_url
    # Prefect reads the environment into a process-wide settings object at import; this re-reads it.
    refresh_global_settings_context()


def _free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
