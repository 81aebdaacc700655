"""Every code system, code and canonical URL fhir-so uses, in one place.

No other module spells a system URI: mapping, profiles checks and business rules import the
constants and tables below. Standard codes are used wherever one exists (SNOMED CT, LOINC,
HL7 v2/v3, FHIR consent codes); the project's own CodeSystems cover what has no standard
code: why a second opinion is sought (``so-reason``), how it is given (``so-mode``), how
the opinion compares with the first (``so-concordance``) and whether treatment changed
(``so-treatment``).
"""

from __future__ import annotations

from typing import Final, NamedTuple


class Code(NamedTuple):
    """One coding: system, code and display."""

    system: str
    code: str
    display: str

    def coding(self) -> dict[str, str]:
        """As a FHIR Coding (a plain dict)."""
        return {"system": self.system, "code": self.code, "display": self.display}

    def concept(self) -> dict[str, list[dict[str, str]]]:
        """As a FHIR CodeableConcept with this one coding."""
        return {"coding": [self.coding()]}


# --- the project's canonical base --------------------------------------------------------
CANONICAL: Final = "https://fhir-so.org/fhir"
PACKAGE_NAME: Final = "fhir-so.profiles"
PACKAGE_VERSION: Final = "0.1.0"

# identifier systems the mapping writes (the idempotency keys of a case's resources)
SID_CASE: Final = f"{CANONICAL}/sid/case-id"
SID_OPINION: Final = f"{CANONICAL}/sid/opinion-id"
SID_CONSENT: Final = f"{CANONICAL}/sid/consent-id"
SID_RECORD: Final = f"{CANONICAL}/sid/record-id"
SID_COVERAGE: Final = f"{CANONICAL}/sid/coverage-id"
SID_TASK: Final = f"{CANONICAL}/sid/task-id"  # Task.identifier value = the case id (one Task per case and server)
SID_LOCAL: Final = f"{CANONICAL}/sid/local"  # default system for party identifiers given without one
SID_NPI: Final = "http://hl7.org/fhir/sid/us-npi"

# the project's CodeSystems and ValueSets
CS_REASON: Final = f"{CANONICAL}/CodeSystem/so-reason"
CS_MODE: Final = f"{CANONICAL}/CodeSystem/so-mode"
CS_CONCORDANCE: Final = f"{CANONICAL}/CodeSystem/so-concordance"
CS_TREATMENT: Final = f"{CANONICAL}/CodeSystem/so-treatment"
CS_TASK_STATUS: Final = f"{CANONICAL}/CodeSystem/so-task-status"  # Task.businessStatus
CS_TASK_IO: Final = f"{CANONICAL}/CodeSystem/so-task-io"  # Task.input.type / Task.output.type
VS_REASON: Final = f"{CANONICAL}/ValueSet/so-reason"
VS_MODE: Final = f"{CANONICAL}/ValueSet/so-mode"
VS_CONCORDANCE: Final = f"{CANONICAL}/ValueSet/so-concordance"
VS_TREATMENT: Final = f"{CANONICAL}/ValueSet/so-treatment"
VS_RECORD_TYPE: Final = f"{CANONICAL}/ValueSet/so-record-type"
VS_TASK_STATUS: Final = f"{CANONICAL}/ValueSet/so-task-status"
VS_TASK_IO: Final = f"{CANONICAL}/ValueSet/so-task-io"

# the rule that raised a validation finding (OperationOutcome.issue.details)
CS_VALIDATION_RULE: Final = f"{CANONICAL}/CodeSystem/so-validation-rule"
MIME_TYPES: Final = "urn:ietf:bcp:13"
LANGUAGES: Final = "urn:ietf:bcp:47"

# the project's profiles
SD_SERVICE_REQUEST: Final = f"{CANONICAL}/StructureDefinition/so-service-request"
SD_CONSENT_RECORDS: Final = f"{CANONICAL}/StructureDefinition/so-consent-records"
SD_CONSENT_REPORT: Final = f"{CANONICAL}/StructureDefinition/so-consent-report"
SD_DOCUMENT_REFERENCE: Final = f"{CANONICAL}/StructureDefinition/so-document-reference"
SD_DIAGNOSTIC_REPORT: Final = f"{CANONICAL}/StructureDefinition/so-diagnostic-report"
SD_TASK: Final = f"{CANONICAL}/StructureDefinition/so-task"

# --- standard code systems -----------------------------------------------------------------
SNOMED: Final = "http://snomed.info/sct"
LOINC: Final = "http://loinc.org"
UCUM: Final = "http://unitsofmeasure.org"
ICD10: Final = "http://hl7.org/fhir/sid/icd-10"
# HL7 Terminology (THO): where terminology.hl7.org CodeSystems live, and its package
THO_CODE_SYSTEMS: Final = "http://terminology.hl7.org/CodeSystem/"
THO_PACKAGE: Final = "hl7.terminology"
V2_0336: Final = "http://terminology.hl7.org/CodeSystem/v2-0336"
V3_ACT_REASON: Final = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
V3_PARTICIPATION_TYPE: Final = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
V3_CONFIDENTIALITY: Final = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
CONSENT_SCOPE: Final = "http://terminology.hl7.org/CodeSystem/consentscope"
CONSENT_ACTION: Final = "http://terminology.hl7.org/CodeSystem/consentaction"
CONSENT_POLICY: Final = "http://terminology.hl7.org/CodeSystem/consentpolicycodes"
RESOURCE_TYPES: Final = "http://hl7.org/fhir/resource-types"
PROVENANCE_PARTICIPANT: Final = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
V3_DATA_OPERATION: Final = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
TASK_CODE: Final = "http://hl7.org/fhir/CodeSystem/task-code"

# --- ServiceRequest ---------------------------------------------------------------------------
CONSULTATION: Final = Code(SNOMED, "11429006", "Consultation")
CONFIRMATORY_CONSULTATION: Final = Code(SNOMED, "77406008", "Confirmatory medical consultation")
SECOND_OPINION: Final = Code(V2_0336, "S", "Second Opinion")
TELEHEALTH: Final = Code(SNOMED, "763184009", "Assessment using telemedicine")

REASONS: Final[dict[str, Code]] = {
    code: Code(CS_REASON, code, display)
    for code, display in (
        ("serious-diagnosis", "Serious or life-threatening diagnosis"),
        ("rare-condition", "Rare condition"),
        ("uncertain-diagnosis", "Diagnosis unclear or uncertain"),
        ("major-surgery", "Major surgery proposed"),
        ("high-risk-treatment", "High-risk, toxic or experimental treatment proposed"),
        ("treatment-not-working", "Treatment is not working"),
        ("several-options", "Several treatment options exist"),
        ("insurer-required", "The payer requires a second opinion"),
        ("patient-wish", "The patient wishes a second opinion"),
        ("discordant-opinions", "Third opinion after discordant opinions"),
    )
}

MODES: Final[dict[str, Code]] = {
    code: Code(CS_MODE, code, display)
    for code, display in (
        ("in-person", "In-person consultation"),
        ("record-review", "Remote review of the records"),
        ("telehealth", "Telehealth consultation"),
    )
}

# --- Consent ---------------------------------------------------------------------------------
CONSENT_SCOPE_PRIVACY: Final = Code(CONSENT_SCOPE, "patient-privacy", "Privacy Consent")
CONSENT_CATEGORY: Final = Code(LOINC, "59284-0", "Patient Consent")
CONSENT_POLICY_RULE: Final = Code(CONSENT_POLICY, "hipaa-auth", "HIPAA Authorization")
ACTION_DISCLOSE: Final = Code(CONSENT_ACTION, "disclose", "Disclose")
PURPOSE_TREATMENT: Final = Code(V3_ACT_REASON, "TREAT", "treatment")
ROLE_RECIPIENT: Final = Code(V3_PARTICIPATION_TYPE, "IRCP", "information recipient")
# What the consent policy reads (fhir_so/consent.py): the consentaction codes, and the v3
# PurposeOfUse hierarchy around treatment (hl7.terminology.r4 7.0.1, CodeSystem v3-ActReason,
# hierarchyMeaning is-a): TREAT's parent and its specialisations.
CONSENT_ACTIONS: Final = frozenset({"collect", "access", "use", "disclose", "correct"})
PURPOSE_OF_USE: Final = Code(V3_ACT_REASON, "PurposeOfUse", "purpose of use")
TREAT_SPECIALISATIONS: Final = frozenset({"CLINTRL", "COC", "ETREAT", "BTG", "ERTREAT", "POPHLTH", "TREATDS"})
PURPOSE_RESEARCH: Final = Code(V3_ACT_REASON, "HRESCH", "healthcare research")
PURPOSE_MARKETING: Final = Code(V3_ACT_REASON, "HMARKT", "healthcare marketing")
RESTRICTED: Final = Code(V3_CONFIDENTIALITY, "R", "restricted")

# --- DocumentReference: record kinds and their LOINC document types -------------------------
RECORD_TYPES: Final[dict[str, Code]] = {
    kind: Code(LOINC, code, display)
    for kind, code, display in (
        ("lab-report", "11502-2", "Laboratory report"),
        ("pathology", "11526-1", "Pathology study"),
        ("surgical-pathology", "11529-5", "Surgical pathology study"),
        ("imaging", "18748-4", "Diagnostic imaging study"),
        ("operative-note", "11504-8", "Surgical operation note"),
        ("discharge-summary", "18842-5", "Discharge summary"),
        ("treatment-plan", "18776-5", "Plan of care note"),
        ("medication-list", "10160-0", "History of Medication use Narrative"),
        ("patient-questions", "51855-5", "Patient Note"),
        ("consult-note", "11488-4", "Consult note"),  # an earlier opinion, sent to the next physician
    )
}
RECORD_KIND_BY_LOINC: Final[dict[str, str]] = {c.code: kind for kind, c in RECORD_TYPES.items()}

# --- DiagnosticReport: the opinion ------------------------------------------------------------
CONSULT_NOTE: Final = Code(LOINC, "11488-4", "Consult note")

CONCORDANCE: Final[dict[str, Code]] = {
    code: Code(CS_CONCORDANCE, code, display)
    for code, display in (
        ("confirmed", "Diagnosis confirmed"),
        ("refined", "Diagnosis refined"),
        ("different", "Different diagnosis"),
        ("inconclusive", "Inconclusive"),
    )
}

TREATMENT: Final[dict[bool, Code]] = {
    True: Code(CS_TREATMENT, "changed", "Treatment plan changed"),
    False: Code(CS_TREATMENT, "unchanged", "Treatment plan unchanged"),
}

# --- Task: the referral's life on the second-opinion server ----------------------------------
# Task.code as FHIR Clinical Order Workflows and BSeR use it: the Task fulfils its focus (the request).
TASK_FULFILL: Final = Code(TASK_CODE, "fulfill", "Fulfill the focal request")
# HL7 BSeR names these business statuses in prose but publishes no CodeSystem in a package
# we have (it is on no registry we can reach): the project's own so-task-status carries them.
TASK_BUSINESS_STATUS: Final[dict[str, Code]] = {
    code: Code(CS_TASK_STATUS, code, display)
    for code, display in (
        ("received", "Referral received"),
        ("accepted", "Referral accepted"),
        ("declined", "Referral declined"),
        ("more-info-needed", "More information needed"),
        ("in-progress", "Opinion in progress"),
        ("completed", "Opinion completed"),
    )
}
# What a Task's inputs and outputs are: the records sent, the record kinds asked for,
# the opinion written, and (for a third opinion) the earlier Task.
TASK_IO: Final[dict[str, Code]] = {
    code: Code(CS_TASK_IO, code, display)
    for code, display in (
        ("record", "Record sent for the opinion"),
        ("records-requested", "Record kind requested by the second physician"),
        ("opinion", "The opinion (DiagnosticReport)"),
        ("earlier-task", "The Task of an earlier opinion"),
    )
}

# --- Provenance of a transfer --------------------------------------------------------------
PROVENANCE_AUTHOR: Final = Code(PROVENANCE_PARTICIPANT, "author", "Author")
PROVENANCE_ASSEMBLER: Final = Code(PROVENANCE_PARTICIPANT, "assembler", "Assembler")
ACTIVITY_CREATE: Final = Code(V3_DATA_OPERATION, "CREATE", "create")
TAG_TRANSFER: Final = f"{CANONICAL}/sid/transfer-id"  # meta.tag system: R4 Provenance has no identifier
SID_SOFTWARE: Final = f"{CANONICAL}/sid/software"  # the Device that stands for fhir-so in a Provenance
URI: Final = "urn:ietf:rfc:3986"  # identifier system whose value is a URI (the source ServiceRequest's URL)


def project_code_systems() -> dict[str, dict[str, str]]:
    """The project's CodeSystems as {canonical URL: {code: display}} (for profiles and checks)."""
    return {
        CS_REASON: {k: c.display for k, c in REASONS.items()},
        CS_MODE: {k: c.display for k, c in MODES.items()},
        CS_CONCORDANCE: {k: c.display for k, c in CONCORDANCE.items()},
        CS_TREATMENT: {c.code: c.display for c in TREATMENT.values()},
        CS_TASK_STATUS: {k: c.display for k, c in TASK_BUSINESS_STATUS.items()},
        CS_TASK_IO: {k: c.display for k, c in TASK_IO.items()},
    }
