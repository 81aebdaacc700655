"""Shared data for the client tests: the base URL and small FHIR documents."""

from __future__ import annotations

from typing import Any

BASE = "https://fhir.example.org/r4"


def capability_statement(*interactions: str, version: str = "4.0.1") -> dict[str, Any]:
    """A minimal CapabilityStatement declaring the given system interactions."""
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "fhirVersion": version,
        "rest": [{"mode": "server", "interaction": [{"code": code} for code in interactions]}],
    }


def outcome(text: str, code: str = "processing") -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code, "diagnostics": text}]}
