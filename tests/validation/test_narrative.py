"""Narrative XHTML safety: txt-1 / txt-2 and the HL7 validator's XHTML rules, passes and fails."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_so.validation import Validator
from fhir_so.validation.narrative import NarrativeChecker, check_xhtml

from .conftest import errors

NS = 'xmlns="http://www.w3.org/1999/xhtml"'


def patient(div: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "text": {"status": "generated", "div": div}}


def found(div: str) -> set[str]:
    return {rule for _, _, rule in check_xhtml(div)}


@pytest.mark.parametrize(
    "div",
    [
        f"<div {NS}><p>Ada <b>Lovelace</b>, born 1815</p></div>",
        f'<div {NS}><table class="grid"><tr><td colspan="2">x</td></tr></table><a href="https://example.org/x">link</a></div>',
        f"<div {NS}>caf&#233; &amp; &lt;tea&gt; &quot;&apos;&#xA0;&#169;</div>",
        f'<div {NS} xml:lang="en" lang="en"><img src="#pic" alt="pic"/></div>',
        f'<div {NS}><span style="color: red" id="a1">red</span><!-- a comment --></div>',
    ],
    ids=["basic", "table-and-link", "xml-entities", "image-only", "style-and-comment"],
)
def test_safe_narratives_pass(div: str) -> None:
    assert list(check_xhtml(div)) == []


@pytest.mark.parametrize(
    ("div", "rule", "message"),
    [
        (f"<div {NS}>text <script>alert(1)</script></div>", "xhtml-element", "Invalid element name in the XHTML ('script')"),
        (f'<div {NS}><p onclick="steal()">text</p></div>', "xhtml-attribute", "Invalid attribute name in the XHTML ('onclick' on 'p')"),
        (f'<div {NS}><object data="x.swf"/>text</div>', "xhtml-element", "Invalid element name in the XHTML ('object')"),
        (f'<div {NS}><a href="javascript:alert(1)">click</a></div>', "xhtml-href", "Hyperlink scheme 'javascript' in 'javascript:alert(1)' has active content, which is a security risk and not allowed"),
        (f'<div {NS}><!DOCTYPE foo [ <!ENTITY xxe SYSTEM "file:///etc/passwd">]><p>&xxe;</p></div>', "xhtml-doctype", "Malformed XHTML: Found a DocType declaration, and these are not allowed (XXE security vulnerability protection)"),
    ],
    ids=["script", "event-handler", "object", "javascript-link", "doctype-xxe"],
)
def test_unsafe_narratives_fail_txt1(div: str, rule: str, message: str) -> None:
    out = list(check_xhtml(div))
    assert ("error", message, rule) in out
    assert any(r == "txt-1" for _, _, r in out), "an illegal element or attribute also breaks txt-1, as the Java validator reports"


def test_malformed_xhtml_is_an_error() -> None:
    out = list(check_xhtml(f"<div {NS}><p>text</pa></div>"))
    assert any(r == "xhtml-syntax" and m.startswith("Error parsing XHTML: Malformed XHTML") for _, m, r in out)


def test_wrong_namespace_root_and_unknown_entity() -> None:
    assert "xhtml-namespace" in found('<div xmlns="http://www.w3.org/1999/xhtml"><p xmlns="http://example.org/other">x</p></div>')
    assert "xhtml-root" in found(f"<p {NS}>text</p>")
    assert ("error", "Invalid entity in the XHTML ('&bogus;')", "xhtml-entity") in list(check_xhtml(f"<div {NS}>a &bogus; b</div>"))


def test_html_entity_is_an_error_as_in_the_java_validator() -> None:
    # XML mode: only amp, lt, gt, quot and apos; the rest of the text is still checked
    assert list(check_xhtml(f"<div {NS}><p>CPT&reg;</p></div>")) == [("error", "Invalid entity in the XHTML ('&reg;')", "xhtml-entity")]
    assert ("error", "Invalid entity in the XHTML ('&nbsp;')", "xhtml-entity") in list(check_xhtml(f"<div {NS}>a&nbsp;b<script>x</script></div>"))
    assert {"xhtml-entity", "xhtml-element", "txt-1"} <= found(f"<div {NS}>a&nbsp;b<script>x</script></div>")


def test_block_inside_paragraph() -> None:
    assert ("error", "Invalid element name inside a paragraph in the XHTML ('div')", "xhtml-element") in list(check_xhtml(f"<div {NS}><p>a <div>b</div></p></div>"))


def test_txt2_needs_content() -> None:
    assert "txt-2" in found(f"<div {NS}>   <p> </p></div>")
    assert "txt-2" not in found(f'<div {NS}><img src="#x"/></div>')


def test_the_validator_reports_at_text_div(validator: Validator) -> None:
    issues = list(validator.iter_issues(patient(f"<div {NS}>hello <script>x()</script></div>")))
    assert ("txt-1", "Patient.text.div") in errors(issues)
    assert ("xhtml-element", "Patient.text.div") in errors(issues)
    assert not [e for e in errors(validator.iter_issues(patient(f"<div {NS}><p>hello</p></div>")))]


def test_checker_caches_verdicts_per_text() -> None:
    checker = NarrativeChecker()
    div = f"<div {NS}><script/>x</div>"
    first = list(checker.issues(div, "A.text.div"))
    second = list(checker.issues(div, "B.text.div"))
    assert [i.message for i in first] == [i.message for i in second]
    assert {i.expression for i in second} == {"B.text.div"}


def test_internal_links_must_resolve(validator: Validator) -> None:
    def links(res: dict[str, Any]) -> list[tuple[str, str, str]]:
        return [(i.severity, i.expression, i.message) for i in validator.iter_issues(res) if i.rule == "xhtml-link"]

    ok = patient(f'<div {NS}><p id="top">Doe</p><a href="#top">up</a> <a href="#p1">me</a></div>')
    assert links({**ok, "id": "p1"}) == []
    broken = patient(f'<div {NS}><table><tr><td><a href="#nowhere">see  there</a></td></tr></table></div>')
    assert links(broken) == [("error", "Patient.text.div", "Hyperlink '#nowhere' at 'div/table/tr/td/a' for 'see there' does not resolve")]
    twice = patient(f'<div {NS}><p id="x">a</p><span id="x">b</span><a href="#x">x</a></div>')
    assert [s for s, _, _ in links(twice)] == ["warning"]


def test_internal_links_resolve_in_contained_resources_and_the_bundle(validator: Validator) -> None:
    to_contained = {**patient(f'<div {NS}><a href="#org1">org</a></div>'), "contained": [{"resourceType": "Organization", "id": "org1", "name": "Clinic"}],
                    "managingOrganization": {"reference": "#org1"}}
    assert not [i for i in validator.iter_issues(to_contained) if i.rule == "xhtml-link"]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:6c3e6a8e-5d3a-4f7e-9a53-2a6f0f2d8b01", "resource": patient(f'<div {NS}><a href="#sec">elsewhere</a></div>')},
        {"fullUrl": "urn:uuid:6c3e6a8e-5d3a-4f7e-9a53-2a6f0f2d8b02", "resource": {**patient(f'<div {NS}><p id="sec">section</p></div>')}},
    ]}
    assert not [i for i in validator.iter_issues(bundle) if i.rule == "xhtml-link"]
    lonely = {**bundle, "entry": bundle["entry"][:1]}
    assert [i.expression for i in validator.iter_issues(lonely) if i.rule == "xhtml-link"] == ["Bundle.entry[0].resource.text.div"]
