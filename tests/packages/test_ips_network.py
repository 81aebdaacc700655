"""A real implementation guide by name: hl7.fhir.uv.ips#2.0.0 from the npm registry, then its 44 examples validated.

A network test (marker ``network``): it runs in CI, where the npm registry is reachable. It installs into the
real package cache (``$FHIR_SO_PACKAGES`` or ``~/.fhir/packages``), so a second run sends no request.

The verdicts are those of the HL7 validator engine on the same examples offline (DESIGN.md, Known facts): 41 of
44 valid, and the three example Bundles fail with "matches more than one slice" (an Observation that the engine
cannot exclude from the pregnancy slices, since it cannot decide LOINC membership offline).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fhir_so.cli import cli
from fhir_so.packages import PackageCache

pytestmark = pytest.mark.network

IPS = "hl7.fhir.uv.ips#2.0.0"
INVALID = {"Bundle-IPS-examples-Bundle-01.json", "Bundle-IPS-examples-Bundle-with-immunization.json", "Bundle-bundle-ips-all-sections.json"}


@pytest.fixture(scope="module")
def installed() -> dict[str, Any]:
    started = time.perf_counter()
    # npm only: the versions and examples measured are npm's (packages.fhir.org, where reachable, has other versions);
    # falling back from an unreachable registry is covered by the unit tests in test_registry.py
    result = CliRunner().invoke(cli, ["packages", "install", "--registry", "https://registry.npmjs.org", "--json", IPS])
    seconds = time.perf_counter() - started
    assert result.exit_code == 0, result.output
    return {"json": json.loads(result.stdout), "stderr": result.stderr, "seconds": seconds}


def test_ips_installs_by_name_with_its_dependencies_at_the_nearest_versions(installed: dict[str, Any]) -> None:
    cache = PackageCache()
    have = set(cache.installed())
    assert {("hl7.fhir.uv.ips", "2.0.0"), ("hl7.terminology.r4", "7.0.1"), ("hl7.fhir.uv.extensions.r4", "5.3.0-ballot-tc1")} <= have
    if installed["json"]["downloaded"]:  # the first run: the substitutions are announced (a cached run repeats them too)
        assert "hl7.fhir.uv.ips#2.0.0" in installed["json"]["downloaded"]
    stderr = installed["stderr"]
    assert "depends on hl7.terminology.r4#6.5.0" in stderr and "hl7.terminology.r4#7.0.1" in stderr
    assert "hl7.fhir.uv.ipa#1.1.0, which is on no package registry" in stderr  # IPA is not on npm: left out, not fatal
    defs = cache.definitions([IPS])
    assert [p.spec for p in defs.packages][:3] == [IPS, "hl7.terminology.r4#7.0.1", "hl7.fhir.uv.extensions.r4#5.3.0-ballot-tc1"]


def test_a_second_install_is_offline(installed: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FHIR_SO_PACKAGE_REGISTRIES", "http://127.0.0.1:9")  # nothing listens there
    again = CliRunner().invoke(cli, ["packages", "install", "--json", IPS])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["downloaded"] == [] and "not reachable" not in again.stderr


def test_the_44_ips_examples_get_the_hl7_validator_verdicts(installed: dict[str, Any]) -> None:
    examples = PackageCache().package_dir("hl7.fhir.uv.ips", "2.0.0") / "package" / "example"
    assert len([p for p in examples.glob("*.json") if not p.name.startswith(".")]) == 44
    result = CliRunner().invoke(cli, ["validate", "--package", IPS, "--format", "json", str(examples)])
    assert result.exit_code == 1, result.output
    outcomes = {Path(e["fullUrl"]).name: e["resource"]["issue"] for e in json.loads(result.stdout)["entry"]}
    assert len(outcomes) == 44
    failing = {name: [i for i in issues if i["severity"] in ("error", "fatal")] for name, issues in outcomes.items()}
    failing = {name: errs for name, errs in failing.items() if errs}
    assert set(failing) == INVALID, {k: [e["diagnostics"] for e in v][:3] for k, v in failing.items()}
    for name, errs in failing.items():
        rules = {e["details"]["coding"][0]["code"] for e in errs}
        assert "slicing-multiple" in rules and rules <= {"slicing-multiple", "slicing-cardinality"}, (name, rules)
