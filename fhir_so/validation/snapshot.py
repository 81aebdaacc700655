"""StructureDefinition snapshots: use the one a profile carries, or generate it from the differential.

Generation follows the FHIR rules in the common cases: the base's snapshot (generated first
if it has none) is copied; each differential element is found by id (``Path.to:slice.child``),
created when it is a new slice or a child of a complex type not yet expanded, then its
constraints (cardinality, types, fixed/pattern, binding, slicing, invariants) are merged in.
A broken profile raises :class:`~fhir_so.errors.ProfileError` naming the profile: a
differential element that exists nowhere in the base, a slicing without discriminator, a
base that cannot be found, or a cycle of base definitions.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from fhir_so.errors import ProfileError


class DefinitionSource(Protocol):
    """What the validator needs from a package set (``fhir_so.packages.Definitions`` provides it)."""

    def structure_definition(self, url: str) -> dict[str, Any] | None: ...

    def value_set(self, url: str) -> dict[str, Any] | None: ...

    def code_system(self, url: str) -> dict[str, Any] | None: ...


_MERGED_AS_LIST = frozenset({"constraint", "condition", "mapping", "alias", "code"})
_NOT_MERGED = frozenset({"id", "path", "sliceName", "extension"})


def split_id(element_id: str) -> list[str]:
    """Split an element id into segments (``A.b:s.c`` -> ``['A', 'b:s', 'c']``); dots inside ``[x]`` never occur."""
    return element_id.split(".")


def element_id(element: dict[str, Any]) -> str:
    """The element's id, derived from path and sliceName when the id is missing."""
    eid = element.get("id")
    if isinstance(eid, str) and eid:
        return eid
    path = element.get("path")
    if not isinstance(path, str) or not path:
        raise ValueError("element without id or path")
    name = element.get("sliceName")
    return f"{path}:{name}" if name else path


def _copy(obj: Any) -> Any:
    return orjson.loads(orjson.dumps(obj))


class SnapshotGenerator:
    """Gives the snapshot elements of StructureDefinitions, generating (and caching) the missing ones."""

    def __init__(self, definitions: DefinitionSource) -> None:
        self._defs = definitions
        self._generated: dict[str, list[dict[str, Any]]] = {}
        #: profile url -> differential element ids that the base has no place for (left out)
        self.ignored: dict[str, list[str]] = {}

    def elements(self, sd: dict[str, Any], *, _chain: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """The snapshot elements of ``sd``; generated from its differential when it has no snapshot."""
        snap = (sd.get("snapshot") or {}).get("element")
        if isinstance(snap, list) and snap:
            return snap
        url = str(sd.get("url") or sd.get("id") or "?")
        cached = self._generated.get(url)
        if cached is not None:
            return cached
        generated = self._generate(sd, url, _chain)
        self._generated[url] = generated
        return generated

    # -- generation -------------------------------------------------------------------------------
    def _generate(self, sd: dict[str, Any], url: str, chain: tuple[str, ...]) -> list[dict[str, Any]]:
        if url in chain:
            cycle = " -> ".join((*chain[chain.index(url):], url))
            raise ProfileError(f"the base definitions form a cycle: {cycle}", source=url)
        base_url = sd.get("baseDefinition")
        if not isinstance(base_url, str) or not base_url:
            raise ProfileError("has neither a snapshot nor a baseDefinition to generate one from", source=url)
        base = self._defs.structure_definition(base_url)
        if base is None:
            raise ProfileError(f"its base definition {base_url} is not in any loaded package", source=url)
        diff = (sd.get("differential") or {}).get("element")
        if not isinstance(diff, list):
            raise ProfileError("has neither a snapshot nor a differential", source=url)
        base_elements = self.elements(base, _chain=(*chain, url))
        work = _Work(self, _copy(base_elements), url, base_elements)
        for raw in diff:
            if not isinstance(raw, dict):
                raise ProfileError("a differential element is not a JSON object", source=url)
            try:
                eid = element_id(raw)
            except ValueError:
                raise ProfileError("a differential element has neither id nor path", source=url) from None
            try:
                target = work.find_or_create(eid)
            except _NotInBase:
                # as the HL7 generator does: an element the base does not have is left out (Java
                # reports it on the profile and validates instances without it), not a fatal error
                self.ignored.setdefault(url, []).append(eid)
                continue
            _merge(target, raw, url, eid)
        for el in work.elements:
            slicing = el.get("slicing")
            if isinstance(slicing, dict) and not slicing.get("discriminator") and work.has_slices(element_id(el)):
                raise ProfileError(f"{element_id(el)} is sliced without a discriminator", source=url)
        return work.elements

    def type_elements(self, type_code: str, source: str) -> list[dict[str, Any]]:
        """The snapshot of a data type, for expanding the children of an element of that type."""
        sd = self._defs.structure_definition(type_code)
        if sd is None:
            raise ProfileError(f"uses the type {type_code!r}, which no loaded package defines", source=source)
        return self.elements(sd)


class _NotInBase(Exception):
    """A differential element with no place in the base definition."""


class _Work:
    """A snapshot being built: the element list plus an id index kept in step with it."""

    def __init__(self, gen: SnapshotGenerator, elements: list[dict[str, Any]], url: str, base: list[dict[str, Any]]) -> None:
        self.gen = gen
        self.elements = elements
        self.url = url
        # the unconstrained base: a contentReference copies its target from here, so that the
        # profile's own constraints on the target (min 3 on parameter.part) do not leak into it
        self.base = base
        for el in elements:
            el["id"] = element_id(el)

    def index(self, eid: str) -> int:
        for i, el in enumerate(self.elements):
            if el["id"] == eid:
                return i
        return -1

    def has_slices(self, eid: str) -> bool:
        prefix = eid + ":"
        return any(el["id"].startswith(prefix) and "." not in el["id"][len(prefix):] for el in self.elements)

    def _subtree_end(self, pos: int) -> int:
        """Index after the last element under (children of, or slices of) the element at ``pos``."""
        eid = self.elements[pos]["id"]
        end = pos + 1
        while end < len(self.elements):
            other = self.elements[end]["id"]
            if other.startswith(eid + ".") or other.startswith(eid + ":"):
                end += 1
            else:
                break
        return end

    def find_or_create(self, eid: str) -> dict[str, Any]:
        pos = self.index(eid)
        if pos >= 0:
            return self.elements[pos]
        segments = split_id(eid)
        if len(segments) < 2:
            raise ProfileError(f"differential element {eid!r} does not match the base type", source=self.url)
        parent_id = ".".join(segments[:-1])
        last = segments[-1]
        parent = self.find_or_create(parent_id)
        self._expand_children(parent)
        pos = self.index(eid)
        if pos >= 0:
            return self.elements[pos]
        if ":" in last:
            name, _, slice_name = last.partition(":")
            unsliced_id = f"{parent_id}.{name}"
            upos = self.index(unsliced_id)
            if upos < 0:
                raise _NotInBase(eid)
            return self._add_slice(upos, eid, slice_name.split("/")[-1])
        # a type-specific name of a choice element (valueQuantity for value[x])
        for i, el in enumerate(self.elements):
            eid_i = el["id"]
            if eid_i.startswith(parent_id + ".") and eid_i.endswith("[x]") and eid_i.count(".") == eid.count("."):
                stem = eid_i.rsplit(".", 1)[1][:-3]
                if last.startswith(stem) and len(last) > len(stem):
                    type_code = last[len(stem):]
                    codes = [t.get("code", "") for t in el.get("type") or []]
                    match = next((c for c in codes if c[:1].upper() + c[1:] == type_code), None)
                    if match is not None:
                        return self._add_slice(i, eid_i + ":" + last, last, only_type=match)
        raise _NotInBase(eid)

    def _add_slice(self, upos: int, eid: str, slice_name: str, only_type: str | None = None) -> dict[str, Any]:
        unsliced_id = self.elements[upos]["id"]
        existing = self.index(eid)
        if existing >= 0:
            return self.elements[existing]
        copies = []
        for el in self.elements[upos:self._subtree_end(upos)]:
            if el["id"] == unsliced_id or el["id"].startswith(unsliced_id + "."):
                c = _copy(el)
                c["id"] = eid + c["id"][len(unsliced_id):]
                copies.append(c)
        root = copies[0]
        root.pop("slicing", None)
        root["sliceName"] = slice_name
        if only_type is not None:
            root["type"] = [t for t in root.get("type") or [] if t.get("code") == only_type]
            if not self.elements[upos].get("slicing"):
                self.elements[upos]["slicing"] = {"discriminator": [{"type": "type", "path": "$this"}], "ordered": False, "rules": "closed"}
        end = self._subtree_end(upos)
        self.elements[end:end] = copies
        return root

    def _expand_children(self, parent: dict[str, Any]) -> None:
        pid = parent["id"]
        pos = self.index(pid)
        if pos + 1 < len(self.elements) and self.elements[pos + 1]["id"].startswith(pid + "."):
            return
        ref = parent.get("contentReference")
        if isinstance(ref, str) and ref.startswith("#"):
            source_root = ref[1:]
            source = [el for el in self.base if element_id(el) == source_root or element_id(el).startswith(source_root + ".")]
            if not source:
                ref_pos = self.index(source_root)
                if ref_pos < 0:
                    raise ProfileError(f"{pid} refers to {ref}, which does not exist", source=self.url)
                source = self.elements[ref_pos:self._subtree_end(ref_pos)]
            root_path = source[0]["path"]
            kids = [_copy(el) for el in source[1:] if element_id(el).startswith(source_root + ".")]
            for k in kids:
                k["id"] = pid + element_id(k)[len(source_root):]
                k["path"] = parent["path"] + k["path"][len(root_path):]
        else:
            types = [t.get("code") for t in parent.get("type") or []]
            if len(types) != 1 or not isinstance(types[0], str):
                return
            type_els = self.gen.type_elements(types[0], self.url)
            root_path = type_els[0]["path"]
            kids = []
            for el in type_els[1:]:
                k = _copy(el)
                rest = element_id(el)[len(root_path):]
                k["id"] = pid + rest
                k["path"] = parent["path"] + el["path"][len(root_path):]
                kids.append(k)
        self.elements[pos + 1:pos + 1] = kids


def _merge(target: dict[str, Any], diff: dict[str, Any], url: str, eid: str) -> None:
    for key, value in diff.items():
        if key in _NOT_MERGED:
            continue
        if key in _MERGED_AS_LIST and isinstance(value, list):
            have = target.get(key) or []
            if key == "constraint":
                keys = {c.get("key") for c in value if isinstance(c, dict)}
                have = [c for c in have if c.get("key") not in keys]
            target[key] = have + value
        elif key.startswith(("fixed", "pattern")):
            for old in [k for k in target if k.startswith(("fixed", "pattern"))]:
                del target[old]
            target[key] = value
        else:
            target[key] = value
    lo, hi = target.get("min", 0), target.get("max", "*")
    if isinstance(lo, int) and isinstance(hi, str) and hi != "*" and hi.isdigit() and lo > int(hi):
        raise ProfileError(f"{eid}: min {lo} is greater than max {hi}", source=url)
