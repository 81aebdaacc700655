"""DiagnosticReport: the second physician's opinion."""

from __future__ import annotations

from fhir_so import terminology as term
from fhir_so.case import Opinion
from fhir_so.errors import InputError
from fhir_so.mapping.common import (
    PATIENT,
    SERVICE_REQUEST,
    RefFor,
    Resource,
    attachment_from_fhir,
    attachment_to_fhir,
    coding_from,
    coding_of,
    identifier,
    reference,
    with_profile,
)
from fhir_so.mapping.graph import Node

_PROJECT_SYSTEMS = {term.CS_CONCORDANCE, term.CS_TREATMENT}


def opinion_to_fhir(opinion: Opinion, case_id: str, performer_key: str, ref_for: RefFor) -> Resource:
    codes = [{"coding": [coding_of(d)]} for d in opinion.diagnoses]
    codes.append(term.CONCORDANCE[opinion.concordance].concept())
    codes.append(term.TREATMENT[opinion.treatment_changed].concept())
    resource: Resource = {
        "resourceType": "DiagnosticReport",
        "identifier": [identifier(term.SID_OPINION, case_id)],
        "basedOn": [reference(ref_for, SERVICE_REQUEST)],
        "status": opinion.status,
        "code": term.CONSULT_NOTE.concept(),
        "subject": reference(ref_for, PATIENT),
        "issued": opinion.issued,
        "performer": [reference(ref_for, performer_key)],
        "conclusion": opinion.conclusion,
        "conclusionCode": codes,
    }
    if opinion.report is not None:
        resource["presentedForm"] = [attachment_to_fhir(opinion.report)]
    return with_profile(resource, term.SD_DIAGNOSTIC_REPORT)


def opinion_from_fhir(node: Node, source: str) -> Opinion:
    res, where = node.resource, node.where
    concordance = treatment = None
    diagnoses = []
    for i, concept in enumerate(res.get("conclusionCode") or []):
        for coding in concept.get("coding") or []:
            system, code = coding.get("system"), coding.get("code")
            if system == term.CS_CONCORDANCE:
                concordance = code
            elif system == term.CS_TREATMENT:
                treatment = {"changed": True, "unchanged": False}.get(code)
            elif system and code:
                diagnoses.append(coding_from(coding))
            else:
                raise InputError("a conclusionCode coding needs system and code", source=source, location=f"{where}.conclusionCode[{i}]")
    if concordance not in term.CONCORDANCE:
        raise InputError(
            f"the opinion needs one concordance code from {term.CS_CONCORDANCE}", source=source, location=f"{where}.conclusionCode"
        )
    if treatment is None:
        raise InputError(f"the opinion needs a treatment code from {term.CS_TREATMENT}", source=source, location=f"{where}.conclusionCode")
    for field in ("issued", "conclusion", "status"):
        if not res.get(field):
            raise InputError(f"the opinion needs {field}", source=source, location=f"{where}.{field}")
    forms = res.get("presentedForm") or []
    return Opinion(
        status=res["status"],
        issued=res["issued"],
        conclusion=res["conclusion"],
        diagnoses=diagnoses,
        concordance=concordance,
        treatment_changed=treatment,
        report=attachment_from_fhir(forms[0], f"{where}.presentedForm[0]", source) if forms else None,
    )
