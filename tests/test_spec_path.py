"""HELMFLOW_SPEC_PATH: folders that each hold scenarios/, models/ and suites/. An unknown name is an error that
names every folder searched, in order, marks the missing ones, and says what the variable expects."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helmflow.specs.library import LIBRARY, find, find_model, resolve_run_target, spec_names
from helmflow.specs.loader import SpecError
from tests.conftest import write

HINT = "HELMFLOW_SPEC_PATH adds folders, each holding scenarios/, models/ and suites/"


@pytest.fixture
def spec_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Two extra folders: `team` laid out as expected, `flat` the models folder itself (the usual mistake)."""
    team, flat = tmp_path / "team", tmp_path / "flat"
    write(team / "models" / "team-model.yaml", "name: team-model\nbackend: embedded\n")
    write(flat / "flat-model.yaml", "name: flat-model\nbackend: embedded\n")
    monkeypatch.setenv("HELMFLOW_SPEC_PATH", f"{team}{os.pathsep}{flat}")
    return team, flat


def test_an_unknown_model_names_the_folders_searched(spec_path: tuple[Path, Path]) -> None:
    team, flat = spec_path
    assert find_model("team-model").name == "team-model"
    with pytest.raises(SpecError) as caught:
        find_model("flat-model")
    assert str(caught.value) == (
        f"unknown model 'flat-model': no flat-model.yaml in {team}/models, {flat}/models (no such folder), "
        f"{LIBRARY}/models (known: smollm2-135m-instruct, smollm2-135m-instruct-chat, team-model; "
        f"{HINT}); or use hf:<hub id or local directory>"
    )


def test_an_unknown_scenario_names_the_folders_searched(spec_path: tuple[Path, Path]) -> None:
    team, flat = spec_path
    known = ", ".join(spec_names("scenario"))
    with pytest.raises(SpecError) as caught:
        find("scenario", "nope")
    assert str(caught.value) == (
        f"unknown scenario 'nope': no nope.yaml in {team}/scenarios (no such folder), "
        f"{flat}/scenarios (no such folder), {LIBRARY}/scenarios (known: {known}; {HINT})"
    )


def test_an_unknown_run_target_names_the_suite_and_scenario_folders(spec_path: tuple[Path, Path]) -> None:
    team, flat = spec_path
    suites = ", ".join(spec_names("suite"))
    scenarios = ", ".join(spec_names("scenario"))
    with pytest.raises(SpecError) as caught:
        resolve_run_target("nope")
    assert str(caught.value) == (
        f"unknown suite or scenario 'nope': no nope.yaml in {team}/suites (no such folder), "
        f"{flat}/suites (no such folder), {LIBRARY}/suites, {team}/scenarios (no such folder), "
        f"{flat}/scenarios (no such folder), {LIBRARY}/scenarios (suites: {suites}; scenarios: {scenarios}; {HINT})"
    )


def test_a_spec_path_entry_may_start_with_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "specs" / "models" / "mine.yaml", "name: mine\nbackend: embedded\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HELMFLOW_SPEC_PATH", "~/specs")
    assert find_model("mine").name == "mine"
