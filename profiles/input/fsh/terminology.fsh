// The project's code systems and value sets: the same codes and displays as fhir_so/terminology.py.

CodeSystem: SoReason
Id: so-reason
Title: "Second-opinion reason"
Description: "Why a second (or third) opinion is sought; there is no standard code for these."
* ^status = #active
* ^experimental = false
* ^caseSensitive = true
* ^content = #complete
* #serious-diagnosis "Serious or life-threatening diagnosis"
* #rare-condition "Rare condition"
* #uncertain-diagnosis "Diagnosis unclear or uncertain"
* #major-surgery "Major surgery proposed"
* #high-risk-treatment "High-risk, toxic or experimental treatment proposed"
* #treatment-not-working "Treatment is not working"
* #several-options "Several treatment options exist"
* #insurer-required "The payer requires a second opinion"
* #patient-wish "The patient wishes a second opinion"
* #discordant-opinions "Third opinion after discordant opinions"

ValueSet: SoReasonVS
Id: so-reason
Title: "Second-opinion reasons"
Description: "Every so-reason code."
* ^status = #active
* ^experimental = false
* include codes from system SoReason

CodeSystem: SoMode
Id: so-mode
Title: "Second-opinion mode"
Description: "How a second opinion is given: in person, by remote review of the records, or by telehealth."
* ^status = #active
* ^experimental = false
* ^caseSensitive = true
* ^content = #complete
* #in-person "In-person consultation"
* #record-review "Remote review of the records"
* #telehealth "Telehealth consultation"

ValueSet: SoModeVS
Id: so-mode
Title: "Second-opinion modes"
Description: "Every so-mode code."
* ^status = #active
* ^experimental = false
* include codes from system SoMode

CodeSystem: SoConcordance
Id: so-concordance
Title: "Second-opinion concordance"
Description: "How the second opinion compares with the first diagnosis."
* ^status = #active
* ^experimental = false
* ^caseSensitive = true
* ^content = #complete
* #confirmed "Diagnosis confirmed"
* #refined "Diagnosis refined"
* #different "Different diagnosis"
* #inconclusive "Inconclusive"

ValueSet: SoConcordanceVS
Id: so-concordance
Title: "Second-opinion concordance codes"
Description: "Every so-concordance code."
* ^status = #active
* ^experimental = false
* include codes from system SoConcordance

CodeSystem: SoTreatment
Id: so-treatment
Title: "Treatment change after a second opinion"
Description: "Whether the second opinion changed the treatment plan."
* ^status = #active
* ^experimental = false
* ^caseSensitive = true
* ^content = #complete
* #changed "Treatment plan changed"
* #unchanged "Treatment plan unchanged"

ValueSet: SoTreatmentVS
Id: so-treatment
Title: "Treatment change codes"
Description: "Every so-treatment code."
* ^status = #active
* ^experimental = false
* include codes from system SoTreatment

ValueSet: SoRecordTypeVS
Id: so-record-type
Title: "Second-opinion record types"
Description: "The LOINC document types of the records sent for a second opinion."
* ^status = #active
* ^experimental = false
* $loinc#11502-2 "Laboratory report"
* $loinc#11526-1 "Pathology study"
* $loinc#11529-5 "Surgical pathology study"
* $loinc#18748-4 "Diagnostic imaging study"
* $loinc#11504-8 "Surgical operation note"
* $loinc#18842-5 "Discharge summary"
* $loinc#18776-5 "Plan of care note"
* $loinc#10160-0 "History of Medication use Narrative"
* $loinc#51855-5 "Patient Note"
* $loinc#11488-4 "Consult note"

CodeSystem: SoTaskStatus
Id: so-task-status
Title: "Second-opinion referral business status"
Description: "Where a second-opinion referral stands, in the referral's words (Task.businessStatus), after the business statuses HL7 BSeR describes."
* ^status = #active
* ^experimental = false
* ^caseSensitive = true
* ^content = #complete
* #received "Referral received"
* #accepted "Referral accepted"
* #declined "Referral declined"
* #more-info-needed "More information needed"
* #in-progress "Opinion in progress"
* #completed "Opinion completed"

ValueSet: SoTaskStatusVS
Id: so-task-status
Title: "Second-opinion referral business statuses"
Description: "Every so-task-status code."
* ^status = #active
* ^experimental = false
* include codes from system SoTaskStatus

CodeSystem: SoTaskIo
Id: so-task-io
Title: "Second-opinion task inputs and outputs"
Description: "What a second-opinion Task's inputs and outputs are: the records sent, the record kinds asked for, the opinion, the earlier Task."
* ^status = #active
* ^experimental = false
* ^caseSensitive = true
* ^content = #complete
* #record "Record sent for the opinion"
* #records-requested "Record kind requested by the second physician"
* #opinion "The opinion (DiagnosticReport)"
* #earlier-task "The Task of an earlier opinion"

ValueSet: SoTaskIoVS
Id: so-task-io
Title: "Second-opinion task input and output types"
Description: "Every so-task-io code."
* ^status = #active
* ^experimental = false
* include codes from system SoTaskIo
