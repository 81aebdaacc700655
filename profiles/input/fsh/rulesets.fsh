// Shared rules: one identifier slice keyed on the identifier system; attachments that carry their content.

RuleSet: IdentifierSlice(name, system)
* identifier 1..*
* identifier ^slicing.discriminator.type = #value
* identifier ^slicing.discriminator.path = "system"
* identifier ^slicing.rules = #open
* identifier ^slicing.description = "The project's business identifier (the idempotency key of a push)."
* identifier contains {name} 1..1 MS
* identifier[{name}].system 1..1 MS
* identifier[{name}].system = "{system}" (exactly)
* identifier[{name}].value 1..1 MS

RuleSet: CodeSlicing(element, description)
* {element} ^slicing.discriminator.type = #pattern
* {element} ^slicing.discriminator.path = "$this"
* {element} ^slicing.rules = #open
* {element} ^slicing.description = "{description}"

Invariant: so-att-1
Description: "An attachment carries its content inline (data) or by url."
Expression: "data.exists() or url.exists()"
Severity: #error

Invariant: so-att-2
Description: "Inline content carries its size and SHA-1 hash."
Expression: "data.exists() implies (size.exists() and hash.exists())"
Severity: #error
