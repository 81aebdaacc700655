"""Offline FHIR R4 validation: structure, profiles (snapshots, slicing, bindings), invariants, business rules.

Use :class:`Validator` with a :class:`fhir_so.packages.Definitions`::

    v = Validator(PackageCache().definitions(["fhir-so.profiles#0.1.0"]))
    for issue in v.iter_issues(resource): ...
"""

from __future__ import annotations

from fhir_so.validation.findings import Issue, best_issue, has_errors
from fhir_so.validation.outcome import to_operation_outcome
from fhir_so.validation.rules import BusinessRules
from fhir_so.validation.sources import Input, iter_inputs
from fhir_so.validation.validator import Result, Validator, ValidatorOptions

__all__ = [
    "BusinessRules",
    "Input",
    "Issue",
    "Result",
    "Validator",
    "ValidatorOptions",
    "best_issue",
    "has_errors",
    "iter_inputs",
    "to_operation_outcome",
]
