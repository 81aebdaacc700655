"""Generate the bad-input suite: tests/hostile/inputs/ (run: python tests/hostile/make_inputs.py).

Deterministic (no randomness, no clock): the same script writes the same bytes, and the files
are committed, so a change of the script shows as a diff of the inputs. Every field of the case
model and every top-level field of each resource of the built Bundle gets each mutation below;
file-level breakage (bytes that are not JSON, not UTF-8, too deep, too big a number) and NDJSON
breakage come on top. Things git cannot hold (devices, FIFOs, symbolic links out of the root,
files over 20 MiB) are made at test time by test_bad_inputs.py.

``MANIFEST.json`` says, per file, what it is (case, bundle, resource, ndjson, raw) and what is
expected: ``bad`` (every command must refuse it: exit 2, or 1 for validate) or ``any`` (it may
be accepted; it must still never cause a traceback or a message over the limits). The oracle
for a case is the case JSON Schema (fhir_so/schemas/case.schema.json, the spec of the file
format): a mutation the schema rejects is ``bad``. For FHIR resources, a null or a value of the
wrong JSON type is never valid R4 JSON, so ``bad``.
"""

from __future__ import annotations

import copy
import json
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OUT = HERE / "inputs"

Doc = Any
PathT = tuple[Any, ...]

# A case that uses every field of the case model (all optional parts present).
FULL_CASE: dict[str, Any] = {
    "case_id": "hostile-0001",
    "status": "active",
    "requested": "2026-03-01T09:30:00Z",
    "patient": {
        "identifier": {"system": "https://clinic.example.org/sid/mrn", "value": "MRN-1"},
        "name": {"family": "Doe", "given": ["Jane"], "prefix": ["Ms."]},
        "birth_date": "1970-01-31",
        "gender": "female",
    },
    "requester": {
        "kind": "practitioner",
        "identifier": {"system": "http://hl7.org/fhir/sid/us-npi", "value": "1111111111"},
        "name": "Dr. First",
        "specialty": "Urology",
    },
    "performer": {
        "kind": "practitioner",
        "identifier": {"system": "http://hl7.org/fhir/sid/us-npi", "value": "2222222222"},
        "name": "Dr. Second",
        "specialty": "Oncology",
    },
    "reasons": ["serious-diagnosis", "insurer-required"],
    "conditions": [{"system": "http://snomed.info/sct", "code": "363449006", "display": "Malignant tumor of testis"}],
    "priority": "urgent",
    "mode": "record-review",
    "questions": ["Is surgery needed?"],
    "insurance": {
        "payer": {
            "kind": "organization",
            "identifier": {"system": "https://payer.example.org/sid/org", "value": "PAY-1"},
            "name": "Payer Inc.",
        },
        "member_id": "M-77",
    },
    "records_consent": {
        "status": "active",
        "decision": "permit",
        "date": "2026-03-01T09:00:00Z",
        "period": {"start": "2026-03-01", "end": "2027-03-01"},
        "recipient": {
            "kind": "practitioner",
            "identifier": {"system": "http://hl7.org/fhir/sid/us-npi", "value": "2222222222"},
            "name": "Dr. Second",
            "specialty": "Oncology",
        },
        "record_kinds": ["lab-report", "pathology"],
    },
    "report_consent": {"status": "active", "decision": "permit", "date": "2026-03-01T09:00:00Z", "period": {"start": "2026-03-01"}},
    "records": [
        {
            "id": "lab-1",
            "kind": "lab-report",
            "title": "Tumor markers",
            "date": "2026-02-20T10:00:00Z",
            "author": {
                "kind": "organization",
                "identifier": {"system": "https://lab.example.org/sid/org", "value": "LAB-1"},
                "name": "City Lab",
            },
            "content": {"content_type": "text/plain", "data": "QUZQIDEyIG5nL21M", "title": "markers.txt"},
            "restricted": True,
        },
        {
            "id": "path-1",
            "kind": "pathology",
            "title": "Biopsy",
            "date": "2026-02-21T10:00:00Z",
            "content": {
                "content_type": "application/pdf",
                "url": "https://files.example.org/biopsy.pdf",
                "title": "biopsy.pdf",
                "size": 1024,
                "hash": "2jmj7l5rSw0yVb/vlWAYkK/YBwk=",
            },
        },
        {
            "id": "note-1",
            "kind": "patient-questions",
            "title": "My questions",
            "date": "2026-02-22T10:00:00Z",
            "content": {"content_type": "text/plain", "file": "attachment.txt"},
        },
    ],
    "opinion": {
        "status": "final",
        "issued": "2026-03-10T12:00:00Z",
        "conclusion": "Diagnosis confirmed.",
        "diagnoses": [{"system": "http://snomed.info/sct", "code": "363449006", "display": "Malignant tumor of testis"}],
        "concordance": "confirmed",
        "treatment_changed": False,
        "report": {"content_type": "text/plain", "data": "UmVwb3J0", "title": "report.txt"},
    },
    "earlier_opinions": [{"case_id": "hostile-0000", "summary": "First opinion"}],
}
ATTACHMENT_TEXT = b"What are my options?\n"

HUGE = 20_001  # over every text limit of the case model (10,000) but small enough to commit
DEEP = 200  # nesting that parses (orjson allows 1,024 levels) and must still be refused cleanly
UNICODE = {
    "rtl": "abc\u202egnp.exe",  # right-to-left override: reads as "exe.png"
    "nul": "a\u0000b",
    "zero-width": "Do\u200be",
    "newline": "line one\nError: forged second line",
    "ansi": "\u001b[31mred\u001b[0m",
}


def _deep(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


def _wrong_type(value: Any) -> Any:
    if isinstance(value, bool):
        return "yes"
    if isinstance(value, (int, float)):
        return "12"
    if isinstance(value, str):
        return 12345
    if isinstance(value, list):
        return {"0": value[0] if value else None}
    if isinstance(value, dict):
        return [value]
    return True


def _empty(value: Any) -> Any:
    if isinstance(value, str):
        return ""
    if isinstance(value, list):
        return []
    if isinstance(value, dict):
        return {}
    return 0


def _huge(value: Any) -> Any:
    if isinstance(value, list):
        return [value[0] if value else "x"] * 300
    if isinstance(value, dict):
        return {**value, **{f"extra{i}": i for i in range(300)}}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return 10**30
    return "A" * HUGE


MUTATIONS: dict[str, Callable[[Any], Any]] = {
    "null": lambda v: None,
    "wrong-type": _wrong_type,
    "empty": _empty,
    "huge": _huge,
    "deep": lambda v: _deep(DEEP),
}
STRING_MUTATIONS: dict[str, Callable[[Any], Any]] = {f"unicode-{k}": (lambda t: lambda v: t)(t) for k, t in UNICODE.items()}


def walk(doc: Any, path: PathT = ()) -> Iterator[tuple[PathT, Any]]:
    """Every place in a JSON document (containers and leaves), parents first."""
    yield path, doc
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from walk(value, path + (key,))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from walk(value, path + (i,))


def replaced(doc: Any, path: PathT, value: Any) -> Any:
    out = copy.deepcopy(doc)
    if not path:
        return value
    target = out
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return out


def slug(path: PathT) -> str:
    text = ".".join(str(p) for p in path) or "root"
    return text.replace("/", "_")[:80]


class Writer:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.manifest: dict[str, dict[str, str]] = {}

    def add(self, kind: str, name: str, content: bytes, expect: str, what: str) -> None:
        rel = f"{kind}/{len(self.manifest):04d}-{name}"
        path = self.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        self.manifest[rel] = {"kind": kind, "expect": expect, "what": what}

    def add_json(self, kind: str, name: str, doc: Any, expect: str, what: str, *, indent: bool = True) -> None:
        text = json.dumps(doc, indent=1 if indent else None, ensure_ascii=False)
        self.add(kind, f"{name}.json", text.encode("utf-8", "surrogatepass") + b"\n", expect, what)


def case_inputs(w: Writer, schema_valid: Callable[[Any], bool]) -> None:
    strings = 0
    tricks = sorted(STRING_MUTATIONS)
    for path, value in list(walk(FULL_CASE)):
        if not path:
            continue
        mutations = dict(MUTATIONS)
        if isinstance(value, str):  # two unicode tricks per text field, in turn, so every trick meets every kind of field
            for k in (strings, strings + 1):
                mutations[tricks[k % len(tricks)]] = STRING_MUTATIONS[tricks[k % len(tricks)]]
            strings += 1
        for name, mutate in mutations.items():
            doc = replaced(FULL_CASE, path, mutate(value))
            expect = "any" if schema_valid(doc) else "bad"
            w.add_json("case", f"{slug(path)}-{name}", doc, expect, f"case {'.'.join(map(str, path))}: {name}", indent=name != "deep")
    # path tricks in records[].content.file: every one must be refused
    tricks = {
        "dotdot": "../../../../../../etc/passwd",
        "dotdot-inside": "sub/../../attachment.txt",
        "absolute": "/etc/passwd",
        "proc-environ": "/proc/self/environ",
        "dev-zero": "/dev/zero",
        "dev-urandom": "/dev/urandom",
        "nul-byte": "attach\u0000ment.txt",
        "long-name": "a" * 256 + ".txt",
        "dir": ".",
        "missing": "no-such-file.txt",
        "empty": "",
        "blank": "   ",
        "home": "~/.ssh/id_rsa",
        "url-like": "file:///etc/passwd",
        "backslash": "..\\..\\etc\\passwd",
    }
    for name, trick in tricks.items():
        doc = replaced(FULL_CASE, ("records", 2, "content", "file"), trick)
        w.add_json("case", f"file-{name}", doc, "bad", f"case records[2].content.file: {name}")
        doc = replaced(FULL_CASE, ("opinion", "report"), {"content_type": "text/plain", "file": trick})
        w.add_json("case", f"report-file-{name}", doc, "bad", f"case opinion.report.file: {name}")
    # bad base64, unique ids, consent rule, conflicting parties: the model's own rules
    w.add_json("case", "data-not-base64", replaced(FULL_CASE, ("records", 0, "content", "data"), "!!!"), "bad", "records[0].content.data not base64")
    w.add_json("case", "two-sources", replaced(FULL_CASE, ("records", 0, "content", "url"), "https://x.example.org/a"), "bad", "data and url")
    dup = replaced(FULL_CASE, ("records", 1, "id"), "lab-1")
    w.add_json("case", "duplicate-record-id", dup, "bad", "two records with one id")
    w.add_json("case", "date-feb-30", replaced(FULL_CASE, ("requested",), "2026-02-30T09:30:00Z"), "bad", "impossible date")
    w.add_json("case", "date-year-0", replaced(FULL_CASE, ("patient", "birth_date"), "0000-01-01"), "bad", "year 0")
    w.add_json(
        "case",
        "party-conflict",
        replaced(FULL_CASE, ("performer", "name"), "Dr. Someone Else"),
        "bad",
        "one identifier, two names",
    )
    w.add_json("case", "resourceType-null", {**FULL_CASE, "resourceType": None}, "bad", "a case with resourceType null")
    w.add_json("case", "bigint-size", replaced(FULL_CASE, ("records", 1, "content", "size"), 10**40), "any", "size as a 41-digit integer")


def _built_bundle() -> dict[str, Any]:
    """The transaction Bundle of FULL_CASE, as fhir-so builds it (the attachment file read from here)."""
    sys.path.insert(0, str(ROOT))
    from fhir_so.bundle import build_bundle
    from fhir_so.case import case_from_dict

    tmp = OUT.parent / ".make-inputs-tmp"
    tmp.mkdir(exist_ok=True)
    (tmp / "attachment.txt").write_bytes(ATTACHMENT_TEXT)
    try:
        return build_bundle(case_from_dict(FULL_CASE, "FULL_CASE", tmp))
    finally:
        shutil.rmtree(tmp)


def bundle_inputs(w: Writer) -> None:
    bundle = _built_bundle()
    first_of_type: dict[str, int] = {}
    for i, entry in enumerate(bundle["entry"]):
        first_of_type.setdefault(entry["resource"]["resourceType"], i)
    for i, entry in enumerate(bundle["entry"]):
        resource = entry["resource"]
        rtype = resource["resourceType"]
        if first_of_type[rtype] != i:
            continue  # one resource of each type: the others have the same fields
        for key, value in resource.items():
            path = ("entry", i, "resource", key)
            mutations = {"null": MUTATIONS["null"], "wrong-type": MUTATIONS["wrong-type"], "empty": MUTATIONS["empty"]}
            if key in ("resourceType", "identifier", "status", "subject", "patient", "content", "name", "provision"):
                mutations["deep"] = MUTATIONS["deep"]
                mutations["huge"] = MUTATIONS["huge"]
            for name, mutate in mutations.items():
                doc = replaced(bundle, path, mutate(value))
                expect = "bad" if name in ("null", "wrong-type", "deep") else "any"
                w.add_json("bundle", f"{i:02d}-{rtype}-{key}-{name}", doc, expect, f"Bundle.entry[{i}].resource.{key} ({rtype}): {name}", indent=False)
    # the Bundle's own structure
    for key, value in [("resourceType", "Bundle"), ("type", "transaction"), ("entry", bundle["entry"])]:
        for name in ("null", "wrong-type", "empty"):
            doc = replaced(bundle, (key,), MUTATIONS[name](value))
            w.add_json("bundle", f"bundle-{key}-{name}", doc, "bad", f"Bundle.{key}: {name}", indent=False)
    for name, value in [("null", None), ("string", "x"), ("no-resource", {"fullUrl": "urn:uuid:1"}), ("resource-null", {"resource": None})]:
        doc = copy.deepcopy(bundle)
        doc["entry"].append(value)
        w.add_json("bundle", f"entry-{name}", doc, "bad", f"a Bundle entry: {name}", indent=False)
    for name, value in [("null", None), ("method-null", {"method": None, "url": "Patient"}), ("string", "POST")]:
        doc = replaced(bundle, ("entry", 0, "request"), value)
        w.add_json("bundle", f"request-{name}", doc, "bad", f"entry[0].request: {name}", indent=False)
    doc = replaced(bundle, ("entry", 5, "resource", "subject", "reference"), "urn:uuid:00000000-0000-0000-0000-000000000000")
    w.add_json("bundle", "dangling-urn", doc, "bad", "a urn: reference to no entry", indent=False)
    # single resources (validate reads them; build/parse refuse them)
    for i in sorted(first_of_type.values()):
        resource = bundle["entry"][i]["resource"]
        for key, value in resource.items():
            for name in ("null", "wrong-type"):
                doc = replaced(resource, (key,), MUTATIONS[name](value))
                w.add_json("resource", f"{resource['resourceType']}-{key}-{name}", doc, "bad", f"{resource['resourceType']}.{key}: {name}")


def ndjson_inputs(w: Writer) -> None:
    bundle = _built_bundle()
    good = [json.dumps(e["resource"]).encode() for e in bundle["entry"][:3]]
    cases = {
        "truncated-line": good[0] + b"\n" + good[1][:-10] + b"\n" + good[2] + b"\n",
        "array-line": good[0] + b"\n[1,2]\n",
        "null-line": b"null\n" + good[0] + b"\n",
        "string-line": b'"Patient"\n',
        "two-on-one-line": good[0] + good[1] + b"\n",
        "pretty-printed": json.dumps(json.loads(good[0]), indent=2).encode() + b"\n",
        "invalid-utf8": good[0] + b"\n\xff\xfe\xfd\n",
        "crlf": good[0] + b"\r\n" + good[1] + b"\r\n",
        "nul-bytes": good[0] + b"\n\x00\x00\x00\n",
        "bom-every-line": b"\xef\xbb\xbf" + good[0] + b"\n\xef\xbb\xbf" + good[1] + b"\n",
        "deep-line": b"[" * 5000 + b"]" * 5000 + b"\n",
        "bigint-line": b'{"resourceType":"Patient","id":"p","x":' + b"9" * 5000 + b"}\n",
        "lone-surrogate": b'{"resourceType":"Patient","id":"\\ud800"}\n',
        "resourceType-null": b'{"resourceType":null}\n',
        "no-newline-at-end": good[0],
        "only-blank-lines": b"\n\n   \n",
    }
    for name, content in cases.items():
        w.add("ndjson", f"{name}.ndjson", content, "bad" if name not in ("crlf", "no-newline-at-end", "only-blank-lines") else "any", f"NDJSON: {name}")


def raw_inputs(w: Writer) -> None:
    """File-level breakage: the same bytes are given to every command."""
    raws = {
        "empty": b"",
        "whitespace": b" \n\t ",
        "bom-only": b"\xef\xbb\xbf",
        "truncated": b'{"case_id": "x", "patient": {',
        "invalid-utf8": b'{"case_id": "\xff\xfe"}',
        "overlong-utf8": b'{"case_id": "\xc0\xaf\xe0\x80\xaf"}',
        "lone-surrogate": b'{"case_id": "\\ud800"}',
        "lone-low-surrogate": b'{"case_id": "a\\udfffb"}',
        "latin1": '{"case_id": "Müller"}'.encode("latin-1"),
        "utf16": '{"case_id": "x"}'.encode("utf-16"),
        "nan": b'{"case_id": NaN}',
        "infinity": b'{"x": Infinity}',
        "exp-overflow": b'{"x": 1e999}',
        "int-5000-digits": b'{"x": ' + b"1" * 5000 + b"}",
        "int-5000-digits-top": b"1" * 5000,
        "deep-array-5000": b"[" * 5000 + b"]" * 5000,
        "deep-object-2000": b'{"a":' * 2000 + b"1" + b"}" * 2000,
        "deep-array-1000": b"[" * 1000 + b"]" * 1000,
        "top-array": b"[]",
        "top-string": b'"hello"',
        "top-null": b"null",
        "top-number": b"42",
        "top-true": b"true",
        "trailing-garbage": b"{} {}",
        "trailing-comma": b'{"a": 1,}',
        "single-quotes": b"{'a': 1}",
        "comment": b'// comment\n{"a": 1}',
        "nul-in-text": b'{"a": 1}\x00',
        "control-in-string": b'{"a": "x\ty\x01"}',
        "resourceType-null": b'{"resourceType": null}',
        "resourceType-number": b'{"resourceType": 12}',
        "resourceType-object": b'{"resourceType": {"a": 1}}',
        "resourceType-unknown": b'{"resourceType": "Spaceship"}',
        "resourceType-huge": b'{"resourceType": "' + b"B" * 30_000 + b'"}',
        "bundle-nulls": b'{"resourceType": "Bundle", "type": null, "entry": null}',
        "bundle-entry-nulls": b'{"resourceType": "Bundle", "type": "transaction", "entry": [null, {"resource": null}]}',
        "bundle-resource-nulls": b'{"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": null}}]}',
        "bundle-empty": b'{"resourceType": "Bundle", "type": "transaction", "entry": []}',
        "bundle-searchset-empty": b'{"resourceType": "Bundle", "type": "searchset"}',
        "duplicate-keys": b'{"case_id": "a", "case_id": "b"}',
        "huge-key": b'{"' + b"k" * 30_000 + b'": 1}',
        "huge-string-1mb": b'{"case_id": "' + b"A" * 1_000_000 + b'"}',
        "many-keys": b"{" + b",".join(b'"k%d": %d' % (i, i) for i in range(20_000)) + b"}",
        "ansi-escape-key": b'{"\\u001b[2J\\u001b[31mowned": 1}',
        "rtl-key": '{"case\u202e_id": 1}'.encode("utf-8"),
    }
    for name, content in raws.items():
        w.add("raw", f"{name}.json", content, "bad", f"file: {name}")


def main() -> None:
    import jsonschema

    schema = json.loads((ROOT / "fhir_so" / "schemas" / "case.schema.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    w = Writer(OUT)
    case_inputs(w, validator.is_valid)
    bundle_inputs(w)
    ndjson_inputs(w)
    raw_inputs(w)
    (OUT / "case" / "attachment.txt").write_bytes(ATTACHMENT_TEXT)
    (OUT / "MANIFEST.json").write_text(json.dumps(w.manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    counts: dict[str, int] = {}
    for entry in w.manifest.values():
        counts[entry["kind"]] = counts.get(entry["kind"], 0) + 1
    print(f"wrote {len(w.manifest)} inputs to {OUT}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
    main()
