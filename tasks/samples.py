"""Sampled completions: each generation request's greedy answer, plus `num_samples` drawn at a temperature.

maj@k (self-consistency) and pass@k (tasks/metrics/sampling.py) need several answers per instance, drawn from
the model's distribution. Each sampled request is the instance's unperturbed generation request again, with
`sample` 1..n, the adapter's `temperature` and `top_p`, and a seed of its own. The greedy request stays as it
was (same id, same inference key), so accuracy, calibration, robustness and fairness read exactly the run
they read without sampling; only the maj@k and pass@k metrics read the samples.

The seed is a hash of the run's seed, the request id and the sample index: the same run seed gives every
sample the same seed, whatever order, chunk or batch it is computed in, and two samples of one run never
share one. Backends draw each sample from a random stream of its own seeded with it (hf: a random.Random
per row, tasks/models/hf_generate.py; openai: the request's `seed`, where the server honours it).

Perturbed copies are not sampled: robustness and fairness compare greedy answers, and n samples of every
perturbation would multiply the run's cost for metrics that read none of them.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from helmflow.specs.schema import AdapterSpec
from helmflow.tasks.records import Request

# Seeds are 31-bit: what every server's `seed` takes (llama.cpp's is a uint32, others a signed int).
SEED_BITS = 31


def sample_seed(run_seed: int, request_id: str, sample: int) -> int:
    """The seed of one sample: a hash of the run's seed, the request and the sample's index, not a counter,
    so it does not depend on which other requests the run has or in what order they are computed."""
    digest = hashlib.sha256(f"{run_seed}|{request_id}|{sample}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (1 << SEED_BITS)


def sample_id(request_id: str, sample: int) -> str:
    """A sampled request's id: its greedy request's, then `#sample<k>` (as `#baseline` marks a baseline)."""
    return f"{request_id}#sample{sample}"


def greedy_id(request_id: str) -> str:
    """The greedy request's id of a sampled one (`sample_id` undone); any other id as it is."""
    head, mark, tail = request_id.rpartition("#sample")
    return head if mark and tail.isdigit() else request_id


def with_samples(requests: list[Request], adapter: AdapterSpec, run_seed: int) -> list[Request]:
    """The requests, then `adapter.num_samples` sampled copies of each unperturbed generation request (in the
    requests' order, sample 1 first). Without num_samples, the requests as they are."""
    if not adapter.num_samples:
        return requests
    sampled = [
        replace(
            request,
            id=sample_id(request.id, k),
            sample=k,
            temperature=adapter.temperature,
            top_p=adapter.top_p,
            seed=sample_seed(run_seed, request.id, k),
        )
        for request in requests
        if request.kind == "generation" and not request.perturbation
        for k in range(1, adapter.num_samples + 1)
    ]
    return [*requests, *sampled]


def expected_samples(adapter: AdapterSpec, num_instances: int) -> int:
    """How many sampled predictions a run has: num_samples per instance (every instance has one unperturbed
    generation request under method generation, the only method that samples)."""
    return adapter.num_samples * num_instances if adapter.method == "generation" else 0
