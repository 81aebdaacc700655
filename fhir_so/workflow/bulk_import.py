"""``fhir-so import``: NDJSON files (a Bulk Data export, or any) loaded as transaction Bundles.

How references stay right across batches
---------------------------------------
Every file is read once first (each line checked: a JSON object with a resourceType and, when
present, a FHIR id; a bad line stops the import before anything is sent, naming file and line)
into a small index: each resource's ``Type/id``, where its line starts, and the ``Type/id``
it references. The resources are then ordered so that what a resource points to comes
before it (the strongly connected components of the reference graph in dependency order:
Patients, Practitioners and Organizations before the requests and reports that name them),
and cut into transactions of about ``batch_size`` entries (a reference cycle is never cut:
its resources travel in one transaction). In a transaction, each resource is a ``POST`` with a
``urn:uuid`` fullUrl, and a reference becomes:

* the ``urn:uuid`` of its target when the target is in the same transaction;
* the target's new ``Type/id`` when an earlier transaction (or an earlier run) created or found
  it: the map old ``Type/id`` -> new ``Type/id`` is kept in the state file;
* for a target that is not in the files (a Patient-level export names Practitioners it does
  not carry): the resource that an earlier fhir-so import from the same source made of it,
  found by its import tag; when there is none the import stops (exit 2) and says which.

Idempotent like push
--------------------
Each resource is a conditional create: on its first ``identifier`` that has a system and a
value (``If-None-Exist: identifier=SYSTEM|VALUE``: a Patient already on the server by its MRN
is found, not copied); otherwise on the import tag that fhir-so adds to every resource it
imports, ``meta.tag`` = (``https://fhir-so.org/fhir/CodeSystem/import-source``, ``SOURCE/Type/id``)
where SOURCE is a short hash of the export's source server (the manifest's ``request`` base;
``--source`` for NDJSON from elsewhere). A tag rather than an added identifier: it records
where the resource came from without changing the resource's own data, and every resource
type has ``meta.tag`` and the ``_tag`` search. A second import therefore creates nothing new,
even without the state file. The source's ``id`` and ``meta.versionId`` / ``lastUpdated`` /
``source`` are not sent (the destination assigns its own).

The state file (``.fhir-so-import-HASH.json`` in the folder by default, one per destination)
records the map after each transaction, so a killed import resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson

from fhir_so import terminology as term
from fhir_so.client import FhirClient, TransactionResponse
from fhir_so.client.urls import check_type
from fhir_so.errors import InputError, ServerError, excerpt
from fhir_so.fhirtypes import is_fhir_id
from fhir_so.jsonio import dumps, load_json, open_regular, write_atomic
from fhir_so.workflow.state import read_state_file
from fhir_so.references import iter_references
from fhir_so.workflow.push import classify_entry

__all__ = ["DEFAULT_BATCH", "ImportEvents", "ImportResult", "import_ndjson", "ndjson_files", "source_of", "state_path_for"]

STATE_FORMAT = "fhir-so-import-state/1"
MAX_LINE_BYTES = 64 * 1024 * 1024
DEFAULT_BATCH = 200
_REF = re.compile(r"^(?:(?P<base>https?://\S+?)/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?$")
_EXPORT_PATH = re.compile(r"/(?:Patient/|Group/[^/]+/)?\$export(?:\?.*)?$")
# Parties first when nothing else decides the order (a reference always does).
_FIRST = ("Patient", "Practitioner", "Organization", "Location", "PractitionerRole", "RelatedPerson", "Group")
_NAMESPACE = uuid.UUID("3f1c0c7e-8a3e-4d0b-9a55-6b3a1e0f5d21")
_KEPT_META = ("profile", "security", "tag")


@dataclass
class _Item:
    key: str
    rtype: str
    file: int
    offset: int
    line: int
    refs: tuple[str, ...]
    identifier: tuple[str, str] | None


@dataclass
class ImportResult:
    """What an import did, per resource type: created, already there (found by identifier or tag)."""

    server: str
    source: str
    files: int
    resources: int
    batches: int
    created: dict[str, int] = field(default_factory=dict)
    existing: dict[str, int] = field(default_factory=dict)
    resumed: int = 0
    state: str = ""

    @property
    def changed(self) -> bool:
        return any(self.created.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "source": self.source,
            "files": self.files,
            "resources": self.resources,
            "batches": self.batches,
            "created": self.created,
            "existing": self.existing,
            "fromEarlierRun": self.resumed,
            "state": self.state,
        }

    def summary(self) -> list[str]:
        made, found = sum(self.created.values()), sum(self.existing.values())
        lines = [
            f"imported {self.resources} resources from {self.files} files into {self.server} in {self.batches} transactions: "
            f"{made} created, {found} already there" + (f", {self.resumed} done by an earlier run" if self.resumed else "")
        ]
        for t in sorted(set(self.created) | set(self.existing)):
            lines.append(f"  {t}: {self.created.get(t, 0)} created, {self.existing.get(t, 0)} already there")
        if not self.changed:
            lines.append("nothing new: every resource was already on the server")
        return lines


class ImportEvents:
    """Progress of an import (the CLI draws a bar from it); no-ops here."""

    def planned(self, resources: int, batches: int) -> None:
        """The files are read: this many resources to send in this many transactions."""

    def batch_done(self, resources: int) -> None:
        """A transaction of ``resources`` resources went through."""


def state_path_for(folder: Path, server: str) -> Path:
    """The default state file of importing ``folder`` into ``server``."""
    return folder / f".fhir-so-import-{hashlib.sha256(server.encode()).hexdigest()[:12]}.json"


def ndjson_files(path: Path) -> list[Path]:
    """The NDJSON files to import: the file given, or the folder's ``*.ndjson`` (not its subfolders) in name order."""
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.name.endswith(".ndjson") and not p.name.startswith(".") and p.is_file())
        if not found:
            raise InputError("no *.ndjson file in the folder", source=str(path))
        return found
    if not path.exists():
        raise InputError("no such file or folder", source=str(path))
    return [path]


def source_of(path: Path) -> str | None:
    """The export's source server: the base of the ``request`` in the folder's manifest.json, when there is one."""
    manifest = (path if path.is_dir() else path.parent) / "manifest.json"
    if not manifest.is_file():
        return None
    data = load_json(manifest)
    request = data.get("request") if isinstance(data, dict) else None
    if not isinstance(request, str) or not request:
        return None
    return _EXPORT_PATH.sub("", request.split("?")[0]) or None


def import_ndjson(
    client: FhirClient,
    path: str | os.PathLike[str],
    *,
    batch_size: int = DEFAULT_BATCH,
    source: str | None = None,
    state_file: str | os.PathLike[str] | None = None,
    events: ImportEvents | None = None,
) -> ImportResult:
    """Load NDJSON into ``client``'s server (see the module docstring); resumable with its state file."""
    if batch_size < 1:
        raise InputError(f"the batch size must be at least 1, got {batch_size}")
    events = events or ImportEvents()
    root = Path(path)
    files = ndjson_files(root)
    source = source or source_of(root) or "ndjson"
    tag_prefix = hashlib.sha256(source.encode()).hexdigest()[:16]
    folder = root if root.is_dir() else root.parent
    state_p = Path(state_file) if state_file else state_path_for(folder, client.base_url)
    state = _load_state(state_p, {"server": client.base_url, "source": source})
    mapping: dict[str, str] = state["map"]

    items = _scan(files, source)
    order = _order(items)
    batches = _batches(order, batch_size)
    pending = [[k for k in batch if k not in mapping] for batch in batches]
    pending = [b for b in pending if b]
    result = ImportResult(client.base_url, source, len(files), len(items), 0, state=str(state_p))
    result.resumed = sum(1 for k in items if k in mapping)
    events.planned(sum(len(b) for b in pending), len(pending))
    external: dict[str, str] = state.setdefault("external", {})
    handles = [None] * len(files)
    try:
        for batch in pending:
            bundle, keys = _transaction(batch, items, files, handles, mapping, external, client, tag_prefix, source)
            answer = TransactionResponse.read(client.base_url, bundle, client.transaction(bundle))
            for key, request, response in zip(keys, answer.requests, answer.responses):
                outcome, rtype, rid, _ = classify_entry(request, response)
                rtype = rtype or items[key].rtype
                if not rid:
                    raise ServerError(f"{client.base_url}: the transaction-response has no location for {key}")
                mapping[key] = f"{rtype}/{rid}"
                tally = result.created if outcome == "created" else result.existing
                tally[rtype] = tally.get(rtype, 0) + 1
            result.batches += 1
            write_atomic(state_p, dumps(state))
            events.batch_done(len(keys))
    finally:
        for h in handles:
            if h is not None:
                h.close()
    return result


def _load_state(path: Path, key: dict[str, str]) -> dict[str, Any]:
    data = read_state_file(path, fmt=STATE_FORMAT, kind="import", items="map", key=key, describe=_describe)
    return data if data is not None else {"format": STATE_FORMAT, "import": key, "map": {}, "external": {}}


def _describe(key: Any) -> str:
    if not isinstance(key, dict):
        return "an unknown one"
    return f"{key.get('source')} into {key.get('server')}"


def _lines(path: Path) -> Iterator[tuple[int, int, bytes | None]]:
    """(line number, offset, bytes) of each line; bytes None for a line over the limit."""
    with os.fdopen(open_regular(path), "rb") as fh:
        n, offset = 0, 0
        while True:
            raw = fh.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            n += 1
            start = offset
            offset += len(raw)
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                while raw and not raw.endswith(b"\n"):
                    raw = fh.readline(1 << 20)
                    offset += len(raw)
                yield n, start, None
                continue
            yield n, start, raw


def _scan(files: list[Path], source: str) -> dict[str, _Item]:
    items: dict[str, _Item] = {}
    for f, path in enumerate(files):
        for n, offset, raw in _lines(path):
            where = f"line {n}"
            if raw is None:
                raise InputError(f"longer than the limit of {MAX_LINE_BYTES:,} bytes", source=str(path), location=where)
            if not raw.strip():
                continue
            resource = _parse(raw, str(path), where)
            rtype = resource["resourceType"]
            rid = resource.get("id")
            if rid is None:
                key = f"{rtype}/#{hashlib.sha256(raw.strip()).hexdigest()[:16]}"
            elif isinstance(rid, str) and is_fhir_id(rid):
                key = f"{rtype}/{rid}"
            else:
                raise InputError(f"not a FHIR id: {excerpt(rid)}", source=str(path), location=f"{where}: id")
            if key in items:
                held = items[key]
                raise InputError(f"{key} is in the files twice (first at {files[held.file]} line {held.line})", source=str(path), location=where)
            refs = tuple(sorted({t for t in (_target(r, source) for r, _ in iter_references(resource)) if t and t != key}))
            items[key] = _Item(key, rtype, f, offset, n, refs, _identifier(resource))
    return items


def _parse(raw: bytes, source: str, where: str) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"not JSON: {str(exc).split(':')[0]}", source=source, location=where) from None
    if not isinstance(value, dict):
        raise InputError("not a JSON object (a FHIR resource)", source=source, location=where)
    rtype = value.get("resourceType")
    try:
        check_type(rtype if isinstance(rtype, str) else "")
    except InputError:
        raise InputError(f"no resourceType, or not a resource type: {excerpt(rtype)}", source=source, location=where) from None
    return value


def _target(reference: str, source: str) -> str | None:
    """``Type/id`` a reference points to in the source's id space (relative, or absolute on the source)."""
    m = _REF.match(reference)
    if not m:
        return None  # urn:, #contained, a canonical, an identifier-only reference
    base = m.group("base")
    if base is not None and base.rstrip("/") != source.rstrip("/"):
        return None  # another server's resource: left as it is
    return f"{m.group('type')}/{m.group('id')}"


def _identifier(resource: dict[str, Any]) -> tuple[str, str] | None:
    found = resource.get("identifier")
    for ident in found if isinstance(found, list) else []:
        if isinstance(ident, dict) and isinstance(ident.get("system"), str) and isinstance(ident.get("value"), str):
            if ident["system"] and ident["value"]:
                return ident["system"], ident["value"]
    return None


def _order(items: dict[str, _Item]) -> list[list[str]]:
    """Strongly connected components of the reference graph, each after the ones it points to (Tarjan, iterative)."""
    rank = {t: i for i, t in enumerate(_FIRST)}
    starts = sorted(items, key=lambda k: (rank.get(items[k].rtype, len(rank)), items[k].file, items[k].line))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for start in starts:
        if start in index:
            continue
        work: list[tuple[str, int]] = [(start, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            refs = [r for r in items[node].refs if r in items]
            if i < len(refs):
                work.append((node, i + 1))
                child = refs[i]
                if child not in index:
                    work.append((child, 0))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                out.append(sorted(component, key=lambda k: (items[k].file, items[k].line)))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return out


def _batches(components: list[list[str]], size: int) -> list[list[str]]:
    batches: list[list[str]] = []
    current: list[str] = []
    for component in components:
        if current and len(current) + len(component) > size:
            batches.append(current)
            current = []
        current.extend(component)
    if current:
        batches.append(current)
    return batches


def _read(items: dict[str, _Item], key: str, files: list[Path], handles: list[Any]) -> dict[str, Any]:
    item = items[key]
    if handles[item.file] is None:
        handles[item.file] = os.fdopen(open_regular(files[item.file]), "rb")
    fh = handles[item.file]
    fh.seek(item.offset)
    return _parse(fh.readline(MAX_LINE_BYTES + 1), str(files[item.file]), f"line {item.line}")


def _transaction(
    batch: list[str],
    items: dict[str, _Item],
    files: list[Path],
    handles: list[Any],
    mapping: dict[str, str],
    external: dict[str, str],
    client: FhirClient,
    tag_prefix: str,
    source: str,
) -> tuple[dict[str, Any], list[str]]:
    urns = {k: f"urn:uuid:{uuid.uuid5(_NAMESPACE, tag_prefix + '/' + k)}" for k in batch}
    entries = []
    for key in batch:
        resource = _read(items, key, files, handles)
        where = f"{files[items[key].file]} line {items[key].line}"

        def rewrite(ref: str, *, _key: str = key, _where: str = where) -> str:
            # Only references in the source's id space are rewritten (see _target); others stay as they are.
            target = _target(ref, source)
            if not target or target == _key:
                return ref
            if target in urns:
                return urns[target]
            if target in mapping:
                return mapping[target]
            if target in items:
                raise ServerError(f"{_where}: internal order error: {target} is not yet imported")  # pragma: no cover
            return _external(client, external, target, tag_prefix, _key, _where)

        resource = _rewrite(resource, rewrite)
        tag = {"system": term.CS_IMPORT_SOURCE, "code": f"{tag_prefix}/{key}"}
        meta = {k: v for k, v in (resource.get("meta") or {}).items() if k in _KEPT_META}
        tags = [t for t in meta.get("tag") or [] if not (isinstance(t, dict) and t.get("system") == term.CS_IMPORT_SOURCE)]
        meta["tag"] = [*tags, tag]
        resource["meta"] = meta
        resource.pop("id", None)
        ident = items[key].identifier
        if ident is not None:
            condition = urlencode([("identifier", f"{_escape(ident[0])}|{_escape(ident[1])}")])
        else:
            condition = urlencode([("_tag", f"{term.CS_IMPORT_SOURCE}|{tag['code']}")])
        entries.append(
            {"fullUrl": urns[key], "resource": resource, "request": {"method": "POST", "url": items[key].rtype, "ifNoneExist": condition}}
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}, list(batch)


def _rewrite(value: Any, rewrite: Callable[[str], str]) -> Any:
    if isinstance(value, dict):
        return {k: (rewrite(v) if k == "reference" and isinstance(v, str) else _rewrite(v, rewrite)) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite(v, rewrite) for v in value]
    return value


def _external(client: FhirClient, external: dict[str, str], target: str, tag_prefix: str, key: str, where: str) -> str:
    """The destination's resource an earlier import from the same source made of ``target`` (found by its tag)."""
    if target in external:
        return external[target]
    rtype = target.split("/", 1)[0]
    found = (
        client.search(rtype, {"_tag": f"{term.CS_IMPORT_SOURCE}|{tag_prefix}/{target}", "_elements": "id"})
        .with_headers({"Cache-Control": "no-cache"})
        .first()
    )
    if found is None or not isinstance(found.get("id"), str):
        raise InputError(
            f"{key} references {target}, which is neither in the files nor imported earlier from the same source; "
            "import the export that holds it first (a system-level export has everything)",
            source=where,
        )
    external[target] = f"{rtype}/{found['id']}"
    return external[target]


def _escape(value: str) -> str:
    """A token search value with FHIR's escapes (``\\``, ``,``, ``$``, ``|``)."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("$", "\\$").replace("|", "\\|")
