"""A merge source is untrusted: nothing in it can read the merging machine's files, and a file that is not
exactly a helmflow warehouse is refused with one line naming the object."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import duckdb
import pytest

from helmflow.flows.cli import main
from helmflow.warehouse.db import connect, latest_version
from helmflow.warehouse.merge import attach, seal
from tests.test_merge import record_run

SECRET = "the merging machine's secret\n"
LATEST = latest_version()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def machines(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(target with one run, source with another, a local file no merge may read)."""
    target, source = tmp_path / "central.duckdb", tmp_path / "site.duckdb"
    record_run(target, "a-1", "model-a", "s1", [0, 1])
    record_run(source, "b-1", "model-b", "s1", [0, 0, 1])
    with connect(target):  # checkpointed on close: the file alone holds the warehouse
        pass
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    return target, source, secret


def edit(source: Path, *statements: str) -> None:
    """Change the source as a hostile or careless site could, with DuckDB itself."""
    con = duckdb.connect(str(source))
    try:
        for statement in statements:
            con.execute(statement)
    finally:
        con.close()


def merge_cli(target: Path, source: Path, capsys: pytest.CaptureFixture) -> tuple[int, list[str]]:
    code = main(["--db", str(target), "merge", str(source)])
    return code, capsys.readouterr().err.splitlines()


def test_a_table_replaced_by_a_view_over_a_local_file_is_refused(
    machines: tuple[Path, Path, Path], capsys: pytest.CaptureFixture
) -> None:
    target, source, secret = machines
    edit(
        source,
        "create table cache_copy as select * from inference_cache",
        "drop table inference_cache",
        # The attack: the table merge copies is now a view that reads a file on whichever machine reads it.
        f"create view inference_cache as select c.* replace (r.content as model_fingerprint) "
        f"from cache_copy c, read_text('{secret}') r",
        "drop table cache_copy",
    )
    before = digest(target)
    code, err = merge_cli(target, source, capsys)
    assert code == 2
    assert err == [
        f"error: {source}: not a helmflow warehouse at schema version {LATEST}: 'inference_cache' is a view, "
        "not a base table; nothing was merged"
    ]
    assert digest(target) == before
    with connect(target, read_only=True) as con:
        assert con.execute(
            "select count(*) from inference_cache where model_fingerprint like '%secret%'"
        ).fetchall() == [(0,)]


@pytest.mark.parametrize(
    ("statements", "message"),
    [
        (
            ["create macro steal() as table select * from read_text('/etc/hostname')"],
            "macro 'steal' is not part of a helmflow warehouse",
        ),
        (["create table notes (x integer)"], "table 'notes' is not part of a helmflow warehouse"),
        (["create view notes as select 1"], "view 'notes' is not part of a helmflow warehouse"),
        (["create sequence counter"], "sequence 'counter' is not part of a helmflow warehouse"),
        (["drop view leaderboard"], "view 'leaderboard' is missing"),
        (
            ["alter table runs add column extra integer"],
            "table 'runs' has column(s) helmflow does not make: extra INTEGER",
        ),
        # An inconsistent version: the file says the latest, its cache is at 7 (no `error` column).
        (["alter table inference_cache drop column error"], "table 'inference_cache' lacks column(s) error VARCHAR"),
        (
            ["alter table runs alter column seed type varchar"],
            "table 'runs' has other column types: seed is VARCHAR, expected INTEGER",
        ),
    ],
)
def test_anything_but_helmflow_s_own_objects_is_refused_by_name(
    machines: tuple[Path, Path, Path], capsys: pytest.CaptureFixture, statements: list[str], message: str
) -> None:
    target, source, _ = machines
    edit(source, *statements)
    before = digest(target)
    code, err = merge_cli(target, source, capsys)
    assert (code, err) == (
        2,
        [f"error: {source}: not a helmflow warehouse at schema version {LATEST}: {message}; nothing was merged"],
    )
    assert digest(target) == before


def test_a_schema_version_that_is_not_helmflow_s_is_one_line(
    machines: tuple[Path, Path, Path], capsys: pytest.CaptureFixture
) -> None:
    target, source, _ = machines
    edit(
        source,
        "drop table schema_version",
        "create table schema_version (version varchar, name varchar)",
        "insert into schema_version values ('eight', 'x')",
    )
    code, err = merge_cli(target, source, capsys)
    assert code == 2
    assert len(err) == 1
    assert err[0].startswith(f"error: {source}: not a helmflow warehouse (its schema_version is unreadable: ")


def test_an_older_source_is_checked_before_its_copy_is_migrated(
    machines: tuple[Path, Path, Path], capsys: pytest.CaptureFixture
) -> None:
    """A source claiming version 7 is held to what version 7 was: a view there is refused before any
    migration runs over it."""
    target, source, secret = machines
    edit(
        source,
        "delete from schema_version where version > 7",
        "drop view contamination_probe_metrics",  # migrations 13-15's objects, which version 7 did not have
        "drop table contamination_probe_stats",
        "drop table contamination_probe_runs",
        "drop table contamination_instances",
        "drop table contamination_matches",
        "drop table contamination_files",
        "drop table contamination_checks",
        "drop table samples",
        "alter table inference_cache drop column error",
        "alter table runs drop column load_per_core",
        "alter table predictions drop column num_train_instances",
        "alter table predictions drop column prompt_truncated",
        "alter table predictions drop column raw_completion",
        f"create or replace view win_rates as select content as model from read_text('{secret}')",
        "drop view leaderboard",
        "create table leaderboard as select 1 as x",
    )
    code, err = merge_cli(target, source, capsys)
    assert code == 2
    assert err == [
        f"error: {source}: not a helmflow warehouse at schema version 7: "
        "'leaderboard' is a table, not helmflow's view; nothing was merged"
    ]


def test_a_view_the_check_keeps_cannot_read_files_on_the_merging_connection(
    machines: tuple[Path, Path, Path], capsys: pytest.CaptureFixture
) -> None:
    """helmflow's own views are kept by name (merge never reads them), whatever their body: if one is
    rewritten to read a file, the sealed merging connection still cannot."""
    target, source, secret = machines
    edit(
        source,
        "create or replace view latest_runs as select * from runs "
        f"where (select content from read_text('{secret}')) is not null",
    )
    # Unsealed, the view reads the file: this is what a merge must never do.
    with connect(target) as con:
        attach(con, source, "src", str(source))
        [(count,)] = con.execute("select count(*) from src.latest_runs").fetchall()
        assert count == 1
    # The merge's own connection, once its sources are attached, reaches no file.
    with connect(target) as con:
        attach(con, source, "src", str(source))
        seal(con)
        with pytest.raises(duckdb.PermissionException, match="file system operations are disabled"):
            con.execute("select count(*) from src.latest_runs").fetchall()
        with pytest.raises(duckdb.PermissionException):
            con.execute(f"select * from read_text('{secret}')").fetchall()
        with pytest.raises(duckdb.Error):
            con.execute("set enable_external_access = true")
    # And the merge itself goes through: the view is helmflow's by name and never read.
    code = main(["--db", str(target), "merge", str(source)])
    assert code == 0
    assert "1 run(s) added" in capsys.readouterr().out
    with connect(target, read_only=True) as con:
        assert con.execute("select run_id from runs order by 1").fetchall() == [("a-1",), ("b-1",)]


def test_a_full_disk_during_a_merge_is_one_line_and_keeps_every_earlier_run(
    small_disk: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A real full file system, not a mock: the target fills its 3 MiB disk, the source's run does not fit."""
    target, source = small_disk / "central.duckdb", tmp_path / "site.duckdb"
    record_run(target, "a-1", "model-a", "s1", [0, 1])
    record_run(source, "b-1", "model-b", "s1", [0, 0, 1] * 2000)
    ballast = small_disk / "ballast"
    free = shutil.disk_usage(small_disk).free
    ballast.write_bytes(b"\0" * max(free - 64 * 1024, 0))  # leave 64 KiB: too little for the source's run
    code, err = merge_cli(target, source, capsys)
    assert code == 1
    assert len(err) == 1
    assert err[0].startswith("error: ") and "No space left on device" in err[0], err
    ballast.unlink()
    with connect(target, read_only=True) as con:
        assert con.execute("select run_id, status from runs").fetchall() == [("a-1", "succeeded")]
        assert con.execute("select count(*) from predictions").fetchall() == [(2,)]
