RuleSet: SoConsentBase(purpose)
* ^status = #active
* ^experimental = false
* insert IdentifierSlice(consentId, https://fhir-so.org/fhir/sid/consent-id)
* scope = $consentscope#patient-privacy
* category 1..* MS
* insert CodeSlicing(category, [[Must include LOINC 59284-0 Patient Consent.]])
* category contains patientConsent 1..1 MS
* category[patientConsent] = $loinc#59284-0
* patient 1..1 MS
* patient only Reference(Patient)
* dateTime 1..1 MS
* performer 1..* MS
* performer only Reference(Patient)
* policyRule 1..1 MS
* policyRule = $consentpolicycodes#hipaa-auth
* provision 1..1 MS
* provision.type 1..1 MS
* provision.period MS
* provision.actor 1..* MS
* provision.actor ^slicing.discriminator.type = #pattern
* provision.actor ^slicing.discriminator.path = "role"
* provision.actor ^slicing.rules = #open
* provision.actor ^slicing.description = "The recipient of the disclosure (v3 IRCP)."
* provision.actor contains recipient 1..1 MS
* provision.actor[recipient].role = $v3-ParticipationType#IRCP
* provision.action 1..* MS
* insert CodeSlicing(provision.action, [[Must include consentaction disclose.]])
* provision.action contains disclose 1..1 MS
* provision.action[disclose] = $consentaction#disclose
* provision.purpose 1..* MS
* insert CodeSlicing(provision.purpose, [[Must include v3-ActReason TREAT.]])
* provision.purpose contains treatment 1..1 MS
* provision.purpose[treatment] = $v3-ActReason#TREAT
* provision.class 1..* MS
* insert CodeSlicing(provision.class, [[Must include the resource type the consent covers.]])
* provision.class contains {purpose} 1..1 MS

Profile: SoConsentRecords
Parent: Consent
Id: so-consent-records
Title: "Consent to send records for a second opinion"
Description: "The patient's consent to disclose records to the second physician or service (the recipient); provision.code limits the record kinds (none: every kind)."
* insert SoConsentBase(documentReference)
* provision.actor[recipient].reference only Reference(Practitioner or Organization)
* provision.class[documentReference] = $resource-types#DocumentReference
* provision.code MS
* provision.code from SoRecordTypeVS (extensible)

Profile: SoConsentReport
Parent: Consent
Id: so-consent-report
Title: "Consent for the second-opinion report to go back"
Description: "The patient's consent to disclose the second physician's report (a consult note) to the first physician. Consent to send records out is not consent to send the report back."
* insert SoConsentBase(diagnosticReport)
* provision.actor[recipient].reference only Reference(Practitioner or Organization)
* provision.class[diagnosticReport] = $resource-types#DiagnosticReport
* provision.code 1..* MS
* insert CodeSlicing(provision.code, [[Must include LOINC 11488-4 Consult note.]])
* provision.code contains consultNote 1..1 MS
* provision.code[consultNote] = $loinc#11488-4
