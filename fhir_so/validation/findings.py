"""Findings are data: one :class:`Issue` per problem, and the heuristic that picks the most relevant one.

An issue knows its severity, its OperationOutcome issue-type code, where it happened (a FHIRPath
expression such as ``Bundle.entry[3].resource.status``), a message a person can act on and the rule
that raised it (``cardinality``, ``binding``, ``ele-1``, ``so-consent-active``...). Rules yield bare
issues; the engine fills in where they happened.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from fhir_so.errors import one_line
from fhir_so.terminology import CS_VALIDATION_RULE

# Caps of one finding's text, so a report line (file, severity, place, message, rule) stays under 500 characters.
MESSAGE_CHARS = 300
EXPRESSION_CHARS = 120

#: one of "fatal", "error", "warning", "information" (OperationOutcome.issue.severity)
Severity = str

#: how much each severity weighs when picking the most relevant issue (lower is worse)
SEVERITY_RANK: dict[str, int] = {"fatal": 0, "error": 1, "warning": 2, "information": 3}

# OperationOutcome issue-type codes (http://hl7.org/fhir/issue-type) this validator uses
STRUCTURE = "structure"
REQUIRED = "required"
VALUE = "value"
INVARIANT = "invariant"
CODE_INVALID = "code-invalid"
NOT_FOUND = "not-found"
NOT_SUPPORTED = "not-supported"
BUSINESS_RULE = "business-rule"
INFORMATIONAL = "informational"
PROCESSING = "processing"
INVALID = "invalid"

# rules that describe the shape of the data: their findings are the most fundamental
_STRUCTURAL_RULES = frozenset({"json", "structure", "type", "cardinality", "unknown-element", "resource-type"})


@dataclass(frozen=True, slots=True)
class Issue:
    """One finding: severity, issue-type code, FHIRPath location, message and the rule that raised it."""

    severity: Severity
    code: str
    expression: str
    message: str
    rule: str

    def __post_init__(self) -> None:
        # A finding about a hostile value quotes it; a report line stays one line of a few hundred characters.
        object.__setattr__(self, "message", one_line(self.message, MESSAGE_CHARS))
        object.__setattr__(self, "expression", one_line(self.expression, EXPRESSION_CHARS))

    @property
    def is_error(self) -> bool:
        """True for error and fatal issues: the ones that make a resource invalid."""
        return self.severity == "error" or self.severity == "fatal"

    def to_json(self) -> dict[str, object]:
        """As an OperationOutcome.issue (rule id in details.coding, location in expression)."""
        out: dict[str, object] = {
            "severity": self.severity,
            "code": self.code,
            "details": {"coding": [{"system": CS_VALIDATION_RULE, "code": self.rule}], "text": self.message},
            "diagnostics": self.message,
        }
        if self.expression:
            out["expression"] = [self.expression]
        return out


def has_errors(issues: Iterable[Issue]) -> bool:
    """True when any issue is an error or fatal."""
    return any(i.is_error for i in issues)


def relevance(issue: Issue) -> tuple[int, int, int]:
    """Sort key of :func:`best_issue`: smaller is more relevant.

    The heuristic, like jsonschema's ``best_match``: worst severity first; among equals, a
    structural finding (bad JSON, wrong type, cardinality, unknown element) before a terminology
    or invariant one, because fixing the shape often makes the others disappear; then the
    shallowest location, because a problem high in the tree explains the ones beneath it.
    """
    depth = issue.expression.count(".") + issue.expression.count("[")
    return (SEVERITY_RANK.get(issue.severity, 9), 0 if issue.rule in _STRUCTURAL_RULES else 1, depth)


def best_issue(issues: Iterable[Issue]) -> Issue | None:
    """The most relevant issue by :func:`relevance` (ties: the first reported), or None."""
    best: Issue | None = None
    best_key: tuple[int, int, int] | None = None
    for issue in issues:
        key = relevance(issue)
        if best_key is None or key < best_key:
            best, best_key = issue, key
    return best
