"""The backend's own transport tests again, with openai_async.AsyncClient in place of openai_client.Client.

OpenAIModel still sends each request from its own thread here (client.post); what these show is that the
async transport keeps every behaviour those tests check (order, retries and back-off, Retry-After,
timeouts, fail-fast, the rate limit, the key, malformed and non-finite answers) before openai.py switches
to post_many. The tests are imported, not copied: pytest collects them in this module as well, where the
autouse fixture below swaps the client.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from helmflow.tasks.models import openai
from helmflow.tasks.models.openai_async import AsyncClient
from tests.test_openai_backend import (  # noqa: F401  (collected by pytest)
    server,
    test_a_429_waits_as_long_as_retry_after_says,
    test_a_call_after_a_failed_concurrent_one_retries_again,
    test_a_key_quoted_far_into_an_error_body_is_hidden_whole,
    test_a_server_that_answered_once_is_retried_after_a_refused_connection,
    test_a_server_that_stays_down_raises_after_the_retries,
    test_answers_come_back_in_request_order_with_concurrency_in_flight,
    test_concurrency_one_sends_one_at_a_time,
    test_each_request_has_a_timeout,
    test_loglikelihood_adds_the_continuation_tokens,
    test_max_requests_per_minute_spaces_the_requests,
    test_one_failure_among_concurrent_requests_fails_the_call_with_the_url,
    test_several_prompts_in_one_request_give_the_same_scores,
    test_the_api_key_is_sent_and_never_shown,
    test_the_fingerprint_records_what_the_server_reports,
    test_transient_errors_are_retried,
)


@pytest.fixture(autouse=True)
def async_transport(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # raising=False: once openai.py uses AsyncClient itself (no `Client` name left) these run as they are.
    monkeypatch.setattr(openai, "Client", AsyncClient, raising=False)
    yield
