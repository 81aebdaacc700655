"""Validation delegated to a FHIR server's ``$validate`` (``fhir-so validate --server URL``).

Same inputs (files, directories, Bundles, NDJSON) and the same findings as the offline
validator, so the same reports (text, OperationOutcome JSON, JUnit) render either.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

from fhir_so.client import FhirClient
from fhir_so.errors import HttpError
from fhir_so.validation.findings import STRUCTURE, Issue
from fhir_so.validation.outcome import issues_from_outcome
from fhir_so.validation.sources import iter_inputs
from fhir_so.validation.validator import Result


class RemoteValidator:
    """Sends each resource to ``POST [type]/$validate`` (with the profile when one is forced)."""

    def __init__(self, client: FhirClient, profiles: Sequence[str] = ()) -> None:
        self.client = client
        self.profiles = tuple(profiles)

    def iter_issues(self, resource: Any) -> Iterator[Issue]:
        """The server's findings for one resource."""
        rt = resource.get("resourceType") if isinstance(resource, dict) else None
        if not isinstance(rt, str) or not rt.isalpha():
            yield Issue("error", STRUCTURE, "", "the resource has no valid resourceType", "resource-type")
            return
        body: dict[str, Any] = resource
        if self.profiles:
            body = {
                "resourceType": "Parameters",
                "parameter": [{"name": "resource", "resource": resource}, {"name": "profile", "valueUri": self.profiles[0]}],
            }
        try:
            outcome = self.client.operation("validate", resource_type=rt, body=body, idempotent=True)
        except HttpError as exc:
            # older HAPI versions answer 400/412/422 with the OperationOutcome for an invalid resource
            if exc.outcome is None or exc.status not in (400, 412, 422):
                raise
            outcome = exc.outcome
        yield from issues_from_outcome(outcome or {})

    def is_valid(self, resource: Any) -> bool:
        return not any(i.is_error for i in self.iter_issues(resource))

    def validate_paths(self, paths: Iterable[str]) -> Iterator[Result]:
        """Stream results over files, directories, Bundles and NDJSON, one request per resource."""
        for item in iter_inputs(paths):
            yield Result(item, [] if item.error is not None else list(self.iter_issues(item.resource)))
