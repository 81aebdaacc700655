Profile: SoDiagnosticReport
Parent: DiagnosticReport
Id: so-diagnostic-report
Title: "Second opinion"
Description: "The second physician's opinion: a consult note based on the request, with the diagnoses, exactly one concordance code and one treatment-change code."
* ^status = #active
* ^experimental = false
* insert IdentifierSlice(opinionId, https://fhir-so.org/fhir/sid/opinion-id)
* basedOn 1..* MS
* basedOn only Reference(ServiceRequest)
* code = $loinc#11488-4
* subject 1..1 MS
* subject only Reference(Patient)
* issued 1..1 MS
* performer 1..* MS
* performer only Reference(Practitioner or Organization)
* conclusion 1..1 MS
* conclusionCode 2..* MS
* insert CodeSlicing(conclusionCode, [[Exactly one so-concordance code and one so-treatment code; the other entries are the diagnoses.]])
* conclusionCode contains concordance 1..1 MS and treatment 1..1 MS
* conclusionCode[concordance] ^patternCodeableConcept.coding[0].system = "https://fhir-so.org/fhir/CodeSystem/so-concordance"
* conclusionCode[concordance] from SoConcordanceVS (required)
* conclusionCode[treatment] ^patternCodeableConcept.coding[0].system = "https://fhir-so.org/fhir/CodeSystem/so-treatment"
* conclusionCode[treatment] from SoTreatmentVS (required)
* presentedForm MS
* presentedForm obeys so-att-1 and so-att-2
* presentedForm.contentType 1..1 MS
