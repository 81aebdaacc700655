"""Narrative XHTML safety: txt-1 and txt-2 checked natively, as the HL7 Java validator checks them.

``Narrative.div`` must be well-formed XHTML in the XHTML namespace, rooted at ``<div>``, made
only of the basic HTML formatting elements and attributes FHIR allows (no ``<script>``, no
``<object>``, no event handlers such as ``onclick``, no ``<!DOCTYPE>`` or entity declarations,
no ``javascript:`` links), with no block element inside a paragraph and some non-whitespace
content. The lists of elements and attributes and the messages are those of the Java
validator's ``XhtmlValidator`` (read at the source); an illegal element or attribute is
reported both as itself and as the txt-1 constraint, as the Java validator does.

Parsing uses the standard library's expat parser (``xml.etree``) after two guards: any
``<!DOCTYPE`` / ``<!ENTITY`` is refused before parsing (no entity expansion, no external
entities), and HTML named entities (``&nbsp;``, ``&reg;``), which XML does not define, are
errors as in the Java validator (which reads narratives in XML mode), but are turned into
character references first so that the rest of the text is still checked. Results are cached per text: many
resources share their narrative.
"""

from __future__ import annotations

import html.entities
import re
import xml.etree.ElementTree as ET
from typing import Any, Iterator

from fhir_so.validation.findings import INVALID, INVARIANT, Issue

XHTML_NS = "http://www.w3.org/1999/xhtml"
_XML_NS = "{http://www.w3.org/XML/1998/namespace}"

HTML_ELEMENTS = frozenset({
    "p", "br", "div", "h1", "h2", "h3", "h4", "h5", "h6", "a", "span", "b", "em", "i", "strong",
    "small", "big", "tt", "dfn", "q", "var", "abbr", "acronym", "cite", "blockquote", "hr", "address", "bdo", "kbd", "sub", "sup",
    "ul", "ol", "li", "dl", "dt", "dd", "pre", "table", "caption", "colgroup", "col", "thead", "tr", "tfoot", "tbody", "th", "td",
    "code", "samp", "img", "map", "area",
})
HTML_ATTRIBUTES = frozenset({
    "title", "style", "class", "id", "lang", "xml:lang", "dir", "accesskey", "tabindex",
    "span", "width", "align", "valign", "char", "charoff", "abbr", "axis", "headers", "scope", "rowspan", "colspan",
})
HTML_COMBOS = frozenset({
    "a.href", "a.name", "img.src", "img.border", "div.xmlns", "blockquote.cite", "q.cite",
    "a.charset", "a.type", "a.hreflang", "a.rel", "a.rev", "a.shape", "a.coords",
    "img.alt", "img.longdesc", "img.height", "img.width", "img.usemap", "img.ismap", "map.name", "area.shape",
    "area.coords", "area.href", "area.nohref", "area.alt", "table.summary", "table.width", "table.border",
    "table.frame", "table.rules", "table.cellspacing", "table.cellpadding", "pre.space", "td.nowrap",
})
_BLOCKS = frozenset({"div", "blockquote", "table", "ol", "ul", "p"})
# URL schemes that run code when followed: never allowed in a narrative link or image
_ACTIVE_SCHEMES = frozenset({"javascript", "vbscript"})

TXT1 = (
    "txt-1: The narrative SHALL contain only the basic html formatting elements and attributes described in "
    "chapters 7-11 (except section 4 of chapter 9) and 15 of the HTML 4.0 standard, <a> elements (either name "
    "or href), images and internally contained style attributes"
)
TXT2 = "txt-2: The narrative SHALL have some non-whitespace content"

_ENTITY = re.compile(r"&([A-Za-z][A-Za-z0-9]*);")
_DECLARATION = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_XML_ENTITIES = frozenset({"amp", "lt", "gt", "quot", "apos"})
_CACHE_LIMIT = 4096

#: (severity, message, rule) findings of one narrative text
Finding = tuple[str, str, str]


class NarrativeChecker:
    """Checks ``Narrative.div`` values; holds a bounded cache of verdicts per text (no global state)."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[Finding, ...]] = {}

    def issues(self, text: str, loc: str) -> Iterator[Issue]:
        """Issues for one xhtml value at ``loc`` (none when it is safe and well-formed)."""
        found = self._cache.get(text)
        if found is None:
            found = tuple(check_xhtml(text))
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[text] = found
        for severity, message, rule in found:
            yield Issue(severity, INVARIANT if rule in ("txt-1", "txt-2") else INVALID, loc, message, rule)


def _entities(text: str, bad: list[str]) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name in _XML_ENTITIES:
            return m.group(0)
        # the Java validator reads narratives in XML mode: only XML's five entities are allowed,
        # an HTML one (&reg;, &nbsp;) is an error; it is still decoded so the rest can be checked
        bad.append(name)
        cp = html.entities.name2codepoint.get(name)
        return "" if cp is None else f"&#{cp};"

    return _ENTITY.sub(sub, text) if "&" in text else text


def check_xhtml(text: str) -> Iterator[Finding]:
    """The findings for one narrative text, in the Java validator's order: the txt-1 summary first."""
    own: list[Finding] = []
    if _DECLARATION.search(text):
        own.append(("error", "Malformed XHTML: Found a DocType declaration, and these are not allowed (XXE security vulnerability protection)", "xhtml-doctype"))
        yield ("error", TXT1, "txt-1")
        yield from own
        return
    bad: list[str] = []
    source = _entities(text, bad)
    for name in bad:
        own.append(("error", f"Invalid entity in the XHTML ('&{name};')", "xhtml-entity"))
    try:
        root = ET.fromstring(source)
    except ET.ParseError as exc:
        yield ("error", f"Error parsing XHTML: Malformed XHTML: {exc}", "xhtml-syntax")
        yield ("error", TXT1, "txt-1")
        if not re.sub(r"<[^>]*>", "", text).strip():
            yield ("error", TXT2, "txt-2")
        return
    ns, name = _split(root.tag)
    if ns != XHTML_NS:
        own.append(("error", f"Wrong namespace on the XHTML ('{ns}', should be '{XHTML_NS}')", "xhtml-namespace"))
    if name != "div":
        own.append(("error", f"Wrong name on the XHTML ('{name}') - must start with div", "xhtml-root"))
    illegal = _walk(root, own, in_para=False, parent_ns=ns, top=True)
    if illegal:
        yield ("error", TXT1, "txt-1")
    yield from own
    if not "".join(root.itertext()).strip() and root.find(f".//{{{XHTML_NS}}}img") is None:
        yield ("error", TXT2, "txt-2")


def _split(tag: str) -> tuple[str | None, str]:
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return None, tag


def _walk(node: ET.Element, out: list[Finding], *, in_para: bool, parent_ns: str | None, top: bool = False) -> bool:
    """Check one element and its descendants; True when an element or attribute breaks txt-1."""
    illegal = False
    ns, name = _split(node.tag)
    if not top:
        if ns != XHTML_NS and ns != parent_ns:  # only a namespace declared here; inherited ones were reported above
            out.append(("error", f"Wrong namespace on the XHTML ('{ns}', should be '{XHTML_NS}')", "xhtml-namespace"))
        if name not in HTML_ELEMENTS:
            out.append(("error", f"Invalid element name in the XHTML ('{name}')", "xhtml-element"))
            illegal = True
        if in_para and name in _BLOCKS:
            out.append(("error", f"Invalid element name inside a paragraph in the XHTML ('{name}')", "xhtml-element"))
    for raw, value in node.attrib.items():
        attr = "xml:" + raw[len(_XML_NS):] if raw.startswith(_XML_NS) else raw
        if attr in HTML_ATTRIBUTES or f"{name}.{attr}" in HTML_COMBOS or attr.startswith("xmlns"):
            if attr in ("href", "src"):
                scheme = value.split(":", 1)[0].strip().lower() if ":" in value else ""
                if scheme in _ACTIVE_SCHEMES:
                    out.append(("error", f"Hyperlink scheme '{scheme}' in '{value}' has active content, which is a security risk and not allowed", "xhtml-href"))
                    illegal = True
            continue
        if attr == "xml:space":
            out.append(("information", f"The attribute 'xml:space' is legal but has a fixed value of 'preserve'. Its use is discouraged", "xhtml-attribute"))
            continue
        out.append(("error", f"Invalid attribute name in the XHTML ('{attr}' on '{name}')", "xhtml-attribute"))
        illegal = True
    for child in node:
        if not isinstance(child.tag, str):
            continue  # comments and processing instructions (ElementTree drops them by default)
        illegal = _walk(child, out, in_para=in_para or name == "p", parent_ns=ns) or illegal
    return illegal


# -- internal links ---------------------------------------------------------------------------------------

#: (href, where in the div, the link's text) of every '#...' link, and the ids and names it may point to
Links = tuple[tuple[tuple[str, str, str], ...], tuple[str, ...]]


def narrative_links(text: str) -> Links:
    """Internal links (``<a href="#x">``) of one div and the anchors it offers (``@id``, ``a/@name``)."""
    if "#" not in text and "id=" not in text and "name=" not in text:
        return (), ()
    bad: list[str] = []
    try:
        root = ET.fromstring(_entities(text, bad)) if not _DECLARATION.search(text) else None
    except ET.ParseError:
        root = None
    if root is None:
        return (), ()
    links: list[tuple[str, str, str]] = []
    anchors: list[str] = []

    def walk(node: ET.Element, path: str) -> None:
        _, name = _split(node.tag)
        here = f"{path}/{name}" if path else name
        ident = node.attrib.get("id")
        if ident is not None:
            anchors.append(ident)
        if name == "a":
            if node.attrib.get("name") is not None and node.attrib.get("name") != ident:
                anchors.append(node.attrib["name"])
            href = node.attrib.get("href")
            if href is not None and href.startswith("#") and href != "#":
                links.append((href, here, " ".join("".join(node.itertext()).split())))
        for child in node:
            if isinstance(child.tag, str):
                walk(child, here)

    walk(root, "")
    return tuple(links), tuple(anchors)


class NarrativeLinkChecker:
    """``<a href="#x">`` in a narrative must resolve: to an element or resource id, or an anchor of a
    narrative, in the resource (contained ones included) or else in the enclosing Bundle, as the Java
    validator resolves it ("Hyperlink ... does not resolve"; more than one target is a warning)."""

    def __init__(self) -> None:
        self._cache: dict[str, Links] = {}

    def _links(self, text: str) -> Links:
        hit = self._cache.get(text)
        if hit is None:
            hit = narrative_links(text)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[text] = hit
        return hit

    def issues(self, resource: Any, loc: str) -> list[Issue]:
        """Findings for the internal links of every narrative in ``resource`` (entries and contained ones too)."""
        out: list[Issue] = []
        if not isinstance(resource, dict):
            return out
        divs: list[tuple[dict[str, Any], str, str]] = []  # (resource, its location, div)
        _divs(resource, loc or str(resource.get("resourceType")), divs, depth=0)
        if not any(self._links(d)[0] for _, _, d in divs):
            return out
        bundle_targets: dict[str, int] | None = None
        for res, at, div in divs:
            links, _ = self._links(div)
            if not links:
                continue
            targets = self._targets(res)
            for href, where, label in links:
                count = targets.get(href[1:], 0)
                if count == 0 and resource.get("resourceType") == "Bundle" and res is not resource:
                    if bundle_targets is None:
                        bundle_targets = self._targets(resource)
                    count = bundle_targets.get(href[1:], 0)
                if count == 0:
                    out.append(Issue("error", INVALID, f"{at}.text.div", f"Hyperlink '{href}' at '{where}' for '{label}' does not resolve", "xhtml-link"))
                elif count > 1:
                    out.append(Issue("warning", INVALID, f"{at}.text.div", f"Hyperlink '{href}' at '{where}' for '{label}' resolves to multiple targets ({count})", "xhtml-link"))
        return out

    def _targets(self, res: dict[str, Any]) -> dict[str, int]:
        """How many times each fragment is offered: ids of elements and resources, narrative anchors."""
        counts: dict[str, int] = {}
        stack: list[Any] = [res]
        while stack:
            cur = stack.pop()
            if isinstance(cur, dict):
                for k, v in cur.items():
                    if k == "id" and isinstance(v, str):
                        counts[v] = counts.get(v, 0) + 1
                    elif k == "div" and isinstance(v, str):
                        for a in self._links(v)[1]:
                            counts[a] = counts.get(a, 0) + 1
                    elif isinstance(v, (dict, list)):
                        stack.append(v)
            elif isinstance(cur, list):
                stack.extend(x for x in cur if isinstance(x, (dict, list)))
        return counts


def _divs(res: dict[str, Any], loc: str, out: list[tuple[dict[str, Any], str, str]], *, depth: int) -> None:
    if depth > 8:
        return
    text = res.get("text")
    if isinstance(text, dict) and isinstance(text.get("div"), str):
        out.append((res, loc, text["div"]))
    for key in ("contained", "entry", "parameter"):
        items = res.get(key)
        if not isinstance(items, list):
            continue
        for i, item in enumerate(items):
            inner = item if key == "contained" else (item.get("resource") if isinstance(item, dict) else None)
            if isinstance(inner, dict) and isinstance(inner.get("resourceType"), str):
                _divs(inner, f"{loc}.{key}[{i}]" + ("" if key == "contained" else ".resource"), out, depth=depth + 1)
