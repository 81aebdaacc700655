"""Conformance is not policy: ``fhir-so validate`` judges conformance; ``--rules transfer`` adds the policy.

The project's golden bundles are conformant (0 errors, 0 warnings: every built resource has a
generated narrative, so dom-6 holds), even the three that truthfully record a revoked consent,
an expired one and a denied report-back; asked for, the business rules flag exactly those, with
the rule ids the transfer's own consent policy uses.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fhir_so.bundle import build_bundle, parse_bundle
from fhir_so.case import load_case
from fhir_so.cli import cli
from fhir_so.mapping.narrative import narrative
from fhir_so.packages import PackageCache
from fhir_so.terminology import PACKAGE_NAME, PACKAGE_VERSION

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BUNDLES = sorted(str(p) for p in EXAMPLES.glob("*.bundle.json"))


@pytest.fixture(scope="module")
def profiles_built(definitions: Any) -> None:
    if (PACKAGE_NAME, PACKAGE_VERSION) not in PackageCache().installed():
        pytest.skip("the project's profiles are not built (fhir-so profiles build)")


def _run(*args: str) -> Any:
    return CliRunner().invoke(cli, ["validate", *args, "--format", "json"])


def _issues(doc: dict[str, Any]) -> list[dict[str, Any]]:
    outcomes = [e["resource"] for e in doc["entry"]] if doc["resourceType"] == "Bundle" else [doc]
    return [i for o in outcomes for i in o.get("issue", [])]


def test_the_examples_are_conformant_with_no_warning(profiles_built: None) -> None:
    result = _run(*BUNDLES)
    assert result.exit_code == 0, result.output
    found = [(i["severity"], i.get("expression"), i.get("diagnostics")) for i in _issues(json.loads(result.stdout))
             if i["severity"] in ("fatal", "error", "warning")]
    assert found == []


def test_rules_transfer_flags_the_policy_with_its_rule_ids(profiles_built: None) -> None:
    result = _run("--rules", "transfer", *BUNDLES)
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    flagged = {}
    for entry in doc["entry"]:
        for issue in entry["resource"].get("issue", []):
            rule = next((c["code"] for c in (issue.get("details") or {}).get("coding", []) if str(c.get("code", "")).startswith("so-")), None)
            if rule:
                flagged.setdefault(Path(entry["fullUrl"].split("#")[0]).name, set()).add(rule)
    assert flagged == {
        "expired-consent.bundle.json": {"so-consent-active", "so-record-withheld"},
        "revoked-consent.bundle.json": {"so-consent-active", "so-record-withheld"},
        "records-out-no-report-back.bundle.json": {"so-consent-report"},
        "stat-request.bundle.json": {"so-stat-flagged"},
    }


def test_rules_cannot_go_to_a_server() -> None:
    result = CliRunner().invoke(cli, ["validate", "--rules", "transfer", "--server", "http://127.0.0.1:9/fhir", BUNDLES[0]])
    assert result.exit_code == 2 and "--rules" in result.output


ALLOWED = re.compile(r'^<div xmlns="http://www\.w3\.org/1999/xhtml">(<p><b>[^<>&]*</b>: ([^<>]|&(amp|lt|gt|quot|#x27);)*</p>)+</div>$')


def test_narrative_is_escaped_and_uses_only_safe_xhtml() -> None:
    hostile = {"resourceType": "DocumentReference", "description": '<script>alert("x")</script> & <img src=x onerror=y>',
               "type": {"text": "</div><b>"}, "status": "current"}
    div = narrative(hostile)["div"]
    assert "<script" not in div and "<img" not in div and "&lt;script&gt;" in div
    assert ALLOWED.match(div), div


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.case.json")), ids=lambda p: p.name)
def test_every_built_resource_has_a_generated_narrative_that_parse_ignores(path: Path) -> None:
    case = load_case(path)
    bundle = build_bundle(case)
    for entry in bundle["entry"]:
        text = entry["resource"]["text"]
        assert text["status"] == "generated" and ALLOWED.match(text["div"]), text
    stripped = {**bundle, "entry": [{**e, "resource": {k: v for k, v in e["resource"].items() if k != "text"}} for e in bundle["entry"]]}
    assert parse_bundle(bundle) == parse_bundle(stripped)
