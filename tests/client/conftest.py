"""Fixtures for the client tests: a mocked HTTP layer (responses) and a client whose waits are recorded."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import responses
from tests.client.client_helpers import BASE

from fhir_so.client import FhirClient, RetryPolicy


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def policy(sleeps: list[float]) -> RetryPolicy:
    # Jitter pinned to its maximum so waits are predictable; the clock is a fixed instant.
    return RetryPolicy(attempts=4, backoff=0.5, sleep=sleeps.append, random=lambda: 1.0, clock=lambda: 1_700_000_000.0)


@pytest.fixture
def client(policy: RetryPolicy) -> Iterator[FhirClient]:
    with FhirClient(BASE, retries=policy) as c:
        yield c
