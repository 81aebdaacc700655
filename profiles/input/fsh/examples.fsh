// One valid instance of each profile (the urology story), with the parties they refer to.

Instance: so-example-patient
InstanceOf: Patient
Usage: #example
Title: "Example patient"
* identifier.system = "https://fhir-so.org/fhir/sid/local"
* identifier.value = "patient-0001"
* name.family = "Moreau"
* name.given = "Jean"
* gender = #male
* birthDate = "1958-04-12"

Instance: so-example-first-physician
InstanceOf: Practitioner
Usage: #example
Title: "Example first physician (urologist)"
* identifier.system = "http://hl7.org/fhir/sid/us-npi"
* identifier.value = "1234567893"
* name.family = "Okafor"
* name.given = "Ada"
* name.prefix = "Dr."

Instance: so-example-second-physician
InstanceOf: Practitioner
Usage: #example
Title: "Example second physician (oncologist)"
* identifier.system = "http://hl7.org/fhir/sid/us-npi"
* identifier.value = "1987654325"
* name.family = "Lindqvist"
* name.given = "Erik"
* name.prefix = "Dr."

Instance: so-example-service-request
InstanceOf: SoServiceRequest
Usage: #example
Title: "Example second-opinion request"
* identifier[caseId].system = "https://fhir-so.org/fhir/sid/case-id"
* identifier[caseId].value = "uro-2024-001"
* status = #active
* intent = #order
* priority = #routine
* category[consultation] = $sct#11429006 "Consultation"
* code = $sct#77406008 "Confirmatory medical consultation"
* orderDetail[mode] = $so-mode#record-review "Remote review of the records"
* subject = Reference(so-example-patient)
* authoredOn = "2024-03-01T09:30:00Z"
* requester = Reference(so-example-first-physician)
* performer = Reference(so-example-second-physician)
* reasonCode[secondOpinion] = $v2-0336#S "Second Opinion"
* reasonCode[reason] = $so-reason#serious-diagnosis "Serious or life-threatening diagnosis"
* reasonCode[2] = $sct#399068003 "Malignant tumor of prostate"
* supportingInfo[0] = Reference(so-example-consent-records)
* supportingInfo[1] = Reference(so-example-consent-report)
* note.text = "Is active surveillance safe for me?"

Instance: so-example-consent-records
InstanceOf: SoConsentRecords
Usage: #example
Title: "Example consent to send records"
* identifier[consentId].system = "https://fhir-so.org/fhir/sid/consent-id"
* identifier[consentId].value = "uro-2024-001-records"
* status = #active
* scope = $consentscope#patient-privacy "Privacy Consent"
* category[patientConsent] = $loinc#59284-0 "Patient Consent"
* patient = Reference(so-example-patient)
* dateTime = "2024-02-28T16:00:00Z"
* performer = Reference(so-example-patient)
* policyRule = $consentpolicycodes#hipaa-auth "HIPAA Authorization"
* provision.type = #permit
* provision.period.start = "2024-02-28T16:00:00Z"
* provision.period.end = "2024-08-28T16:00:00Z"
* provision.actor[recipient].role = $v3-ParticipationType#IRCP "information recipient"
* provision.actor[recipient].reference = Reference(so-example-second-physician)
* provision.action[disclose] = $consentaction#disclose "Disclose"
* provision.purpose[treatment] = $v3-ActReason#TREAT "treatment"
* provision.class[documentReference] = $resource-types#DocumentReference
* provision.code[0] = $loinc#11529-5 "Surgical pathology study"
* provision.code[1] = $loinc#18748-4 "Diagnostic imaging study"

Instance: so-example-consent-report
InstanceOf: SoConsentReport
Usage: #example
Title: "Example consent for the report to go back"
* identifier[consentId].system = "https://fhir-so.org/fhir/sid/consent-id"
* identifier[consentId].value = "uro-2024-001-report"
* status = #active
* scope = $consentscope#patient-privacy "Privacy Consent"
* category[patientConsent] = $loinc#59284-0 "Patient Consent"
* patient = Reference(so-example-patient)
* dateTime = "2024-02-28T16:00:00Z"
* performer = Reference(so-example-patient)
* policyRule = $consentpolicycodes#hipaa-auth "HIPAA Authorization"
* provision.type = #permit
* provision.actor[recipient].role = $v3-ParticipationType#IRCP "information recipient"
* provision.actor[recipient].reference = Reference(so-example-first-physician)
* provision.action[disclose] = $consentaction#disclose "Disclose"
* provision.purpose[treatment] = $v3-ActReason#TREAT "treatment"
* provision.class[diagnosticReport] = $resource-types#DiagnosticReport
* provision.code[consultNote] = $loinc#11488-4 "Consult note"

Instance: so-example-document-reference
InstanceOf: SoDocumentReference
Usage: #example
Title: "Example record: surgical pathology"
* identifier[recordId].system = "https://fhir-so.org/fhir/sid/record-id"
* identifier[recordId].value = "uro-2024-001/biopsy"
* status = #current
* type = $loinc#11529-5 "Surgical pathology study"
* subject = Reference(so-example-patient)
* date = "2024-02-20T11:00:00Z"
* author = Reference(so-example-first-physician)
* description = "Prostate biopsy pathology report"
* content.attachment.contentType = #text/plain
* content.attachment.data = "QmlvcHN5OiBhZGVub2NhcmNpbm9tYSwgR2xlYXNvbiAzKzQ9Ny4K"
* content.attachment.size = 39
* content.attachment.hash = "8UJ+a9UyhHkTOaHLExjk/C7zGQc="
* content.attachment.title = "biopsy.txt"
* context.related = Reference(so-example-service-request)

Instance: so-example-diagnostic-report
InstanceOf: SoDiagnosticReport
Usage: #example
Title: "Example second opinion"
* identifier[opinionId].system = "https://fhir-so.org/fhir/sid/opinion-id"
* identifier[opinionId].value = "uro-2024-001"
* basedOn = Reference(so-example-service-request)
* status = #final
* code = $loinc#11488-4 "Consult note"
* subject = Reference(so-example-patient)
* issued = "2024-03-10T14:00:00Z"
* performer = Reference(so-example-second-physician)
* conclusion = "Diagnosis confirmed: low-intermediate risk prostate adenocarcinoma; active surveillance is a safe option."
* conclusionCode[concordance] = $so-concordance#confirmed "Diagnosis confirmed"
* conclusionCode[treatment] = $so-treatment#unchanged "Treatment plan unchanged"
* conclusionCode[2] = $sct#399068003 "Malignant tumor of prostate"
* presentedForm.contentType = #text/plain
* presentedForm.data = "U2Vjb25kIG9waW5pb246IGRpYWdub3NpcyBjb25maXJtZWQ7IGFjdGl2ZSBzdXJ2ZWlsbGFuY2UgYWR2aXNlZC4K"
* presentedForm.size = 66
* presentedForm.hash = "dsMlbn9hByxeJbgXh9ZbrxGqlOo="
* presentedForm.title = "opinion.txt"

Instance: so-example-task
InstanceOf: SoTask
Usage: #example
Title: "Example referral task: on hold, the imaging asked for"
* identifier[taskId].system = "https://fhir-so.org/fhir/sid/task-id"
* identifier[taskId].value = "uro-2024-001"
* status = #on-hold
* businessStatus = $so-task-status#more-info-needed "More information needed"
* intent = #order
* priority = #routine
* code = $task-code#fulfill "Fulfill the focal request"
* focus = Reference(so-example-service-request)
* for = Reference(so-example-patient)
* authoredOn = "2024-03-01T10:00:00Z"
* lastModified = "2024-03-02T08:15:00Z"
* requester = Reference(so-example-first-physician)
* owner = Reference(so-example-second-physician)
* note.text = "Please send the MRI of the pelvis."
* input[record].type = $so-task-io#record "Record sent for the opinion"
* input[record].valueReference = Reference(so-example-document-reference)
* output[recordsRequested].type = $so-task-io#records-requested "Record kind requested by the second physician"
* output[recordsRequested].valueCodeableConcept = $loinc#18748-4 "Diagnostic imaging study"
