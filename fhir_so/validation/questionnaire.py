"""QuestionnaireResponse checked against its Questionnaire, as the HL7 Java validator does.

The Questionnaire is looked up by the response's ``questionnaire`` canonical: ``#id`` among the
response's contained resources, else an entry of the enclosing Bundle, else any loaded package
(or supporting file, through the definition source's ``resource(type, url)``). When it cannot
be found only a warning says so (information for ``example.org`` URLs), as in the Java validator.

The rules and their wording mirror ``QuestionnaireValidator`` and ``EnableWhenEvaluator`` of
``org.hl7.fhir.validation`` (read at the source): linkIds that exist and come in order, items
nested as the Questionnaire nests them, answers only where the item type takes them and of the
type it takes, required items and groups, ``repeats``, answerOption membership (Coding, string,
integer, date, time; ``optionExclusive``), answerValueSet membership when the ValueSet expands
offline, ``enableWhen`` (answers to disabled items are errors), ``maxLength`` and the SDC / core
extensions on items (minLength, regex with entryFormat, minValue/maxValue, maxDecimalPlaces,
min/maxQuantity, unitOption, unitValueSet, mimeType, maxSize, min/maxOccurs,
referenceResource), and the authored date against the Questionnaire's effectivePeriod. Items
of a response that is not ``completed`` / ``amended`` may leave required answers missing (a
warning, not an error).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from fhir_so import terminology as term
from fhir_so.validation.bindings import Terminology
from fhir_so.validation.findings import (
    CODE_INVALID,
    INVALID,
    INVARIANT,
    NOT_FOUND,
    REQUIRED,
    STRUCTURE,
    Issue,
)
from fhir_so.validation.snapshot import DefinitionSource

EXT = "http://hl7.org/fhir/StructureDefinition/"
SDC = "http://hl7.org/fhir/uv/sdc/StructureDefinition/"
EXT_MINVALUE, EXT_MAXVALUE = EXT + "minValue", EXT + "maxValue"
EXT_MIN_QUANTITY, EXT_MAX_QUANTITY = SDC + "sdc-questionnaire-minQuantity", SDC + "sdc-questionnaire-maxQuantity"
EXT_MAX_DECIMALS = EXT + "maxDecimalPlaces"
EXT_MINOCCURS, EXT_MAXOCCURS = EXT + "questionnaire-minOccurs", EXT + "questionnaire-maxOccurs"
EXT_MIN_LENGTH, EXT_REGEX, EXT_ENTRY_FORMAT = EXT + "minLength", EXT + "regex", EXT + "entryFormat"
EXT_MIMETYPE, EXT_MAX_SIZE = EXT + "mimeType", EXT + "maxSize"
EXT_UNIT_OPTION, EXT_UNIT_VALUESET = EXT + "questionnaire-unitOption", EXT + "questionnaire-unitValueSet"
EXT_ALLOWED_RESOURCE = EXT + "questionnaire-referenceResource"
EXT_EXCLUSIVE = EXT + "questionnaire-optionExclusive"

# item.type -> the answer value[x] types it takes (R4 "choice"/"open-choice" as the Java validator reads them)
_ANSWER_TYPES: dict[str, tuple[str, ...]] = {
    "boolean": ("boolean",),
    "decimal": ("decimal",),
    "integer": ("integer",),
    "date": ("date",),
    "dateTime": ("dateTime",),
    "time": ("time",),
    "string": ("string",),
    "text": ("string",),
    "url": ("uri",),
    "attachment": ("Attachment",),
    "reference": ("Reference",),
    "quantity": ("Quantity",),
    "choice": ("Coding", "date", "time", "integer", "string"),
    "open-choice": ("Coding", "date", "time", "integer", "string"),
}
_VALUE_KEYS = {
    "valueBoolean": "boolean", "valueDecimal": "decimal", "valueInteger": "integer", "valueDate": "date",
    "valueDateTime": "dateTime", "valueTime": "time", "valueString": "string", "valueUri": "uri",
    "valueAttachment": "Attachment", "valueCoding": "Coding", "valueQuantity": "Quantity", "valueReference": "Reference",
}
_REF_TYPE = re.compile(r"(?:^|/)([A-Za-z][A-Za-z0-9]*)/[^/]+(?:/_history/[^/]+)?$")
_SYSTEM_NAMES = {term.UCUM: "UCUM", term.SNOMED: "SNOMED"}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _ext(item: dict[str, Any], url: str) -> dict[str, Any] | None:
    for e in item.get("extension") or ():
        if isinstance(e, dict) and e.get("url") == url:
            return e
    return None


def _exts(item: dict[str, Any], url: str) -> list[dict[str, Any]]:
    return [e for e in item.get("extension") or () if isinstance(e, dict) and e.get("url") == url]


def _ext_value(ext: dict[str, Any] | None) -> Any:
    if ext is None:
        return None
    for k, v in ext.items():
        if k.startswith("value"):
            return v
    return None


def _value(answer: dict[str, Any]) -> tuple[str, str, Any] | None:
    """(JSON key, FHIR type, value) of an answer's value[x], or None."""
    for k, v in answer.items():
        if k.startswith("value") and k in _VALUE_KEYS:
            return k, _VALUE_KEYS[k], v
    return None


def _num(v: Any) -> str:
    """A JSON number as the Java validator prints it (integers without '.0')."""
    if isinstance(v, float) and v.is_integer() and "e" not in repr(v):
        return repr(v)
    return str(v)


def _precision(v: Any) -> int:
    text = repr(v) if isinstance(v, float) else str(v)
    return len(text) - text.rindex(".") - 1 if "." in text and "e" not in text.lower() else 0


def _system_name(system: Any) -> str:
    return _SYSTEM_NAMES.get(system, system) if isinstance(system, str) else ""


def _quantity_display(q: dict[str, Any]) -> str:
    out = (q.get("comparator") or "") + _num(q.get("value"))
    if q.get("unit"):
        out += " " + str(q["unit"])
    if q.get("system") or q.get("code"):
        out += f" ({_system_name(q.get('system'))}#{q.get('code')})"
    return out


def _coding_display(c: dict[str, Any]) -> str:
    out = str(c.get("display") or "")
    if c.get("system") or c.get("code"):
        out += f" ({_system_name(c.get('system'))}#{c.get('code')})"
    return out


@dataclass(slots=True)
class _Q:
    """A Questionnaire being applied: the resource, its container (for #id ValueSets) and linkId index."""

    q: dict[str, Any]
    contained: dict[str, dict[str, Any]]
    by_link: dict[str, dict[str, Any]] = field(default_factory=dict)
    parent: dict[int, dict[str, Any] | None] = field(default_factory=dict)

    @classmethod
    def of(cls, q: dict[str, Any], container: dict[str, Any] | None) -> "_Q":
        contained: dict[str, dict[str, Any]] = {}
        for holder in (container, q):
            for c in (holder or {}).get("contained") or ():
                if isinstance(c, dict) and isinstance(c.get("id"), str):
                    contained.setdefault(c["id"], c)
        out = cls(q, contained)
        stack: list[tuple[dict[str, Any] | None, list[Any]]] = [(None, q.get("item") or [])]
        while stack:
            parent, items = stack.pop()
            for it in items if isinstance(items, list) else ():
                if not isinstance(it, dict):
                    continue
                if isinstance(it.get("linkId"), str):
                    out.by_link.setdefault(it["linkId"], it)
                out.parent[id(it)] = parent
                stack.append((it, it.get("item") or []))
        return out

    def ancestors(self, item: dict[str, Any]) -> list[int]:
        out, cur = [], self.parent.get(id(item))
        while cur is not None:
            out.append(id(cur))
            cur = self.parent.get(id(cur))
        return out


@dataclass(slots=True)
class _Walk:
    """State of one response's check."""

    q: _Q
    sink: list[Issue]
    not_completed: bool
    root: dict[str, Any]
    #: (questionnaire item, response element) pairs from the root to the current item
    stack: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)


class QuestionnaireChecker:
    """Checks QuestionnaireResponses (the input, Bundle entries, contained ones) against their Questionnaires."""

    def __init__(self, definitions: DefinitionSource, terminology: Terminology, resource_types: Callable[[str], bool] | None = None) -> None:
        self._defs = definitions
        self._tx = terminology
        self._is_resource_type = resource_types

    # -- finding responses ----------------------------------------------------------------------------------
    def issues(self, resource: Any, loc: str) -> list[Issue]:
        """Every finding for the QuestionnaireResponses in ``resource`` (an empty list when there are none)."""
        sink: list[Issue] = []
        if isinstance(resource, dict):
            self._visit(resource, loc or str(resource.get("resourceType")), None, None, sink)
        return sink

    def _visit(self, res: dict[str, Any], loc: str, bundle: list[dict[str, Any]] | None, container: dict[str, Any] | None, sink: list[Issue]) -> None:
        rt = res.get("resourceType")
        if rt == "QuestionnaireResponse":
            self._response(res, loc, bundle, container, sink)
        elif rt == "Questionnaire":
            self._questionnaire(res, loc, sink)
        if rt == "Bundle" and isinstance(res.get("entry"), list):
            inner: list[dict[str, Any]] = [e["resource"] for e in res["entry"] if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
            for i, e in enumerate(res["entry"]):
                if isinstance(e, dict) and isinstance(e.get("resource"), dict):
                    self._visit(e["resource"], f"{loc}.entry[{i}].resource", inner, None, sink)
        elif rt == "Parameters" and isinstance(res.get("parameter"), list):
            for i, p in enumerate(res["parameter"]):
                if isinstance(p, dict) and isinstance(p.get("resource"), dict):
                    self._visit(p["resource"], f"{loc}.parameter[{i}].resource", bundle, None, sink)
        if isinstance(res.get("contained"), list):
            for i, c in enumerate(res["contained"]):
                if isinstance(c, dict) and c.get("resourceType") == "QuestionnaireResponse":
                    self._response(c, f"{loc}.contained[{i}]", bundle, res, sink)
                elif isinstance(c, dict) and c.get("resourceType") == "Questionnaire":
                    self._questionnaire(c, f"{loc}.contained[{i}]", sink)

    def _find(self, url: str, qr: dict[str, Any], bundle: list[dict[str, Any]] | None, container: dict[str, Any] | None) -> tuple[dict[str, Any] | None, dict[str, Any] | None, str | None]:
        """(Questionnaire, its container, or the type of another resource found at that URL)."""
        if url.startswith("#"):
            for holder in (qr, container):
                for c in (holder or {}).get("contained") or ():
                    if isinstance(c, dict) and c.get("id") == url[1:]:
                        if c.get("resourceType") == "Questionnaire":
                            return c, holder, None
                        return None, None, str(c.get("resourceType"))
            return None, None, None
        base, _, version = url.partition("|")
        for r in bundle or ():
            if r.get("url") == base and (not version or r.get("version") == version):
                if r.get("resourceType") == "Questionnaire":
                    return r, None, None
        lookup = getattr(self._defs, "resource", None)
        if callable(lookup):
            hit = lookup("Questionnaire", url) or (lookup("Questionnaire", base) if version else None)
            if isinstance(hit, dict):
                return hit, None, None
        for rt, get in (("ValueSet", self._defs.value_set), ("CodeSystem", self._defs.code_system), ("StructureDefinition", self._defs.structure_definition)):
            if get(base) is not None:
                return None, None, rt
        return None, None, None

    # -- the questionnaire itself ---------------------------------------------------------------------------
    def _questionnaire(self, q: dict[str, Any], loc: str, sink: list[Issue]) -> None:
        """enableWhen targets: present, not the item itself nor inside it, and (advice) before it."""
        order: dict[int, int] = {}  # document (pre-)order of every item
        by_link: dict[str, dict[str, Any]] = {}
        items: list[tuple[dict[str, Any], str, tuple[int, ...]]] = []

        def walk(level: list[Any], at: str, ancestors: tuple[int, ...]) -> None:
            for i, it in enumerate(level):
                if isinstance(it, dict):
                    order[id(it)] = len(order)
                    if isinstance(it.get("linkId"), str):
                        by_link.setdefault(it["linkId"], it)
                    items.append((it, f"{at}.item[{i}]", ancestors))
                    walk(_list(it.get("item")), f"{at}.item[{i}]", (*ancestors, id(it)))

        try:
            walk(_list(q.get("item")), loc, ())
        except RecursionError:
            return  # absurdly deep nesting: the structure checks have their say
        for it, where, ancestors in items:
            for ew in _list(it.get("enableWhen")):
                if not isinstance(ew, dict):
                    continue
                ql = ew.get("question")
                if not isinstance(ql, str):
                    sink.append(Issue("error", "business-rule", where, "Questions with an enableWhen must have a value for the question link", "q-enable-when"))
                    continue
                if _inner(it, ql):
                    sink.append(Issue("error", "business-rule", where, "Questions with an enableWhen cannot refer to an inner question for its enableWhen condition", "q-enable-when"))
                    continue
                target = by_link.get(ql)
                if target is None:
                    sink.append(Issue("error", "business-rule", where, f"Unable to find an item with the linkId '{ql}' which is referenced in the enableWhen for '{it.get('linkId')}'", "q-enable-when"))
                elif target is it:
                    sink.append(Issue("error", "business-rule", where, "Target for this question enableWhen can't reference itself", "q-enable-when"))
                elif id(target) not in ancestors and order[id(target)] > order[id(it)]:
                    sink.append(Issue("warning", "business-rule", where, f"The target of this enableWhen rule ({ql}) comes after the question itself", "q-enable-when"))

    # -- the response ---------------------------------------------------------------------------------------
    def _response(self, qr: dict[str, Any], loc: str, bundle: list[dict[str, Any]] | None, container: dict[str, Any] | None, sink: list[Issue]) -> None:
        url = qr.get("questionnaire")
        if not isinstance(url, str) or not url:
            sink.append(Issue("information", REQUIRED, loc, "No questionnaire is identified, so no validation can be performed against the base questionnaire", "qr-questionnaire"))
            return
        q, holder, other = self._find(url, qr, bundle, container)
        if q is None:
            if other is not None:
                sink.append(Issue("error", STRUCTURE, f"{loc}.questionnaire", f"Canonical URL '{url}' refers to a resource that has the wrong type. Found {other} expecting one of [Questionnaire]", "qr-questionnaire"))
                return
            severity = "information" if url.startswith(("http://example.org", "https://example.org")) else "warning"
            sink.append(Issue(severity, REQUIRED, loc, f"The questionnaire '{url}' could not be resolved, so no validation can be performed against the base questionnaire", "qr-questionnaire"))
            return
        walk = _Walk(_Q.of(q, holder), sink, qr.get("status") not in ("completed", "amended"), qr)
        self._authored(qr, q, loc, sink)
        try:
            self._items(walk, _list(q.get("item")), qr, loc)
        except (TypeError, ValueError, AttributeError, KeyError, IndexError, RecursionError) as exc:
            # a malformed Questionnaire must not end the run: the structure checks report its shape
            sink.append(Issue("warning", INVALID, loc, f"the questionnaire '{url}' could not be applied to this response ({type(exc).__name__})", "qr-questionnaire"))

    @staticmethod
    def _authored(qr: dict[str, Any], q: dict[str, Any], loc: str, sink: list[Issue]) -> None:
        period, authored = q.get("effectivePeriod"), qr.get("authored")
        if not isinstance(period, dict) or not isinstance(authored, str):
            return
        end, start = period.get("end"), period.get("start")
        if isinstance(end, str) and authored[: len(end)] > end:
            sink.append(Issue("warning", "business-rule", f"{loc}.authored", f"The authored date '{authored}' is after the end of the permitted period defined in the Questionnaire ('{end}')", "qr-authored"))
        if isinstance(start, str) and authored < start[: len(authored)]:
            sink.append(Issue("warning", "business-rule", f"{loc}.authored", f"The authored date '{authored}' is before the start of the permitted period defined in the Questionnaire ('{start}')", "qr-authored"))

    def _items(self, w: _Walk, q_items: list[Any], element: dict[str, Any], loc: str) -> None:
        """The response items under ``element`` against the Questionnaire items ``q_items`` of that level."""
        index = {it["linkId"]: n for n, it in enumerate(q_items) if isinstance(it, dict) and isinstance(it.get("linkId"), str)}
        grouped: dict[str, list[tuple[dict[str, Any], int]]] = {}
        last = -1
        items = element.get("item")
        for n, item in enumerate(items if isinstance(items, list) else ()):
            if not isinstance(item, dict):
                continue
            link = item.get("linkId")
            if not isinstance(link, str) or not link:
                w.sink.append(Issue("error", REQUIRED, loc, "No LinkId, so can't be validated", "qr-linkid"))
                continue
            pos = index.get(link)
            if pos is None:
                elsewhere = w.q.by_link.get(link)
                if elsewhere is not None:
                    w.sink.append(Issue("error", STRUCTURE, loc, f"Structural Error: item with linkid {link} is in the wrong place", "qr-item-place"))
                    self._item(w, elsewhere, item, f"{loc}.item[{n}]")
                else:
                    w.sink.append(Issue("error", NOT_FOUND, loc, f"LinkId '{link}' not found in questionnaire", "qr-linkid"))
                continue
            if pos < last:
                w.sink.append(Issue("error", STRUCTURE, loc, "Structural Error: items are out of order", "qr-item-order"))
            last = pos
            grouped.setdefault(link, []).append((item, n))
        for q_item in q_items:
            if not isinstance(q_item, dict):
                continue
            link = q_item.get("linkId")
            found = grouped.get(link) if isinstance(link, str) else None
            enabled = self._enabled(w, q_item)
            if found is not None:
                if not enabled:
                    for item, n in found:
                        if item.get("answer") or item.get("item"):
                            w.sink.append(Issue("error", INVALID, f"{loc}.item[{n}]", f"Item has answer, even though it is not enabled (item id = '{q_item.get('linkId')}')", "qr-enable-when"))
                if len(found) > 1 and not q_item.get("repeats"):
                    w.sink.append(Issue("error", INVALID, loc, f"Only one response item with the linkId {q_item.get('linkId')} allowed - found {len(found)} items", "qr-repeats"))
                for item, n in found:
                    self._item(w, q_item, item, f"{loc}.item[{n}]")
            elif enabled and q_item.get("required") is True:
                self._missing(w, loc, q_item)

    @staticmethod
    def _missing(w: _Walk, loc: str, q_item: dict[str, Any]) -> None:
        sev = "warning" if w.not_completed else "error"
        w.sink.append(Issue(sev, REQUIRED, loc, f"No response answer found for required item '{q_item.get('linkId')}'", "qr-required"))

    def _item(self, w: _Walk, q_item: dict[str, Any], item: dict[str, Any], loc: str) -> None:
        w.stack.append((q_item, item))
        try:
            self._item_body(w, q_item, item, loc)
        finally:
            w.stack.pop()

    def _item_body(self, w: _Walk, q_item: dict[str, Any], item: dict[str, Any], loc: str) -> None:
        sink = w.sink
        link = q_item.get("linkId")
        text = item.get("text")
        if isinstance(text, str) and text and text != q_item.get("text"):
            sink.append(Issue("error", INVALID, loc, f"If text exists, it must match the questionnaire definition for linkId {link}", "qr-text"))
        answers = [a for a in item.get("answer") or () if isinstance(a, dict)] if isinstance(item.get("answer"), list) else []
        qtype = q_item.get("type")
        if q_item.get("required") is True and not answers and qtype not in ("group", "question", "display"):
            if w.not_completed:
                sink.append(Issue("warning", REQUIRED, loc, f"No response answer found for required item '{link}'", "qr-required"))
            elif self._enabled(w, q_item):
                sink.append(Issue("error", REQUIRED, loc, f"No response answer found for required item '{link}'", "qr-required"))
        if len(answers) > 1 and not q_item.get("repeats"):
            sink.append(Issue("error", INVALID, loc, "Only one response answer item with this linkId allowed", "qr-repeats"))
        mo = _ext_value(_ext(q_item, EXT_MAXOCCURS))
        if isinstance(mo, int) and mo >= 0 and len(answers) > mo:
            sink.append(Issue("error", INVALID, loc, f"The maximum number of answers is {mo} but this has {len(answers)} answers", "qr-max-occurs"))
        mo = _ext_value(_ext(q_item, EXT_MINOCCURS))
        if isinstance(mo, int) and mo >= 0 and len(answers) < mo:
            sink.append(Issue("error", INVALID, loc, f"The minimum number of answers is {mo} but this has {len(answers)} answers", "qr-min-occurs"))
        for i, answer in enumerate(answers):
            at = f"{loc}.answer[{i}]"
            if qtype in ("group", "question"):
                sink.append(Issue("error", STRUCTURE, loc, "Items of type question should not have answers", "qr-answer-type"))
            elif qtype == "display":
                sink.append(Issue("error", STRUCTURE, loc, "Items of type 'display' cannot have answers", "qr-answer-type"))
            elif isinstance(qtype, str) and qtype in _ANSWER_TYPES:
                self._answer(w, q_item, qtype, answer, at, len(answers))
            if qtype not in ("group", "question"):
                self._items(w, _list(q_item.get("item")), answer, at)
        sub = item.get("item")
        if qtype is None:
            sink.append(Issue("fatal", REQUIRED, loc, f"Definition for item {link} does not contain a type", "qr-item-type"))
        elif qtype == "display":
            if sub:
                sink.append(Issue("error", STRUCTURE, loc, f"Items not of type DISPLAY should not have items - linkId {link}", "qr-nesting"))
        elif qtype not in ("group", "question"):
            if sub:
                sink.append(Issue("error", STRUCTURE, loc, "Items not of type group should not have items outside answers (use answer.item not .item)", "qr-nesting"))
        else:
            if q_item.get("required") is True and not sub:
                sink.append(Issue("error", INVARIANT, loc, "No sub-items found for required group", "qr-required"))
            self._items(w, _list(q_item.get("item")), item, loc)

    # -- answers --------------------------------------------------------------------------------------------
    def _answer(self, w: _Walk, q_item: dict[str, Any], qtype: str, answer: dict[str, Any], loc: str, count: int) -> None:
        got = _value(answer)
        if got is None:
            return
        key, vtype, v = got
        allowed = _ANSWER_TYPES[qtype]
        vloc = f"{loc}.value.ofType({vtype})"
        if vtype not in allowed:
            if len(allowed) == 1:
                msg = f"Answer value must be of the type {allowed[0]} not {vtype}"
            else:
                msg = f"Answer value must be one of the {len(allowed)} types {', '.join(allowed)} not {vtype}"
            w.sink.append(Issue("error", INVARIANT, vloc, msg, "qr-answer-type"))
            return
        if qtype in ("choice", "open-choice"):
            # a choice answers from its options: only membership is checked, as in the Java validator
            if vtype == "Coding":
                self._coding(w, q_item, qtype, v, loc, vloc, count)
            else:
                self._options(w, q_item, vtype, v, loc, vloc, count, qtype == "open-choice")
            return
        if qtype == "text":
            return
        check = _CHECKS.get(vtype)
        if check is not None:
            check(self, w, q_item, qtype, v, loc, vloc, count)

    def _options(self, w: _Walk, q_item: dict[str, Any], vtype: str, v: Any, loc: str, vloc: str, count: int, open_choice: bool) -> None:
        options = q_item.get("answerOption")
        if not isinstance(options, list) or not options:
            return
        key = "value" + vtype[0].upper() + vtype[1:]
        values = [o.get(key) for o in options if isinstance(o, dict) and key in o]
        what = {"Coding": "coding", "string": "string", "integer": "integer", "date": "date", "time": "time"}.get(vtype, vtype)
        if vtype == "string" and open_choice:
            codings: list[dict[str, Any]] = [o["valueCoding"] for o in options if isinstance(o, dict) and isinstance(o.get("valueCoding"), dict)]
            low = str(v).lower()
            if any(str(c.get("display", "")).lower() == low or str(c.get("code", "")).lower() == low for c in codings):
                w.sink.append(Issue("warning", INVARIANT, loc, f"The string value '{v}' matches an entry in the list of valid Codings, so this is probably an error", "qr-option"))
            return
        if not values:
            if not open_choice:
                w.sink.append(Issue("error", INVARIANT, vloc, f"Option list has no option values of type {what}", "qr-option"))
            return
        if vtype == "Coding":
            system, code = (v.get("system"), v.get("code")) if isinstance(v, dict) else (None, None)
            for o in options:
                c = o.get("valueCoding") if isinstance(o, dict) else None
                if isinstance(c, dict) and c.get("system") == system and c.get("code") == code:
                    if _ext_value(_ext(o, EXT_EXCLUSIVE)) is True and count > 1:
                        w.sink.append(Issue("error", INVARIANT, loc, f"Selected answer {system}#{code} is an exclusive option - can't select anything else at the same time", "qr-option-exclusive"))
                    return
            if not open_choice:
                w.sink.append(Issue("error", INVARIANT, loc, f"The code {system}::{code} is not in the set of permitted values", "qr-option"))
            return
        if v not in values and not open_choice:
            label = {"string": "string", "integer": "integer", "date": "date", "time": "time"}[vtype]
            shown = _num(v) if vtype == "integer" else v
            w.sink.append(Issue("error", INVARIANT, vloc, f"The {label} {shown} is not in the set of permitted values", "qr-option"))

    def _value_set(self, q: _Q, url: str) -> Any:
        """The expansion of an answerValueSet (``#id`` among the contained resources), or None."""
        if url.startswith("#"):
            vs = q.contained.get(url[1:])
            return self._tx.expand_resource(vs) if isinstance(vs, dict) and vs.get("resourceType") == "ValueSet" else None
        return self._tx.expand(url)

    def _coding(self, w: _Walk, q_item: dict[str, Any], qtype: str, v: Any, loc: str, vloc: str, count: int) -> None:
        if not isinstance(v, dict):
            return
        open_choice = qtype == "open-choice"
        if q_item.get("answerOption"):
            self._options(w, q_item, "Coding", v, loc, vloc, count, open_choice)
            return
        url = q_item.get("answerValueSet")
        if not isinstance(url, str):
            w.sink.append(Issue("information", INVARIANT, loc, "Cannot validate options because no option or options are provided", "qr-option"))
            return
        exp = self._value_set(w.q, url)
        if exp is None:
            w.sink.append(Issue("warning", CODE_INVALID, f"{loc}.value.ofType(Coding)", f"The ValueSet {url} is unknown (not in any loaded package), so the answer could not be checked", "qr-value-set"))
            return
        system, code = v.get("system"), v.get("code")
        if not isinstance(code, str):
            return
        verdict = exp.contains(system if isinstance(system, str) else None, code)
        if verdict is False and not (open_choice and not system and not code):
            vs = self._defs.value_set(url)
            name = (vs or {}).get("name") or url
            w.sink.append(Issue("error", CODE_INVALID, loc, f"The code '{code}' in the system '{system}' is not in the options value set ({name}) specified by the questionnaire", "qr-value-set"))
        elif verdict is None:
            w.sink.append(Issue("information", "informational", loc, f"codes of {system} cannot be expanded offline: '{code}' was not checked against the options value set {url}", "qr-value-set"))
        elif isinstance(system, str) and isinstance(v.get("display"), str):
            w.sink.extend(self._tx.check_display(v, f"{loc}.value.ofType(Coding)"))

    def _string(self, w: _Walk, q_item: dict[str, Any], qtype: str, v: Any, loc: str, vloc: str, count: int) -> None:
        if not isinstance(v, str):
            return
        sink = w.sink
        ml = _ext_value(_ext(q_item, EXT_MIN_LENGTH))
        if isinstance(ml, int) and ml >= 0 and len(v) < ml:
            sink.append(Issue("error", INVARIANT, vloc, f"The answer '{v}' is shorter then the required minimum length of {ml}", "qr-min-length"))
        ml = q_item.get("maxLength")
        if isinstance(ml, int) and ml >= 0 and len(v) > ml:
            sink.append(Issue("error", INVARIANT, vloc, f"The answer '{v}' is longer then the allowed maximum length of {ml}", "qr-max-length"))
        regex = _ext_value(_ext(q_item, EXT_REGEX))
        if isinstance(regex, str):
            try:
                matched = re.fullmatch(regex, v) is not None
            except re.error:
                matched = True  # a pattern Python cannot compile is the Questionnaire's problem, not the answer's
            if not matched:
                ef = _ext_value(_ext(q_item, EXT_ENTRY_FORMAT))
                if isinstance(ef, str):
                    msg = f"The answer '{v}' does not conform to the expected format '{ef}' (regex '{regex}')"
                else:
                    msg = f"The answer '{v}' does not conform to the required regex '{regex}'"
                sink.append(Issue("error", INVARIANT, vloc, msg, "qr-regex"))
        if "\r" in v or "\n" in v:
            sink.append(Issue("warning", INVARIANT, vloc, "The answer should not contain new line characters", "qr-string"))
        url = q_item.get("answerValueSet")
        if isinstance(url, str):
            exp = self._value_set(w.q, url)
            if exp is None:
                sink.append(Issue("warning", INVARIANT, vloc, f"The value set '{url}' could not be found", "qr-value-set"))
            elif exp.contains(None, v) is False:
                sink.append(Issue("error", INVARIANT, vloc, f"The value '{v}' is not in the list of allowed values (value set '{url}')", "qr-value-set"))
        self._options(w, q_item, "string", v, loc, vloc, count, False)

    def _integer(self, w: _Walk, q_item: dict[str, Any], qtype: str, v: Any, loc: str, vloc: str, count: int) -> None:
        if not isinstance(v, int) or isinstance(v, bool):
            return
        lo, hi = _ext_value(_ext(q_item, EXT_MINVALUE)), _ext_value(_ext(q_item, EXT_MAXVALUE))
        if isinstance(lo, (int, float)) and not isinstance(lo, bool) and v < lo:
            w.sink.append(Issue("error", INVARIANT, vloc, f"The value {v} is less than the allowed minimum of {_num(lo)}", "qr-min-value"))
        if isinstance(hi, (int, float)) and not isinstance(hi, bool) and v > hi:
            w.sink.append(Issue("error", INVARIANT, vloc, f"The value {v} is greater than the allowed maximum of {_num(hi)}", "qr-max-value"))
        self._options(w, q_item, "integer", v, loc, vloc, count, False)

    def _decimal(self, w: _Walk, q_item: dict[str, Any], qtype: str, v: Any, loc: str, vloc: str, count: int) -> None:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            return
        lo, hi = _ext_value(_ext(q_item, EXT_MINVALUE)), _ext_value(_ext(q_item, EXT_MAXVALUE))
        if isinstance(lo, (int, float)) and not isinstance(lo, bool) and v < lo:
            w.sink.append(Issue("error", INVARIANT, vloc, f"The value {_num(v)} is less than the allowed minimum of {_num(lo)}", "qr-min-value"))
        if isinstance(hi, (int, float)) and not isinstance(hi, bool) and v > hi:
            w.sink.append(Issue("error", INVARIANT, vloc, f"The value {_num(v)} is greater than the allowed maximum of {_num(hi)}", "qr-max-value"))
        self._decimals(w, q_item, v, vloc)
        options = [o.get("valueDecimal", o.get("valueInteger")) for o in q_item.get("answerOption") or () if isinstance(o, dict)]
        if options and v not in options:
            w.sink.append(Issue("error", INVARIANT, vloc, f"The value {_num(v)} is not in the set of permitted values", "qr-option"))

    @staticmethod
    def _decimals(w: _Walk, q_item: dict[str, Any], v: Any, vloc: str) -> None:
        places = _ext_value(_ext(q_item, EXT_MAX_DECIMALS))
        if isinstance(places, int) and _precision(v) > places:
            w.sink.append(Issue("error", INVARIANT, vloc, f"The value {_num(v)} has too many decimal places (limit = {places})", "qr-decimal-places"))

    def _temporal(self, w: _Walk, q_item: dict[str, Any], qtype: str, v: Any, loc: str, vloc: str, count: int, vtype: str) -> None:
        if not isinstance(v, str):
            return
        # ISO 8601 strings of one calendar compare as strings; a shorter value is its period's start (as Java reads it)
        lo, hi = _ext_value(_ext(q_item, EXT_MINVALUE)), _ext_value(_ext(q_item, EXT_MAXVALUE))
        if isinstance(lo, str) and v < lo:
            w.sink.append(Issue("error", INVARIANT, vloc, f"The value {v} is less than the allowed minimum of {lo}", "qr-min-value"))
        if isinstance(hi, str) and v > hi:
            w.sink.append(Issue("error", INVARIANT, vloc, f"The value {v} is greater than the allowed maximum of {hi}", "qr-max-value"))
        if vtype in ("date", "time"):
            self._options(w, q_item, vtype, v, loc, vloc, count, False)

    def _quantity(self, w: _Walk, q_item: dict[str, Any], qtype: str, v: Any, loc: str, vloc: str, count: int) -> None:
        if not isinstance(v, dict) or not isinstance(v.get("value"), (int, float)):
            return
        sink = w.sink
        shown = _quantity_display(v)
        for url, is_min in ((EXT_MIN_QUANTITY, True), (EXT_MAX_QUANTITY, False)):
            bound = _ext_value(_ext(q_item, url))
            if not isinstance(bound, dict) or not isinstance(bound.get("value"), (int, float)):
                continue
            word = "minimum" if is_min else "maximum"
            limit = _quantity_display(bound)
            if not (bound.get("system") and bound.get("code") and v.get("system") and v.get("code")):
                sink.append(Issue("error", INVARIANT, vloc, f"The quantity {shown} cannot be compared to the allowed {word} of {limit} because no formal units are specified", "qr-quantity"))
            elif bound.get("system") == v.get("system") and bound.get("code") == v.get("code"):
                if (v["value"] < bound["value"]) if is_min else (v["value"] > bound["value"]):
                    rel = "less" if is_min else "greater"
                    sink.append(Issue("error", INVARIANT, vloc, f"The quantity {shown} is {rel} than the allowed {word} of {limit}", "qr-quantity"))
            else:
                # different units: comparing them needs UCUM conversion, which is not available offline here
                sink.append(Issue("error", INVARIANT, vloc, f"The quantity {shown} cannot be compared to the allowed {word} of {limit}", "qr-quantity"))
        self._decimals(w, q_item, v["value"], vloc)
        units = _exts(q_item, EXT_UNIT_OPTION)
        if units:
            codings: list[dict[str, Any]] = [u["valueCoding"] for u in units if isinstance(u.get("valueCoding"), dict)]
            if not any(_unit_matches(v, c) for c in codings):
                allowed = ",".join(_coding_display(c) for c in codings)
                sink.append(Issue("error", INVARIANT, vloc, f"The value {shown} has a unit that is not valid (allowed = {allowed})", "qr-unit"))
        vs_url = _ext_value(_ext(q_item, EXT_UNIT_VALUESET))
        if isinstance(vs_url, str):
            exp = self._value_set(w.q, vs_url)
            if exp is None:
                sink.append(Issue("warning", INVARIANT, vloc, f"The unit value set '{vs_url}' could not be found", "qr-unit"))
            else:
                code = v.get("code")
                verdict = exp.contains(v.get("system") if isinstance(v.get("system"), str) else None, code) if isinstance(code, str) else False
                if verdict is False:
                    sink.append(Issue("error", INVARIANT, vloc, f"The value {shown} has a unit that is not in the unit value set '{vs_url}'", "qr-unit"))

    def _attachment(self, w: _Walk, q_item: dict[str, Any], qtype: str, v: Any, loc: str, vloc: str, count: int) -> None:
        if not isinstance(v, dict):
            return
        types = [t for t in (_ext_value(e) for e in _exts(q_item, EXT_MIMETYPE)) if isinstance(t, str)]
        if types:
            ct = v.get("contentType")
            if not isinstance(ct, str):
                w.sink.append(Issue("error", REQUIRED, loc, "A mime type is required for this answer", "qr-attachment"))
            elif not any(ct.startswith(t) for t in types):
                w.sink.append(Issue("error", REQUIRED, loc, f"The mime type {ct} is not valid for this answer (allowed = {', '.join(types)})", "qr-attachment"))
        size = _ext_value(_ext(q_item, EXT_MAX_SIZE))
        data = v.get("data")
        if isinstance(size, (int, float)) and size > 0 and isinstance(data, str):
            try:
                length = len(base64.b64decode("".join(data.split()), validate=False))
            except (binascii.Error, ValueError):
                return  # a bad base64 value is reported by the structure checks
            if length >= size:
                w.sink.append(Issue("error", REQUIRED, loc, f"The attachment is too large (allowed = {_num(size)}, found = {length})", "qr-attachment"))

    def _reference(self, w: _Walk, q_item: dict[str, Any], qtype: str, v: Any, loc: str, vloc: str, count: int) -> None:
        ref = v.get("reference") if isinstance(v, dict) else None
        if not isinstance(ref, str) or ref.startswith("#"):
            return
        m = _REF_TYPE.search(ref.split("?")[0])
        rt = m.group(1) if m else None
        allowed = [a for a in (_ext_value(e) for e in _exts(q_item, EXT_ALLOWED_RESOURCE)) if isinstance(a, str)]
        if allowed:
            if rt is None:
                w.sink.append(Issue("error", INVARIANT, vloc, "Unable to determine the resource type, so the resource type can't be checked", "qr-reference"))
            elif rt not in allowed:
                w.sink.append(Issue("error", INVARIANT, vloc, f"The resource type '{rt}' in the reference {ref} is not allowed (allowed = {','.join(allowed)})", "qr-reference"))
        elif rt is not None and self._is_resource_type is not None and not self._is_resource_type(rt):
            w.sink.append(Issue("error", INVARIANT, vloc, f"The resource type {rt} in the reference {ref} is not valid", "qr-reference"))

    # -- enableWhen -----------------------------------------------------------------------------------------
    def _enabled(self, w: _Walk, q_item: dict[str, Any]) -> bool:
        conditions = q_item.get("enableWhen")
        if not isinstance(conditions, list) or not conditions:
            return True
        results = [self._condition(w, q_item, c) for c in conditions if isinstance(c, dict)]
        results = [r for r in results if r is not None]
        if not results:
            return True  # nothing evaluable: treat the item as enabled, as the Java validator does on errors
        behavior = q_item.get("enableBehavior")
        if behavior == "any" or len(results) == 1:
            return any(results)
        if behavior == "all":
            return all(results)
        return True

    def _condition(self, w: _Walk, source: dict[str, Any], cond: dict[str, Any]) -> bool | None:
        question, op = cond.get("question"), cond.get("operator")
        target = w.q.by_link.get(question) if isinstance(question, str) else None
        if target is None:
            return False
        answers = list(self._answers_for(w, source, target, question))  # type: ignore[arg-type]
        expected = next(((k, v) for k, v in cond.items() if k.startswith("answer")), None)
        if expected is None:
            return None
        key, ev = expected
        if op == "exists":
            return (ev is True) != (not answers)
        result = False
        for a in answers:
            got = _value(a)
            if got is None or "value" + key[len("answer"):] != got[0]:
                continue
            r = _compare(got[2], ev, key, op)
            if r is None:
                return None
            result = result or r
        return result

    def _answers_for(self, w: _Walk, source: dict[str, Any], target: dict[str, Any], question: str) -> Iterator[dict[str, Any]]:
        # the innermost Questionnaire group holding both items, then its response element (EnableWhenEvaluator)
        ancestors_s = w.q.ancestors(source)
        ancestors_t = set(w.q.ancestors(target))
        common = next((a for a in ancestors_s if a in ancestors_t), None)
        focus: dict[str, Any] = w.root
        if common is not None:
            for q_item, element in reversed(w.stack):
                if id(q_item) == common:
                    focus = element
                    break
            else:
                return
        yield from _find_answers(focus, question)


def _inner(item: dict[str, Any], link: str) -> bool:
    """True when an item nested in ``item`` has that linkId."""
    for child in _list(item.get("item")):
        if isinstance(child, dict) and (child.get("linkId") == link or _inner(child, link)):
            return True
    return False


def _find_answers(focus: dict[str, Any], question: str) -> Iterator[dict[str, Any]]:
    for item in focus.get("item") or ():
        if not isinstance(item, dict):
            continue
        if item.get("linkId") == question:
            yield from (a for a in item.get("answer") or () if isinstance(a, dict))
        yield from _find_answers(item, question)
    for answer in focus.get("answer") or ():
        if isinstance(answer, dict):
            yield from _find_answers(answer, question)


def _compare(actual: Any, expected: Any, key: str, op: Any) -> bool | None:
    if key == "answerCoding":
        if not isinstance(actual, dict) or not isinstance(expected, dict):
            return None
        same = (not expected.get("system") or expected.get("system") == actual.get("system")) and expected.get("code") == actual.get("code")
        return same if op == "=" else (not same if op == "!=" else None)
    if key == "answerQuantity":
        actual = actual.get("value") if isinstance(actual, dict) else None
        expected = expected.get("value") if isinstance(expected, dict) else None
    if key == "answerReference":
        actual = actual.get("reference") if isinstance(actual, dict) else None
        expected = expected.get("reference") if isinstance(expected, dict) else None
    try:
        if op == "=":
            return bool(actual == expected)
        if op == "!=":
            return bool(actual != expected)
        if op == ">":
            return bool(actual > expected)
        if op == "<":
            return bool(actual < expected)
        if op == ">=":
            return bool(actual >= expected)
        if op == "<=":
            return bool(actual <= expected)
    except TypeError:
        return None
    return None


def _unit_matches(q: dict[str, Any], c: dict[str, Any]) -> bool:
    return (
        (not c.get("system") or c.get("system") == q.get("system"))
        and (not c.get("code") or c.get("code") == q.get("code"))
        and (not c.get("display") or c.get("display") == q.get("unit"))
    )


_Check = Callable[["QuestionnaireChecker", _Walk, dict[str, Any], str, Any, str, str, int], None]
_CHECKS: dict[str, _Check] = {
    "Coding": QuestionnaireChecker._coding,
    "string": QuestionnaireChecker._string,
    "integer": QuestionnaireChecker._integer,
    "decimal": QuestionnaireChecker._decimal,
    "date": lambda s, w, qi, qt, v, loc, vloc, n: s._temporal(w, qi, qt, v, loc, vloc, n, "date"),
    "dateTime": lambda s, w, qi, qt, v, loc, vloc, n: s._temporal(w, qi, qt, v, loc, vloc, n, "dateTime"),
    "time": lambda s, w, qi, qt, v, loc, vloc, n: s._temporal(w, qi, qt, v, loc, vloc, n, "time"),
    "Quantity": QuestionnaireChecker._quantity,
    "Attachment": QuestionnaireChecker._attachment,
    "Reference": QuestionnaireChecker._reference,
}
