Profile: SoDocumentReference
Parent: DocumentReference
Id: so-document-reference
Title: "Record sent for a second opinion"
Description: "One record (lab report, pathology, imaging, operative note, ...) sent to the second physician, related to the request."
* ^status = #active
* ^experimental = false
* insert IdentifierSlice(recordId, https://fhir-so.org/fhir/sid/record-id)
* status = #current (exactly)
* type 1..1 MS
* type from SoRecordTypeVS (extensible)
* subject 1..1 MS
* subject only Reference(Patient)
* date 1..1 MS
* author 1..* MS
* author only Reference(Practitioner or Organization)
* description 1..1 MS
* securityLabel MS
* content 1..1 MS
* content.attachment.contentType 1..1 MS
* content.attachment obeys so-att-1 and so-att-2
* context 1..1 MS
* context.related 1..* MS
* context.related only Reference(ServiceRequest)
