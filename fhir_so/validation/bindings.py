"""Terminology offline: ValueSet expansion from local definitions (cached as frozensets) and binding checks.

A ValueSet expands locally when every include names concepts, a CodeSystem present in the
loaded packages, or another ValueSet that expands. Systems that cannot be expanded offline
(SNOMED CT, LOINC, UCUM, MIME types, languages...) are kept as *open* systems: a code in one
of them is checked for system and form only, and an information issue says so. Binding
severities follow HAPI: required -> error, extensible -> warning, preferred -> information.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterator

from fhir_so import terminology as term
from fhir_so.validation.findings import CODE_INVALID, INFORMATIONAL, Issue
from fhir_so.validation.snapshot import DefinitionSource

_SEVERITY = {"required": "error", "extensible": "warning", "preferred": "information"}

# the forms of codes in systems that cannot be expanded offline (checked instead of membership)
_FORMS: dict[str, re.Pattern[str]] = {
    term.SNOMED: re.compile(r"[1-9][0-9]{5,17}"),
    term.LOINC: re.compile(r"(LP|LA)?[0-9]{1,8}-[0-9]"),
    term.MIME_TYPES: re.compile(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+(\s*;.*)?", re.IGNORECASE),
    term.LANGUAGES: re.compile(r"[a-zA-Z]{2,8}(-[a-zA-Z0-9]{1,8})*"),
    # UCUM's syntax, not its unit table: printable ASCII without spaces, [] unnested, {} annotations
    term.UCUM: re.compile(r"(?:[!-Z\\^-z|~]|\[[!-Z\\^-z|~]*\]|\{[^{}]*\})+"),
}


@dataclass(frozen=True, slots=True)
class Expansion:
    """A ValueSet as sets: (system, code) pairs, bare codes, and systems only checkable by form."""

    url: str
    pairs: frozenset[tuple[str, str]]
    codes: frozenset[str]
    open_systems: frozenset[str]

    def contains(self, system: str | None, code: str) -> bool | None:
        """True / False when known; None when the system cannot be expanded offline."""
        if system is None:
            if code in self.codes:
                return True
            return None if self.open_systems else False
        if (system, code) in self.pairs:
            return True
        if system in self.open_systems:
            return None
        return False


class Terminology:
    """Expands ValueSets and looks codes up in CodeSystems of the loaded packages, with caches."""

    def __init__(self, definitions: DefinitionSource, *, wrong_display: str = "error") -> None:
        self._defs = definitions
        self._wrong_display = wrong_display
        self._expansions: dict[str, Expansion | None] = {}
        self._systems: dict[str, frozenset[str] | None] = {}
        self._displays: dict[str, dict[str, frozenset[str]] | None] = {}
        self._properties: dict[str, dict[str, dict[str, list[str]]] | None] = {}
        self._supplements: dict[str, bool] = {}
        self._tho: bool | None = None

    # -- code systems --------------------------------------------------------------------------------
    def system_codes(self, system: str) -> frozenset[str] | None:
        """Every code of a complete local CodeSystem, or None when it is not available offline."""
        try:
            return self._systems[system]
        except KeyError:
            pass
        cs = self._defs.code_system(system)
        codes: frozenset[str] | None = None
        if cs is not None and cs.get("content") == "complete" and isinstance(cs.get("concept"), list):
            codes = frozenset(c for c, _ in _walk_concepts(cs["concept"], ()))
        self._systems[system] = codes
        return codes

    def _tho_loaded(self) -> bool:
        """True when an HL7 Terminology package is among the loaded ones (its code systems are current)."""
        if self._tho is None:
            packages = getattr(self._defs, "packages", None)
            names = [getattr(p, "name", "") for p in packages] if isinstance(packages, list) else []
            self._tho = any(isinstance(n, str) and n.startswith(term.THO_PACKAGE) for n in names)
        return self._tho

    def is_supplement(self, system: str) -> bool:
        """True when the local CodeSystem at that URL is a supplement (which a Coding cannot name)."""
        try:
            return self._supplements[system]
        except KeyError:
            pass
        cs = self._defs.code_system(system)
        hit = self._supplements[system] = cs is not None and (cs.get("content") == "supplement" or isinstance(cs.get("supplements"), str))
        return hit

    def displays(self, system: str) -> dict[str, frozenset[str]] | None:
        """code -> its accepted displays (display and designations, whitespace-normalised, lower case)
        for a complete local CodeSystem, or None when it is not available offline."""
        try:
            return self._displays[system]
        except KeyError:
            pass
        out: dict[str, frozenset[str]] | None = None
        cs = self._defs.code_system(system)
        if cs is not None and cs.get("content") == "complete" and isinstance(cs.get("concept"), list):
            out = {}
            for concept in _walk_concept_objects(cs["concept"]):
                names = [concept.get("display")]
                names += [d.get("value") for d in concept.get("designation") or () if isinstance(d, dict)]
                out[concept["code"]] = frozenset(_norm(n) for n in names if isinstance(n, str))
        self._displays[system] = out
        return out

    def _concept_properties(self, system: str) -> dict[str, dict[str, list[str]]] | None:
        """code -> property code -> its values as strings, for a local CodeSystem (filters use it)."""
        try:
            return self._properties[system]
        except KeyError:
            pass
        out: dict[str, dict[str, list[str]]] | None = None
        cs = self._defs.code_system(system)
        if cs is not None and isinstance(cs.get("concept"), list):
            out = {}
            for concept in _walk_concept_objects(cs["concept"]):
                props: dict[str, list[str]] = {}
                for p in concept.get("property") or ():
                    if isinstance(p, dict) and isinstance(p.get("code"), str):
                        v = next((str(x).lower() if isinstance(x, bool) else (x.get("code") if isinstance(x, dict) else str(x)) for k, x in p.items() if k.startswith("value")), None)
                        if v is not None:
                            props.setdefault(p["code"], []).append(v)
                out[concept["code"]] = props
        self._properties[system] = out
        return out

    def _descendants(self, system: str, root: str, include_self: bool) -> set[str] | None:
        cs = self._defs.code_system(system)
        if cs is None or not isinstance(cs.get("concept"), list):
            return None
        out = set()
        for code, ancestors in _walk_concepts(cs["concept"], ()):
            if root in ancestors or (include_self and code == root):
                out.add(code)
        return out

    # -- value sets --------------------------------------------------------------------------------
    def expand(self, url: str, _seen: frozenset[str] = frozenset()) -> Expansion | None:
        """The expansion of a ValueSet, or None when it is not in any loaded package."""
        key = url.split("|", 1)[0]
        if key in self._expansions:
            return self._expansions[key]
        if key in _seen:
            return None
        vs = self._defs.value_set(key)
        try:
            exp = None if vs is None else self._expand(key, vs, _seen | {key})
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            exp = None  # a malformed ValueSet counts as one that is not available (the binding says so)
        self._expansions[key] = exp
        return exp

    def expand_resource(self, vs: dict[str, Any]) -> Expansion | None:
        """The expansion of a ValueSet given as a resource (a contained one, say), or None when it is malformed."""
        url = str(vs["url"]) if isinstance(vs.get("url"), str) else "#" + str(vs.get("id"))
        try:
            return self._expand(url, vs, frozenset({url}))
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            return None

    def _expand(self, url: str, vs: dict[str, Any], seen: frozenset[str]) -> Expansion:
        pairs: set[tuple[str, str]] = set()
        open_systems: set[str] = set()
        contains = (vs.get("expansion") or {}).get("contains")
        if isinstance(contains, list) and not vs.get("compose"):
            for system, code in _walk_contains(contains):
                pairs.add((system, code))
            return Expansion(url, frozenset(pairs), frozenset(c for _, c in pairs), frozenset())
        compose = vs.get("compose") or {}
        for inc in compose.get("include") or []:
            p, o = self._include(inc, seen)
            pairs |= p
            open_systems |= o
        for exc in compose.get("exclude") or []:
            p, _ = self._include(exc, seen)
            pairs -= p
        return Expansion(url, frozenset(pairs), frozenset(c for _, c in pairs), frozenset(open_systems))

    def _include(self, inc: dict[str, Any], seen: frozenset[str]) -> tuple[set[tuple[str, str]], set[str]]:
        pairs: set[tuple[str, str]] = set()
        open_systems: set[str] = set()
        system = inc.get("system")
        imported = [self.expand(u, seen) for u in inc.get("valueSet") or [] if isinstance(u, str)]
        if system is None:
            for exp in imported:
                if exp is None:
                    continue
                pairs |= exp.pairs
                open_systems |= exp.open_systems
            return pairs, open_systems
        concepts = inc.get("concept")
        filters = inc.get("filter")
        if isinstance(concepts, list):
            pairs = {(system, c["code"]) for c in concepts if isinstance(c, dict) and isinstance(c.get("code"), str)}
        elif isinstance(filters, list) and filters:
            codes = self._filtered(system, filters)
            if codes is None:
                open_systems.add(system)
            else:
                pairs = {(system, c) for c in codes}
        else:
            all_codes = self.system_codes(system)
            if all_codes is None:
                open_systems.add(system)
            else:
                pairs = {(system, c) for c in all_codes}
        for exp in imported:
            if exp is not None and not exp.open_systems:
                pairs &= exp.pairs
        return pairs, open_systems

    def _filtered(self, system: str, filters: list[Any]) -> set[str] | None:
        """The codes of a local CodeSystem that pass every filter; None when one cannot be evaluated offline."""
        result: set[str] | None = None
        for f in filters:
            if not isinstance(f, dict) or not isinstance(f.get("property"), str):
                return None
            codes = self._filter(system, f["property"], f.get("op"), str(f.get("value")))
            if codes is None:
                return None
            result = codes if result is None else result & codes
        return result

    def _filter(self, system: str, prop: str, op: Any, value: str) -> set[str] | None:
        if prop in ("concept", "code"):
            if op == "is-a":
                return self._descendants(system, value, True)
            if op == "descendent-of":
                return self._descendants(system, value, False)
            if op == "=":
                return {value}
            if op == "is-not-a":
                every = self.system_codes(system)
                below = self._descendants(system, value, True)
                return None if every is None or below is None else set(every) - below
            if op in ("in", "not-in"):
                listed = {v.strip() for v in value.split(",")}
                if op == "in":
                    return listed
                every = self.system_codes(system)
                return None if every is None else set(every) - listed
            if op == "regex":
                every = self.system_codes(system)
                pattern = _regex(value)
                return None if every is None or pattern is None else {c for c in every if pattern.fullmatch(c)}
            return None
        # a filter on a concept property: only a complete local CodeSystem can answer it
        if self.system_codes(system) is None:
            return None
        props = self._concept_properties(system)
        if props is None:
            return None
        if op == "=":
            return {c for c, p in props.items() if value in p.get(prop, ())}
        if op == "exists":
            want = value.lower() == "true"
            return {c for c, p in props.items() if (prop in p) == want}
        if op in ("in", "not-in"):
            listed = {v.strip() for v in value.split(",")}
            hit = {c for c, p in props.items() if listed & set(p.get(prop, ()))}
            return hit if op == "in" else set(props) - hit
        if op == "regex":
            pattern = _regex(value)
            if pattern is None:
                return None
            return {c for c, p in props.items() if any(pattern.fullmatch(v) for v in p.get(prop, ()))}
        return None

    # -- checks ----------------------------------------------------------------------------------------
    def check_binding(self, strength: str, vs_url: str, type_code: str, value: Any, loc: str) -> Iterator[Issue]:
        """Issues for a code, Coding, CodeableConcept or Quantity against a binding."""
        exp = self.expand(vs_url)
        if exp is None:
            if strength == "required":
                yield Issue("warning", "not-found", loc, f"the ValueSet {vs_url} is not in any loaded package, so the code could not be checked", "binding")
            return
        severity = _SEVERITY[strength]
        if type_code in ("code", "string", "uri"):
            if isinstance(value, str):
                verdict = exp.contains(None, value)
                if verdict is None:
                    forms = [_FORMS.get(s) for s in exp.open_systems]
                    if forms and all(forms) and not any(f.fullmatch(value) for f in forms if f is not None):
                        yield Issue("warning", CODE_INVALID, loc, f"{value!r} does not have the form of a code of {', '.join(sorted(exp.open_systems))} (not expandable offline, so only its form was checked)", "code-form")
                        return
                if verdict is False:
                    yield Issue(severity, CODE_INVALID, loc, f"the code {value!r} is not in the value set {vs_url} ({strength} binding)", "binding")
            return
        if type_code == "Coding":
            yield from self._codings(strength, severity, exp, [value], loc, single=True)
        elif type_code == "CodeableConcept":
            codings = value.get("coding") if isinstance(value, dict) else None
            if not isinstance(codings, list) or not codings:
                # text alone is no code: the HL7 validator requires one for a required binding and asks
                # for one for an extensible binding (and so excludes such an item from a slice bound so)
                if strength == "required" and isinstance(value, dict):
                    yield Issue("error", CODE_INVALID, loc, f"No code provided, and a code is required from the value set {vs_url}", "binding")
                elif strength == "extensible" and isinstance(value, dict):
                    yield Issue("warning", CODE_INVALID, loc, f"No code provided, and a code should be provided from the value set {vs_url}", "binding")
                return
            yield from self._codings(strength, severity, exp, codings, loc + ".coding", single=False)
        elif type_code == "Quantity" and isinstance(value, dict) and "code" in value:
            yield from self._codings(strength, severity, exp, [value], loc, single=True)

    def _codings(self, strength: str, severity: str, exp: Expansion, codings: list[Any], loc: str, *, single: bool) -> Iterator[Issue]:
        unknown_systems = []
        for i, coding in enumerate(codings):
            if not isinstance(coding, dict) or not isinstance(coding.get("code"), str):
                continue
            system = coding.get("system") if isinstance(coding.get("system"), str) else None
            verdict = exp.contains(system, coding["code"])
            if verdict:
                return
            if verdict is None and system is not None:
                unknown_systems.append((i, system, coding["code"]))
        if unknown_systems:
            i, system, code = unknown_systems[0]
            at = loc if single else f"{loc}[{i}]"
            yield Issue("information", INFORMATIONAL, at, f"codes of {system} cannot be expanded offline: {code!r} was checked for system and form only, not for membership in {exp.url}", "binding-offline")
            return
        if any(isinstance(c, dict) and "code" in c for c in codings):
            what = "the code is not" if single else "none of the codings is"
            yield Issue(severity, CODE_INVALID, loc, f"{what} in the value set {exp.url} ({strength} binding)", "binding")

    def check_coding(self, coding: dict[str, Any], loc: str) -> Iterator[Issue]:
        """Issues for a Coding whose code is unknown in a local complete CodeSystem, or has a bad form."""
        system, code = coding.get("system"), coding.get("code")
        if not isinstance(system, str) or not isinstance(code, str):
            return
        form = _FORMS.get(system)
        if form is not None:
            if form.fullmatch(code) is None:
                # the code system is not available offline: a wrong form is advice, as HAPI gives none
                yield Issue("warning", CODE_INVALID, loc + ".code", f"{code!r} does not have the form of a code of {system}", "code-form")
            return
        if self.is_supplement(system):
            yield Issue("error", CODE_INVALID, loc + ".system", f"CodeSystem {system} is a supplement, so can't be used as a value in Coding.system", "code-supplement")
            return
        codes = self.system_codes(system)
        if codes is not None and code not in codes:
            if system.startswith(term.THO_CODE_SYSTEMS) and not self._tho_loaded():
                # core R4 ships 2019 copies of the HL7 Terminology code systems; codes added since are
                # valid for the HL7 validator (it asks the current terminology), so only advise here
                yield Issue("warning", CODE_INVALID, loc + ".code", f"unknown code {code!r} in the copy of {system} shipped with core R4; it may be a newer code: load hl7.terminology.r4 (--package) to check it", "code-unknown")
                return
            yield Issue("error", CODE_INVALID, loc + ".code", f"unknown code {code!r} in the code system {system}", "code-unknown")
            return
        if codes is not None and isinstance(coding.get("display"), str):
            yield from self.check_display(coding, loc + ".display")

    def check_display(self, coding: dict[str, Any], loc: str) -> Iterator[Issue]:
        """An error when a Coding's display is none of the code's display and designations in a local
        complete CodeSystem (case and runs of whitespace ignored), as the HL7 validator reports it."""
        system, code, display = coding.get("system"), coding.get("code"), coding.get("display")
        if not isinstance(system, str) or not isinstance(code, str) or not isinstance(display, str):
            return
        table = self.displays(system)
        names = table.get(code) if table is not None else None
        if not names or _norm(display) in names:
            return
        cs = self._defs.code_system(system) or {}
        valid = next((c.get("display") for c in _walk_concept_objects(cs.get("concept") or []) if c.get("code") == code), None)
        yield Issue(self._wrong_display, CODE_INVALID, loc, f"Wrong Display Name '{display}' for {system}#{code}. Valid display is '{valid}'", "display")


def _walk_concepts(concepts: list[Any], ancestors: tuple[str, ...]) -> Iterator[tuple[str, tuple[str, ...]]]:
    for c in concepts:
        if not isinstance(c, dict) or not isinstance(c.get("code"), str):
            continue
        yield c["code"], ancestors
        if isinstance(c.get("concept"), list):
            yield from _walk_concepts(c["concept"], (*ancestors, c["code"]))


def _walk_concept_objects(concepts: list[Any]) -> Iterator[dict[str, Any]]:
    for c in concepts:
        if not isinstance(c, dict) or not isinstance(c.get("code"), str):
            continue
        yield c
        if isinstance(c.get("concept"), list):
            yield from _walk_concept_objects(c["concept"])


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


def _regex(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:
        return None


def _walk_contains(contains: list[Any]) -> Iterator[tuple[str, str]]:
    for c in contains:
        if not isinstance(c, dict):
            continue
        if isinstance(c.get("system"), str) and isinstance(c.get("code"), str):
            yield c["system"], c["code"]
        if isinstance(c.get("contains"), list):
            yield from _walk_contains(c["contains"])
