"""Agreement with the HL7 validator engine (the reference validator, ``reference/``) on real inputs.

Inputs: the 44 published examples of the International Patient Summary ``hl7.fhir.uv.ips#2.0.0``
(installed by name with ``fhir-so packages install``) and the project's own examples
(``examples/*.bundle.json``, against the project profiles ``fhir-so.profiles#0.1.0``). Both
validators get the same packages: ``fhir-so validate --package hl7.fhir.uv.ips#2.0.0`` (the
project profiles are always loaded) and one run of the reference with ``-ig`` for both packages.

Per input, two checks:

- the same verdict (has an error or not);
- no error of fhir-so that the reference does not also report, compared by normalised path
  (the engine's ``/*Type/id*/`` annotations removed): fhir-so may miss things the engine finds
  (that is the verdict check's job), but must not invent errors.

The project's business rules are left out (issue code ``business-rule``): they are policy, not
conformance, and the engine knows nothing of them. Every disagreement must be listed, with its
reason, in ``reference_known_disagreements.json``; a listed one that no longer happens fails too,
so the list stays true. Each run writes ``REFERENCE_AGREEMENT.md`` (the scoreboard).

Needs Java 17 and Maven (the reference is built from ``reference/`` by ``./run setup``); the
engine's start costs about 15-20 s of CPU, the whole module about a minute of CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest

from tests import reference_validator as ref

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
EXAMPLES = ROOT / "examples"
KNOWN_FILE = HERE / "reference_known_disagreements.json"
REPORT = HERE / "REFERENCE_AGREEMENT.md"
IPS = "hl7.fhir.uv.ips#2.0.0"
PROJECT = "fhir-so.profiles#0.1.0"
IPS_EXAMPLES = 44
PROJECT_EXAMPLES = 10
#: a resource both must reject, so neither side can pass by finding nothing (an engine that loaded nothing)
BROKEN = {"resourceType": "Patient", "id": "broken", "gender": "unknown-gender", "birthDate": "2023-02-30"}


def _fhir_so(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run this checkout's ``fhir-so`` (the console script next to this Python)."""
    script = Path(sys.executable).parent / "fhir-so"
    cmd = [str(script)] if script.exists() else [sys.executable, "-c", "from fhir_so.cli import main; main()"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout, check=False, env=env)


@dataclass(frozen=True)
class Finding:
    path: str
    message: str


@dataclass
class Compared:
    """One input, both validators' errors (business rules left out)."""

    name: str
    ours: list[Finding]
    theirs: list[Finding]

    @property
    def verdict_agrees(self) -> bool:
        return bool(self.ours) == bool(self.theirs)

    @property
    def extra_paths(self) -> list[str]:
        """Where fhir-so reports an error and the reference reports none."""
        theirs = {f.path for f in self.theirs}
        return sorted({f.path for f in self.ours} - theirs)

    def disagreements(self) -> list[tuple[str, str, str]]:
        """(input, kind, path) of every disagreement: kind 'verdict' (path '') or 'extra-error'."""
        found = [] if self.verdict_agrees else [(self.name, "verdict", "")]
        return found + [(self.name, "extra-error", p) for p in self.extra_paths]


@dataclass
class Agreement:
    compared: list[Compared] = field(default_factory=list)
    reference_warnings: list[str] = field(default_factory=list)
    reference_packages: list[str] = field(default_factory=list)
    reference_cpu: float = 0.0
    #: files the reference's run added to or changed in the shared package cache (must be none)
    cache_changes: list[str] = field(default_factory=list)

    def disagreements(self) -> set[tuple[str, str, str]]:
        return {d for c in self.compared for d in c.disagreements()}

    def of(self, prefix: str) -> list[Compared]:
        return [c for c in self.compared if c.name.startswith(prefix)]

    def describe(self, key: tuple[str, str, str]) -> str:
        name, kind, path = key
        c = next(c for c in self.compared if c.name == name)
        if kind == "verdict":
            return f"{name}: verdict differs; fhir-so errors: {_listing(c.ours)}; reference errors: {_listing(c.theirs)}"
        ours = "; ".join(f.message for f in c.ours if f.path == path)
        near = [f for f in c.theirs if f.path.startswith(path) or path.startswith(f.path)]
        return f"{name}: fhir-so error at `{path}` ({ours[:200]}); the reference reports no error there" + (
            f" (nearby: {_listing(near)})" if near else ""
        )

    def markdown(self, known: dict[tuple[str, str, str], str]) -> str:
        lines = [
            "# fhir-so against the HL7 validator engine (the reference)",
            "",
            "Written by `tests/conformance/test_reference_agreement.py` on each run; do not edit by hand.",
            f"Reference: `ca.uhn.hapi.fhir:org.hl7.fhir.validation` (reference/pom.xml), offline, one run, {self.reference_cpu:.0f} s of CPU.",
            "",
            "| inputs | count | same verdict | invalid (fhir-so / reference) | fhir-so errors the reference does not report |",
            "|---|---|---|---|---|",
        ]
        for label, prefix in (("IPS 2.0.0 examples", "ips/"), ("project examples", "examples/")):
            rows = self.of(prefix)
            same = sum(c.verdict_agrees for c in rows)
            extra = sum(len(c.extra_paths) for c in rows)
            lines.append(
                f"| {label} | {len(rows)} | {same}/{len(rows)} | {sum(bool(c.ours) for c in rows)} / {sum(bool(c.theirs) for c in rows)} | {extra} |"
            )
        lines += ["", "Packages the reference could not find exactly (it uses the nearest version, or an empty stub):", ""]
        lines += [f"- {w.removeprefix('reference: warning: ')}" for w in self.reference_warnings] or ["- none"]
        lines += ["", "## Disagreements", ""]
        found = sorted(self.disagreements())
        if not found:
            lines.append("None.")
        for key in found:
            lines.append(f"- {self.describe(key)}")
            lines.append(f"  - reason: {known.get(key, 'UNEXPLAINED: investigate, then fix fhir-so or list it with its reason')}")
        return "\n".join(lines) + "\n"


def _listing(findings: list[Finding]) -> str:
    if not findings:
        return "none"
    shown = [f"`{f.path}` {f.message[:120]}" for f in findings[:3]]
    return "; ".join(shown) + (f" (+{len(findings) - 3} more)" if len(findings) > 3 else "")


def load_known() -> dict[tuple[str, str, str], str]:
    rows = json.loads(KNOWN_FILE.read_text(encoding="utf-8"))["disagreements"]
    return {(r["input"], r["kind"], r.get("path", "")): r["reason"] for r in rows}


def _fhir_so_errors(outcome: dict[str, Any]) -> list[Finding]:
    found = []
    for issue in outcome.get("issue", []):
        if issue.get("severity") not in ("error", "fatal") or issue.get("code") == "business-rule":
            continue
        where = (issue.get("expression") or issue.get("location") or [""])[0]
        text = issue.get("diagnostics") or (issue.get("details") or {}).get("text") or ""
        found.append(Finding(ref.normalise(where), text))
    return found


def compare(names: dict[Path, str], ours_bundle: dict[str, Any], theirs: ref.RunResult) -> Agreement:
    """Pair both validators' outcomes by input file."""
    ours: dict[Path, list[Finding]] = {}
    for entry in ours_bundle.get("entry", []):
        path = Path(unquote(urlparse(entry["fullUrl"]).path)).resolve()
        ours[path] = _fhir_so_errors(entry["resource"])
    result = Agreement(reference_warnings=theirs.warnings, reference_packages=list(theirs.stats.get("packages", [])), reference_cpu=theirs.cpu_seconds)
    by_path = {Path(o.input).resolve(): o for o in theirs.outcomes}
    for path, name in names.items():
        assert path in ours, f"fhir-so gave no outcome for {path}"
        assert path in by_path, f"the reference gave no outcome for {path}"
        reference_errors = [Finding(i.path, i.message) for i in by_path[path].errors]
        result.compared.append(Compared(name, ours[path], reference_errors))
    return result


def _files(root: Path) -> dict[Path, tuple[int, int]]:
    """(size, mtime) of every file under the package cache, links followed."""
    found = {}
    for folder, _dirs, names in os.walk(root, followlinks=True):
        for name in names:
            path = Path(folder) / name
            st = path.stat()
            found[path] = (st.st_size, st.st_mtime_ns)
    return found


def _require_java() -> None:
    missing = ref.tools_missing()
    if missing:
        message = f"the reference validator needs {', '.join(missing)} (a JDK 17 and Maven; ./run setup builds it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def reference_agreement(tmp_path_factory: pytest.TempPathFactory) -> Agreement:
    _require_java()
    installed = _fhir_so("packages", "install", IPS)
    assert installed.returncode == 0, f"fhir-so packages install {IPS} failed: {installed.stderr.strip()[-2000:]}"
    example_dir = ref.default_cache() / IPS / "package" / "example"
    names = {p.resolve(): f"ips/{p.name}" for p in sorted(example_dir.glob("*.json")) if not p.name.startswith(".")}
    names.update({p.resolve(): f"examples/{p.name}" for p in sorted(EXAMPLES.glob("*.bundle.json"))})
    assert sum(n.startswith("ips/") for n in names.values()) == IPS_EXAMPLES, f"expected {IPS_EXAMPLES} IPS examples in {example_dir}"
    assert sum(n.startswith("examples/") for n in names.values()) == PROJECT_EXAMPLES
    broken = tmp_path_factory.mktemp("reference-broken") / "Patient-broken.json"
    broken.write_text(json.dumps(BROKEN), encoding="utf-8")
    names[broken.resolve()] = "broken/Patient-broken.json"

    ref.build()
    before = _files(ref.default_cache())
    theirs = ref.run(list(names), igs=[IPS, PROJECT])
    after = _files(ref.default_cache())
    out = tmp_path_factory.mktemp("reference-agreement") / "fhir-so.json"
    ours = _fhir_so("validate", "--package", IPS, "--format", "json", "-o", str(out), *map(str, names))
    assert ours.returncode in (0, 1), f"fhir-so validate failed (exit {ours.returncode}): {ours.stderr.strip()[-2000:]}"
    agreement = compare(names, json.loads(out.read_text(encoding="utf-8")), theirs)
    agreement.cache_changes = sorted(str(p) for p in set(after) - set(before) | {p for p in before if after.get(p) != before[p]})
    REPORT.write_text(agreement.markdown(load_known()), encoding="utf-8")
    return agreement


def _unexplained(agreement: Agreement, kind: str) -> list[str]:
    known = load_known()
    return [agreement.describe(d) for d in sorted(agreement.disagreements()) if d[1] == kind and d not in known]


def test_both_reject_a_broken_resource(reference_agreement: Agreement) -> None:
    (broken,) = reference_agreement.of("broken/")
    for side in (broken.ours, broken.theirs):
        assert {"Patient.gender", "Patient.birthDate"} <= {f.path for f in side}, side


def test_same_verdict_as_the_reference(reference_agreement: Agreement) -> None:
    assert len(reference_agreement.compared) == IPS_EXAMPLES + PROJECT_EXAMPLES + 1
    unexplained = _unexplained(reference_agreement, "verdict")
    assert not unexplained, "verdicts differ from the HL7 engine (see " + REPORT.name + "):\n" + "\n".join(unexplained)


def test_no_error_the_reference_does_not_report(reference_agreement: Agreement) -> None:
    unexplained = _unexplained(reference_agreement, "extra-error")
    assert not unexplained, "fhir-so reports errors the HL7 engine does not (see " + REPORT.name + "):\n" + "\n".join(unexplained)


def test_known_disagreements_still_happen(reference_agreement: Agreement) -> None:
    """A listed disagreement that is gone must leave the list: the list says what is true today."""
    gone = sorted(set(load_known()) - reference_agreement.disagreements())
    assert not gone, f"no longer disagreements, remove them from {KNOWN_FILE.name}: {gone}"


def test_reference_wrote_nothing_into_the_shared_cache(reference_agreement: Agreement) -> None:
    """The HL7 engine indexes every folder it loads; fhir-so and SUSHI would take those files for resources."""
    assert not reference_agreement.cache_changes, reference_agreement.cache_changes[:10]


def test_reference_loaded_the_packages_asked(reference_agreement: Agreement) -> None:
    """The engine validated with IPS, its terminology and the project profiles loaded (offline, from the cache)."""
    loaded = reference_agreement.reference_packages
    assert IPS in loaded and PROJECT in loaded, loaded
    assert any(p.startswith("hl7.terminology.r4#") and "stub" not in p for p in loaded), loaded
    assert reference_agreement.reference_cpu > 1.0  # a real engine run, not an empty one
