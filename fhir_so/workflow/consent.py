"""The consent checks of the case model, answered by the one policy (:mod:`fhir_so.consent`).

A case is built into its Bundle and the policy reads the FHIR Consents in it, so a case file
and a server's resources are judged by the same rules. Nothing here does I/O; the transfer
workflow calls the policy itself with the Consents it found on the server.
"""

from __future__ import annotations

import datetime as dt

from fhir_so.bundle import build_bundle
from fhir_so.case import Case
from fhir_so.consent import Verdict, Withheld, records_verdict, report_verdict, require

__all__ = ["Verdict", "Withheld", "check_records_consent", "check_report_consent", "require"]


def check_records_consent(case: Case, now: dt.datetime) -> Verdict:
    """May the case's records go to its performer at ``now``, and which of them."""
    return records_verdict(build_bundle(case), now, source=f"<case {case.case_id}>")


def check_report_consent(case: Case, now: dt.datetime) -> Verdict:
    """May the opinion go back to the case's requester at ``now``."""
    return report_verdict(build_bundle(case), now, source=f"<case {case.case_id}>")
