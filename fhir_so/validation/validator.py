"""The validation engine: layers in order, over one resource or a stream of inputs.

Layers: JSON well-formedness (in :mod:`sources`), structure and profiles (the element walker
over precompiled plans: types, primitive formats, cardinality, fixed/pattern, bindings,
references, extensions, slicing, native invariants), FHIRPath invariants. The project's
business rules across a Bundle (policy, not conformance) run only when asked for
(``business_rules=True``, ``fhir-so validate --rules transfer``). A resource is checked against the profiles it declares in
``meta.profile`` plus those the validator is given; with none, against its core type.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, Sequence

from fhir_so.errors import ProfileError
from fhir_so.validation.bindings import Terminology
from fhir_so.validation.fhirpath import InvariantEngine
from fhir_so.validation.findings import STRUCTURE, Issue, best_issue
from fhir_so.validation.narrative import NarrativeLinkChecker
from fhir_so.validation.outcome import to_operation_outcome
from fhir_so.validation.plan import PlanRegistry
from fhir_so.validation.profile import ElementWalker
from fhir_so.validation.questionnaire import QuestionnaireChecker
from fhir_so.validation.terminology_resources import TerminologyResourceChecker
from fhir_so.validation.rules import BusinessRules
from fhir_so.validation.snapshot import DefinitionSource
from fhir_so.validation.structure import SchemaLayer
from fhir_so.validation.sources import Input, iter_inputs


# resource types that are, or can carry, a QuestionnaireResponse to check against its Questionnaire
# (besides any resource with contained resources)
_MAY_HOLD_RESPONSES = frozenset({"QuestionnaireResponse", "Questionnaire", "Bundle", "Parameters"})
# likewise for the CodeSystem / ValueSet definition checks
_MAY_HOLD_TERMINOLOGY = frozenset({"CodeSystem", "ValueSet", "Bundle"})


@dataclass(frozen=True)
class ValidatorOptions:
    """How strict the validator is and when "now" is (consent periods are judged at ``now``)."""

    #: the domain's policy (consent, stat flag) on top of conformance; off: a valid bundle may
    #: truthfully record a revoked consent
    business_rules: bool = False
    check_codes: bool = True
    now: datetime | None = None
    #: the pruned R4 JSON schema (``PackageCache.r4_json_schema_path()``); None skips that layer
    json_schema: Path | None = None
    #: URL prefixes of extensions accepted without a definition (the HL7 validator's allowed extension domains)
    extension_domains: tuple[str, ...] = ()
    #: accept unknown extensions with example URLs (example.org, acme.com)
    allow_examples: bool = True
    #: severity of a display that does not match its CodeSystem (the HL7 validator's -display-issues-are-warnings)
    wrong_display: Literal["error", "warning"] = "error"


@dataclass(frozen=True, slots=True)
class Result:
    """The findings for one input (or the error that kept it from being read)."""

    input: Input
    issues: list[Issue]

    @property
    def is_valid(self) -> bool:
        return self.input.error is None and not any(i.is_error for i in self.issues)


class Validator:
    """Validates FHIR R4 resources offline against core R4 and profiles from ``definitions``.

    One instance holds every cache (plans, ValueSet expansions, compiled FHIRPath): create it
    once and reuse it. It is not thread-safe (fhirpathpy keeps module state): use processes.
    """

    def __init__(self, definitions: DefinitionSource, profiles: Sequence[str] = (), options: ValidatorOptions | None = None) -> None:
        self.definitions = definitions
        self.profiles = tuple(profiles)
        self.options = options or ValidatorOptions()
        self.plans = PlanRegistry(definitions)
        self.terminology = Terminology(definitions, wrong_display=self.options.wrong_display)
        self.invariants = InvariantEngine()
        self.walker = ElementWalker(
            self.plans,
            self.terminology,
            self.invariants,
            check_codes=self.options.check_codes,
            forced=self.profiles,
            extension_domains=self.options.extension_domains,
            allow_examples=self.options.allow_examples,
            now=self.options.now,
        )
        self.rules = BusinessRules(self.options.now)
        self.questionnaires = QuestionnaireChecker(definitions, self.terminology, self.plans.is_resource_type)
        self.terminology_resources = TerminologyResourceChecker(definitions, self.terminology)
        self.narrative_links = NarrativeLinkChecker()
        self.schema = SchemaLayer(self.options.json_schema, self._schema_erratum) if self.options.json_schema is not None else None

    def check_profiles(self) -> None:
        """Compile the forced profiles now, so a broken or unknown one fails before any input is read."""
        for url in self.profiles:
            if self.plans.plan(url) is None:
                raise ProfileError(f"profile {url} is not in any loaded package (add its package with --package)")

    def iter_issues(self, resource: Any, *, location: str = "") -> Iterator[Issue]:
        """Every finding for one resource (parsed JSON), structural ones first."""
        sink: list[Issue] = []
        if isinstance(resource, dict) and isinstance(resource.get("resourceType"), str):
            rt = resource["resourceType"]
            for url in self.profiles:
                plan = self.plans.plan(url)
                if plan is not None and plan.type != rt and not self._holds(resource, plan.type):
                    sink.append(Issue("error", STRUCTURE, location or rt, f"profile {url} is for {plan.type}, and this input holds none", "profile-type"))
        self.walker.new_input()
        self.walker.resource(resource, location, sink)
        if isinstance(resource, dict):
            rt = resource.get("resourceType")
            rt = rt if isinstance(rt, str) else ""
            contained = "contained" in resource
            if contained or rt in _MAY_HOLD_RESPONSES:
                sink.extend(self.questionnaires.issues(resource, location))
            if contained or rt in _MAY_HOLD_TERMINOLOGY:
                sink.extend(self.terminology_resources.issues(resource, location))
            sink.extend(self.narrative_links.issues(resource, location))
        if self.schema is not None and isinstance(resource, dict) and not any(i.is_error for i in sink):
            sink.extend(self.schema.issues(resource, location))
        yield from sink
        if self.options.business_rules and isinstance(resource, dict) and resource.get("resourceType") == "Bundle":
            yield from self.rules.check(resource, location or "Bundle")

    def _schema_erratum(self, resource_type: str, instance_path: list[Any], message: str) -> bool:
        """True for a JSON schema error that is an erratum of the R4 schema (see :mod:`structure`)."""
        if "'_" in message and "unexpected" in message:
            return True  # a primitive's _x extension the schema does not list: the walker checked it
        if "is not one of" not in message:
            return False
        node: Any = None
        plan = self.plans.plan(resource_type)
        if plan is None:
            return False
        node, code = plan.root, resource_type
        for part in instance_path:
            if isinstance(part, int):
                continue
            children = node.children if node.children is not None else getattr(self.plans.type_root(code), "children", None)
            entry = (children or {}).get(str(part))
            if entry is None:
                return False
            node, code = entry
        # the schema lists the codes of every binding as an enum; only a required binding closes them
        return node.binding is not None and node.binding[0] != "required"

    @staticmethod
    def _holds(resource: dict[str, Any], resource_type: str) -> bool:
        """True when a Bundle entry or a contained resource is of that type."""
        entries, contained = resource.get("entry"), resource.get("contained")
        inner = [e.get("resource") for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []
        inner += contained if isinstance(contained, list) else []
        return any(isinstance(r, dict) and r.get("resourceType") == resource_type for r in inner)

    def is_valid(self, resource: Any) -> bool:
        """True when the resource has no error or fatal finding."""
        return not any(i.is_error for i in self.iter_issues(resource))

    def best_issue(self, resource: Any) -> Issue | None:
        """The most relevant finding (see :func:`fhir_so.validation.findings.best_issue`), or None."""
        return best_issue(self.iter_issues(resource))

    @staticmethod
    def to_operation_outcome(issues: Iterable[Issue]) -> dict[str, object]:
        """The findings as an OperationOutcome."""
        return to_operation_outcome(issues)

    def validate_paths(self, paths: Iterable[str]) -> Iterator[Result]:
        """Stream results over files, directories, Bundles and NDJSON, one input at a time."""
        return self.validate_inputs(iter_inputs(paths))

    def validate_inputs(self, inputs: Iterable[Input]) -> Iterator[Result]:
        """Stream results over inputs already read (:func:`~fhir_so.validation.sources.iter_inputs`), in their order."""
        for item in inputs:
            if item.error is not None:
                yield Result(item, [])
                continue
            try:
                issues = [*item.issues, *self.iter_issues(item.resource)]
            except ProfileError as err:
                # a profile the resource declares is broken: this input cannot be judged (bad input)
                yield Result(Input(item.source, error=err, line=item.line), [])
                continue
            yield Result(item, issues)
