"""An sdist (`archive:` in a spec, e.g. bigbench==1.0.0) is fetched with the user's own pip, so the index
settings that work for `pip install` (pip.conf, PIP_INDEX_URL, a mirror or proxy) work for it too; when pip
cannot fetch it, one line says pip's reason and where else the files can come from."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from helmflow.specs.schema import ScenarioSpec
from helmflow.tasks import sources
from helmflow.tasks.data import DataError, load_rows
from helmflow.tasks.sources import SourceMissing, archive_member, pip_download_command, sdist
from tests.conftest import SHARED_DATA, needs_shared_data

TASK = "bigbench/benchmark_tasks/anachronisms/task.json"
# An index nothing answers on (port 9, "discard"): pip fails at once, as behind a proxy that refuses it.
UNREACHABLE_INDEX = "http://127.0.0.1:9/simple"


def bigbench_scenario(offline: list[dict]) -> ScenarioSpec:
    return ScenarioSpec.model_validate(
        {
            "name": "bb",
            "source": {"split": "default", "offline": offline},
            "fields": {"id": "idx", "input": "prompt", "choices": "choices", "answer": "gold"},
            "adapter": {"method": "multiple_choice_separate"},
        }
    )


ARCHIVE = {"archive": "bigbench==1.0.0", "files": {"default": TASK}, "format": "bigbench"}
SHARED = {"files": {"default": "{shared}/bigbench/anachronisms/task.json"}, "format": "bigbench"}


@pytest.fixture
def isolated_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    """pip with an index that refuses connections, no config file, no cache, no retries: fails in about a second."""
    for name in [k for k in os.environ if k.startswith("PIP_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", UNREACHABLE_INDEX)
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    monkeypatch.setenv("PIP_TIMEOUT", "1")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")


def test_the_fetch_command_is_this_pythons_pip(tmp_path: Path) -> None:
    assert pip_download_command("bigbench", "1.0.0", tmp_path) == [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        "bigbench",
        "bigbench==1.0.0",
        "-d",
        str(tmp_path),
    ]


def test_a_fetched_sdist_lands_in_the_cache_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """pip (faked: it saves a tarball where -d says) runs with the user's environment, and the file is moved
    from its staging folder into the cache, which later calls read without running pip again."""
    monkeypatch.setenv("HELMFLOW_CACHE", str(tmp_path / "cache"))
    calls: list[tuple[list[str], dict]] = []

    def fake_pip(command: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        calls.append((command, kwargs))
        folder = Path(command[command.index("-d") + 1])
        folder.mkdir(parents=True)
        with tarfile.open(folder / "toytask-1.0.tar.gz", "w:gz") as archive:
            info = tarfile.TarInfo("toytask-1.0/data/task.json")
            info.size = 2
            archive.addfile(info, io.BytesIO(b"{}"))
        return subprocess.CompletedProcess(command, 0, "Saved\n", "")

    monkeypatch.setattr(sources.subprocess, "run", fake_pip)
    member = archive_member("toytask==1.0", "data/task.json")
    folder = tmp_path / "cache" / "sdists"
    [(command, kwargs)] = calls
    assert command == pip_download_command("toytask", "1.0", folder / f".pip-{os.getpid()}")
    assert "env" not in kwargs  # the user's PIP_* settings and pip.conf apply as they are
    assert member.read_bytes() == b"{}"
    assert sorted(p.name for p in folder.iterdir()) == ["toytask-1.0.tar.gz"]  # the staging folder is gone
    assert sdist("toytask==1.0", download=False) == folder / "toytask-1.0.tar.gz"
    err = capsys.readouterr().err
    assert err.startswith(f"helmflow: downloading the sdist toytask==1.0 once with pip into {folder}\n")
    assert f"helmflow: saved {folder / 'toytask-1.0.tar.gz'} (0.0 MB)\n" in err


def test_a_pip_that_reaches_no_index_gives_one_line_naming_the_alternatives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_pip: None
) -> None:
    monkeypatch.setenv("HELMFLOW_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HELMFLOW_SHARED_DATA", str(tmp_path / "shared"))
    spec = bigbench_scenario([ARCHIVE])  # no hub and no other offline copy: the sdist must be fetched
    started = time.monotonic()
    with pytest.raises(DataError) as caught:
        load_rows(spec, "default", "offline", tmp_path)
    assert time.monotonic() - started < 30
    assert str(caught.value) == (
        "pip could not download the sdist bigbench==1.0.0: Could not find a version that satisfies the requirement "
        f"bigbench==1.0.0 (from versions: none) (looking in {UNREACHABLE_INDEX}); the task.json can come instead "
        f"from the shared data folder ({tmp_path}/shared/bigbench/anachronisms/task.json; HELMFLOW_SHARED_DATA "
        "sets the folder), a local folder of BIG-bench task files named in the scenario's source.offline files: "
        "(listed on HELMFLOW_DATA_PATH when it is outside the spec's folder), or the Hub copy tasksource/bigbench, "
        "config anachronisms (helmflow run --source hub)"
    )
    assert "\n" not in str(caught.value)
    assert list((tmp_path / "cache" / "sdists").iterdir()) == []  # nothing half-downloaded is left


def test_an_archive_of_other_files_names_the_local_alternative(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_pip: None
) -> None:
    monkeypatch.setenv("HELMFLOW_CACHE", str(tmp_path / "cache"))
    with pytest.raises(SourceMissing) as caught:
        archive_member("toytask==1.0", "data/task.json")
    assert str(caught.value) == (
        "pip could not download the sdist toytask==1.0: Could not find a version that satisfies the requirement "
        f"toytask==1.0 (from versions: none) (looking in {UNREACHABLE_INDEX}); its files can come instead from a "
        "local folder named in the scenario's source.offline files: (listed on HELMFLOW_DATA_PATH when it is "
        "outside the spec's folder)"
    )


@needs_shared_data
def test_the_shared_folder_the_error_names_serves_the_task_without_pip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first alternative the error names works: with ../shared/data there, pip is never run."""
    monkeypatch.setenv("HELMFLOW_SHARED_DATA", str(SHARED_DATA))
    monkeypatch.setenv("HELMFLOW_CACHE", str(tmp_path / "cache"))

    def no_pip(*args: object, **kwargs: object) -> None:
        raise AssertionError("pip was run")

    monkeypatch.setattr(sources.subprocess, "run", no_pip)
    rows, source = load_rows(bigbench_scenario([SHARED, ARCHIVE]), "default", "offline", tmp_path)
    assert (len(rows), source.kind) == (230, "offline")
    assert source.description == str(SHARED_DATA / "bigbench" / "anachronisms" / "task.json")
