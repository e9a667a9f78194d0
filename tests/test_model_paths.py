"""A model spec's `path`: `~` and `$VARS` are expanded where the spec is parsed, a path written as local must
exist (`specs validate` and model lookup say so, naming the file, line and field), and a hub id is told
from a relative folder by one rule: exactly one slash and no leading `./` is a hub id, unless that folder is here."""

from __future__ import annotations

from pathlib import Path

import pytest

from helmflow.flows.cli import main
from helmflow.specs.library import find_model
from helmflow.specs.loader import SpecError
from helmflow.specs.schema import ModelSpec, looks_local, model_path_problem
from tests.conftest import write


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "home"
    (folder / "models" / "tiny").mkdir(parents=True)
    (folder / "models" / "tiny" / "config.json").write_text("{}")
    monkeypatch.setenv("HOME", str(folder))
    monkeypatch.setenv("MODELS", str(folder / "models"))
    monkeypatch.delenv("NOPE", raising=False)
    return folder


def validate(path: Path, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    status = main(["specs", "validate", str(path)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.parametrize(
    ("written", "expanded"),
    [
        ("~/models/tiny", "{home}/models/tiny"),
        ("$HOME/models/tiny", "{home}/models/tiny"),
        ("${MODELS}/x", "{home}/models/x"),
    ],
)
def test_home_and_variables_are_expanded_when_the_spec_is_parsed(home: Path, written: str, expanded: str) -> None:
    assert ModelSpec(name="m", backend="hf", path=written).path == expanded.format(home=home)


def test_a_server_url_and_an_unset_variable_stay_as_written(home: Path) -> None:
    url = "http://127.0.0.1:8000/v1"
    assert ModelSpec(name="m", backend="openai", path=url).path == url
    assert ModelSpec(name="m", backend="hf", path="$NOPE/tiny").path == "$NOPE/tiny"


@pytest.mark.parametrize(
    ("path", "local"),
    [
        ("/models/tiny", True),
        ("~/models/tiny", True),
        ("./models/my-model", True),
        ("../my-model", True),
        ("$NOPE/tiny", True),
        ("models/org/name", True),
        ("models/my-model", False),
        ("HuggingFaceTB/SmolLM2-135M", False),
        ("gpt2", False),
    ],
)
def test_what_looks_local(path: str, local: bool) -> None:
    assert looks_local(path) is local


def test_a_folder_that_exists_wins_over_a_hub_id_of_the_same_spelling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert model_path_problem("models/my-model") is None  # a hub id: the Hub is asked at run time
    (tmp_path / "models" / "my-model").mkdir(parents=True)
    # A folder here, but no model in it: said now, not as transformers' traceback at run time.
    assert model_path_problem("models/my-model") == (
        "models/my-model is a folder without config.json: not a transformers model folder (save_pretrained writes one)"
    )
    (tmp_path / "models" / "my-model" / "config.json").write_text("{}")
    assert model_path_problem("models/my-model") is None  # the folder here
    assert model_path_problem("./models/gone") == f"no such local folder: ./models/gone (in {tmp_path})"
    (tmp_path / "weights.bin").write_bytes(b"")
    assert model_path_problem("./weights.bin") == (
        "./weights.bin is a file; a local model is a folder (config.json and the weights)"
    )
    assert model_path_problem("my org/model") == (
        "'my org/model' is neither a local folder nor a hub id (org/name: letters, digits, '-', '_', '.')"
    )


def test_validate_names_the_file_line_and_field_of_a_missing_local_folder(
    tmp_path: Path, home: Path, capsys: pytest.CaptureFixture
) -> None:
    spec = write(tmp_path / "gone.yaml", "name: gone\nbackend: hf\n# trained last week\npath: ~/models/gone\n")
    assert validate(spec, capsys) == (
        2,
        "",
        f"{spec}:4: field 'path': no such local folder: {home}/models/gone (written ~/models/gone)\n",
    )
    unset = write(tmp_path / "unset.yaml", "name: unset\nbackend: hf\npath: $NOPE/tiny\n")
    assert validate(unset, capsys) == (
        2,
        "",
        f"{unset}:3: field 'path': no such local folder: $NOPE/tiny; $NOPE is not set\n",
    )


def test_validate_says_which_a_good_path_is(tmp_path: Path, home: Path, capsys: pytest.CaptureFixture) -> None:
    local = write(tmp_path / "tiny.yaml", "name: tiny\nbackend: hf\npath: ~/models/tiny\n")
    assert validate(local, capsys) == (0, f"ok  {local} (model 'tiny'; path: local folder {home}/models/tiny)\n", "")
    hub = write(tmp_path / "hub.yaml", "name: hub\nbackend: hf\npath: models/my-model\n")
    assert validate(hub, capsys) == (
        0,
        f"ok  {hub} (model 'hub'; path: hub id models/my-model, not contacted by validate "
        "(a local folder is written ./models/my-model))\n",
        "",
    )


def test_a_run_finds_a_missing_folder_before_loading_data(tmp_path: Path, home: Path) -> None:
    """find_model is what `helmflow run --model`, a suite's models and refresh resolve models with."""
    spec = write(tmp_path / "gone.yaml", "name: gone\nbackend: hf\npath: $HOME/models/gone\n")
    with pytest.raises(SpecError) as caught:
        find_model(str(spec))
    assert str(caught.value) == (
        f"{spec}:3: field 'path': no such local folder: {home}/models/gone (written $HOME/models/gone)"
    )
    with pytest.raises(SpecError) as caught:
        find_model("hf:~/models/gone")
    assert str(caught.value) == f"hf:~/models/gone: no such local folder: {home}/models/gone"
    assert find_model("hf:~/models/tiny").path == f"{home}/models/tiny"
    assert find_model(str(write(tmp_path / "ok.yaml", "name: ok\nbackend: hf\npath: ~/models/tiny\n"))).path == (
        f"{home}/models/tiny"
    )


def test_the_hf_backend_refuses_a_missing_folder_before_transformers_does(tmp_path: Path) -> None:
    """A spec that did not come through find_model (a resumed run, a cluster worker) is checked too."""
    from helmflow.tasks.models.base import ModelError
    from helmflow.tasks.models.hf import HFModel

    gone = tmp_path / "gone"
    with pytest.raises(ModelError) as caught:
        HFModel(ModelSpec(name="gone", backend="hf", path=str(gone)))
    assert str(caught.value) == f"model 'gone': path: no such local folder: {gone}"
