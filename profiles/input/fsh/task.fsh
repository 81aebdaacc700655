Profile: SoTask
Parent: Task
Id: so-task
Title: "Second-opinion referral task"
Description: "The referral's life on the second-opinion server (the HL7 BSeR and Clinical Order Workflows pattern): a Task that fulfils the request, for its patient, requested by the first physician and owned by the second; its inputs are the records sent (and, for a third opinion, the earlier Task), its outputs the record kinds asked for and the opinion."
* ^status = #active
* ^experimental = false
* insert IdentifierSlice(taskId, https://fhir-so.org/fhir/sid/task-id)
* statusReason MS
* businessStatus MS
* businessStatus from SoTaskStatusVS (required)
* intent = #order
* priority MS
* code 1..1 MS
* code = $task-code#fulfill
* focus 1..1 MS
* focus only Reference(ServiceRequest)
* for 1..1 MS
* for only Reference(Patient)
* authoredOn 1..1 MS
* lastModified MS
* requester 1..1 MS
* requester only Reference(Practitioner or Organization)
* owner 1..1 MS
* owner only Reference(Practitioner or Organization)
* note MS
* input MS
* input ^slicing.discriminator.type = #pattern
* input ^slicing.discriminator.path = "type"
* input ^slicing.rules = #open
* input ^slicing.description = "The records sent, and the earlier opinion's Task."
* input contains record 0..* MS and earlierTask 0..1 MS
* input[record].type = $so-task-io#record
* input[record].value[x] only Reference(DocumentReference)
* input[earlierTask].type = $so-task-io#earlier-task
* input[earlierTask].value[x] only Reference(Task)
* output MS
* output ^slicing.discriminator.type = #pattern
* output ^slicing.discriminator.path = "type"
* output ^slicing.rules = #open
* output ^slicing.description = "The record kinds the second physician asked for, and the opinion."
* output contains recordsRequested 0..* MS and opinion 0..1 MS
* output[recordsRequested].type = $so-task-io#records-requested
* output[recordsRequested].value[x] only CodeableConcept
* output[recordsRequested].value[x] from SoRecordTypeVS (extensible)
* output[opinion].type = $so-task-io#opinion
* output[opinion].value[x] only Reference(DiagnosticReport)
