"""tasks/hub.py: a scenario that needs an unreachable Hub fails at once, in one line naming the dataset, instead
of after `datasets`' five retries; offline mode and local dataset folders are not asked about."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from helmflow.specs.schema import ScenarioSpec
from helmflow.tasks import hub
from helmflow.tasks.data import DataError, load_rows


@pytest.fixture
def closed_port(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """An endpoint on this machine that refuses connections (a port bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    hub._unreachable.cache_clear()
    yield port
    hub._unreachable.cache_clear()


def test_an_unreachable_hub_is_said_with_its_host_and_reason(closed_port: int) -> None:
    assert hub.hub_unreachable("abisee/cnn_dailymail") == f"127.0.0.1:{closed_port}: Connection refused"


def test_a_scenario_from_an_unreachable_hub_fails_in_one_line_naming_the_dataset(closed_port: int) -> None:
    spec = ScenarioSpec.model_validate(
        {
            "name": "cnn",
            "source": {"hub": {"path": "abisee/cnn_dailymail", "name": "3.0.0"}},
            "fields": {"input": "article"},
        }
    )
    with pytest.raises(DataError) as raised:
        load_rows(spec, "test")
    assert str(raised.value) == (
        "scenario 'cnn' needs the Hugging Face Hub dataset abisee/cnn_dailymail (config 3.0.0, split test), and the "
        f"Hub cannot be reached (127.0.0.1:{closed_port}: Connection refused); run it where the Hub is reachable, "
        "or give the spec offline files"
    )


def test_offline_mode_and_local_folders_are_not_asked_about(
    closed_port: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert hub.hub_unreachable(str(tmp_path)) is None  # a dataset folder on disk: datasets reads it
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # datasets reads its cache, which may hold the dataset
    assert hub.hub_unreachable("abisee/cnn_dailymail") is None
