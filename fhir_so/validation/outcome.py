"""Rendering findings: an OperationOutcome per input, lines of text, and JUnit XML (streamed).

For several inputs the JSON form is a ``collection`` Bundle with one OperationOutcome per input
(``fullUrl`` names the input: ``file:///path`` or ``file:///path#line=N``); it is written entry
by entry, so memory stays flat however many inputs there are.
"""

from __future__ import annotations

from typing import IO, Callable, Iterable, Protocol, Sequence
from xml.sax.saxutils import escape, quoteattr

import orjson

from fhir_so.jsonio import atomic_writer
from fhir_so.validation.findings import Issue
from fhir_so.validation.sources import Input


class ResultLike(Protocol):
    """One input's findings (``validator.Result`` or a remote validator's)."""

    @property
    def input(self) -> Input: ...

    @property
    def issues(self) -> list[Issue]: ...

_OK = {
    "severity": "information",
    "code": "informational",
    "details": {"text": "No issues detected during validation"},
    "diagnostics": "No issues detected during validation",
}


def to_operation_outcome(issues: Iterable[Issue]) -> dict[str, object]:
    """An OperationOutcome with one issue per finding (an information issue when there is none)."""
    out = [i.to_json() for i in issues]
    return {"resourceType": "OperationOutcome", "issue": out or [dict(_OK)]}


def issues_from_outcome(outcome: dict[str, object]) -> list[Issue]:
    """Findings back from an OperationOutcome (for a server's $validate answer)."""
    found = []
    for raw in outcome.get("issue") or []:  # type: ignore[attr-defined]
        if not isinstance(raw, dict):
            continue
        sev = raw.get("severity") if raw.get("severity") in ("fatal", "error", "warning", "information") else "error"
        where = raw.get("expression") or raw.get("location") or [""]
        text = raw.get("diagnostics") or (raw.get("details") or {}).get("text") or ""
        rule = ""
        for coding in (raw.get("details") or {}).get("coding") or []:
            if isinstance(coding, dict) and coding.get("code"):
                rule = str(coding["code"])
        if text == _OK["diagnostics"] or (sev == "information" and text.startswith("No issues detected")):
            continue
        found.append(Issue(str(sev), str(raw.get("code") or "processing"), str(where[0]), str(text), rule or "server"))
    return found


def text_lines(source: str, issues: Sequence[Issue], *, quiet: bool = False) -> list[str]:
    """Human-readable lines: one per issue, then a verdict line for the input."""
    lines = [f"{source}: {i.severity}: {i.expression}: {i.message} [{i.rule}]" for i in issues if not (quiet and i.severity == "information")]
    errors = sum(1 for i in issues if i.is_error)
    warnings = sum(1 for i in issues if i.severity == "warning")
    verdict = "INVALID" if errors else "valid"
    lines.append(f"{source}: {verdict} ({errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)})")
    return lines


class BundleWriter:
    """Writes a collection Bundle of OperationOutcomes to a stream, one entry at a time."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self._first = True
        out.write(b'{"resourceType":"Bundle","type":"collection","entry":[')

    def add(self, uri: str, outcome: dict[str, object]) -> None:
        self._out.write((b"" if self._first else b",") + b"\n" + orjson.dumps({"fullUrl": uri, "resource": outcome}))
        self._first = False

    def close(self) -> None:
        self._out.write(b"\n]}\n")


class JUnitWriter:
    """Writes JUnit XML: one testsuite, one testcase per input, a failure per input with errors."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        out.write(b'<?xml version="1.0" encoding="UTF-8"?>\n<testsuites name="fhir-so validate">\n<testsuite name="fhir-so validate">\n')

    def add(self, source: str, issues: Sequence[Issue], error: str | None = None) -> None:
        name = quoteattr(source)
        body = ""
        if error is not None:
            body = f'<error message={quoteattr(error)} type="bad-input">{escape(error)}</error>'
        else:
            errors = [i for i in issues if i.is_error]
            if errors:
                detail = "\n".join(f"{i.severity}: {i.expression}: {i.message} [{i.rule}]" for i in errors)
                body = f'<failure message={quoteattr(f"{len(errors)} error(s); first: {errors[0].expression}: {errors[0].message}")} type="invalid">{escape(detail)}</failure>'
            others = [i for i in issues if not i.is_error]
            if others:
                body += "<system-out>" + escape("\n".join(f"{i.severity}: {i.expression}: {i.message} [{i.rule}]" for i in others)) + "</system-out>"
        self._out.write(f'<testcase classname="fhir-so.validate" name={name}>{body}</testcase>\n'.encode("utf-8"))

    def close(self) -> None:
        self._out.write(b"</testsuite>\n</testsuites>\n")


class Summary:
    """Counts over a run and the exit code they give (0 valid, 1 invalid, 2 bad input)."""

    def __init__(self) -> None:
        self.inputs = 0
        self.invalid = 0
        self.bad_input = 0
        self.errors = 0
        self.warnings = 0

    @property
    def exit_code(self) -> int:
        return 2 if self.bad_input else 1 if self.invalid else 0

    def line(self) -> str:
        return (
            f"{self.inputs} input{'s' * (self.inputs != 1)}: {self.inputs - self.invalid - self.bad_input} valid, "
            f"{self.invalid} invalid, {self.bad_input} unreadable ({self.errors} errors, {self.warnings} warnings)"
        )


def write_report(
    results: Iterable[ResultLike],
    fmt: str,
    out: IO[bytes],
    *,
    on_bad_input: Callable[[str], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Summary:
    """Render a stream of results as text, json (OperationOutcome or a Bundle of them) or junit; returns the counts."""
    summary = Summary()
    it = iter(results)
    bundle: BundleWriter | None = None
    junit = JUnitWriter(out) if fmt == "junit" else None
    pending_single: tuple[str, dict[str, object]] | None = None
    for result in it:
        summary.inputs += 1
        if on_progress is not None and summary.inputs % 1000 == 0:
            on_progress(summary.inputs)
        err = result.input.error
        if err is not None:
            summary.bad_input += 1
            if on_bad_input is not None:
                on_bad_input(str(err))
        elif any(i.is_error for i in result.issues):
            summary.invalid += 1
        summary.errors += sum(1 for i in result.issues if i.is_error)
        summary.warnings += sum(1 for i in result.issues if i.severity == "warning")
        if fmt == "text":
            if err is not None:
                out.write(f"{result.input.source}: BAD INPUT: {err}\n".encode("utf-8"))
            else:
                out.write(("\n".join(text_lines(result.input.source, result.issues)) + "\n").encode("utf-8"))
        elif junit is not None:
            junit.add(result.input.source, result.issues, str(err) if err is not None else None)
        else:
            if err is not None:
                oo: dict[str, object] = {
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "fatal", "code": "structure", "diagnostics": str(err), "details": {"text": str(err)}}],
                }
            else:
                oo = to_operation_outcome(result.issues)
            # one input: a bare OperationOutcome; from the second on: a Bundle of them
            if pending_single is None and bundle is None:
                pending_single = (result.input.uri, oo)
                continue
            if bundle is None:
                bundle = BundleWriter(out)
                assert pending_single is not None
                bundle.add(*pending_single)
            bundle.add(result.input.uri, oo)
    if fmt == "json":
        if bundle is not None:
            bundle.close()
        elif pending_single is not None:
            out.write(orjson.dumps(pending_single[1], option=orjson.OPT_INDENT_2) + b"\n")
        else:
            BundleWriter(out).close()
    if junit is not None:
        junit.close()
    return summary


def write_report_file(
    results: Iterable[ResultLike],
    fmt: str,
    path: str,
    *,
    on_bad_input: Callable[[str], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Summary:
    """Like :func:`write_report`, streamed into a temporary file renamed over ``path`` at the end (never half-written)."""
    with atomic_writer(path) as fh:
        return write_report(results, fmt, fh, on_bad_input=on_bad_input, on_progress=on_progress)
