"""Fixtures for the workflow unit tests: mocked HTTP (responses), clients that never sleep, the examples."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import responses

from fhir_so.case import Case, load_case
from fhir_so.client import FhirClient, RetryPolicy

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
BASE = "https://clinic.example.org/fhir"
OTHER = "https://expert.example.org/fhir"


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def quick_policy() -> RetryPolicy:
    return RetryPolicy(attempts=2, backoff=0.0, sleep=lambda _s: None, random=lambda: 0.0)


@pytest.fixture
def client() -> Iterator[FhirClient]:
    with FhirClient(BASE, retries=quick_policy()) as c:
        yield c


@pytest.fixture
def urology() -> Case:
    return load_case(EXAMPLES / "urology-second-opinion.case.json")
