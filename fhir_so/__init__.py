"""fhir-so: carry a medical second opinion across FHIR R4 servers."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
