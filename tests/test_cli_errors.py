"""Failures the CLI says in one line, `error: <message>` on stderr, never a traceback: exit 2 for bad input
(a cron Prefect would refuse, an `hf:` model without a path), exit 1 for the machine (a Prefect API that
does not answer, a full disk under the warehouse)."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from helmflow.flows.cli import main
from helmflow.flows.temporary_server import PrefectServerError, TemporaryPrefectServer
from helmflow.specs.library import find_model
from helmflow.warehouse import runs as writer
from helmflow.warehouse.db import connect
from tests.conftest import write
from tests.test_openai_backend import Server

EXPECTED_CRON = '5 fields, minute hour day-of-month month day-of-week, e.g. "0 3 * * *" (03:00 every day)'


def run_cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, list[str]]:
    """main(args)'s exit code and its stderr lines."""
    capsys.readouterr()
    code = main(list(args))
    return code, capsys.readouterr().err.strip().splitlines()


def closed_port() -> int:
    """A port nothing listens on (bound, then let go)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def unreachable_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """PREFECT_API_URL naming a port where nothing listens, for this process's Prefect too."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = f"http://127.0.0.1:{closed_port()}/api"
    monkeypatch.setenv("PREFECT_API_URL", url)
    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield url


# -- schedule: a cron Prefect would refuse, refused before Prefect is asked ---------------------------


@pytest.mark.parametrize(
    ("cron", "problem"),
    [
        ("61 * * * *", "minute '61' (0-59) is not valid"),
        ("not a cron", "it has 3 fields"),
        ("* * *", "it has 3 fields"),
        ("* * * * * * * *", "it has 8 fields"),
        ("", "it is empty"),
        ("0 25 * 13 *", "hour '25' (0-23) and month '13' (1-12 or jan-dec) are not valid"),
        (
            "@fortnightly",
            "@fortnightly is not one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly",
        ),
    ],
)
def test_a_bad_cron_is_refused_before_the_server_is_asked(
    cron: str, problem: str, unreachable_api: str, capsys: pytest.CaptureFixture
) -> None:
    # The API does not answer: a message about the cron, not the server, shows it was checked first.
    code, err = run_cli(capsys, "schedule", "quickstart", "--cron", cron)
    assert (code, err) == (2, [f"error: --cron {cron!r} is not a cron schedule: {problem}; expected {EXPECTED_CRON}"])


@pytest.mark.parametrize("cron", ["0 3 * * *", "*/15 9-17 * * mon-fri", "@daily", "0 3 * * * 30"])
def test_crons_prefect_takes_are_taken(cron: str) -> None:
    from helmflow.flows.deploy import check_cron

    check_cron(cron)  # Prefect's own check decides: its 6-field form (seconds) and @-shortcuts pass too


# -- schedule and serve: a Prefect API that does not answer -------------------------------------------


@pytest.mark.parametrize(
    "command",
    [["schedule", "quickstart", "--cron", "0 3 * * *"], ["serve"], ["refresh", "quickstart"]],
)
def test_an_unreachable_prefect_api_is_one_line(
    tmp_path: Path, command: list[str], unreachable_api: str, capsys: pytest.CaptureFixture
) -> None:
    code, err = run_cli(capsys, "--db", str(tmp_path / "w.duckdb"), *command)
    assert (code, err) == (
        1,
        [
            f"error: the Prefect API at {unreachable_api} (PREFECT_API_URL) could not be reached "
            "([Errno 111] Connection refused): start a server (prefect server start --host 127.0.0.1) "
            "or point PREFECT_API_URL at a running one"
        ],
    )


# -- run --model hf:<folder>: the spec name comes from the folder -------------------------------------


@pytest.mark.parametrize(
    ("folder", "name"),
    [
        ("My Model!", "my-model"),
        ("SmolLM2-360M_Instruct", "smollm2-360m-instruct"),
        ("Modèle v2.1", "modele-v2.1"),
        ("__!!__", "model"),
    ],
)
def test_an_hf_folder_name_becomes_a_valid_spec_name(tmp_path: Path, folder: str, name: str) -> None:
    (tmp_path / folder).mkdir()
    (tmp_path / folder / "config.json").write_text("{}")
    spec = find_model(f"hf:{tmp_path / folder}")
    assert (spec.name, spec.path) == (name, str(tmp_path / folder))


def test_an_hf_folder_without_a_model_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "My Model!"
    folder.mkdir()
    code, err = run_cli(capsys, "--db", str(tmp_path / "w.duckdb"), "run", "mmlu", "--model", f"hf:{folder}")
    assert (code, err) == (
        2,
        [
            f"error: hf:{folder}: {folder} is a folder without config.json: not a transformers model folder "
            "(save_pretrained writes one)"
        ],
    )


def test_hf_without_a_path_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, err = run_cli(capsys, "--db", str(tmp_path / "w.duckdb"), "run", "mmlu", "--model", "hf:")
    assert (code, err) == (
        2,
        ["error: 'hf:': give a hub id or a local directory after hf:, e.g. hf:HuggingFaceTB/SmolLM2-360M-Instruct"],
    )


def test_an_hf_folder_with_an_odd_name_fails_on_the_folder_not_the_name(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """`My Model!` is no spec name; it used to stop the command with pydantic's traceback before the folder
    was even looked at. Now the name is derived, and what is wrong is the folder (it is not there)."""
    missing = tmp_path / "x" / "My Model!"
    code, err = run_cli(capsys, "--db", str(tmp_path / "w.duckdb"), "run", "mmlu", "--model", f"hf:{missing}")
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"error: hf:{missing}: ") and "no such local folder" in err[0]


# -- run: a full disk when the run is written ---------------------------------------------------------

QUIZ = """name: quiz
source:
  offline: {files: {test: quiz.jsonl}}
fields: {input: q, choices: opts, answer: gold}
metrics: [accuracy]
"""


@pytest.fixture
def quiz(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A 4-question scenario and a model spec answering it from a fake OpenAI-compatible server (no model)."""
    rows = [{"q": f"Question {i}", "opts": ["w", "x"], "gold": i % 2} for i in range(4)]
    write(tmp_path / "quiz.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    server = Server()
    try:
        yield (
            write(tmp_path / "quiz.yaml", QUIZ),
            write(tmp_path / "remote.yaml", f"name: remote\nbackend: openai\npath: {server.url}\n"),
        )
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def rows_of(db: Path, run_id: str) -> dict[str, list]:
    with connect(db, read_only=True) as con:
        return {
            table: con.execute(f"select * from {table} where run_id = ? order by all", [run_id]).fetchall()
            for table in ("runs", *writer.RESULT_TABLES)
        }


def full_disk(db: Path, fault: str) -> Exception:
    """What a write to a full disk raises: the operating system's error, or DuckDB's when a commit fails."""
    if fault == "oserror":
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f"{db}.wal")
    return duckdb.TransactionException(
        f'TransactionContext Error: Failed to commit: Could not write file "{db}.wal": No space left on device'
    )


@pytest.mark.parametrize(("fault", "reason"), [("oserror", "No space left on device"), ("duckdb", None)])
def test_a_full_disk_while_the_run_is_written_is_one_line_and_earlier_runs_stay(
    tmp_path: Path,
    quiz: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    fault: str,
    reason: str | None,
) -> None:
    scenario, model = quiz
    db = tmp_path / "w.duckdb"
    assert run_cli(capsys, "--db", str(db), "run", str(scenario), "--model", str(model))[0] == 0
    with connect(db, read_only=True) as con:
        [(first,)] = con.execute("select run_id from runs").fetchall()
    before = rows_of(db, first)
    real_insert = writer._insert

    def insert_then_fail(con: duckdb.DuckDBPyConnection, run_id: str, tables: dict) -> None:
        real_insert(con, run_id, tables)  # the rows are in the transaction when the disk fills
        raise full_disk(db, fault)

    monkeypatch.setattr(writer, "_insert", insert_then_fail)
    code, err = run_cli(capsys, "--db", str(db), "run", str(scenario), "--model", str(model))
    with connect(db, read_only=True) as con:
        [(second, status, error)] = con.execute(
            "select run_id, status, error from runs where run_id != ?", [first]
        ).fetchall()
    said = f"{db}.wal: {reason}" if reason else str(full_disk(db, fault))
    assert code == 1
    # Progress lines come first (stderr is where they go); the command ends with the one error line.
    assert err[-1] == (
        f"error: {said}; run {second} (quiz × remote) was not stored whole and is marked failed; "
        f"`helmflow run --resume {second}` finishes it once the warehouse can be written"
    )
    assert [line for line in err if line.startswith("error") or "Traceback" in line] == [err[-1]]
    assert rows_of(db, first) == before  # the earlier run, all its rows
    assert status == "failed" and "No space left on device" in error
    assert all(not rows for table, rows in rows_of(db, second).items() if table != "runs")  # rolled back


def test_only_writes_the_machine_refused_stop_the_command() -> None:
    """A full disk stops the whole command (every later run would fail to be written too); a model server
    that reset a connection fails its run only, and the next run goes on."""
    from helmflow.flows.failures import cannot_write

    assert cannot_write(OSError(errno.ENOSPC, "No space left on device", "w.duckdb.wal"))
    assert cannot_write(OSError(errno.EROFS, "Read-only file system", "w.duckdb"))
    assert cannot_write(duckdb.TransactionException('Failed to commit: Could not write file "w.duckdb.wal": x'))
    assert not cannot_write(ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"))
    assert not cannot_write(duckdb.TransactionException("TransactionContext Error: Conflict on update"))


def test_a_disk_too_full_to_mark_the_run_failed_says_so(
    tmp_path: Path, quiz: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    scenario, model = quiz
    db = tmp_path / "w.duckdb"

    def no_space(*args: object) -> None:
        raise full_disk(db, "oserror")

    monkeypatch.setattr(writer.RunLifecycle, "finish_run", no_space)
    monkeypatch.setattr(writer.RunLifecycle, "fail_run", no_space)
    code, err = run_cli(capsys, "--db", str(db), "run", str(scenario), "--model", str(model))
    with connect(db, read_only=True) as con:
        [(run_id, status)] = con.execute("select run_id, status from runs").fetchall()
    assert code == 1
    assert err[-1] == (
        f"error: {db}.wal: No space left on device; run {run_id} (quiz × remote) was not stored whole; it shows as "
        f"failed (interrupted) after this command; `helmflow run --resume {run_id}` finishes it once the "
        "warehouse can be written"
    )
    assert status == "running"  # until this process ends: then it reads as failed (interrupted)


# -- the temporary Prefect server: a refused input after it started ----------------------------------


@pytest.mark.slow  # a CLI subprocess that starts a Prefect server (about 15 s): make test-slow
def test_a_refused_input_after_the_server_started_is_the_only_line(tmp_path: Path) -> None:
    """Data that does not decode is found after Prefect's temporary server was started (it boots while the
    data loads): the command's one line is all stderr holds, whatever the stopped server had to say."""
    folder = tmp_path / "scenarios"
    data = folder / "d.csv"
    data.parent.mkdir()
    data.write_bytes(b"q,a,b,gold\n2+2?,3,4,1\ncaf\xe9?,x,y,0\n")
    spec = write(folder / "local.yaml", "name: local\nsource: {offline: {files: {test: d.csv}}}\n"
                 "fields: {input: q, choices: [a, b], answer: gold}\n")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect")
    command = [sys.executable, "-m", "helmflow.flows.cli", "--db", str(tmp_path / "w.duckdb"), "run", str(spec)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert (done.returncode, done.stderr) == (2, f"error: {data} line 3: not UTF-8 (byte 0xe9 at column 4)\n")


def noisy_server(
    monkeypatch: pytest.MonkeyPatch, boot: str, quiet: bool, ready: Path | None = None
) -> TemporaryPrefectServer:
    """A stand-in for the server process (`boot`: its Python code, told where `READY` is), started as the real
    one is."""
    from helmflow.flows import temporary_server

    monkeypatch.setattr(temporary_server, "_BOOT", boot)
    return TemporaryPrefectServer({**os.environ, "READY": str(ready)}, timeout_s=30, quiet=quiet)


# A server stopped while it works: its services' tracebacks, on the stderr it was given, as it stops.
DYING_LOUDLY = """
import os, pathlib, signal, sys, time
def stopped(*args):
    print("Traceback (most recent call last):\\nasyncio.exceptions.CancelledError", file=sys.stderr, flush=True)
    sys.exit(1)
signal.signal(signal.SIGTERM, stopped)
print("started", flush=True)
pathlib.Path(os.environ["READY"]).touch()
time.sleep(120)
"""


@pytest.mark.parametrize("quiet", [True, False])
def test_what_a_stopped_server_says_stays_out_of_the_commands_stderr_unless_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture, quiet: bool
) -> None:
    ready = tmp_path / "ready"
    server = noisy_server(monkeypatch, DYING_LOUDLY, quiet, ready)
    deadline = time.monotonic() + 60
    while not ready.exists():  # its signal handler is in place
        assert time.monotonic() < deadline and server.process.poll() is None
        time.sleep(0.05)
    server.stop()
    out, err = capfd.readouterr()
    if quiet:  # the CLI without -v
        assert (out, err) == ("", "")
    else:  # helmflow -v: Prefect's logs, the server's among them
        assert "started" in out and "CancelledError" in err


def test_a_quiet_server_that_fails_to_start_is_quoted_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    server = noisy_server(
        monkeypatch, "import sys\nprint('ERROR: database is locked', file=sys.stderr)\nsys.exit(1)\n", quiet=True
    )
    with pytest.raises(PrefectServerError) as failed:
        server.wait_until_healthy()
    server.stop()
    assert (
        str(failed.value) == "Prefect's temporary server exited with code 1 while starting: ERROR: database is locked"
    )


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path: Path) -> None:
    """`helmflow leaderboard | head -1`: the pipe closes before helmflow is done writing."""
    import subprocess
    import sys

    from tests.test_merge import record_run

    db = tmp_path / "w.duckdb"
    record_run(db, "run-a", "model-a", "s1", [0, 1, 0])
    record_run(db, "run-b", "model-b", "s1", [1, 1, 0])
    helmflow = Path(sys.executable).with_name("helmflow")
    reader = subprocess.Popen(
        [str(helmflow), "--db", str(db), "leaderboard"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert reader.stdout is not None
    reader.stdout.close()  # before helmflow writes: its first line meets a closed pipe, as after `head -1`
    _, err = reader.communicate(timeout=60)
    assert (reader.returncode, err) == (1, b"")  # the output was cut: 1, and nothing on stderr
