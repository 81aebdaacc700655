"""Slicing: assign each item of a sliced list to a slice, then check slice cardinality and the rules.

Discriminators supported: ``value`` and ``pattern`` (the fixed/pattern value, or a required
binding, of the element at the discriminator path in the slice), ``type``, ``profile`` (the
item conforms to the slice's type profile) and ``exists``. Rules: open, closed (an item that
fits no slice is an error), openAtEnd (unmatched items only after the matched ones) and
ordered (items in the order of the slices). A ``resolve()`` discriminator (type or profile) is
followed to a resource of the same Bundle or a contained one; one that cannot be resolved offline
(a reference outside any Bundle, a path beyond ``resolve()``) is ignored. An item that surely fits
two slices is an error, as in the HL7 validator ("matches more than one slice").
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

from fhir_so.references import BundleIndex
from fhir_so.validation.bindings import Terminology
from fhir_so.validation.findings import STRUCTURE, Issue
from fhir_so.validation.native import path_values
from fhir_so.validation.plan import MISSING, Discriminator, Node, PlanRegistry
from fhir_so.validation.primitives import as_list
from fhir_so.validation.walkstate import WalkState


class Walker(Protocol):
    """What the slice matcher needs from the element walker (which owns it): no import of profile.py."""

    plans: PlanRegistry
    terminology: Terminology

    def value(self, node: Node, code: str, x: Any, loc: str, ctx: WalkState) -> Any: ...

    def complex(self, node: Node, code: str, value: Any, loc: str, ctx: WalkState, *, is_resource: bool = False) -> Any: ...

    def resource(self, res: Any, loc: str, sink: list[Issue], *, profiles: Sequence[str] = ..., bundle: BundleIndex | None = ...) -> None: ...

    def probe_context(self, sink: list[Issue], ctx: WalkState) -> WalkState: ...

_UNRESOLVED: Any = object()


class SliceMatcher:
    """Matches list items to slices; caches the element a discriminator path names in each slice."""

    def __init__(self, walker: Walker) -> None:
        self._walker = walker
        self._targets: dict[tuple[int, str], Node | None] = {}

    def walk(self, node: Node, code: str, items: list[Any], loc: str, ctx: WalkState, prim_ext: Any) -> list[Any] | None:
        """Validate the items of a sliced element; returns the stripped items when any changed."""
        slicing = node.slicing
        assert slicing is not None  # the walker calls this only for sliced elements
        slices = slicing.slices
        assigned: list[int] = []
        also: dict[int, int] = {}  # item -> a second slice it surely matches too
        for i, x in enumerate(items):
            idx, sure = -1, False
            for si, s in enumerate(slices):
                found = self.match(s, slicing.discriminators, code, x, ctx)
                if found is False:
                    continue
                if idx < 0:
                    idx, sure = si, found is True
                    if not sure:
                        break  # a discriminator that cannot be evaluated offline: the first fitting slice, as before
                elif found is True and not _reslice(slices[idx], s):
                    also[i] = si  # HL7: "Element matches more than one slice"; the item keeps its first slice
                    break
            assigned.append(idx)
        sink = ctx.sink
        parent_loc = loc.rpartition(".")[0] or loc
        new: list[Any] | None = None
        highest = -1
        for i, (x, si) in enumerate(zip(items, assigned)):
            at = f"{loc}[{i}]" if node.is_array else loc
            if i in also:
                first, second = slices[si].slice_name, slices[also[i]].slice_name
                sink.append(Issue("error", STRUCTURE, at, f"this item matches more than one slice of {node.path}: {first}, {second}", "slicing-multiple"))
            if si < 0:
                if slicing.rules == "closed":
                    sink.append(Issue("error", STRUCTURE, at, f"this item matches none of the slices of {node.path}, and the slicing is closed", "slicing"))
                elif slicing.rules == "openAtEnd" and any(a >= 0 for a in assigned[i + 1:]):
                    sink.append(Issue("error", STRUCTURE, at, f"unmatched items of {node.path} must come after the sliced ones (openAtEnd)", "slicing"))
            else:
                if slicing.ordered and si < highest:
                    sink.append(Issue("error", STRUCTURE, at, f"the slices of {node.path} must be in order: {slices[si].slice_name} comes after {slices[highest].slice_name}", "slicing"))
                highest = max(highest, si)
            # an item that fits two slices is checked against the sliced element only, not a slice picked at random
            target = slices[si] if si >= 0 and i not in also else node
            if x is None and prim_ext is not None:
                continue
            item_code = code
            if si >= 0 and target.types and code not in target.types and len(target.types) == 1:
                item_code = target.types[0]
            r = self._walker.value(target, item_code, x, at, ctx)
            if r is not x:
                if new is None:
                    new = list(items)
                new[i] = r
        for si, s in enumerate(slices):
            n = sum(1 for a in assigned if a == si)
            if n < s.min:
                sink.append(Issue("error", STRUCTURE, parent_loc if n == 0 else loc, f"slice {s.slice_name!r} of {node.path}: minimum required = {s.min}, but only found {n}", "slicing-cardinality"))
            elif s.max >= 0 and n > s.max:
                sink.append(Issue("error", STRUCTURE, loc, f"slice {s.slice_name!r} of {node.path}: maximum allowed = {s.max}, but found {n}", "slicing-cardinality"))
        return new

    # -- matching ------------------------------------------------------------------------------------------
    def matches(self, s: Node, discriminators: tuple[Discriminator, ...], code: str, x: Any, ctx: WalkState) -> bool:
        """True when the item fits the slice on every discriminator that can be evaluated."""
        return self.match(s, discriminators, code, x, ctx) is not False

    def match(self, s: Node, discriminators: tuple[Discriminator, ...], code: str, x: Any, ctx: WalkState) -> bool | None:
        """True: the item fits the slice; False: it does not; None: it fits on every discriminator that could be evaluated."""
        sure = True
        for d in discriminators:
            if d.path == "resolve()":
                fits = self._match_resolved(s, d.kind, x, ctx)
                if fits is False:
                    return False
                sure = sure and fits is True
                continue
            if "resolve()" in d.path:
                sure = False
                continue
            target = self._target(s, d.path)
            if target is None:
                sure = False
                continue
            values = _values_at(x, d.path)
            kind = d.kind
            if kind in ("value", "pattern"):
                expected = target.fixed if target.fixed is not MISSING else target.pattern
                if expected is MISSING:
                    if target.binding is not None and target.binding[0] == "required":
                        exp = self._walker.terminology.expand(target.binding[1])
                        if exp is None or not any(_in_expansion(exp, v) for v in values):
                            return False
                    else:
                        sure = False  # nothing fixed to compare with
                    continue
                if not any(matches_pattern(v, expected) for v in values):
                    return False
            elif kind == "exists":
                if target.min >= 1 and not values:
                    return False
                if target.max == 0 and values:
                    return False
            elif kind == "type":
                if d.path == "$this":
                    rt = x.get("resourceType") if isinstance(x, dict) else None
                    if rt is not None:
                        if rt not in target.types and not any(p.endswith("/" + rt) for ps in target.type_profiles.values() for p in ps):
                            return False
                    elif code not in target.types:
                        return False
                elif not values:
                    return False
                else:
                    for v in values:
                        rt = v.get("resourceType") if isinstance(v, dict) else None
                        if rt is not None and rt not in target.types and "Resource" not in target.types:
                            return False
            elif kind == "profile":
                profiles = [p for ps in target.type_profiles.values() for p in ps]
                if not profiles:
                    sure = False
                    continue
                for v in values or [None]:
                    if v is None:
                        return False
                    probe: list[Issue] = []
                    if isinstance(v, dict) and "resourceType" in v:
                        # a slice may allow several types, each with its profile: the item's type picks one
                        rt = v.get("resourceType")
                        own = [p for p in profiles if (plan := self._walker.plans.plan(p)) is not None and plan.type == rt]
                        if not own:
                            return False
                        if not any(self._conforms_to(v, p, ctx) for p in own):
                            return False
                        continue
                    else:
                        plan = self._walker.plans.plan(profiles[0])
                        if plan is None:
                            continue
                        pctx = self._walker.probe_context(probe, ctx)
                        self._walker.complex(plan.root, plan.type, v, "probe", pctx)
                    if not self._conforms(probe, v):
                        return False
            else:
                sure = False  # a discriminator kind this matcher does not know
        return True if sure else None

    def _match_resolved(self, s: Node, kind: str, x: Any, ctx: WalkState) -> bool | None:
        """A 'type' or 'profile' discriminator on resolve(): the referenced resource, found in the Bundle or contained."""
        if kind not in ("type", "profile") or not s.target_profiles:
            return None
        ref = x.get("reference") if isinstance(x, dict) else None
        if not isinstance(ref, str):
            return None
        if ref.startswith("#"):
            res = _contained(ctx.resource, ref[1:])
        else:
            hit = ctx.bundle.find(ref) if ctx.bundle is not None else None
            res = hit.resource if hit is not None else None
        if res is None:
            # outside a Bundle nothing can be resolved offline: leave it open; inside one, an unresolved item fits no slice
            return None if ctx.bundle is None or ref.startswith("#") else False
        plans = [self._walker.plans.plan(url) for url in s.target_profiles]
        if kind == "type":
            types = {p.type for p in plans if p is not None}
            return None if not types or "Resource" in types else res.get("resourceType") in types
        for url, plan in zip(s.target_profiles, plans):
            if plan is None:
                return None
            if plan.type != res.get("resourceType") and plan.type != "Resource":
                continue
            probe: list[Issue] = []
            self._walker.resource(res, "probe", probe, profiles=[url], bundle=ctx.bundle)
            if self._conforms(probe, res):
                return True
        return False

    def _conforms(self, probe: list[Issue], value: Any) -> bool:
        """Whether a probe against a slice's profile found no error that the HL7 validator would also find offline.

        Offline, the HL7 validator cannot tell whether a code of a code system it does not have (LOINC, SNOMED CT)
        is in a value set, even one that lists its codes: such a code is unknown, and the item conforms. fhir-so
        can tell from the list, and still reports it when it validates the item against the slice it is given;
        only the choice of slice follows the HL7 validator, so both assign the same items to the same slices.
        """
        for issue in probe:
            if issue.is_error and not (issue.rule == "binding" and self._codes_unknown_offline(value, issue.expression)):
                return False
        return True

    def _codes_unknown_offline(self, value: Any, expression: str) -> bool:
        found = _at(value, expression.split(".", 1)[1] if "." in expression else "")
        codings = found if isinstance(found, list) else [found]
        systems = [c.get("system") for c in codings if isinstance(c, dict) and isinstance(c.get("code"), str)]
        terminology = self._walker.terminology
        return bool(systems) and all(isinstance(sy, str) and terminology.system_codes(sy) is None for sy in systems)

    def _conforms_to(self, resource: dict[str, Any], profile: str, ctx: WalkState) -> bool:
        probe: list[Issue] = []
        self._walker.resource(resource, "probe", probe, profiles=(profile,), bundle=ctx.bundle)
        return self._conforms(probe, resource)

    def _target(self, s: Node, path: str) -> Node | None:
        key = (id(s), path)
        try:
            return self._targets[key]
        except KeyError:
            pass
        node: Node | None = s
        if path != "$this":
            for seg in _segments(path):
                node = self._child(node, seg) if node is not None else None
        self._targets[key] = node
        return node

    def _child(self, node: Node, seg: str) -> Node | None:
        children = node.children
        if children is None:
            for code in node.types:
                for p in node.type_profiles.get(code, ()):
                    plan = self._walker.plans.plan(p)
                    if plan is not None and plan.root.children is not None:
                        children = plan.root.children
                        break
                if children is None:
                    root = self._walker.plans.type_root(code)
                    children = root.children if root is not None else None
                if children is not None:
                    break
        if children is None:
            return None
        hit = children.get(seg)
        if hit is not None:
            return hit[0]
        for child, _ in children.values():
            if child.name == seg + "[x]":
                return child
        return None


def matches_pattern(value: Any, pattern: Any) -> bool:
    """FHIR pattern semantics: every part of the pattern appears in the value (lists: each pattern item in some value item)."""
    if type(pattern) is dict:
        if type(value) is not dict:
            return False
        for k, p in pattern.items():
            v = value.get(k, _UNRESOLVED)
            if v is _UNRESOLVED or not matches_pattern(v, p):
                return False
        return True
    if type(pattern) is list:
        if type(value) is not list:
            return False
        for p in pattern:
            for v in value:
                if matches_pattern(v, p):
                    break
            else:
                return False
        return True
    return bool(value == pattern)


def _reslice(first: Node, other: Node) -> bool:
    """Whether one slice re-slices the other ('a/b' of 'a'): matching both is then expected."""
    a, b = first.slice_name or "", other.slice_name or ""
    return b.startswith(a + "/") or a.startswith(b + "/")


def _at(value: Any, path: str) -> Any:
    """The value at a location such as 'component[0].code.coding' (None when there is none)."""
    for seg in path.split(".") if path else ():
        name, _, index = seg.partition("[")
        value = value.get(name) if isinstance(value, dict) else None
        if index:
            try:
                value = value[int(index.rstrip("]"))] if isinstance(value, list) else None
            except (ValueError, IndexError):
                return None
    return value


def _contained(resource: Any, rid: str) -> dict[str, Any] | None:
    for c in as_list(resource.get("contained") if isinstance(resource, dict) else None, []):
        if isinstance(c, dict) and c.get("id") == rid:
            return c
    return None


def _segments(path: str) -> list[str]:
    out = []
    for seg in path.split("."):
        if seg.startswith("ofType(") or seg == "$this":  # "$this.name" is "name"
            continue
        if seg.startswith("extension("):
            out.append("extension")
            continue
        out.append(seg)
    return out


def _values_at(x: Any, path: str) -> list[Any]:
    return [x] if path == "$this" else path_values(x, _segments(path))


def _in_expansion(exp: Any, v: Any) -> bool:
    if isinstance(v, str):
        return bool(exp.contains(None, v))
    if isinstance(v, dict):
        codings = as_list(v.get("coding"), [v])
        return any(isinstance(c, dict) and isinstance(c.get("code"), str) and exp.contains(c.get("system"), c["code"]) for c in codings)
    return False
