"""CodeSystem and ValueSet definitions checked offline, as the HL7 Java validator checks them.

The rules, wording and severities mirror ``CodeSystemValidator`` and ``ValueSetValidator`` of
``org.hl7.fhir.validation`` (read at the source), limited to what needs no terminology server:

CodeSystem: supplements (``content`` must be ``supplement``, no ``caseSensitive``, the
``supplements`` element is needed, a supplement's codes must exist in its base CodeSystem when
that one is loaded), ``count`` against the concepts present, a complete CodeSystem with no
concept, duplicate codes, property declarations (absolute and unique URIs, unique codes, the
standard ``concept-properties`` URIs with their standard code and type) and concept property
values (declared, with a value of the declared type).

ValueSet: ``compose.include.system`` must be an absolute URI and not a supplement, concepts of a
complete local CodeSystem must exist in it, and filter values must fit the property they filter
(a code of the local CodeSystem for ``concept``/``code`` and code-typed properties, ``true`` /
``false`` for boolean ones, ``system#code`` for Coding ones, a valid regex for ``regex``).

A Coding whose system is a supplement is an error too; that check is in
:meth:`fhir_so.validation.bindings.Terminology.check_coding`.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

from fhir_so.validation.bindings import Terminology
from fhir_so.validation.findings import BUSINESS_RULE, INVALID, Issue
from fhir_so.validation.snapshot import DefinitionSource

CONCEPT_PROPERTIES = "http://hl7.org/fhir/concept-properties#"
# the standard concept properties and their types (CodeSystemValidator.KnownProperty)
KNOWN_PROPERTIES: dict[str, str] = {
    "status": "code", "inactive": "boolean", "effectiveDate": "dateTime", "deprecationDate": "dateTime",
    "retirementDate": "dateTime", "notSelectable": "boolean", "parent": "code", "child": "code",
    "partOf": "code", "synonym": "code", "comment": "string", "itemWeight": "decimal",
}
_ABSOLUTE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S+")
_CODING_LITERAL = re.compile(r"[^#\s]+#\S+")
_CODING_LEGACY = re.compile(r"[a-zA-Z][a-zA-Z0-9+.\-]*:[^\s|]+\|\S+")
_DATETIME = re.compile(r"([0-9]{4})(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))?)?)?)?")
_PRIMITIVE_VALUES = frozenset({"Code", "String", "Boolean", "DateTime", "Decimal", "Integer"})
_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


def _concepts(concepts: Any, loc: str) -> Iterator[tuple[dict[str, Any], str]]:
    """Every concept with its location, depth first (nested concepts are part of the CodeSystem)."""
    if not isinstance(concepts, list):
        return
    for i, c in enumerate(concepts):
        if isinstance(c, dict):
            at = f"{loc}.concept[{i}]"
            yield c, at
            yield from _concepts(c.get("concept"), at)


def _value_type(prop: dict[str, Any]) -> tuple[str, Any] | None:
    for k, v in prop.items():
        if k.startswith("value") and len(k) > 5:
            name = k[5:]
            # primitive type names start in lower case (valueDateTime -> dateTime), complex ones do not (Coding)
            return (name[0].lower() + name[1:] if name in _PRIMITIVE_VALUES else name), v
    return None


class TerminologyResourceChecker:
    """Checks CodeSystem and ValueSet resources (the input, Bundle entries, contained ones)."""

    def __init__(self, definitions: DefinitionSource, terminology: Terminology) -> None:
        self._defs = definitions
        self._tx = terminology

    def issues(self, resource: Any, loc: str) -> list[Issue]:
        """Every finding for the CodeSystems and ValueSets in ``resource`` (empty when there are none)."""
        sink: list[Issue] = []
        if isinstance(resource, dict):
            try:
                self._visit(resource, loc or str(resource.get("resourceType")), None, sink)
            except (TypeError, ValueError, AttributeError, KeyError, RecursionError):
                # malformed shapes are the structure checks' findings; these rules just stop
                pass
        return sink

    def _visit(self, res: dict[str, Any], loc: str, container: dict[str, Any] | None, sink: list[Issue]) -> None:
        rt = res.get("resourceType")
        if rt == "CodeSystem":
            self._code_system(res, loc, sink)
        elif rt == "ValueSet":
            self._value_set(res, loc, container or res, sink)
        elif rt == "Bundle" and isinstance(res.get("entry"), list):
            for i, e in enumerate(res["entry"]):
                if isinstance(e, dict) and isinstance(e.get("resource"), dict):
                    self._visit(e["resource"], f"{loc}.entry[{i}].resource", None, sink)
        if container is None and isinstance(res.get("contained"), list):
            for i, c in enumerate(res["contained"]):
                if isinstance(c, dict) and c.get("resourceType") in ("CodeSystem", "ValueSet"):
                    self._visit(c, f"{loc}.contained[{i}]", res, sink)

    # -- CodeSystem ---------------------------------------------------------------------------------------
    def _code_system(self, cs: dict[str, Any], loc: str, sink: list[Issue]) -> None:
        content, supplements = cs.get("content"), cs.get("supplements")
        concepts = list(_concepts(cs.get("concept"), loc))
        if isinstance(supplements, str) and supplements:
            if content != "supplement":
                sink.append(Issue("error", BUSINESS_RULE, f"{loc}.content", "CodeSystem Supplements SHALL have a content value of 'supplement'", "cs-supplement"))
            if "caseSensitive" in cs:
                sink.append(Issue("error", BUSINESS_RULE, f"{loc}.caseSensitive", "CodeSystems SHOULD NOT have a stated value for the caseSensitive element when they are a supplement", "cs-supplement"))
            base = supplements.split("|", 1)[0]
            codes = self._tx.system_codes(base)
            if codes is None:
                sink.append(Issue("warning", BUSINESS_RULE, loc, f"CodeSystem {supplements} cannot be found, so can't check if concepts are valid", "cs-supplement"))
            else:
                for c, at in concepts:
                    if isinstance(c.get("code"), str) and c["code"] not in codes:
                        sink.append(Issue("error", BUSINESS_RULE, at, f"The code '{c['code']}' is not declared in the base CodeSystem {supplements} so is not valid in the supplement", "cs-supplement"))
        elif content == "supplement":
            sink.append(Issue("error", BUSINESS_RULE, f"{loc}.content", "CodeSystem Supplements with a content value of 'supplement' SHALL have a supplements element that specifies which code system is being supplemented", "cs-supplement"))
        if content == "complete" and not concepts:
            sink.append(Issue("warning", BUSINESS_RULE, loc, "When a CodeSystem has content = 'complete', it doesn't make sense for there to be no concepts defined", "cs-count"))
        stated = cs.get("count")
        if isinstance(stated, int) and not isinstance(stated, bool) and stated >= 0:
            n = len(concepts)
            if content == "complete" and n != stated:
                sink.append(Issue("error", INVALID, f"{loc}.count", f"The code system is complete, but the number of concepts ({n}) does not match the stated total number ({stated})", "cs-count"))
            elif content in ("example", "fragment") and n >= stated:
                sink.append(Issue("warning", INVALID, f"{loc}.count", f"The code system is a fragment/example, but the number of concepts ({n}) exceeds or matches the stated total number ({stated})", "cs-count"))
        if content == "not-present" and concepts:
            sink.append(Issue("error", INVALID, loc, "The code system says it has no content present, but concepts are found", "cs-count"))
        seen: set[str] = set()
        for c, at in concepts:
            code = c.get("code")
            if isinstance(code, str):
                if code in seen:
                    sink.append(Issue("error", BUSINESS_RULE, at, f"The code '{code}' has already been defined", "cs-duplicate-code"))
                seen.add(code)
        declared = self._properties(cs, loc, sink)
        for c, at in concepts:
            for j, p in enumerate(c.get("property") or ()):
                if isinstance(p, dict) and isinstance(p.get("code"), str):
                    self._concept_property(p, f"{at}.property[{j}]", declared, seen, sink)

    def _properties(self, cs: dict[str, Any], loc: str, sink: list[Issue]) -> dict[str, str]:
        """Check CodeSystem.property; returns property code -> declared type."""
        declared: dict[str, str] = {}
        uris: set[str] = set()
        for i, p in enumerate(cs.get("property") or ()):
            if not isinstance(p, dict):
                continue
            at = f"{loc}.property[{i}]"
            code, uri, ptype = p.get("code"), p.get("uri"), p.get("type")
            if isinstance(uri, str):
                if not _ABSOLUTE.fullmatch(uri):
                    sink.append(Issue("error", BUSINESS_RULE, at, f"A property URI must be an absolute URI, but '{uri}' is not", "cs-property"))
                elif uri in uris:
                    sink.append(Issue("error", BUSINESS_RULE, at, f"A property is already defined with the URI '{uri}'", "cs-property"))
                uris.add(uri)
                if uri.startswith(CONCEPT_PROPERTIES):
                    known = uri[len(CONCEPT_PROPERTIES):]
                    if known in KNOWN_PROPERTIES:
                        if isinstance(code, str) and code != known:
                            sink.append(Issue("error", BUSINESS_RULE, at, f"The URI '{uri}' is normally assigned the code '{known}'. Using the code '{code}' will usually create confusion in ValueSet filters etc", "cs-property"))
                        if isinstance(ptype, str) and ptype != KNOWN_PROPERTIES[known]:
                            sink.append(Issue("error", BUSINESS_RULE, at, f"Wrong type '{ptype}': The URI '{uri}' identifies a property that has the type '{KNOWN_PROPERTIES[known]}'", "cs-property"))
            elif isinstance(code, str) and code in KNOWN_PROPERTIES and isinstance(ptype, str) and ptype != KNOWN_PROPERTIES[code]:
                sink.append(Issue("warning", BUSINESS_RULE, at, f"Wrong type '{ptype}': The code '{code}' identifies a property that has the type '{KNOWN_PROPERTIES[code]}'", "cs-property"))
            if isinstance(code, str):
                if code in declared:
                    sink.append(Issue("error", BUSINESS_RULE, at, f"A property is already defined with the code '{code}'", "cs-property"))
                elif isinstance(ptype, str):
                    declared[code] = ptype
        return declared

    @staticmethod
    def _concept_property(p: dict[str, Any], at: str, declared: dict[str, str], codes: set[str], sink: list[Issue]) -> None:
        code = p["code"]
        value = _value_type(p)
        if code not in declared and code not in ("parent", "child"):  # parent/child are implied by hierarchies
            sink.append(Issue("warning", BUSINESS_RULE, at, f"The property '{code}' has no definition in CodeSystem.property. Many terminology tools won't know what to do with it", "cs-property"))
        if value is None:
            sink.append(Issue("error", BUSINESS_RULE, at, f"The property '{code}' has no value, and cannot be understood", "cs-property"))
            return
        vtype, _ = value
        want = declared.get(code)
        if want is not None and vtype != want:
            sink.append(Issue("error", BUSINESS_RULE, at, f"The property '{code}' has the invalid type '{vtype}', when it is defined to have the type '{want}'", "cs-property"))

    # -- ValueSet -----------------------------------------------------------------------------------------
    def _value_set(self, vs: dict[str, Any], loc: str, container: dict[str, Any], sink: list[Issue]) -> None:
        compose = vs.get("compose")
        if not isinstance(compose, dict):
            return
        for part in ("include", "exclude"):
            for i, inc in enumerate(compose.get(part) or ()):
                if isinstance(inc, dict):
                    self._include(inc, f"{loc}.compose.{part}[{i}]", sink)

    def _include(self, inc: dict[str, Any], at: str, sink: list[Issue]) -> None:
        system = inc.get("system")
        if not isinstance(system, str):
            return
        if not _ABSOLUTE.fullmatch(system):
            if system.startswith("#"):
                msg = ("URI values in ValueSet.compose.include.system must be absolute. To reference a contained code system, use the full "
                       "CodeSystem URL and reference it using the http://hl7.org/fhir/StructureDefinition/valueset-system extension")
            else:
                msg = "URI values in ValueSet.compose.include.system must be absolute"
            sink.append(Issue("error", INVALID, at, msg, "vs-include-system"))
            return
        cs = self._defs.code_system(system) if "version" not in inc else self._defs.code_system(f"{system}|{inc['version']}") or self._defs.code_system(system)
        if cs is not None and cs.get("content") == "supplement":
            sink.append(Issue("error", INVALID, at, f"The value set references CodeSystem '{system}' which is a supplement. It must reference the underlying CodeSystem '{cs.get('supplements')}' and use the http://hl7.org/fhir/StructureDefinition/valueset-supplement extension for the supplement", "vs-include-system"))
            return
        codes = self._tx.system_codes(system)
        if codes is not None:
            for j, c in enumerate(inc.get("concept") or ()):
                if isinstance(c, dict) and isinstance(c.get("code"), str) and c["code"] not in codes:
                    sink.append(Issue("error", BUSINESS_RULE, f"{at}.concept[{j}]", f"The code '{c['code']}' is not valid in the system {system} (Unknown code '{c['code']}' in the CodeSystem '{system}')", "vs-include-code"))
        declared = {p["code"]: p.get("type") for p in (cs or {}).get("property") or () if isinstance(p, dict) and isinstance(p.get("code"), str)}
        for j, f in enumerate(inc.get("filter") or ()):
            if isinstance(f, dict):
                self._filter(f, f"{at}.filter[{j}]", system, codes, declared, sink)

    def _filter(self, f: dict[str, Any], at: str, system: str, codes: frozenset[str] | None, declared: dict[str, Any], sink: list[Issue]) -> None:
        prop, op, value = f.get("property"), f.get("op"), f.get("value")
        if not isinstance(prop, str) or not isinstance(value, str):
            return
        if op == "regex":
            try:
                re.compile(value)
            except re.error as exc:
                sink.append(Issue("error", INVALID, at, f"The value for a filter based on property '{prop}' should be a valid regex, not '{value}' (err = '{exc}')", "vs-filter"))
            return
        if op == "exists":
            ptype: Any = "boolean"
        elif prop in ("concept", "code"):
            ptype = "concept"
        else:
            ptype = declared.get(prop) or KNOWN_PROPERTIES.get(prop)
        values = [v for v in value.split(",")] if op in ("in", "not-in") else [value]
        for v in values:
            if ptype == "Coding" and "#" not in v and _CODING_LEGACY.fullmatch(v):
                # the search-style system|code the Java validator accepts with a warning, then reads as system#code
                sink.append(Issue("warning", INVALID, at, f"The value for a filter based on property '{prop}' should be in the format system(|version)#code, not the coding search pattern '{v}'", "vs-filter"))
                head, _, tail = v.rpartition("|")
                v = f"{head}#{tail}"
            msg = self._filter_value(prop, v, ptype, system, codes)
            if msg is not None:
                sink.append(Issue("error", INVALID, at, msg, "vs-filter"))

    def _filter_value(self, prop: str, value: str, ptype: Any, system: str, codes: frozenset[str] | None) -> str | None:
        bare = value[2:] if value[:2] in _PREFIXES else value
        if ptype == "boolean":
            if value not in ("true", "false"):
                return f"The value for a filter based on property '{prop}' must be either 'true' or 'false', not '{value}'"
        elif ptype in ("concept", "code"):
            if value.strip() != value:
                return f"The value for a filter based on property '{prop}' must be a valid code, not '{value}'"
            if codes is not None and value not in codes:
                return f"The value for a filter based on property '{prop}' must be a valid code from the system '{system}', and '{value}' is not (Unknown code '{value}' in the CodeSystem '{system}')"
        elif ptype == "Coding":
            if not _CODING_LITERAL.fullmatch(value):
                return f"The value for a filter based on property '{prop}' must be in the format system(|version)#code, not '{value}'"
            coded_system, _, coded = value.partition("#")
            local = self._tx.system_codes(coded_system.split("|", 1)[0])
            if local is not None and coded not in local:
                return f"The value for a filter based on property '{prop}' is '{value}' which is not a valid code (Unknown code '{coded}' in the CodeSystem '{coded_system}')"
        elif ptype == "dateTime":
            if not _DATETIME.fullmatch(bare):
                return f"The value for a filter based on property '{prop}' must be a valid date(/time), not '{value}'"
        elif ptype == "decimal":
            if not re.fullmatch(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?", bare):
                return f"The value for a filter based on property '{prop}' must be a decimal value, not '{value}'"
        elif ptype == "integer":
            if not re.fullmatch(r"-?[0-9]+", bare):
                return f"The value for a filter based on property '{prop}' must be integer value, not '{value}'"
        return None
