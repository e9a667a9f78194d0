"""test_openai_faults.py's server faults again, with openai_async.AsyncClient in place of openai_client.Client:
null and non-finite log-probs (NaN reaches the check through the json fallback), bodies that are not JSON
or have no choices, a closed port and a first request that times out (see test_openai_async_dropin.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from helmflow.tasks.models import openai
from helmflow.tasks.models.openai_async import AsyncClient
from tests.test_openai_faults import (  # noqa: F401  (collected by pytest)
    server,
    test_a_body_that_is_not_json,
    test_a_closed_port_fails_fast,
    test_a_first_request_that_times_out_is_not_retried,
    test_an_unscored_continuation_is_not_a_certain_one,
    test_json_without_choices,
    test_nan_log_probs_are_rejected,
    test_null_log_probs_are_rejected,
    test_the_first_prompt_token_may_have_a_null_log_prob,
)


@pytest.fixture(autouse=True)
def async_transport(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # raising=False: once openai.py uses AsyncClient itself (no `Client` name left) these run as they are.
    monkeypatch.setattr(openai, "Client", AsyncClient, raising=False)
    yield
