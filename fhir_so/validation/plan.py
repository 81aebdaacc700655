"""Precompiled validation plans: one tree of :class:`Node` per StructureDefinition, built once.

A plan turns a snapshot into what the walker needs at each JSON key, so no snapshot is walked
per resource: the child's node and type by JSON key (choice types expanded: ``valueQuantity``
-> ``value[x]`` as Quantity), cardinality, array-ness, fixed/pattern values, the binding,
the invariants left for FHIRPath, reference targets, type profiles and slicing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fhir_so.errors import ProfileError
from fhir_so.validation.primitives import SYSTEM_TYPES, as_dict, is_primitive
from fhir_so.validation.snapshot import DefinitionSource, SnapshotGenerator, element_id

MISSING: Any = object()

#: invariants the validator checks natively (cheaper than FHIRPath, or beyond fhirpathpy)
NATIVE_INVARIANTS = frozenset({"ele-1", "ext-1", "dom-2", "dom-3", "dom-4", "dom-5", "dom-6", "txt-1", "txt-2", "ref-1"})

#: invariants of core R4 as published with a known error, and their corrected expression (the HL7
#: validator applies the correction): que-12 says "more than one" but counts "> 2"
INVARIANT_ERRATA: dict[tuple[str, str], str] = {
    ("que-12", "enableWhen.count() > 2 implies enableBehavior.exists()"): "enableWhen.count() > 1 implies enableBehavior.exists()",
}

_FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
_SD_PREFIX = "http://hl7.org/fhir/StructureDefinition/"


@dataclass(slots=True, eq=False)
class Constraint:
    """One invariant: its key, severity, human text and FHIRPath expression."""

    key: str
    severity: str
    human: str
    expression: str


@dataclass(slots=True, eq=False)
class Discriminator:
    """How list items are told apart: kind (value, pattern, type, profile, exists) and path."""

    kind: str
    path: str


@dataclass(slots=True, eq=False)
class Slicing:
    """The slicing of an element: discriminators, rules (open, closed, openAtEnd), order and slices."""

    discriminators: tuple[Discriminator, ...]
    rules: str
    ordered: bool
    slices: list["Node"] = field(default_factory=list)


@dataclass(slots=True, eq=False)
class Node:
    """One element of a plan: everything checked where this element occurs."""

    id: str
    path: str
    name: str
    min: int
    max: int  # -1 means unbounded
    is_array: bool
    types: tuple[str, ...]
    type_profiles: dict[str, tuple[str, ...]]
    target_types: tuple[str, ...] | None
    target_profiles: tuple[str, ...]
    fixed: Any
    pattern: Any
    binding: tuple[str, str] | None
    constraints: tuple[Constraint, ...]
    native: frozenset[str]
    slice_name: str | None = None
    slicing: Slicing | None = None
    content_ref: str | None = None
    max_length: int | None = None
    #: minValue[x] / maxValue[x]: (the limit's type, the limit)
    min_value: tuple[str, Any] | None = None
    max_value: tuple[str, Any] | None = None
    #: JSON key -> (child node, type code); None until the snapshot gives children
    children: dict[str, tuple["Node", str]] | None = None
    child_nodes: list["Node"] = field(default_factory=list)
    required: list["Node"] = field(default_factory=list)
    limited: list["Node"] = field(default_factory=list)
    #: the keys whose presence means the element is there (``_name`` too: a primitive with only extensions)
    present: tuple[str, ...] = ()
    #: precomputed flags for the walker's fast paths
    is_choice: bool = False
    sliced: bool = False
    has_value_checks: bool = False

    def keys(self) -> list[str]:
        """The JSON keys this element may appear under (one per type for a choice element)."""
        if self.name.endswith("[x]"):
            stem = self.name[:-3]
            return [stem + t[:1].upper() + t[1:] for t in self.types]
        return [self.name]


    @property
    def max_text(self) -> str:
        return "*" if self.max < 0 else str(self.max)


@dataclass(slots=True, eq=False)
class Plan:
    """The compiled form of one StructureDefinition (a profile, a resource type or a data type)."""

    url: str
    type: str
    root: Node
    kind: str
    is_constraint: bool
    by_id: dict[str, Node]
    #: where an extension may be used: (context type, expression) pairs of the StructureDefinition
    contexts: tuple[tuple[str, str], ...] = ()
    #: an extension that changes the meaning of its element (belongs in modifierExtension)
    is_modifier: bool = False


def _type_code(t: dict[str, Any]) -> str:
    code = t.get("code") or ""
    if code.startswith("http://hl7.org/fhirpath/System."):
        for ext in t.get("extension") or []:
            if ext.get("url") == _FHIR_TYPE_EXT and isinstance(ext.get("valueUrl"), str):
                return str(ext["valueUrl"])
        return SYSTEM_TYPES.get(code, "string")
    return str(code)


def _limits(el: dict[str, Any]) -> tuple[tuple[str, Any] | None, tuple[str, Any] | None]:
    low = high = None
    for key, value in el.items():
        if key.startswith(("minValue", "maxValue")) and len(key) > 8:
            kind = key[8:]
            # the key spells the type capitalised: a primitive's code starts in lower case
            kind = kind if kind in ("Quantity", "Duration") else kind[0].lower() + kind[1:]
            if key[1] == "i":
                low = (kind, value)
            else:
                high = (kind, value)
    return low, high


def _fixed_pattern(el: dict[str, Any]) -> tuple[Any, Any]:
    fixed, pattern = MISSING, MISSING
    for key, value in el.items():
        if key.startswith("fixed"):
            fixed = value
        elif key.startswith("pattern"):
            pattern = value
    return fixed, pattern


def _max(value: Any) -> int:
    if value == "*" or value is None:
        return -1
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def _make_node(el: dict[str, Any], sd_type: str, is_root: bool) -> Node:
    eid = element_id(el)
    path = str(el.get("path") or eid)
    types_raw = [t for t in el.get("type") or [] if isinstance(t, dict)]
    types = tuple(_type_code(t) for t in types_raw) if types_raw else ((sd_type,) if is_root else ())
    type_profiles = {
        _type_code(t): tuple(t["profile"]) for t in types_raw if isinstance(t.get("profile"), list) and t["profile"]
    }
    target_profiles: list[str] = []
    for t in types_raw:
        if t.get("code") in ("Reference", "canonical") and isinstance(t.get("targetProfile"), list):
            target_profiles.extend(str(p) for p in t["targetProfile"])
    target_types: tuple[str, ...] | None = None
    if target_profiles and "Reference" in types:
        # 'http://hl7.org/fhir/StructureDefinition/Practitioner|4.0.1' names the type Practitioner (IGs pin versions);
        # a core profile (vitalsigns) or a profile outside core is resolved to its type by the walker, lazily
        bare = [p.partition("|")[0] for p in target_profiles]
        names = tuple(n for n in (p.rsplit("/", 1)[-1] for p in bare if p.startswith(_SD_PREFIX)) if n[:1].isupper())
        target_types = None if "Resource" in names or len(names) < len(target_profiles) else tuple(dict.fromkeys(names))
    fixed, pattern = _fixed_pattern(el)
    binding = None
    b = el.get("binding")
    if isinstance(b, dict) and isinstance(b.get("valueSet"), str) and b.get("strength") in ("required", "extensible", "preferred"):
        binding = (str(b["strength"]), str(b["valueSet"]))
    constraints = []
    native = set()
    for c in el.get("constraint") or []:
        key = c.get("key")
        if not isinstance(key, str):
            continue
        if key in NATIVE_INVARIANTS:
            native.add(key)
        elif isinstance(c.get("expression"), str):
            expression = INVARIANT_ERRATA.get((key, c["expression"]), c["expression"])
            constraints.append(Constraint(key, str(c.get("severity") or "error"), str(c.get("human") or key), expression))
    base = as_dict(el.get("base"), {})
    base_max = base.get("max", el.get("max"))
    last = eid.rsplit(".", 1)[-1]
    name = last.split(":", 1)[0]
    slicing = None
    s = el.get("slicing")
    if isinstance(s, dict):
        discs = tuple(
            Discriminator(str(d.get("type")), str(d.get("path") or "$this"))
            for d in s.get("discriminator") or []
            if isinstance(d, dict)
        )
        slicing = Slicing(discs, str(s.get("rules") or "open"), bool(s.get("ordered")))
    ml = el.get("maxLength")
    low, high = _limits(el)
    return Node(
        id=eid,
        path=path,
        name=name,
        min=int(el.get("min") or 0),
        max=_max(el.get("max")),
        is_array=not is_root and base_max not in ("0", "1"),
        types=types,
        type_profiles=type_profiles,
        target_types=target_types,
        target_profiles=tuple(target_profiles),
        fixed=fixed,
        pattern=pattern,
        binding=binding,
        constraints=tuple(constraints),
        native=frozenset(native),
        slice_name=el.get("sliceName") if not is_root else None,
        slicing=slicing,
        content_ref=el.get("contentReference") if isinstance(el.get("contentReference"), str) else None,
        max_length=ml if isinstance(ml, int) else None,
        min_value=low,
        max_value=high,
    )


def compile_plan(sd: dict[str, Any], elements: list[dict[str, Any]]) -> Plan:
    """Build the plan of one StructureDefinition from its snapshot elements."""
    url = str(sd.get("url") or sd.get("id") or "?")
    sd_type = str(sd.get("type") or "")
    if not elements:
        raise ProfileError("has an empty snapshot", source=url)
    by_id: dict[str, Node] = {}
    root = _make_node(elements[0], sd_type, True)
    by_id[root.id] = root
    is_constraint = sd.get("derivation") == "constraint"
    for el in elements[1:]:
        node = _make_node(el, sd_type, False)
        if node.id == f"{root.id}.id" and sd.get("kind") == "resource":
            node.types = ("id",)  # R4 types Resource.id as System.String; its form is that of an id
        by_id[node.id] = node
        parent_id, _, last = node.id.rpartition(".")
        parent = by_id.get(parent_id)
        if parent is None:
            raise ProfileError(f"snapshot element {node.id} comes before its parent", source=url)
        if ":" in last:
            base = by_id.get(f"{parent_id}.{node.name}")
            if base is None:
                raise ProfileError(f"slice {node.id} has no unsliced element to belong to", source=url)
            if base.slicing is None:
                if not base.name.endswith("[x]"):
                    raise ProfileError(f"{base.id} has slices but no slicing (discriminator) is declared", source=url)
                base.slicing = Slicing((Discriminator("type", "$this"),), "open", False)
            base.slicing.slices.append(node)
            continue
        if parent.children is None:
            parent.children = {}
        for key in node.keys():
            parent.children[key] = (node, key[len(node.name) - 3:] if node.name.endswith("[x]") else (node.types[0] if node.types else ""))
        parent.child_nodes.append(node)
        if node.min > 0:
            parent.required.append(node)
        if node.max > 0 and node.is_array:
            parent.limited.append(node)
    for node in by_id.values():
        if node.slicing is not None and node.slicing.slices and not node.slicing.discriminators and is_constraint:
            raise ProfileError(f"{node.id} is sliced without a discriminator", source=url)
        if node.content_ref and node.children is None:
            ref = by_id.get(node.content_ref.lstrip("#").split("#")[-1])
            if ref is None:
                raise ProfileError(f"{node.id} refers to {node.content_ref}, which does not exist", source=url)
            node.children, node.child_nodes, node.required, node.limited = ref.children, ref.child_nodes, ref.required, ref.limited
            node.types, node.path = ref.types, ref.path
            node.constraints = node.constraints + tuple(c for c in ref.constraints if c not in node.constraints)
    # a choice key maps to its type with the type code's own spelling ("valueString" -> "string")
    for node in by_id.values():
        node.present = tuple(node.keys()) + tuple("_" + k for k in node.keys())
        node.is_choice = node.name.endswith("[x]")
        node.sliced = node.slicing is not None and bool(node.slicing.slices)
        node.has_value_checks = (
            node.fixed is not MISSING or node.pattern is not MISSING or node.binding is not None
            or node.max_length is not None or bool(node.constraints) or "xhtml" in node.types
            or node.min_value is not None or node.max_value is not None
        )
        if node.children:
            for key, (child, code) in list(node.children.items()):
                if child.name.endswith("[x]"):
                    spelled = next((t for t in child.types if t[:1].upper() + t[1:] == code), code)
                    node.children[key] = (child, spelled)
    contexts = tuple(
        (str(c.get("type") or ""), str(c.get("expression") or ""))
        for c in sd.get("context") or []
        if isinstance(c, dict)
    )
    is_modifier = sd_type == "Extension" and elements[0].get("isModifier") is True
    return Plan(url, sd_type, root, str(sd.get("kind") or ""), is_constraint, by_id, contexts, is_modifier)


class PlanRegistry:
    """Compiles and caches plans by canonical URL or type name (one registry per validator)."""

    def __init__(self, definitions: DefinitionSource) -> None:
        self.definitions = definitions
        self.snapshots = SnapshotGenerator(definitions)
        self._plans: dict[str, Plan | None] = {}

    def plan(self, url_or_type: str) -> Plan | None:
        """The plan for a profile URL or a core type name, or None when no package defines it."""
        try:
            return self._plans[url_or_type]
        except KeyError:
            pass
        sd = self.definitions.structure_definition(url_or_type)
        plan = None
        if sd is not None:
            try:
                plan = compile_plan(sd, self.snapshots.elements(sd))
            except ProfileError:
                raise
            except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
                # a malformed definition (a user's package): name it rather than fail somewhere inside
                raise ProfileError(f"is malformed and cannot be used ({type(exc).__name__}: {exc})", source=str(sd.get("url") or url_or_type)) from None
        self._plans[url_or_type] = plan
        return plan

    def is_resource_type(self, type_code: str) -> bool:
        """True for a resource type name (Patient), false for data types (Period) and unknown names."""
        if not type_code[:1].isupper():
            return False
        plan = self.plan(type_code)
        return plan is not None and plan.kind == "resource"

    def type_root(self, type_code: str) -> Node | None:
        """The root node of a core data type or resource type (for children and type-level invariants)."""
        plan = self.plan(type_code)
        return plan.root if plan is not None else None


def is_complex(type_code: str) -> bool:
    """True for complex data types and resources (not primitives)."""
    return not is_primitive(type_code)
