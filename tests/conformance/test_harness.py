"""The harness reads the manifest as the Java harness does: last entry wins, outcomes files, skips with reasons."""

from __future__ import annotations

import json
from pathlib import Path

from fhir_so.packages import PackageCache
from tests.conformance import suite as S


def _suite(tmp_path: Path) -> Path:
    cases = [
        {"name": "a", "file": "a.json", "version": "4.0", "module": "general"},
        {"name": "a", "file": "a2.json", "version": "4.0.1", "module": "general", "profile": {"source": "p.json"}},
        {"name": "r5", "file": "r5.json", "module": "general"},
        {"name": "off", "file": "off.json", "version": "4.0", "use-test": False},
        {"name": "x", "file": "x.xml", "version": "4.0"},
        {"name": "t", "file": "t.json", "version": "4.0", "module": "tx"},
        {"name": "pkg", "file": "p.json", "version": "4.0", "packages": ["no.such.package#9.9.9"]},
        {"name": "opt", "file": "o.json", "version": "4.0", "security-checks": True},
        {"name": "srv", "file": "s.json", "version": "4.0"},
        {"name": "n / R4", "file": "n.json", "version": "4.0"},
    ]
    (tmp_path / "outcomes" / "java").mkdir(parents=True)
    (tmp_path / "manifest.json").write_text(json.dumps({"test-cases": cases}))
    server = {"url": S.TX_SERVER_EXT, "valueUrl": "https://tx"}
    (tmp_path / "outcomes/java/R4.srv-base.json").write_text(json.dumps({"issue": [{"severity": "error", "extension": [server]}]}))
    (tmp_path / "outcomes/java/R4.n - R4-base.json").write_text(json.dumps({"issue": [{"severity": "error", "expression": ["Patient"]}]}))
    return tmp_path


def test_steps_follow_the_java_harness(tmp_path: Path) -> None:
    steps = {s.id: s for s in S.steps(_suite(tmp_path), PackageCache(tmp_path / "cache"))}
    assert steps["a-base"].file == "a2.json" and "a-profile" in steps  # the last entry of a name wins
    assert "r5-base" not in steps and "off-base" not in steps
    assert steps["x-base"].category == "skip" and "XML" in steps["x-base"].reason
    assert steps["pkg-base"].category == "skip" and "package not available" in steps["pkg-base"].reason
    assert steps["opt-base"].category == "skip" and "security-checks" in steps["opt-base"].reason
    assert steps["t-base"].category == "terminology" and steps["srv-base"].category == "terminology"
    assert steps["a-base"].category == "core" and steps["a-base"].expected_valid  # no outcome file: no issues
    assert not steps["n / R4-base"].expected_valid  # '/' in a name is '-' in the outcome's file name


def test_paths_are_compared_without_java_annotations() -> None:
    assert S.normalise_path("Bundle.entry[0].resource/*Patient/p1*/.name[0]") == "Bundle.entry[0].resource.name[0]"
    assert S.normalise_path("Observation.value.ofType(Quantity)") == "Observation.value"
