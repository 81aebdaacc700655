"""Finding and rewriting the ``reference`` strings inside FHIR JSON.

Bundle checks, pulls, transfers and the client's batch fallback all walk resources for
their references; they share these two functions.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


def iter_references(value: Any, where: str = "", *, skip_contained: bool = False) -> Iterator[tuple[str, str]]:
    """Every ``reference`` string under ``value``, with its location below ``where``.

    ``skip_contained`` leaves out contained resources, whose references may be local (``#id``).
    """
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "reference" and isinstance(item, str):
                yield item, f"{where}.reference"
            elif not (skip_contained and key == "contained"):
                yield from iter_references(item, f"{where}.{key}", skip_contained=skip_contained)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from iter_references(item, f"{where}[{i}]", skip_contained=skip_contained)


def rewrite_references(value: Any, mapping: Mapping[str, str]) -> Any:
    """A copy of ``value`` whose ``reference`` strings found in ``mapping`` are replaced."""
    if isinstance(value, dict):
        return {k: (mapping.get(v, v) if k == "reference" and isinstance(v, str) else rewrite_references(v, mapping)) for k, v in value.items()}
    if isinstance(value, list):
        return [rewrite_references(v, mapping) for v in value]
    return value
