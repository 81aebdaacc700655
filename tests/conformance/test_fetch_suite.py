"""Fetching the official suite: SHA-1 checked against Maven Central's, only validator/ extracted, done once."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest
import responses

from tests.conformance import fetch_suite


def _jar() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(fetch_suite.PREFIX + "manifest.json", '{"test-cases": []}')
        z.writestr(fetch_suite.PREFIX + "outcomes/java/R4.x-base.json", "{}")
        z.writestr("org/hl7/fhir/testcases/other/big.bin", b"x" * 100)
    return buf.getvalue()


@responses.activate
def test_fetch_verifies_and_extracts_only_the_validator_folder(tmp_path: Path) -> None:
    jar = _jar()
    responses.get(fetch_suite._url(".jar.sha1"), body=hashlib.sha1(jar).hexdigest())  # noqa: S324
    responses.get(fetch_suite._url(".jar"), body=jar)
    folder = fetch_suite.fetch(tmp_path)
    assert (folder / "manifest.json").is_file() and (folder / "outcomes/java/R4.x-base.json").is_file()
    assert not (tmp_path / "org/hl7/fhir/testcases/other").exists()
    assert fetch_suite.is_fetched(tmp_path)
    assert fetch_suite.fetch(tmp_path) == folder and len(responses.calls) == 2  # a second call downloads nothing


@responses.activate
def test_a_checksum_mismatch_extracts_nothing(tmp_path: Path) -> None:
    responses.get(fetch_suite._url(".jar.sha1"), body="0" * 40)
    responses.get(fetch_suite._url(".jar"), body=_jar())
    with pytest.raises(RuntimeError, match="SHA-1"):
        fetch_suite.fetch(tmp_path)
    assert not fetch_suite.is_fetched(tmp_path) and not (tmp_path / "org").exists()
    assert fetch_suite.main(["--cache", str(tmp_path)]) == 2
