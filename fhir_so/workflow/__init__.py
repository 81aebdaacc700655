"""Workflows over the client: push, pull and transfer a case, with consent enforced.

Every CLI step is one call from Python::

    from fhir_so.client import FhirClient
    from fhir_so.workflow import pull, push, transfer

    with FhirClient("http://127.0.0.1:8090/fhir") as clinic, FhirClient("http://127.0.0.1:8091/fhir") as expert:
        result = push(clinic, load_case("case.json"))          # PushResult
        case = pull(clinic, case_id="so-2026-uro-0417")         # Case
        moved = transfer(clinic, expert, case_id="so-2026-uro-0417")   # TransferResult
"""

from __future__ import annotations

from fhir_so.workflow.consent import Verdict, Withheld, check_records_consent, check_report_consent
from fhir_so.workflow.pull import case_of, case_with_history, find_request_id, pull, pull_bundle, pull_patient, pull_patient_bundle, pull_patient_bundles
from fhir_so.workflow.push import PushedEntry, PushResult, push
from fhir_so.workflow.transfer import Plan, TransferResult, plan_transfer, transfer
from fhir_so.workflow.run_validation import offline_validator, validate
from fhir_so.workflow.scale_out import ClusterError, validate_parallel
from fhir_so.workflow.batch import BatchResult, CaseResult, transfer_all
from fhir_so.workflow.task import (
    TaskResult,
    find_task,
    task_accept,
    task_ask,
    task_complete,
    task_decline,
    task_history,
    task_start,
)
from fhir_so.workflow.status import Event, Timeline, case_timeline, watch

__all__ = [
    "BatchResult",
    "CaseResult",
    "ClusterError",
    "Event",
    "Plan",
    "PushResult",
    "PushedEntry",
    "TaskResult",
    "Timeline",
    "TransferResult",
    "Verdict",
    "Withheld",
    "case_of",
    "case_timeline",
    "case_with_history",
    "check_records_consent",
    "check_report_consent",
    "find_request_id",
    "find_task",
    "offline_validator",
    "plan_transfer",
    "pull",
    "pull_bundle",
    "pull_patient",
    "pull_patient_bundle",
    "pull_patient_bundles",
    "push",
    "task_accept",
    "task_ask",
    "task_complete",
    "task_decline",
    "task_history",
    "task_start",
    "transfer",
    "transfer_all",
    "validate",
    "validate_parallel",
    "watch",
]
