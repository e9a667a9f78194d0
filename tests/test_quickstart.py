"""The quickstart suite (what `make demo` runs) gives a headline value for all seven categories."""

from pathlib import Path

import pytest

from helmflow.flows.cli import main
from helmflow.warehouse.db import connect

# One worker runs the whole module (its fixtures are module- or session-scoped). The whole quickstart suite on the
# model (about a minute): make test-slow, beside `make demo`, which runs the same suite.
pytestmark = [pytest.mark.model, pytest.mark.slow, pytest.mark.xdist_group("quickstart")]


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("quickstart") / "q.duckdb"
    assert main(["--db", str(db), "run", "quickstart"]) == 0
    return db


def test_all_seven_categories_have_a_headline(quickstart: Path) -> None:
    with connect(quickstart, read_only=True) as con:
        rows = con.execute(
            "select category, count(*) from metrics where headline and group_name = '' and value is not null "
            "group by 1 order by 1"
        ).fetchall()
        statuses = con.execute("select scenario, status from runs order by 1").fetchall()
    assert statuses == [("mmlu", "succeeded"), ("open_ended_probe", "succeeded")]
    assert [c for c, _ in rows] == sorted(
        ["accuracy", "calibration", "robustness", "fairness", "bias", "toxicity", "efficiency"]
    )


def test_worst_case_is_never_above_unperturbed_and_is_checked(quickstart: Path) -> None:
    with connect(quickstart, read_only=True) as con:
        pairs = con.execute(
            "select w.category, w.value, u.value from metrics w join metrics u on u.run_id = w.run_id "
            "and u.category = 'accuracy' and u.metric = w.metric and u.perturbation = '' and u.group_name = '' "
            "where w.perturbation = 'worst_case'"
        ).fetchall()
        check = con.execute(
            "select success from validations where stage = 'stats' and kwargs like '%worst_case%'"
        ).fetchall()
        classifier = con.execute("select toxicity_classifier from runs where scenario = 'open_ended_probe'").fetchone()[
            0
        ]
    assert sorted(c for c, _, _ in pairs) == ["fairness", "robustness"]
    assert all(worst <= unperturbed for _, worst, unperturbed in pairs)
    assert check == [(True,), (True,)]
    assert classifier.startswith("alt-profanity-check==")


def test_perturbed_requests_are_stored_beside_the_originals(quickstart: Path) -> None:
    with connect(quickstart, read_only=True) as con:
        counts = dict(
            con.execute(
                "select perturbation, count(*) from predictions p join runs r using (run_id) where r.scenario = 'mmlu' "
                "group by 1"
            ).fetchall()
        )
    assert counts == {"": 60, "mild_mix": 60, "typos": 60, "gender": 60, "race_names": 60, "dialect": 60}
