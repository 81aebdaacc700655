"""The consent scenario table against the real local HAPI servers: 0 records moved that the consent does not allow.

For each scenario a fresh case (its own case id and its own patient, so the Consents found by
patient are only that scenario's) is pushed to the source server without a records consent; the
scenario's Consents are then written there the way another system would (created, linked from
``ServiceRequest.supportingInfo`` or not), record codings edited where the scenario says, and
``transfer`` runs. What arrived on the destination is compared with the oracle of
tests/consent/scenarios.py. Every named scenario runs, and a seeded sample of the combinations.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator

import pytest

from fhir_so import terminology as term
from fhir_so.client import FhirClient
from fhir_so.errors import ConsentError
from fhir_so.workflow import push, transfer
from fhir_so.workflow.pull import pull_bundle

from tests.consent.figures import figures
from tests.consent.scenarios import NAMED, NOW, Refs, Scenario, base_case, combinations, consent_json, oracle

RUN = uuid.uuid4().hex[:8]
SAMPLE = 16
LIVE = NAMED + random.Random(20261129).sample(combinations(), SAMPLE)


@pytest.fixture(scope="module")
def clients(fhir_server_pair: tuple[str, str]) -> Iterator[tuple[FhirClient, FhirClient]]:
    source, destination = fhir_server_pair
    with FhirClient(source) as a, FhirClient(destination) as b:
        yield a, b


def _by_identifier(bundle: dict, rtype: str) -> dict[str, dict]:
    return {e["resource"]["identifier"][0]["value"]: e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype}


def stage(src: FhirClient, scenario: Scenario, index: int) -> tuple[str, str]:
    """Push the scenario's case and write its Consents on the source; (case id, ServiceRequest id)."""
    base = base_case()
    tag = f"{index}-{RUN}"
    patient = base.patient.model_copy(update={"identifier": base.patient.identifier.model_copy(update={"value": f"{base.patient.identifier.value}-{tag}"})})
    case = base.model_copy(update={"case_id": f"{base.case_id}-c{tag}", "patient": patient})
    request_id = push(src, case).request_id
    assert request_id is not None
    pulled = pull_bundle(src, request_id=request_id)
    sr = next(e["resource"] for e in pulled["entry"] if e["resource"]["resourceType"] == "ServiceRequest")
    docs = _by_identifier(pulled, "DocumentReference")
    ident = base.performer.identifier
    refs = Refs(
        {"reference": sr["subject"]["reference"]},
        {"reference": sr["performer"][0]["reference"]},
        {"reference": sr["requester"]["reference"]},
        {"system": ident.system, "value": ident.value},
        {value.split("/", 1)[1]: {"reference": f"DocumentReference/{doc['id']}"} for value, doc in docs.items()},
    )
    linked = []
    for i, spec in enumerate(scenario.consents):
        resource = consent_json(spec, i, f"{scenario.name}-{tag}", refs, {"system": patient.identifier.system, "value": patient.identifier.value})
        written = src.create(resource)
        if spec.linked:
            linked.append({"reference": f"Consent/{written.id}"})
    if linked:
        src.update({**sr, "supportingInfo": [*sr.get("supportingInfo", []), *linked]})
    for rid, codings in scenario.codings:
        doc = docs[f"{case.case_id}/{rid}"]
        src.update({**doc, "type": {"coding": [{"system": s, "code": c} for s, c in codings]}})
    return case.case_id, request_id


def arrived(dst: FhirClient, case_id: str) -> frozenset[str]:
    found = set()
    for rid in (r.id for r in base_case().records):
        if dst.search("DocumentReference", identifier=f"{term.SID_RECORD}|{case_id}/{rid}").count():
            found.add(rid)
    return frozenset(found)


@pytest.mark.parametrize(("index", "scenario"), list(enumerate(LIVE)), ids=[s.name for s in LIVE])
def test_live_scenario(clients: tuple[FhirClient, FhirClient], index: int, scenario: Scenario, request: pytest.FixtureRequest) -> None:
    src, dst = clients
    case_id, request_id = stage(src, scenario, index)
    want = oracle(scenario)
    try:
        result = transfer(src, dst, request_id, clock=lambda: NOW)
    except ConsentError:
        refused = True
    else:
        refused = False
        assert result.plan.verdicts[0].allowed
    got = arrived(dst, case_id)
    violations = len(got - (want or frozenset()))
    figures(request.config).add("live", 1, violations, int((None if refused else got) != want))
    assert violations == 0, f"moved {sorted(got)}, the consent allows {sorted(want or ())}"
    assert (None if refused else got) == want
    if refused:
        assert dst.search("ServiceRequest", identifier=f"{term.SID_CASE}|{case_id}").count() == 0
