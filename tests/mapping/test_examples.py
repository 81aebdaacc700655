"""The example cases in examples/: they load, round-trip, match their golden bundles and cover the story.

Each ``examples/<name>.case.json`` has a committed ``examples/<name>.bundle.json`` that is what
the builder makes of it, byte for byte: a change in the mapping shows up as a diff in review.
To refresh the golden files after an intended mapping change, rebuild them with
``fhir-so build examples/<name>.case.json -o examples/<name>.bundle.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import pytest

from fhir_so.bundle import build_bundle, bundle_json, parse_bundle
from fhir_so.case import Case, Concordance, Mode, Reason, load_case
from fhir_so.jsonio import load_json
from fhir_so.mapping.common import check_r4

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CASE_FILES = sorted(EXAMPLES.glob("*.case.json"))


def _stem(path: Path) -> str:
    return path.name.removesuffix(".case.json")


def _golden(path: Path) -> Path:
    return path.with_name(f"{_stem(path)}.bundle.json")


def _all_cases() -> list[Case]:
    return [load_case(p) for p in CASE_FILES]


def test_the_examples_are_there() -> None:
    assert len(CASE_FILES) >= 9, f"expected the nine stories of the brief in {EXAMPLES}"


@pytest.mark.parametrize("path", CASE_FILES, ids=_stem)
def test_example_round_trips(path: Path) -> None:
    case = load_case(path)
    assert parse_bundle(build_bundle(case)) == case


@pytest.mark.parametrize("path", CASE_FILES, ids=_stem)
def test_example_matches_its_golden_bundle(path: Path) -> None:
    golden = _golden(path)
    assert golden.exists(), f"{golden.name} is missing: build it from {path.name}"
    assert bundle_json(load_case(path)).encode("utf-8") == golden.read_bytes(), f"{golden.name} is stale"


@pytest.mark.parametrize("path", CASE_FILES, ids=_stem)
def test_golden_bundle_parses_back_to_the_case(path: Path) -> None:
    """What a reader of the committed file gets, not only what is in memory after a build."""
    golden = _golden(path)
    assert parse_bundle(load_json(golden), str(golden)) == load_case(path)


@pytest.mark.parametrize("path", CASE_FILES, ids=_stem)
def test_every_built_resource_is_valid_r4(path: Path) -> None:
    bundle = build_bundle(load_case(path))
    for i, entry in enumerate(bundle["entry"]):
        check_r4(entry["resource"], f"Bundle.entry[{i}].resource", path.name)
    check_r4(bundle, "Bundle", path.name)


@pytest.mark.parametrize("path", CASE_FILES, ids=_stem)
def test_case_ids_and_fullurls_are_unique_across_examples(path: Path) -> None:
    """Examples pushed to one server must not overwrite each other's case-owned resources."""
    ids = [c.case_id for c in _all_cases()]
    assert ids.count(load_case(path).case_id) == 1
    urls = [e["fullUrl"] for e in json.loads(_golden(path).read_text(encoding="utf-8"))["entry"]]
    assert len(urls) == len(set(urls))


def test_no_orphan_golden_bundles() -> None:
    stems = {_stem(p) for p in CASE_FILES}
    orphans = sorted(p.name for p in EXAMPLES.glob("*.bundle.json") if p.name.removesuffix(".bundle.json") not in stems)
    assert not orphans, f"golden bundles without a case file: {orphans}"


def test_readme_describes_every_example() -> None:
    readme = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    missing = [_stem(p) for p in CASE_FILES if f"`{_stem(p)}`" not in readme]
    assert not missing, f"examples/README.md has no paragraph for: {missing}"


def test_examples_cover_the_whole_story() -> None:
    """Taking an example away must not silently drop a part of the domain from the golden tests."""
    cases = _all_cases()
    consents = [c for case in cases for c in (case.records_consent, case.report_consent) if c is not None]
    opinions = [case.opinion for case in cases if case.opinion is not None]
    records = [r for case in cases for r in case.records]

    assert {r for case in cases for r in case.reasons} == set(get_args(Reason))
    assert {case.mode for case in cases} == set(get_args(Mode))
    assert {o.concordance for o in opinions} == set(get_args(Concordance))
    assert {o.treatment_changed for o in opinions} == {True, False}
    assert any(case.records_consent is not None for case in cases), "a consent for records out"
    assert any(case.report_consent is not None for case in cases), "a consent for the report back"
    assert any(c.status == "revoked" for c in consents), "a revoked consent"
    assert any(c.decision == "deny" or c.status == "rejected" for c in consents), "a refused report back"
    assert any(c.period.end is not None and c.period.end < "2026" for c in consents), "an expired consent"
    assert any(c.record_kinds for c in consents), "a consent limited to some record kinds"
    assert any(case.is_stat for case in cases), "a stat request"
    assert any(case.insurance is not None for case in cases), "a payer"
    assert any(case.earlier_opinions for case in cases), "a third opinion carrying an earlier one"
    assert any(case.performer.kind == "organization" for case in cases), "a second-opinion service"
    assert any(case.opinion is None for case in cases), "a request still waiting for its opinion"
    assert any(r.restricted for r in records), "a restricted record"
    assert any(r.content.url is not None for r in records), "a record sent by url"
    assert any(r.content.data is not None for r in records), "a record sent inline"
    assert {r.kind for r in records} >= {"lab-report", "pathology", "imaging", "treatment-plan", "patient-questions"}
    assert any(case.questions for case in cases), "the patient's own questions"
