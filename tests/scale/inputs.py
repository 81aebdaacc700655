"""Inputs and report helpers for the scale-out tests: inputs the project did not write (the official validator suite, the examples).

The suite is fetched by ``./run test`` (tests/conformance/fetch_suite.py); without it these tests
skip on a developer's machine and fail under CI=true, as the conformance tests do.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_so.validation.outcome import ResultLike, Summary, write_report
from tests.conformance import fetch_suite

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def suite_dir() -> Path:
    """The official validator suite's folder, or skip (fail under CI) when it is not fetched."""
    if not fetch_suite.is_fetched():
        message = "the FHIR validator test suite is not fetched (run: python tests/conformance/fetch_suite.py)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return fetch_suite.suite_dir()


def reports(results: Iterable[ResultLike]) -> dict[str, tuple[bytes, str, int]]:
    """The report of ``results`` in every format: (bytes, summary line, exit code) by format."""
    kept = list(results)
    out = {}
    for fmt in ("text", "json", "junit"):
        buf = io.BytesIO()
        summary: Summary = write_report(kept, fmt, buf)
        out[fmt] = (buf.getvalue(), summary.line(), summary.exit_code)
    return out


def real_resources(suite: Path, *, max_bytes: int = 20_000) -> list[dict[str, Any]]:
    """Single resources (not Bundles) of the suite's top folder and of the examples' Bundles, in name order."""
    found: list[dict[str, Any]] = []
    for path in sorted(suite.glob("*.json")):
        if path.stat().st_size > max_bytes:
            continue
        try:
            value = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError:
            continue
        if isinstance(value, dict) and isinstance(value.get("resourceType"), str) and value["resourceType"] != "Bundle":
            found.append(value)
    for path in sorted(EXAMPLES.glob("*.bundle.json")):
        for entry in orjson.loads(path.read_bytes()).get("entry", []):
            found.append(entry["resource"])
    return found


def ndjson_lines(pool: list[dict[str, Any]], n: int) -> Iterator[bytes]:
    """``n`` NDJSON lines cycled from ``pool``, each resource with a fresh id."""
    for i in range(n):
        resource = dict(pool[i % len(pool)])
        resource["id"] = f"scale-{i}"
        yield orjson.dumps(resource) + b"\n"
