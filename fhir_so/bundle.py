"""Transaction Bundles: assembly from a case, and reading a case back from any Bundle.

A built bundle is deterministic: every fullUrl is ``urn:uuid:`` + a UUIDv5 of the case id
and the resource's key, so the same case gives byte-identical JSON (golden files, clean
diffs). Entries shared with the clinic (Patient, Practitioner, Organization) are
conditional creates (``ifNoneExist`` on their identifier); the case's own resources are
conditional updates (``PUT Type?identifier=...``), so a second push creates nothing new
while a later change (a revoked consent, a final report) still reaches the server.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

from pydantic import ValidationError

from fhir_so.case import Case
from fhir_so.errors import InputError, excerpt, one_line
from fhir_so.jsonio import dumps
from fhir_so.mapping import Graph, Node, case_from_graph, case_to_resources
from fhir_so.mapping.common import check_r4
from fhir_so.references import iter_references

Resource = dict[str, Any]

# Fixed namespace: changing it would change every golden bundle.
_NAMESPACE = uuid.UUID("5f0c2a9e-3b8e-5d7a-9a52-6f1e0c3d7b21")

BUNDLE_TYPES_READ = {"transaction", "batch", "searchset", "collection", "document", "transaction-response", "batch-response"}


def full_url(case_id: str, key: str) -> str:
    """The deterministic urn:uuid of one resource of one case."""
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'{case_id}/{key}')}"


def search_key(system: str, value: str, param: str = "identifier") -> str:
    """A token search ``param=system|value`` (``identifier`` by default), escaped for a query."""
    return f"{param}=" + quote(f"{system}|{value}", safe="/:|")


def build_bundle(case: Case, source: str | None = None) -> Resource:
    """The case as one transaction Bundle (a plain dict, R4 JSON).

    ``source`` (the case file) is what an error names if the case maps to an invalid R4 resource.
    """
    entries: list[Resource] = []
    for mapped in case_to_resources(case, lambda key: full_url(case.case_id, key)):
        resource_type = mapped.resource["resourceType"]
        condition = search_key(mapped.system, mapped.value)
        if mapped.shared:
            request = {"method": "POST", "url": resource_type, "ifNoneExist": condition}
        else:
            request = {"method": "PUT", "url": f"{resource_type}?{condition}"}
        entries.append({"fullUrl": full_url(case.case_id, mapped.key), "resource": mapped.resource, "request": request})
    bundle: Resource = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    for i, entry in enumerate(entries):
        check_r4(entry["resource"], f"Bundle.entry[{i}].resource (built from the case)", source or f"<case {case.case_id}>")
    return bundle


def bundle_json(case: Case, source: str | None = None) -> str:
    """The built bundle as canonical JSON text (what ``fhir-so build`` writes)."""
    return dumps(build_bundle(case, source))


def bundle_graph(bundle: Any, source: str, *, check: bool = True) -> Graph:
    """Index a Bundle's resources for reference resolution; ``check`` runs the R4B model on each."""
    if not isinstance(bundle, dict):
        raise InputError(f"expected a JSON object, found {type(bundle).__name__}", source=source, location="$")
    if bundle.get("resourceType") != "Bundle":
        raise InputError(f"expected a Bundle, found resourceType {excerpt(bundle.get('resourceType'))}", source=source, location="Bundle.resourceType")
    if bundle.get("type") not in BUNDLE_TYPES_READ:
        raise InputError(f"unsupported Bundle type {excerpt(bundle.get('type'))}", source=source, location="Bundle.type")
    if check:
        _refuse_nulls(bundle, "Bundle", source)
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise InputError("Bundle.entry must be a list", source=source, location="Bundle.entry")
    nodes = []
    for i, entry in enumerate(entries):
        where = f"Bundle.entry[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("resource"), dict):
            raise InputError("entry has no resource", source=source, location=where)
        for part in ("request", "response", "search"):
            if part in entry and not isinstance(entry[part], dict):
                raise InputError(f"entry.{part} must be an object, found {excerpt(entry[part])}", source=source, location=f"{where}.{part}")
        resource = entry["resource"]
        if check:
            check_r4(resource, f"{where}.resource", source)
        full = entry.get("fullUrl")
        nodes.append(Node(resource, f"{where}.resource", full if isinstance(full, str) else None))
    graph = Graph(nodes, source)
    for node in nodes:
        for ref, location in iter_references(node.resource, node.where, skip_contained=True):
            # urn: references only have meaning inside the bundle; relative ones may name server resources.
            if ref.startswith("urn:") and graph.find({"reference": ref}) is None:
                raise InputError(f"reference {ref!r} does not resolve to an entry in the bundle", source=source, location=location)
    return graph



def _refuse_nulls(value: Any, where: str, source: str, depth: int = 0) -> None:
    """FHIR JSON has no nulls (only inside a ``_name`` array, to align extensions with values).

    The R4 models read a null as "absent"; pushed as is, a server would get a body that is not FHIR.
    """
    if depth > 200:
        raise InputError("nested too deeply", source=source, location=where)
    if isinstance(value, dict):
        for key, item in value.items():
            place = f"{where}.{key}" if isinstance(key, str) and key.isidentifier() else f"{where}[{excerpt(key, 40)}]"
            if item is None:
                raise InputError("null is not allowed in FHIR JSON (leave the element out)", source=source, location=place)
            if isinstance(item, list) and isinstance(key, str) and key.startswith("_"):
                for i, part in enumerate(item):
                    if part is not None:
                        _refuse_nulls(part, f"{place}[{i}]", source, depth + 1)
            else:
                _refuse_nulls(item, place, source, depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if item is None:
                raise InputError("null is not allowed in FHIR JSON (leave the element out)", source=source, location=f"{where}[{i}]")
            _refuse_nulls(item, f"{where}[{i}]", source, depth + 1)


def parse_bundle(bundle: Any, source: str = "<bundle>", case_id: str | None = None) -> Case:
    """Read the case back from a Bundle built here or pulled from a server.

    Valid R4 can still break the case model (a name over 10,000 characters, a status the case
    does not know): that is an InputError naming the source and the case field, never a pydantic dump.
    """
    graph = bundle_graph(bundle, source)
    try:
        return case_from_graph(graph, case_id)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        err = errors[0]
        field = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function"))
        more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
        raise InputError(
            f"the Bundle does not give a valid case: {exc.title}.{field}: {one_line(str(err['msg']), 200)}{more}",
            source=source,
            location="Bundle",
        ) from None
