"""The element walker: checks one resource against the precompiled plans of its type and profiles.

Per JSON key it looks the child up in the plan (unknown elements are errors), checks JSON
array-ness, the primitive's form, fixed and pattern values, bindings, reference targets,
extensions (by url, against their own definitions), slices, cardinality and the invariants
checked natively (ele-1, ext-1, dom-2..6, txt-1/2, ref-1). The other invariants are queued
and evaluated with FHIRPath once the resource is walked, on values with the ``_x`` primitive
extensions stripped (a fhirpathpy quirk). Findings go to a list (the sink) as they are found.
"""

from __future__ import annotations

import binascii
import re
from datetime import datetime
from typing import Any, Callable, Sequence

import orjson

from fhir_so.fhirtypes import RESOURCE_REF_RE as _REF_TYPE
from fhir_so.references import BundleIndex
from fhir_so.validation.bindings import Terminology
from fhir_so.validation.bundles import bundle_issues
from fhir_so.validation.fhirpath import InvariantEngine
from fhir_so.validation.findings import (
    INVARIANT,
    NOT_SUPPORTED,
    NOT_FOUND,
    REQUIRED,
    STRUCTURE,
    VALUE,
    Issue,
)
from fhir_so.validation.extensions import ExtensionChecker
from fhir_so.validation.limits import violation
from fhir_so.validation.narrative import NarrativeChecker
from fhir_so.validation.native import NATIVE_EXPRESSIONS, compile_simple
from fhir_so.validation.plan import MISSING, Constraint, Node, PlanRegistry
from fhir_so.validation.primitives import CHECKERS, as_dict, as_list, checkers, json_type
from fhir_so.validation.slicing import SliceMatcher, matches_pattern
from fhir_so.validation.walkstate import WalkState

_RESOURCE_TYPES = frozenset({"Resource", "DomainResource"})
# data types whose verdict depends on the value and the element only (values holding a reference excepted)
_MEMO_TYPES = frozenset({"Coding", "CodeableConcept", "Identifier", "Quantity", "Period", "HumanName", "ContactPoint", "Address", "Meta", "Annotation"})
_MEMO_LIMIT = 100_000


class ElementWalker:
    """Walks resources against plans; one instance per validator (holds caches, no global state)."""

    def __init__(
        self,
        plans: PlanRegistry,
        terminology: Terminology,
        invariants: InvariantEngine,
        *,
        check_codes: bool = True,
        forced: Sequence[str] = (),
        extension_domains: Sequence[str] = (),
        allow_examples: bool = True,
        now: datetime | None = None,
    ) -> None:
        self.plans = plans
        self.terminology = terminology
        self.invariants = invariants
        self.check_codes = check_codes
        self.slices = SliceMatcher(self)
        self.narrative = NarrativeChecker()
        #: profiles every resource of their type is checked against (``--profile``)
        self.forced: tuple[str, ...] = tuple(forced)
        self._reported_skips: set[str] = set()
        #: expression -> native predicate (None: evaluate with fhirpathpy)
        self._native: dict[str, Callable[[Any], bool] | None] = {}
        self._merged: dict[tuple[int, str], tuple[Constraint, ...]] = {}
        #: (element, type, JSON bytes) of small values that passed: bounded, cleared when full
        self._clean: set[tuple[int, str, bytes]] = set()
        self._targets: dict[tuple[int, str], tuple[str, ...] | None] = {}
        #: extensions: found by url, checked for context and modifier flag
        self.extensions = ExtensionChecker(plans, domains=extension_domains, allow_examples=allow_examples)
        #: primitive form checks per type code (uri-like ones refuse example URLs unless examples are allowed)
        self.checkers = checkers(allow_examples=allow_examples)
        #: "now" for limits relative to it (a maxValue Duration on a date); None: the clock
        self.now: datetime | None = now

    # -- resources ---------------------------------------------------------------------------------
    def resource(
        self,
        res: Any,
        loc: str,
        sink: list[Issue],
        *,
        profiles: Sequence[str] = (),
        bundle: BundleIndex | None = None,
        root: dict[str, Any] | None = None,
        allowed_types: tuple[str, ...] | None = None,
    ) -> None:
        """Validate one resource at ``loc`` against its type, its declared profiles and ``profiles``."""
        if not isinstance(res, dict):
            sink.append(Issue("error", STRUCTURE, loc, f"expected a resource (a JSON object), found {json_type(res)}", "structure"))
            return
        rt = res.get("resourceType")
        if not isinstance(rt, str):
            sink.append(Issue("error", REQUIRED, loc, "the resource has no resourceType", "resource-type"))
            return
        base = self.plans.plan(rt)
        if base is None or base.kind != "resource":
            sink.append(Issue("error", STRUCTURE, loc, f"unknown resource type {rt!r}", "resource-type"))
            return
        if allowed_types and rt not in allowed_types and "Resource" not in allowed_types:
            sink.append(Issue("error", STRUCTURE, loc, f"a {rt} is not allowed here; expected {', '.join(allowed_types)}", "resource-type"))
        if loc == "":
            loc = rt
        wanted: list[str] = list(profiles)
        # forced profiles (--profile) apply to every resource of their type: the input, its entries, contained ones
        for url in self.forced:
            forced = self.plans.plan(url)
            if forced is not None and forced.type == rt and url not in wanted:
                wanted.append(url)
        meta = res.get("meta")
        declared = meta.get("profile") if isinstance(meta, dict) else None
        if isinstance(declared, list):
            wanted.extend(p for p in declared if isinstance(p, str) and p not in wanted)
        plans = []
        for url in wanted:
            plan = self.plans.plan(url)
            if plan is None:
                sink.append(Issue("warning", NOT_FOUND, loc, f"profile {url} is unknown (not in any loaded package), so the resource was not checked against it", "profile-unknown"))
            elif plan.type != rt:
                sink.append(Issue("error", STRUCTURE, loc, f"profile {url} is for {plan.type}, not {rt}", "profile-type"))
            else:
                plans.append(plan)
        if not plans:
            plans = [base]
        if rt == "Bundle":
            bundle = BundleIndex.of(res)
            sink.extend(bundle_issues(res, loc))
        # '#id' references resolve among the container's contained resources, from inside them too
        container = root if root is not None else res
        contained = {}
        for c in container.get("contained") or [] if isinstance(container.get("contained"), list) else []:
            if isinstance(c, dict) and isinstance(c.get("id"), str):
                contained[c["id"]] = str(c.get("resourceType"))
        seen: set[tuple[str, str, str]] = set()
        for plan in plans:
            own: list[Issue] = []
            ctx = WalkState(own, res, root or res, bundle, contained)
            stripped = self.complex(plan.root, rt, res, loc, ctx, is_resource=True)
            self._resource_invariants(plan.root, res, loc, ctx)
            self._run_pending(ctx, stripped, root)
            for issue in own:
                key = (issue.severity, issue.expression, issue.message)
                if key not in seen:
                    seen.add(key)
                    sink.append(issue)

    def _resource_invariants(self, node: Node, res: dict[str, Any], loc: str, ctx: WalkState) -> None:
        native = node.native
        contained = res.get("contained")
        if isinstance(contained, list) and contained:
            for i, c in enumerate(contained):
                if not isinstance(c, dict):
                    continue
                at = f"{loc}.contained[{i}]"
                if not isinstance(c.get("id"), str):
                    ctx.sink.append(Issue("error", REQUIRED, at, "a contained resource needs an id, for the containing resource to refer to it", "contained-id"))
                if "dom-2" in native and c.get("contained"):
                    ctx.sink.append(Issue("error", INVARIANT, at, "dom-2: a contained resource SHALL NOT contain nested resources", "dom-2"))
                meta = as_dict(c.get("meta"), {})
                if "dom-4" in native and ("versionId" in meta or "lastUpdated" in meta):
                    ctx.sink.append(Issue("error", INVARIANT, at, "dom-4: a contained resource SHALL NOT have meta.versionId or meta.lastUpdated", "dom-4"))
                if "dom-5" in native and "security" in meta:
                    ctx.sink.append(Issue("error", INVARIANT, at, "dom-5: a contained resource SHALL NOT have a security label", "dom-5"))
            if "dom-3" in native:
                refs = _references(res)  # %resource.descendants(): references from contained resources count too
                for i, c in enumerate(contained):
                    if not isinstance(c, dict) or not isinstance(c.get("id"), str):
                        continue
                    if "#" + c["id"] in refs or "#" in _references(c):
                        continue
                    ctx.sink.append(Issue("error", INVARIANT, f"{loc}.contained[{i}]", f"dom-3: the contained resource {c['id']!r} is not referred to from elsewhere in the resource (add a reference to '#{c['id']}')", "dom-3"))
        if "dom-6" in native and ctx.root is res:
            text = res.get("text")
            if not (isinstance(text, dict) and text.get("div")):
                ctx.sink.append(Issue("warning", INVARIANT, loc, "dom-6: a resource should have narrative (text.div) for robust management", "dom-6"))

    # -- elements -------------------------------------------------------------------------------------
    def complex(self, node: Node, code: str, value: Any, loc: str, ctx: WalkState, *, is_resource: bool = False) -> Any:
        """Check an object against an element node; returns the value without ``_x`` keys (for FHIRPath)."""
        if not isinstance(value, dict):
            ctx.sink.append(Issue("error", STRUCTURE, loc, f"expected an object ({code}), found {json_type(value)}", "type"))
            return value
        type_root: Node | None = None
        if code == "Extension":
            node = self.extensions.node(node, value, loc, ctx)
        children = node.children
        required, limited = node.required, node.limited
        if children is None:
            type_root = self.plans.type_root(code)
            if type_root is None:
                ctx.sink.append(Issue("error", STRUCTURE, loc, f"unknown type {code!r}", "type"))
                return value
            children = type_root.children or {}
            required, limited = type_root.required, type_root.limited
        if not value or (len(value) == 1 and "id" in value):
            ctx.sink.append(Issue("error", INVARIANT, loc, "ele-1: all FHIR elements must have a value or children", "ele-1"))
        sink = ctx.sink
        out: dict[str, Any] | None = None
        choice_seen: dict[int, str] = {}
        entry_parent = ctx.ext_parent
        if "extension" in value or "modifierExtension" in value:
            if ctx.primitive_parent is not None and code == "Element":
                ctx.ext_parent = ctx.primitive_parent
            else:
                url = value.get("url") if code == "Extension" else None
                ctx.ext_parent = (node.path, code, url if isinstance(url, str) else None)
        parent = ctx.ext_parent
        for key, item in value.items():
            if key == "resourceType" and is_resource:
                continue
            if key == "extension" or key == "modifierExtension":
                ctx.ext_parent = parent  # restored: the walk of an earlier key may have changed it
            entry = children.get(key)
            if entry is None:
                if key == "_id" and is_resource:
                    # Resource.id is a System.String in R4, not an element: it cannot carry extensions
                    sink.append(Issue("error", STRUCTURE, f"{loc}.id", "extensions are not allowed on Resource.id", "structure"))
                    continue
                if key[:1] == "_" and key[1:] in children:
                    pnode, pcode = children[key[1:]]
                    before, ctx.primitive_parent = ctx.primitive_parent, (pnode.path, pcode, None)
                    self._primitive_extension(pnode, key[1:], item, value.get(key[1:]), loc, ctx)
                    ctx.primitive_parent = before
                    if out is None:
                        out = {k: v for k, v in value.items() if k[:1] != "_"}
                    continue
                sink.append(Issue("error", STRUCTURE, f"{loc}.{key}", f"unrecognised element {key!r}: it is not part of {node.path if node.types else code}", "unknown-element"))
                continue
            child, ccode = entry
            if child.is_choice:
                # FHIRPath names a choice by its stem (Observation.value), as HAPI reports it
                at = f"{loc}.{child.name[:-3]}"
                other = choice_seen.get(id(child))
                if other is not None:
                    sink.append(Issue("error", STRUCTURE, at, f"only one of {child.name} is allowed, found both {other} and {key}", "cardinality"))
                choice_seen[id(child)] = key
            else:
                at = f"{loc}.{key}"
            if child.max == 0:
                sink.append(Issue("error", STRUCTURE, at, f"{child.path} is not allowed here (max cardinality 0)", "cardinality"))
                continue
            if child.is_array:
                if not isinstance(item, list):
                    sink.append(Issue("error", STRUCTURE, at, f"{key} must be a JSON array", "structure"))
                    continue
                if not item:
                    sink.append(Issue("error", STRUCTURE, at, f"{key} is an empty array: omit it instead", "structure"))
                    continue
                if child.sliced:
                    new = self.slices.walk(child, ccode, item, at, ctx, value.get("_" + key))
                else:
                    new = None
                    checker = self.checkers.get(ccode)
                    for i, x in enumerate(item):
                        if checker is not None:
                            if x is None and isinstance(value.get("_" + key), list):
                                continue
                            if not child.has_value_checks:
                                # the common case inlined: a primitive with nothing but its form to check
                                msg = checker(x)
                                if msg is not None:
                                    sink.append(_type_issue(x, f"{at}[{i}]", msg))
                                continue
                        r = self.value(child, ccode, x, f"{at}[{i}]", ctx)
                        if r is not x:
                            if new is None:
                                new = list(item)
                            new[i] = r
                if new is not None:
                    if out is None:
                        out = {k: v for k, v in value.items() if k[:1] != "_"}
                    out[key] = new
            else:
                if isinstance(item, list):
                    sink.append(Issue("error", STRUCTURE, at, f"{key} must not be an array (max cardinality 1)", "structure"))
                    continue
                if child.sliced:
                    r = self.slices.walk(child, ccode, [item], at, ctx, None)
                    r = item if r is None else r[0]
                elif not child.has_value_checks and ccode in CHECKERS:
                    msg = self.checkers[ccode](item)
                    if msg is not None:
                        sink.append(_type_issue(item, at, msg))
                    continue
                else:
                    r = self.value(child, ccode, item, at, ctx)
                if r is not item:
                    if out is None:
                        out = {k: v for k, v in value.items() if k[:1] != "_"}
                    out[key] = r
        for req in required:
            if value.keys().isdisjoint(req.present):
                sink.append(Issue("error", REQUIRED, loc, f"{req.path}: minimum required = {req.min}, but only found 0", "cardinality"))
        for lim in limited:
            items = value.get(lim.name)
            if items is not None and isinstance(items, list) and len(items) > lim.max:
                sink.append(Issue("error", STRUCTURE, f"{loc}.{lim.name}", f"{lim.path}: maximum allowed = {lim.max}, but found {len(items)}", "cardinality"))
        stripped = value if out is None else out
        cons = self._constraints(node, code, is_resource)
        if cons:
            path = node.path if (is_resource or not code or code in ("BackboneElement", "Element")) else code
            ctx.pending.append((cons, stripped, path, loc))
        if out is not None:
            ctx.stripped = True
        ctx.ext_parent = entry_parent  # the next sibling (a second extension, say) sits where this one did
        return stripped

    def _target_types(self, node: Node) -> tuple[str, ...] | None:
        """Resource types a reference may point to when target profiles are not all core (None: any)."""
        key = (id(node), "targets")
        if key in self._targets:
            return self._targets[key]
        types: list[str] = []
        for url in node.target_profiles:
            plan = self.plans.plan(url)
            if plan is None or plan.type == "Resource":
                types = []
                break
            types.append(plan.type)
        result = tuple(dict.fromkeys(types)) or None
        self._targets[key] = result
        return result

    def _constraints(self, node: Node, code: str, is_resource: bool) -> tuple[Constraint, ...]:
        """The element's invariants plus its type's (per-1 on a Period...), merged once per (element, type)."""
        key = (id(node), code)
        try:
            return self._merged[key]
        except KeyError:
            pass
        cons = list(node.constraints)
        if not is_resource and code not in ("BackboneElement", "Element", "Resource"):
            tr = self.plans.type_root(code)
            if tr is not None and tr is not node:
                cons.extend(c for c in tr.constraints if all(c.key != k.key for k in cons))
        merged = self._merged[key] = tuple(cons)
        return merged

    def value(self, node: Node, code: str, x: Any, loc: str, ctx: WalkState) -> Any:
        """Check one occurrence of an element (primitive, complex or resource)."""
        checker = self.checkers.get(code)
        sink = ctx.sink
        if checker is not None:
            msg = checker(x)
            if msg is not None:
                sink.append(_type_issue(x, loc, msg))
                return x
            if not node.has_value_checks:
                return x
            if node.fixed is not MISSING and x != node.fixed:
                sink.append(Issue("error", VALUE, loc, f"value is {x!r}, but the profile fixes it to {node.fixed!r}", "fixed"))
            elif node.pattern is not MISSING and x != node.pattern:
                sink.append(Issue("error", VALUE, loc, f"value is {x!r}, but the profile requires {node.pattern!r}", "pattern"))
            if node.binding is not None and code in ("code", "string", "uri"):
                sink.extend(self.terminology.check_binding(node.binding[0], node.binding[1], code, x, loc))
            if node.max_length is not None and isinstance(x, str) and len(x) > node.max_length:
                sink.append(Issue("error", VALUE, loc, f"the value is longer than the maximum length {node.max_length}", "max-length"))
            if node.min_value is not None or node.max_value is not None:
                self._limits(node, code, x, loc, sink)
            if code == "xhtml" and isinstance(x, str):
                sink.extend(self.narrative.issues(x, loc))  # txt-1, txt-2 and the XHTML rules (narrative.py)
            if node.constraints:
                ctx.pending.append((node.constraints, x, code, loc))
            return x
        if code in _MEMO_TYPES and type(x) is dict:
            # small coded values repeat across resources (the same codings, identifiers, periods):
            # one that passed against this element once passes again, so it is checked once
            raw = orjson.dumps(x)
            if b'"reference"' in raw:  # a reference resolves against its resource or Bundle: no memo
                return self._complex_value(node, code, x, loc, ctx)
            key = (id(node), code, raw)
            if key in self._clean:
                return x
            marks = (len(sink), len(ctx.pending))
            r = self._complex_value(node, code, x, loc, ctx)
            if r is x and marks == (len(sink), len(ctx.pending)):
                if len(self._clean) >= _MEMO_LIMIT:
                    self._clean.clear()
                self._clean.add(key)
            return r
        if code in _RESOURCE_TYPES or self.plans.is_resource_type(code):
            # an element may allow several resource types, each with its profiles: the item's type picks
            rt = x.get("resourceType") if isinstance(x, dict) else None
            if isinstance(rt, str) and rt in node.type_profiles:
                profiles = node.type_profiles[rt]
            else:
                profiles = node.type_profiles.get(code, ()) if len(node.types) <= 1 else ()
            allowed = None if code in _RESOURCE_TYPES else node.types
            # a Bundle's entries are resources of their own (%resource is the entry); contained ones share the root;
            # so are the resources of a Parameters: '#id' references resolve in their own contained list
            root = None if ctx.resource.get("resourceType") in ("Bundle", "Parameters") else ctx.root
            if len(profiles) > 1:
                # several profiles on one type: the resource must conform to at least one of them
                for p in profiles:
                    trial: list[Issue] = []
                    self.resource(x, loc, trial, profiles=(p,), bundle=ctx.bundle, root=root, allowed_types=allowed)
                    if not any(i.is_error for i in trial):
                        sink.extend(trial)
                        return x
            self.resource(x, loc, sink, profiles=profiles, bundle=ctx.bundle, root=root, allowed_types=allowed)
            return x
        return self._complex_value(node, code, x, loc, ctx)

    def _complex_value(self, node: Node, code: str, x: Any, loc: str, ctx: WalkState) -> Any:
        """A complex value: its children, then the element's fixed/pattern, binding, codes and reference."""
        sink = ctx.sink
        r = self.complex(node, code, x, loc, ctx)
        if not isinstance(x, dict):
            return x
        if node.fixed is not MISSING and x != node.fixed and _strip_ids(x) != node.fixed:
            sink.append(Issue("error", VALUE, loc, f"the value does not equal the fixed value the profile requires: {_short(node.fixed)}", "fixed"))
        elif node.pattern is not MISSING and not matches_pattern(x, node.pattern):
            sink.append(Issue("error", VALUE, loc, f"the value does not match the pattern the profile requires: {_short(node.pattern)}", "pattern"))
        if node.min_value is not None or node.max_value is not None:
            self._limits(node, code, x, loc, sink)
        if node.binding is not None and code in ("Coding", "CodeableConcept", "Quantity"):
            sink.extend(self.terminology.check_binding(node.binding[0], node.binding[1], code, x, loc))
        if code == "Coding" and self.check_codes:
            sink.extend(self.terminology.check_coding(x, loc))
        elif code == "CodeableConcept" and self.check_codes and isinstance(x.get("coding"), list):
            for i, c in enumerate(x["coding"]):
                if isinstance(c, dict):
                    sink.extend(self.terminology.check_coding(c, f"{loc}.coding[{i}]"))
        elif code == "Reference":
            self._reference(node, x, loc, ctx)
        elif code == "Attachment" and isinstance(x.get("data"), str) and isinstance(x.get("size"), int):
            actual = _decoded_size(x["data"])
            if actual is not None and actual != x["size"]:
                sink.append(Issue("error", VALUE, loc, f"the stated attachment size {x['size']} does not match the size of its data ({actual} bytes)", "attachment-size"))
        return r

    def _limits(self, node: Node, code: str, x: Any, loc: str, sink: list[Issue]) -> None:
        for kind, limit in (("min", node.min_value), ("max", node.max_value)):
            if limit is not None:
                msg = violation(kind, limit[0], limit[1], code, x, self.now)
                if msg is not None:
                    sink.append(Issue("error", VALUE, loc, msg, f"{kind}-value"))

    def _primitive_extension(self, node: Node, key: str, ext: Any, val: Any, loc: str, ctx: WalkState) -> None:
        at = f"{loc}.{key}"  # FHIRPath names the primitive, not its JSON _key (as the HL7 validator reports)
        elem_root = self.plans.type_root("Element")
        if elem_root is None:
            return
        if node.is_array:
            if not isinstance(ext, list):
                ctx.sink.append(Issue("error", STRUCTURE, at, f"_{key} must be a JSON array", "structure"))
                return
            if isinstance(val, list) and len(val) != len(ext):
                ctx.sink.append(Issue("error", STRUCTURE, at, f"_{key} must have as many items as {key}", "structure"))
            for i, e in enumerate(ext):
                if e is None:
                    if not isinstance(val, list) or i >= len(val) or val[i] is None:
                        ctx.sink.append(Issue("error", STRUCTURE, f"{at}[{i}]", "null without a value: the item has neither a value nor extensions", "structure"))
                    continue
                self.complex(elem_root, "Element", e, f"{at}[{i}]", ctx)
        else:
            self.complex(elem_root, "Element", ext, at, ctx)

    def _reference(self, node: Node, x: dict[str, Any], loc: str, ctx: WalkState) -> None:
        ref = x.get("reference")
        target: str | None = None
        resolved = False
        if isinstance(ref, str):
            if ref.startswith("#"):
                if ref != "#":
                    target = ctx.contained.get(ref[1:])
                    resolved = True
                    if target is None:
                        ctx.sink.append(Issue("error", INVARIANT, loc, f"ref-1: {ref!r} does not match the id of a contained resource", "ref-1"))
                        return
                else:
                    target = ctx.root.get("resourceType") if isinstance(ctx.root, dict) else None
            elif ctx.bundle is not None:
                if ref in ctx.bundle.ambiguous:
                    ctx.sink.append(Issue("error", NOT_FOUND, loc, f"{ref} matches more than one entry of this Bundle (the same type and id under different fullUrls)", "reference-resolve"))
                hit = ctx.bundle.find(ref)
                if hit is not None:
                    target = str(hit.resource.get("resourceType"))
                    resolved = True
                elif ref.startswith("urn:"):
                    ctx.sink.append(Issue("error", NOT_FOUND, f"{loc}.reference", f"{ref} is not the fullUrl of any entry in this Bundle", "reference-resolve"))
                    return
            if target is None and not ref.startswith(("urn:", "#")):
                m = _REF_TYPE.search(ref.split("?")[0])
                if m:
                    target = m.group(1)
        declared = x.get("type")
        if target is not None and isinstance(declared, str) and declared != target:
            ctx.sink.append(Issue("error", STRUCTURE, f"{loc}.type", f"the reference type {declared!r} does not match the referenced resource {target!r}", "reference-target"))
        if target is None and isinstance(declared, str):
            target = declared
        target_types = node.target_types if node.target_types is not None or not node.target_profiles else self._target_types(node)
        if resolved and node.target_profiles and target_types is None:
            # as the Java validator: a target profile no loaded package defines cannot be checked, an error
            for url in node.target_profiles:
                if self.plans.plan(url) is None:
                    ctx.sink.append(Issue("error", STRUCTURE, loc, f"Unable to resolve the profile reference '{url}'", "reference-profile"))
        if target is not None and target_types is not None and target not in target_types:
            allowed = ", ".join(target_types)
            if resolved:
                ctx.sink.append(Issue("error", STRUCTURE, loc, f"invalid resource target type: found {target}, but expected one of ({allowed})", "reference-target"))
            else:
                # only the URL says so; HAPI too judges the type of a target it cannot resolve as advice
                ctx.sink.append(Issue("warning", STRUCTURE, loc, f"the reference points to a {target}, but this element expects one of ({allowed})", "reference-target"))

    def new_input(self) -> None:
        """A new input begins: an invariant skipped is said again, once for it.

        Once per input, not once per run: an input's findings never depend on the inputs validated
        before it, so a run split over processes reports exactly what one process does.
        """
        self._reported_skips.clear()

    def probe_context(self, sink: list[Issue], ctx: WalkState) -> WalkState:
        """A fresh walk state sharing ``ctx``'s resource, for trying an item against a slice's profile."""
        return WalkState(sink, ctx.resource, ctx.root, ctx.bundle, ctx.contained)

    # -- invariants -----------------------------------------------------------------------------------
    def _run_pending(self, ctx: WalkState, stripped_resource: Any, root: Any) -> None:
        if not ctx.pending:
            return
        resource = stripped_resource
        root_res = resource if root is None else root
        for cons, val, path, loc in ctx.pending:
            for c in cons:
                try:
                    native = self._native[c.expression]
                except KeyError:
                    native = self._native[c.expression] = NATIVE_EXPRESSIONS.get(c.expression) or compile_simple(c.expression)
                if native is not None:
                    ok: bool | None = native(val)
                else:
                    ok = self.invariants.evaluate(c.expression, val, path, resource, root_res)
                    if ok is None:
                        if c.expression not in self._reported_skips:  # said once per input (see new_input)
                            self._reported_skips.add(c.expression)
                            why = self.invariants.skipped.get(c.expression, "not supported")
                            ctx.sink.append(Issue("information", NOT_SUPPORTED, loc, f"{c.key} was not checked: {why}", "invariant-skipped"))
                        continue
                if not ok:
                    sev = "error" if c.severity == "error" else "warning"
                    ctx.sink.append(Issue(sev, INVARIANT, loc, f"{c.key}: {c.human}", c.key))


def _type_issue(x: Any, loc: str, msg: str) -> Issue:
    code = VALUE if isinstance(x, (str, int, float)) and not isinstance(x, bool) else STRUCTURE
    return Issue("error", code, loc, msg, "type")


def _decoded_size(data: str) -> int | None:
    """The number of bytes a base64 value decodes to (None when it is not valid base64)."""
    try:
        return len(binascii.a2b_base64("".join(data.split()).encode("ascii"), strict_mode=True))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None


def _strip_ids(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _strip_ids(v) for k, v in x.items() if k != "id"}
    if isinstance(x, list):
        return [_strip_ids(v) for v in x]
    return x


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) < 160 else text[:157] + "..."


def _references(obj: Any) -> set[str]:
    """Every reference string (and '#...' canonical/uri value) under obj."""
    out: set[str] = set()
    stack = [obj]
    while stack:
        cur = stack.pop()
        if isinstance(cur, dict):
            for k, v in cur.items():
                if isinstance(v, str):
                    if k == "reference" or v.startswith("#"):
                        out.add(v)
                elif isinstance(v, (dict, list)):
                    stack.append(v)
        elif isinstance(cur, list):
            stack.extend(v for v in cur if isinstance(v, (dict, list)))
    return out
