"""The one consent policy: may this be disclosed to that recipient, now, for treatment?

FHIR R4 Consent read as FHIR means it, over plain R4 JSON (a Bundle built by fhir-so, a case
pulled from a server, or the Consents a server holds for the patient), used by the transfer,
the report-back, dry runs and ``fhir-so validate --rules transfer`` alike.

The question is always the same: *disclose* one item (a record, the opinion, or for a whole
step the class of resource alone) of the request's patient to one recipient (the request's
performer for records out, its requester for the report back), at ``now``, for *treatment*.

Which Consents count: every one given (linked from the request, or found on the server by
patient) that is ``active``, of scope ``patient-privacy``, and whose ``patient`` is the
request's patient. Inactive ones (a revoked consent is ``inactive`` in R4), drafts, another
patient's, research or treatment-scope consents decide nothing.

How one Consent rules on one item (``provision`` is a tree):

* a provision *applies* when every criterion it states matches: ``period`` (contains now;
  :func:`period_contains`), ``actor`` (some actor with role IRCP is the recipient, by
  :func:`same_party`), ``action`` (includes ``disclose``; ``access`` and the others do not),
  ``purpose`` (a permit must cover TREAT itself or PurposeOfUse; a deny applies as soon as it
  names TREAT, one of its specialisations or PurposeOfUse; research and marketing never
  touch treatment), ``class`` (the resource type or a declared profile), ``code`` (the
  item's codings), ``securityLabel``, ``dataPeriod``, ``data`` (the item itself, what it is
  related to, or its author);
* nested provisions are evaluated only inside a parent that applies; the most specific
  provision that applies decides with its ``type`` (a deny inside a permit removes what it
  names, a permit inside a deny opens what it names); among siblings, deny wins;
* across Consents, deny wins over permit; nothing that applies means no permit.

Anything the policy cannot read (a missing ``provision.type``, an actor role other than
IRCP, an unresolvable recipient without an identifier, a code from a system it cannot
compare, an unparseable date) makes that provision *unreadable*: an unreadable permit grants
nothing, an unreadable deny refuses. Never a permit.

A record's kind comes from all its type codings: every coding must be a LOINC record type
of one and the same kind, or the record is withheld (an imaging study coded lab-report
first must not pass a lab-only consent).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from fhir_so import terminology as term
from fhir_so.errors import ConsentError
from fhir_so.mapping.graph import Graph, Node

__all__ = [
    "Decision",
    "Party",
    "Ruling",
    "Verdict",
    "Withheld",
    "item_kind",
    "period_contains",
    "period_end",
    "records_verdict",
    "report_verdict",
    "request_of",
    "require",
    "same_party",
]

Resource = dict[str, Any]
Purpose = Literal["records", "report"]
Decision = Literal["permit", "deny", "silent", "unreadable"]
# A criterion's answer: True matches, False does not (with why), None cannot be read (with why).
Match = tuple[bool | None, str]

_MATCH: Match = (True, "")
_MAX_DEPTH = 32  # nested provisions deeper than this are not a consent a person wrote
_PARTIAL = "partial"  # a step-level question: this criterion limits which items, not whether any
_DATE = re.compile(r"(\d{4})(-(\d{2})(-(\d{2}))?)?")
_SECONDS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


# -- results (kept as the workflow has always written them: state files hold them) -------------


@dataclass(frozen=True)
class Withheld:
    """A record that stays behind, and why."""

    record_id: str
    kind: str
    reason: str
    #: where the record stands in the bundle judged (not kept in state files)
    where: str | None = field(default=None, compare=False)
    #: where the provision stands that left it behind (``Bundle.entry[3].resource.provision``), when known
    provision: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Verdict:
    """What the policy allows for one step: allowed or not, why, and which records move."""

    purpose: Purpose
    allowed: bool
    reason: str
    moves: tuple[str, ...] = ()
    withheld: tuple[Withheld, ...] = field(default_factory=tuple)
    #: where the deciding provision stands (``Bundle.entry[3].resource.provision``), when known
    where: str | None = field(default=None, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Verdict:
        """The inverse of :meth:`to_json` (a verdict kept in a state file)."""
        return cls(
            purpose="report" if data.get("purpose") == "report" else "records",
            allowed=bool(data.get("allowed")),
            reason=str(data.get("reason", "")),
            moves=tuple(data.get("moves") or ()),
            withheld=tuple(Withheld(w["record"], w["kind"], w["reason"]) for w in data.get("withheld") or ()),
        )

    def to_json(self) -> dict[str, Any]:
        """A plain-JSON view for ``--json`` output and state files."""
        return {
            "purpose": self.purpose,
            "allowed": self.allowed,
            "reason": self.reason,
            "moves": list(self.moves),
            "withheld": [{"record": w.record_id, "kind": w.kind, "reason": w.reason} for w in self.withheld],
        }


@dataclass(frozen=True)
class Ruling:
    """How the Consents rule on one item: the decision, why, and the provision that decided."""

    decision: Decision
    reason: str
    where: str | None = None
    #: the deciding consent, and the path of its deciding provision (``provision.provision[0]``)
    consent: str | None = None
    rel: str | None = None


def require(verdict: Verdict, case_id: str) -> Verdict:
    """The verdict when it allows the step; ConsentError (exit 1) naming the case when it does not."""
    if not verdict.allowed:
        raise ConsentError(f"case {case_id}: nothing was sent: {verdict.reason}")
    return verdict


# -- dates: one definition of a period ---------------------------------------------------------


def _instant(value: Any) -> tuple[dt.datetime, dt.datetime] | None:
    """A FHIR date/dateTime as (its first instant, the first instant after it); None if unreadable.

    A date without a time covers its whole year, month or day (UTC, as the case model reads a
    bare date); a dateTime covers its whole last stated second (FHIR: "the end value includes
    any matching date/time").
    """
    if not isinstance(value, str):
        return None
    m = _DATE.fullmatch(value)
    try:
        if m:
            year, month, day = int(m.group(1)), m.group(3), m.group(5)
            first = dt.datetime(year, int(month or 1), int(day or 1), tzinfo=dt.timezone.utc)
            if day:
                return first, first + dt.timedelta(days=1)
            if month:
                return first, first.replace(year=year + (first.month == 12), month=first.month % 12 + 1)
            return first, first.replace(year=year + 1)
        if not _SECONDS.fullmatch(value):
            return None
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    step = dt.timedelta(microseconds=1) if "." in value else dt.timedelta(seconds=1)
    return when, when.replace(microsecond=0) + step if step.seconds else when + step


def period_end(end: str) -> dt.datetime | None:
    """The first instant after a period that ends at ``end``; None when unreadable."""
    found = _instant(end)
    return found[1] if found else None


def period_contains(period: Any, now: dt.datetime) -> Match:
    """Does ``period`` (a FHIR Period) contain ``now``: start <= now < the first instant after end."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if period is None:
        return _MATCH
    if not isinstance(period, dict):
        return None, "its period is not a Period"
    start, end = period.get("start"), period.get("end")
    if start is not None:
        first = _instant(start)
        if first is None:
            return None, f"its period start {start!r} is not a date"
        if now < first[0]:
            return False, f"is not yet valid: its period starts {start}"
    if end is not None:
        after = period_end(end)
        if after is None:
            return None, f"its period end {end!r} is not a date"
        if now >= after:
            return False, f"expired: its period ended {end}"
    return _MATCH


# -- parties -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Party:
    """A patient or recipient: every name a reference may use for it, its identifiers, its type."""

    names: frozenset[str]
    identifiers: frozenset[str]
    resource_type: str | None
    label: str


def _idents(resource: Mapping[str, Any]) -> frozenset[str]:
    out = set()
    for ident in _list(resource.get("identifier")):
        if isinstance(ident, dict) and isinstance(ident.get("system"), str) and isinstance(ident.get("value"), str):
            out.add(f"{ident['system']}|{ident['value']}")
    return frozenset(out)


def _label(resource: Mapping[str, Any], fallback: str) -> str:
    name = resource.get("name")
    if isinstance(name, str):
        shown = name
    elif isinstance(name, list) and name and isinstance(name[0], dict):
        human = name[0]
        shown = human.get("text") or " ".join([*_list(human.get("prefix")), *_list(human.get("given")), str(human.get("family") or "")]).strip()
    else:
        shown = fallback
    idents = sorted(_idents(resource))
    return f"{shown} ({idents[0]})" if idents else str(shown)


def _node_names(node: Node) -> set[str]:
    names = set()
    if node.full_url:
        names.add(node.full_url)
        if "://" in node.full_url:
            names.add("/".join(node.full_url.rstrip("/").split("/")[-2:]))
    rid = node.resource.get("id")
    if isinstance(rid, str):
        names.add(f"{node.resource.get('resourceType')}/{rid}")
    return names


def _party_of(graph: Graph, ref: Any) -> Party | None:
    if isinstance(ref, list):
        ref = ref[0] if ref else None
    if not isinstance(ref, dict):
        return None
    node = graph.find(ref)
    if node is not None:
        return Party(frozenset(_node_names(node)), _idents(node.resource), node.resource.get("resourceType"), _label(node.resource, str(ref.get("reference"))))
    ident = ref.get("identifier")
    idents = _idents({"identifier": [ident]}) if isinstance(ident, dict) else frozenset()
    text = ref.get("reference")
    names = frozenset({text}) if isinstance(text, str) else frozenset()
    if not idents and not names:
        return None
    return Party(names, idents, _type_of_reference(ref), str(ref.get("display") or text or sorted(idents)[0]))


def _type_of_reference(ref: Mapping[str, Any]) -> str | None:
    if isinstance(ref.get("type"), str):
        return str(ref["type"])
    text = ref.get("reference")
    if isinstance(text, str) and "/" in text and not text.startswith("urn:"):
        return text.split("/_history/")[0].rstrip("/").split("/")[-2]
    return None


def same_party(graph: Graph, ref: Any, party: Party) -> Match:
    """Is the Reference ``ref`` the ``party``: the same resource, or a shared identifier (one definition).

    A reference that resolves in ``graph`` is compared by the resource it names and then by that
    resource's identifiers; a logical reference by its identifier. One that neither resolves nor
    carries an identifier cannot be compared (None): a recipient must be checkable.
    """
    other = _party_of(graph, ref)
    if other is None:
        return None, "its actor reference is empty"
    if other.resource_type and party.resource_type and other.resource_type != party.resource_type:
        return False, f"names {other.label}, a {other.resource_type}, not {party.label}"
    if other.names & party.names or other.identifiers & party.identifiers:
        return _MATCH
    if not other.identifiers and graph.find(ref if isinstance(ref, dict) else {}) is None:
        return None, f"its actor {other.label} cannot be resolved and carries no identifier"
    return False, f"names {other.label}, not {party.label}"


# -- what is disclosed ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Item:
    """One resource to disclose, or (``abstract``) the class of a step with no resource in mind."""

    resource_type: str
    names: frozenset[str] = frozenset()
    codes: frozenset[tuple[str, str]] = frozenset()
    labels: frozenset[tuple[str, str]] = frozenset()
    profiles: frozenset[str] = frozenset()
    date: str | None = None
    related: frozenset[str] = frozenset()
    authors: frozenset[str] = frozenset()
    abstract: bool = False


def _codings(concept: Any) -> list[dict[str, Any]]:
    if isinstance(concept, list):
        return [c for x in concept for c in _codings(x)]
    if isinstance(concept, dict) and isinstance(concept.get("coding"), list):
        return [c for c in concept["coding"] if isinstance(c, dict)]
    return []


def _pairs(codings: Iterable[Mapping[str, Any]]) -> frozenset[tuple[str, str]]:
    return frozenset((str(c.get("system")), str(c.get("code"))) for c in codings if c.get("system") and c.get("code"))


def _type_concept(resource: Mapping[str, Any]) -> Any:
    return resource.get("code") if resource.get("resourceType") == "DiagnosticReport" else resource.get("type")


def item_kind(resource: Mapping[str, Any]) -> tuple[str | None, str]:
    """The record kind of a DocumentReference (or the opinion) from ALL its codings, or (None, why).

    Every coding must be a LOINC document type fhir-so knows, all of the same kind: a record
    whose codings disagree, or carry one the policy cannot read, has no kind and is withheld.
    """
    codings = _codings(_type_concept(resource))
    if not codings:
        return None, "it has no type coding, so its kind cannot be told"
    kinds = set()
    for c in codings:
        kind = term.RECORD_KIND_BY_LOINC.get(str(c.get("code"))) if c.get("system") == term.LOINC else None
        if kind is None:
            return None, f"its type coding {c.get('system')}|{c.get('code')} is not a record kind the consent policy knows"
        kinds.add(kind)
    if len(kinds) > 1:
        return None, f"its type codings disagree ({' vs '.join(sorted(kinds))}), so its kind cannot be told"
    return kinds.pop(), ""


def _refs(value: Any) -> list[Any]:
    return [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, dict)]


def _item(graph: Graph, node: Node) -> _Item:
    res = node.resource
    # DocumentReference.securityLabel holds CodeableConcepts, meta.security holds Codings
    labels = _pairs([*_codings(res.get("securityLabel")), *(c for c in _list(_dict(res.get("meta")).get("security")) if isinstance(c, dict))])
    related = set()
    for ref in [*_refs(_dict(res.get("context")).get("related")), *_refs(res.get("basedOn"))]:
        target = graph.find(ref)
        related |= _node_names(target) if target else {str(ref.get("reference"))}
    authors = set()
    for ref in [*_refs(res.get("author")), *_refs(res.get("performer"))]:
        target = graph.find(ref)
        authors |= _node_names(target) if target else {str(ref.get("reference"))}
    date = res.get("date") or res.get("issued") or res.get("effectiveDateTime")
    return _Item(
        str(res.get("resourceType")),
        frozenset(_node_names(node)),
        _pairs(_codings(_type_concept(res))),
        labels,
        frozenset(p for p in _list(_dict(res.get("meta")).get("profile")) if isinstance(p, str)),
        date if isinstance(date, str) else None,
        frozenset(related),
        frozenset(authors),
    )


# -- provisions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ask:
    """The question put to every Consent: this patient's item, to this recipient, now, for treatment."""

    graph: Graph
    patient: Party
    recipient: Party
    now: dt.datetime


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _crit_actor(prov: Mapping[str, Any], item: _Item, ask: _Ask, kind: str) -> Match:
    actors = _list(prov.get("actor"))
    if not actors:
        return _MATCH
    misses: list[str] = []
    unknown: list[str] = []
    for actor in actors:
        roles = _pairs(_codings(_dict(actor).get("role")))
        if (term.ROLE_RECIPIENT.system, term.ROLE_RECIPIENT.code) not in roles:
            shown = ", ".join(f"{s}|{c}" for s, c in sorted(roles)) or "none"
            unknown.append(f"its actor role ({shown}) is not IRCP, the only role the consent policy reads")
            continue
        ok, why = same_party(ask.graph, _dict(actor).get("reference"), ask.recipient)
        if ok:
            return _MATCH
        (misses if ok is False else unknown).append(why)
    if unknown:
        return None, unknown[0]
    return False, misses[0] + " as recipient" if misses else "names no recipient"


def _crit_action(prov: Mapping[str, Any], item: _Item, ask: _Ask, kind: str) -> Match:
    actions = _codings(prov.get("action"))
    if not _list(prov.get("action")):
        return _MATCH
    pairs = _pairs(actions)
    if (term.CONSENT_ACTION, term.ACTION_DISCLOSE.code) in pairs:
        return _MATCH
    foreign = [f"{s}|{c}" for s, c in sorted(pairs) if s != term.CONSENT_ACTION or c not in term.CONSENT_ACTIONS]
    if foreign or not pairs:
        return None, f"its action {', '.join(foreign) or '(no coding)'} is not one the consent policy reads"
    return False, f"covers action {', '.join(c for _, c in sorted(pairs))}, not disclose"


def _crit_purpose(prov: Mapping[str, Any], item: _Item, ask: _Ask, kind: str) -> Match:
    purposes = [p for p in _list(prov.get("purpose")) if isinstance(p, dict)]
    if not _list(prov.get("purpose")):
        return _MATCH
    codes = {str(p.get("code")) for p in purposes if p.get("system") == term.V3_ACT_REASON}
    whole = {term.PURPOSE_TREATMENT.code, term.PURPOSE_OF_USE.code}
    if codes & whole:
        return _MATCH
    if kind == "deny" and codes & term.TREAT_SPECIALISATIONS:
        return _MATCH  # denying a kind of treatment reaches treatment: be safe
    foreign = [f"{p.get('system')}|{p.get('code')}" for p in purposes if p.get("system") != term.V3_ACT_REASON]
    if foreign or len(codes) < len(purposes):
        return None, f"its purpose {', '.join(foreign) or '(no code)'} is not one the consent policy reads"
    return False, f"is for purpose {', '.join(sorted(codes))}, not treatment (TREAT)"


def _crit_class(prov: Mapping[str, Any], item: _Item, ask: _Ask, kind: str) -> Match:
    classes = [c for c in _list(prov.get("class")) if isinstance(c, dict)]
    if not _list(prov.get("class")):
        return _MATCH
    unknown = []
    for c in classes:
        code = c.get("code")
        if c.get("system") == term.RESOURCE_TYPES:
            if code == item.resource_type:
                return _MATCH
        elif isinstance(code, str) and "/StructureDefinition/" in code:
            if code in item.profiles:
                return _MATCH
        else:
            unknown.append(f"{c.get('system')}|{code}")
    if unknown:
        return None, f"its class {unknown[0]} is not one the consent policy reads"
    shown = ", ".join(str(c.get("code")) for c in classes)
    return False, f"covers {shown}, not {item.resource_type}"


def _crit_code(prov: Mapping[str, Any], item: _Item, ask: _Ask, kind: str) -> Match:
    if not _list(prov.get("code")):
        return _MATCH
    if item.abstract:
        return None, _PARTIAL
    wanted = _pairs(_codings(prov.get("code")))
    if wanted & item.codes:
        return _MATCH
    mine = {s for s, _ in item.codes}
    if not wanted or any(s not in mine for s, _ in wanted):
        return None, "its code is from a system the record's codings do not use, so they cannot be compared"
    shown = ", ".join(term.RECORD_KIND_BY_LOINC.get(c, c) for _, c in sorted(wanted))
    return False, f"covers {shown} only"


def _crit_label(prov: Mapping[str, Any], item: _Item, ask: _Ask, kind: str) -> Match:
    if not _list(prov.get("securityLabel")):
        return _MATCH
    if item.abstract:
        return None, _PARTIAL
    if _pairs(x for x in _list(prov.get("securityLabel")) if isinstance(x, dict)) & item.labels:
        return _MATCH
    return False, "covers records with other security labels"


def _crit_data_period(prov: Mapping[str, Any], item: _Item, ask: _Ask, kind: str) -> Match:
    if prov.get("dataPeriod") is None:
        return _MATCH
    if item.abstract:
        return None, _PARTIAL
    when = _instant(item.date)
    if when is None:
        return None, "its dataPeriod cannot be judged: the record has no readable date"
    ok, why = period_contains(prov["dataPeriod"], when[0])
    return (ok, why) if ok is not False else (False, "covers records of another period")


def _crit_data(prov: Mapping[str, Any], item: _Item, ask: _Ask, kind: str) -> Match:
    data = [d for d in _list(prov.get("data")) if isinstance(d, dict)]
    if not _list(prov.get("data")):
        return _MATCH
    if item.abstract:
        # a step: the request itself (records related to it), another request (none of these
        # records), or some records only
        kinds = set()
        for d in data:
            target = ask.graph.find(d.get("reference"))
            if target is not None and _node_names(target) & item.related:
                return _MATCH
            kinds.add(target.resource.get("resourceType") if target else _type_of_reference(_dict(d.get("reference"))))
        if kinds == {"ServiceRequest"}:
            return False, "covers the records of another request (provision.data)"
        return None, _PARTIAL
    for d in data:
        target = ask.graph.find(d.get("reference"))
        names = _node_names(target) if target else {str(_dict(d.get("reference")).get("reference"))}
        meaning = d.get("meaning")
        if meaning == "instance" and names & item.names:
            return _MATCH
        if meaning in ("related", "dependents") and names & (item.names | item.related):
            return _MATCH
        if meaning == "authoredby" and names & item.authors:
            return _MATCH
        if meaning not in ("instance", "related", "dependents", "authoredby"):
            return None, f"its data meaning {meaning!r} is not one the consent policy reads"
    return False, "names other resources in provision.data"


# What the data is comes first, so a consent about other data says so rather than naming its recipient.
_CRITERIA = (_crit_class, _crit_code, _crit_label, _crit_data, _crit_data_period, _crit_actor, _crit_action, _crit_purpose)


def _applies(prov: Mapping[str, Any], kind: str, item: _Item, ask: _Ask) -> Match:
    ok, why = period_contains(prov.get("period"), ask.now)
    if ok is not True:
        return ok, why
    unknown = []
    for criterion in _CRITERIA:
        ok, why = criterion(prov, item, ask, kind)
        if ok is False:
            return False, why
        if ok is None and why == _PARTIAL:
            # for a whole step: a permit for some records opens the step, a deny of some does not close it
            if kind == "deny":
                return False, "denies some records only"
            continue
        if ok is None:
            unknown.append(why)
    return (None, unknown[0]) if unknown else _MATCH


def _walk(prov: Any, base: str, rel: str, item: _Item, ask: _Ask, name: str) -> Ruling:
    """The ruling of one provision and its subtree on one item (its parent applies)."""
    where = f"{base}.{rel}"
    if rel.count(".provision[") > _MAX_DEPTH:
        return Ruling("unreadable", f"{name} nests provisions more than {_MAX_DEPTH} deep at {where}: refused to be safe", where)
    if not isinstance(prov, dict):
        return Ruling("unreadable", f"{name} cannot be read: {where} is not a provision", where)
    kind = prov.get("type")
    if kind not in ("permit", "deny"):
        return Ruling("unreadable", f"{name} cannot be read: {where}.type is {kind!r}, not permit or deny", where)
    ok, why = _applies(prov, kind, item, ask)
    if ok is False:
        return Ruling("silent", f"{name} {why}", where)
    if ok is None:
        if kind == "permit":
            return Ruling("silent", f"{name} cannot be read as a permit: {why}", where)
        return Ruling("unreadable", f"{name} has a deny that cannot be read ({why}): refused to be safe", where)
    rulings = [_walk(child, base, f"{rel}.provision[{i}]", item, ask, name) for i, child in enumerate(_list(prov.get("provision")))]
    for decision in ("deny", "unreadable", "permit"):
        for ruling in rulings:
            if ruling.decision == decision:
                return ruling
    verb = "permits" if kind == "permit" else "denies"
    return Ruling(kind, f"{name} {verb} it (provision.type {kind} at {rel})", where, name, rel)


def _consent_name(node: Node) -> str:
    ids = sorted(i.split("|", 1)[1] for i in _idents(node.resource))
    if ids:
        return f"the consent {ids[0]}"
    rid = node.resource.get("id")
    return f"the consent Consent/{rid}" if isinstance(rid, str) else f"the consent at {node.where}"


_STATUS_WHY = {
    "inactive": "was revoked (status inactive)",
    "entered-in-error": "was entered in error",
}


def _rule_consent(node: Node, item: _Item, ask: _Ask) -> Ruling:
    consent, name = node.resource, _consent_name(node)
    status = consent.get("status")
    if status != "active":
        return Ruling("silent", f"{name} {_STATUS_WHY.get(str(status), f'is {status}, not active')}", f"{node.where}.status")
    scopes = _pairs(_codings(consent.get("scope")))
    if (term.CONSENT_SCOPE, term.CONSENT_SCOPE_PRIVACY.code) not in scopes:
        shown = ", ".join(c for _, c in sorted(scopes)) or "none"
        return Ruling("silent", f"{name} is not a privacy consent (scope {shown})", f"{node.where}.scope")
    ok, why = same_party(ask.graph, consent.get("patient"), ask.patient)
    if ok is not True:
        return Ruling("silent", f"{name} is for another patient ({why})" if ok is False else f"{name}: {why}", f"{node.where}.patient")
    if "provision" not in consent:
        return Ruling("unreadable", f"{name} has no provision: its policy alone cannot be read, refused to be safe", f"{node.where}.provision")
    return _walk(consent["provision"], node.where, "provision", item, ask, name)


def _rule(consents: list[Node], item: _Item, ask: _Ask, what: str, limit: int = 3) -> Ruling:
    """Deny wins, then unreadable (a refusal), then permit; otherwise nothing permits it."""
    rulings = [_rule_consent(node, item, ask) for node in consents]
    for decision in ("deny", "unreadable", "permit"):
        for ruling in rulings:
            if ruling.decision == decision:
                return ruling
    if not rulings:
        return Ruling("silent", f"no consent for {what}: the patient has not given one")
    # the consents about other classes (the report consent, for records) say least: list them last
    shown = sorted(rulings, key=lambda r: (" covers " in r.reason and " only" not in r.reason, r.reason))
    # ``where``: the provision of the first consent named (the one a person reads first)
    return Ruling("silent", f"no consent permits {what}: " + "; ".join(r.reason for r in shown[:limit]), shown[0].where)


# -- the bundle's request, and the verdicts --------------------------------------------------


@dataclass(frozen=True)
class _Case:
    graph: Graph
    request: Node
    case_id: str
    consents: list[Node]


def _graph(bundle: Mapping[str, Any], consents: Iterable[Mapping[str, Any]], source: str) -> Graph:
    nodes = []
    for i, entry in enumerate(_list(bundle.get("entry"))):
        if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
            full = entry.get("fullUrl")
            nodes.append(Node(entry["resource"], f"Bundle.entry[{i}].resource", full if isinstance(full, str) else None))
    seen = {name for n in nodes for name in _node_names(n)}
    for resource in consents:
        if not isinstance(resource, dict):
            continue
        node = Node(dict(resource), f"{source}{resource.get('resourceType')}/{resource.get('id')}", None)
        if not _node_names(node) & seen:
            nodes.append(node)
            seen |= _node_names(node)
    return Graph(nodes, source)


def request_of(bundle: Mapping[str, Any]) -> Resource | None:
    """The second-opinion ServiceRequest of a bundle (the one with a case identifier), if any."""
    found = [e["resource"] for e in _list(bundle.get("entry")) if isinstance(e, dict) and isinstance(e.get("resource"), dict)
             and e["resource"].get("resourceType") == "ServiceRequest"]
    for sr in found:
        if any(isinstance(i, dict) and i.get("system") == term.SID_CASE for i in _list(sr.get("identifier"))):
            return sr
    return found[0] if found else None


def _case(bundle: Mapping[str, Any], consents: Iterable[Mapping[str, Any]], source: str) -> _Case | None:
    graph = _graph(bundle, consents, source)
    request = request_of(bundle)
    node = next((n for n in graph.nodes if n.resource is request), None)
    if node is None:
        return None
    case_id = next((str(i.get("value")) for i in _list(node.resource.get("identifier"))
                    if isinstance(i, dict) and i.get("system") == term.SID_CASE), str(node.resource.get("id")))
    return _Case(graph, node, case_id, [n for n in graph.nodes if n.resource.get("resourceType") == "Consent"])


def _record_id(resource: Mapping[str, Any], case_id: str) -> str:
    for i in _list(resource.get("identifier")):
        value = _dict(i).get("value")
        if _dict(i).get("system") == term.SID_RECORD and isinstance(value, str):
            return value.split("/", 1)[1] if value.startswith(f"{case_id}/") else value
    return str(resource.get("id"))


def _ask(case: _Case, recipient_field: str, now: dt.datetime) -> _Ask | str:
    request = case.request.resource
    patient = _party_of(case.graph, request.get("subject"))
    recipient = _party_of(case.graph, request.get(recipient_field))
    if patient is None:
        return "the request names no patient (ServiceRequest.subject)"
    if recipient is None:
        return f"the request names no recipient (ServiceRequest.{recipient_field})"
    return _Ask(case.graph, patient, recipient, now)


def records_verdict(
    bundle: Mapping[str, Any],
    now: dt.datetime,
    *,
    consents: Iterable[Mapping[str, Any]] = (),
    source: str = "",
) -> Verdict:
    """May the records of the bundle's request go to its performer at ``now``, and which of them.

    ``consents`` are more Consents of the patient (found on the server by patient), with any
    resources they point to (the actors they name); the Consents the bundle holds count too. The step itself needs a permit for DocumentReference; each
    record then moves only when the Consents permit that record.
    """
    case = _case(bundle, consents, source)
    if case is None:
        return Verdict("records", False, "no second-opinion ServiceRequest: there is nothing to send")
    ask = _ask(case, "performer", now)
    if isinstance(ask, str):
        return Verdict("records", False, ask)
    what = f"sending records to {ask.recipient.label}"
    step = _rule(case.consents, _Item("DocumentReference", related=frozenset(_node_names(case.request)), abstract=True), ask, what)
    if step.decision != "permit":
        return Verdict("records", False, step.reason, where=step.where)
    moves, withheld = [], []
    docs = [n for n in case.graph.nodes if n.resource.get("resourceType") == "DocumentReference" and n.where.startswith("Bundle")]
    for node in docs:
        record_id = _record_id(node.resource, case.case_id)
        kind, problem = item_kind(node.resource)
        if kind is None:
            withheld.append(Withheld(record_id, "unknown", f"withheld: {problem}", node.where))
            continue
        ruling = _rule(case.consents, _item(case.graph, node), ask, "it", limit=1)
        if ruling.decision == "permit":
            moves.append(record_id)
        else:
            why = ruling.reason.removeprefix("no consent permits it: ")
            withheld.append(Withheld(record_id, kind, f"the consent does not cover {kind} records: {why}", node.where, ruling.where))
    scope = "every record kind" if not withheld else f"{len(moves)} of {len(docs)} records"
    reason = f"{step.consent} permits disclosure to {ask.recipient.label} for treatment (provision.type permit at {step.rel}); covers {scope}"
    return Verdict("records", True, reason, tuple(moves), tuple(withheld), where=step.where)


def report_verdict(
    bundle: Mapping[str, Any],
    now: dt.datetime,
    *,
    consents: Iterable[Mapping[str, Any]] = (),
    source: str = "",
) -> Verdict:
    """May the opinion (the bundle's DiagnosticReport) go back to the request's requester at ``now``."""
    case = _case(bundle, consents, source)
    if case is None:
        return Verdict("report", False, "no second-opinion ServiceRequest: there is no report to send back")
    ask = _ask(case, "requester", now)
    if isinstance(ask, str):
        return Verdict("report", False, ask)
    what = f"sending the report back to {ask.recipient.label}"
    reports = [n for n in case.graph.nodes if n.resource.get("resourceType") == "DiagnosticReport"]
    items = [_item(case.graph, n) for n in reports] or [
        _Item("DiagnosticReport", codes=frozenset({(term.CONSULT_NOTE.system, term.CONSULT_NOTE.code)}), related=frozenset(_node_names(case.request)))
    ]
    for item in items:
        ruling = _rule(case.consents, item, ask, what)
        if ruling.decision != "permit":
            return Verdict("report", False, ruling.reason, where=ruling.where)
    return Verdict("report", True, f"{ruling.consent} permits sending the report back to {ask.recipient.label} for treatment (provision.type permit at {ruling.rel})", where=ruling.where)
