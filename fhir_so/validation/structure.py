"""The R4 JSON schema layer (jsonschema-rs), a safety net under the element walker.

The walker already checks everything the schema does, and more (the schema misses required
primitives, dates that do not exist, objects typed as objects). So the schema runs only on
resources the walker passed: one fast ``is_valid`` against the full schema (about 7 µs); if
it fails, the per-type schema is compiled (once) to say where, as ``json-schema`` errors.

The official R4 schema has errata, which the validator passes in as a predicate: an ``enum`` on
a code whose binding is only extensible (``Expression.language``), and ``_x`` properties it does
not list (``Questionnaire.item._answerValueSet``); the walker judges those elements itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import orjson

from fhir_so.errors import ProfileError
from fhir_so.validation.findings import STRUCTURE, Issue


class SchemaLayer:
    """The pruned official R4 JSON schema, compiled lazily on first use."""

    def __init__(self, schema_path: Path, erratum: Callable[[str, list[Any], str], bool] | None = None) -> None:
        self.path = schema_path
        #: says whether a schema error is one of the schema's known errata (then it is dropped)
        self.erratum = erratum
        self._schema: dict[str, Any] | None = None
        self._full: Any = None
        self._per_type: dict[str, Any] = {}

    def _load(self) -> dict[str, Any]:
        if self._schema is None:
            try:
                self._schema = orjson.loads(self.path.read_bytes())
            except (OSError, orjson.JSONDecodeError) as exc:
                raise ProfileError(f"cannot read the R4 JSON schema: {exc}", source=str(self.path)) from None
        return self._schema

    def issues(self, resource: dict[str, Any], loc: str) -> list[Issue]:
        """The schema's findings for a resource the walker found no error in (usually none)."""
        import jsonschema_rs

        schema = self._load()
        if self._full is None:
            self._full = jsonschema_rs.validator_for(schema)
        if self._full.is_valid(resource):
            return []
        rt = resource.get("resourceType")
        if not isinstance(rt, str) or rt not in schema.get("definitions", {}):
            return [Issue("error", STRUCTURE, loc, "the resource does not match the R4 JSON schema", "json-schema")]
        typed = self._per_type.get(rt)
        if typed is None:
            typed = jsonschema_rs.validator_for({"$ref": f"#/definitions/{rt}", "definitions": schema["definitions"]})
            self._per_type[rt] = typed
        found = []
        for err in typed.iter_errors(resource):
            if self.erratum is not None and self.erratum(rt, list(err.instance_path), err.message):
                continue
            where = loc or rt
            for part in err.instance_path:
                where += f"[{part}]" if isinstance(part, int) else f".{part}"
            found.append(Issue("error", STRUCTURE, where, f"R4 JSON schema: {err.message[:300]}", "json-schema"))
        return found
