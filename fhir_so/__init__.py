"""fhir-so: carry a medical second opinion across FHIR R4 servers.

The public face of the library: everything the CLI does is one call from here::

    import fhir_so

    case = fhir_so.load_case("examples/urology-second-opinion.case.json")
    bundle = fhir_so.build_bundle(case)                      # transaction Bundle (dict)
    with fhir_so.FhirClient("http://127.0.0.1:8090/fhir") as client:
        pushed = fhir_so.push(client, case)                   # idempotent
        assert fhir_so.pull(client, case_id=case.case_id) == case  # cases are canonical by construction

docs/api.md shows the whole embedding API with examples that the tests run.

Names load on first use, so ``import fhir_so`` stays cheap for scripts that need one part.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Case": "fhir_so.case",
    "Consent": "fhir_so.case",
    "Opinion": "fhir_so.case",
    "Party": "fhir_so.case",
    "Record": "fhir_so.case",
    "case_from_dict": "fhir_so.case",
    "load_case": "fhir_so.case",
    "with_defaults": "fhir_so.case",
    "build_bundle": "fhir_so.bundle",
    "parse_bundle": "fhir_so.bundle",
    "PackageCache": "fhir_so.packages",
    "Validator": "fhir_so.validation",
    "FhirClient": "fhir_so.client",
    "BasicAuth": "fhir_so.auth",
    "BearerToken": "fhir_so.auth",
    "SmartBackendAuth": "fhir_so.auth",
    "auth_from_env": "fhir_so.auth",
    "push": "fhir_so.workflow",
    "pull": "fhir_so.workflow",
    "transfer": "fhir_so.workflow",
    "transfer_all": "fhir_so.workflow",
    "find_request_id": "fhir_so.workflow",
    "validate": "fhir_so.workflow",
    "TaskResult": "fhir_so.workflow",
    "task_accept": "fhir_so.workflow",
    "task_ask": "fhir_so.workflow",
    "task_complete": "fhir_so.workflow",
    "task_decline": "fhir_so.workflow",
    "task_start": "fhir_so.workflow",
    "Task": "fhir_so.case",
    "TransitionRefused": "fhir_so.errors",
    "VersionConflict": "fhir_so.errors",
    "check_records_consent": "fhir_so.workflow",
    "check_report_consent": "fhir_so.workflow",
    "LocalServer": "fhir_so.server",
    "FhirSoError": "fhir_so.errors",
    "InputError": "fhir_so.errors",
    "CaseNotFoundError": "fhir_so.errors",
    "ConsentError": "fhir_so.errors",
    "ServerError": "fhir_so.errors",
    "HttpError": "fhir_so.errors",
}

__all__ = [
    "BasicAuth",
    "BearerToken",
    "Case",
    "CaseNotFoundError",
    "Consent",
    "ConsentError",
    "FhirClient",
    "FhirSoError",
    "HttpError",
    "InputError",
    "LocalServer",
    "Opinion",
    "PackageCache",
    "Party",
    "Record",
    "ServerError",
    "SmartBackendAuth",
    "Task",
    "TaskResult",
    "TransitionRefused",
    "Validator",
    "VersionConflict",
    "__version__",
    "auth_from_env",
    "build_bundle",
    "case_from_dict",
    "check_records_consent",
    "check_report_consent",
    "find_request_id",
    "load_case",
    "parse_bundle",
    "pull",
    "push",
    "task_accept",
    "task_ask",
    "task_complete",
    "task_decline",
    "task_start",
    "transfer",
    "transfer_all",
    "validate",
    "with_defaults",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fhir_so' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
