"""The reference validator's Python side (tests/reference_validator.py), without starting Java."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import reference_validator as ref


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("Bundle.entry[0].resource/*Patient/p1*/.name[0]", "Bundle.entry[0].resource.name[0]"),
        ("Observation.value.ofType(Quantity)", "Observation.value"),
        ("Bundle.entry[2].resource/*Observation/null*/.code", "Bundle.entry[2].resource.code"),
        ("Patient", "Patient"),
        ("", ""),
    ],
    ids=["annotation", "ofType", "null-id", "root", "empty"],
)
def test_normalise_keeps_the_plain_path(location: str, expected: str) -> None:
    assert ref.normalise(location) == expected


def test_an_outcome_line_becomes_issues() -> None:
    line = {
        "input": "/x/p.json",
        "issues": [
            {"severity": "error", "location": "Patient.gender", "line": 3, "col": 5, "message": "bad code", "messageId": "X"},
            {"severity": "warning", "location": "Patient", "message": "no narrative"},
            {"severity": "fatal", "location": "", "message": "cannot parse"},
        ],
    }
    outcome = ref._outcome(json.loads(json.dumps(line)))
    assert outcome.input == "/x/p.json" and outcome.line is None
    assert [i.severity for i in outcome.errors] == ["error", "fatal"]
    assert not outcome.valid
    assert outcome.issues[0].path == "Patient.gender" and outcome.issues[0].line == 3


def test_the_command_passes_packages_profiles_and_cache(tmp_path: Path) -> None:
    cmd = ref.command([tmp_path / "a.json"], igs=["hl7.fhir.uv.ips#2.0.0"], profiles=["http://x/p"], cache=tmp_path, heap="1g")
    assert cmd[:2] == ["java", "-Xmx1g"]
    assert cmd[cmd.index("-ig") + 1] == "hl7.fhir.uv.ips#2.0.0"
    assert cmd[cmd.index("-profile") + 1] == "http://x/p"
    assert cmd[cmd.index("-cache") + 1] == str(tmp_path)
    assert cmd[-1] == str(tmp_path / "a.json")


def test_running_without_the_jar_says_how_to_build(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(ref, "JAR", tmp_path / "missing.jar")
    with pytest.raises(ref.ReferenceValidatorError, match="reference_validator.py build"):
        ref.run([tmp_path])


def test_building_without_maven_names_what_is_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(ref, "JAR", tmp_path / "missing.jar")
    monkeypatch.setattr(ref.shutil, "which", lambda tool: None if tool == "mvn" else f"/usr/bin/{tool}")
    with pytest.raises(ref.ReferenceValidatorError, match="needs mvn"):
        ref.build()


def test_the_cache_follows_fhir_so_packages(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FHIR_SO_PACKAGES", str(tmp_path))
    assert ref.default_cache() == tmp_path
    monkeypatch.delenv("FHIR_SO_PACKAGES")
    assert ref.default_cache() == Path.home() / ".fhir" / "packages"
