"""A validator spec whose worker dies while building it: what a worker killed mid-run (out of memory, say) looks like."""

from __future__ import annotations

import os
from dataclasses import dataclass

from fhir_so.validation import Validator
from fhir_so.workflow.scale_out import ValidatorSpec


@dataclass(frozen=True)
class CrashingSpec(ValidatorSpec):
    """Ends the worker process at once, with no exception to send back."""

    def build(self) -> tuple[Validator, list[str]]:
        os._exit(70)
