Profile: SoServiceRequest
Parent: ServiceRequest
Id: so-service-request
Title: "Second-opinion request"
Description: "A request for a second (or third) opinion: the anchor of a fhir-so case. The case id is the business identifier."
* ^status = #active
* ^experimental = false
* insert IdentifierSlice(caseId, https://fhir-so.org/fhir/sid/case-id)
* intent = #order (exactly)
* priority 1..1 MS
* category 1..* MS
* insert CodeSlicing(category, [[Must include the SNOMED CT Consultation category.]])
* category contains consultation 1..1 MS
* category[consultation] = $sct#11429006
* code 1..1 MS
* code = $sct#77406008
* orderDetail 1..* MS
* insert CodeSlicing(orderDetail, [[Must include the so-mode code (telehealth also SNOMED CT 763184009).]])
* orderDetail contains mode 1..1 MS
* orderDetail[mode] ^patternCodeableConcept.coding[0].system = "https://fhir-so.org/fhir/CodeSystem/so-mode"
// The mode is bound on its own Coding: a telehealth CodeableConcept also carries SNOMED CT 763184009,
// and HAPI judges a required binding on the whole CodeableConcept by all its codings.
* orderDetail[mode].coding ^slicing.discriminator.type = #value
* orderDetail[mode].coding ^slicing.discriminator.path = "system"
* orderDetail[mode].coding ^slicing.rules = #open
* orderDetail[mode].coding ^slicing.description = "The so-mode coding."
* orderDetail[mode].coding contains soMode 1..1 MS
* orderDetail[mode].coding[soMode].system 1..1
* orderDetail[mode].coding[soMode].system = "https://fhir-so.org/fhir/CodeSystem/so-mode" (exactly)
* orderDetail[mode].coding[soMode].code 1..1
* orderDetail[mode].coding[soMode] from SoModeVS (required)
* subject only Reference(Patient)
* subject MS
* authoredOn 1..1 MS
* requester 1..1 MS
* requester only Reference(Practitioner or Organization)
* performer 1..* MS
* performer only Reference(Practitioner or Organization)
* reasonCode 2..* MS
* insert CodeSlicing(reasonCode, [[v2-0336 S (Second Opinion) and at least one so-reason; further entries are the conditions under review.]])
* reasonCode contains secondOpinion 1..1 MS and reason 1..* MS
* reasonCode[secondOpinion] = $v2-0336#S
* reasonCode[reason] ^patternCodeableConcept.coding[0].system = "https://fhir-so.org/fhir/CodeSystem/so-reason"
* reasonCode[reason] from SoReasonVS (required)
* insurance only Reference(Coverage)
* supportingInfo MS
* note MS
