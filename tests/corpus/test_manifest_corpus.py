"""The manifest corpus generator: enough inputs, every rule kind, each input described and different from its base."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from fhir_so.packages import PackageCache
from tests.corpus.make_manifest_corpus import ROOT, generate

KINDS = {"cardinality", "type", "format", "structure", "fixed", "pattern", "binding", "slicing", "reference", "invariant", "valid", "business"}


def test_corpus_covers_every_rule_kind_with_a_manifest(tmp_path: Path) -> None:
    rows = generate(tmp_path / "corpus", PackageCache(), ROOT / "examples")
    assert len(rows) >= 400
    assert set(Counter(r.kind for r in rows)) == KINDS
    assert {r.rule for r in rows} >= {"ele-1", "ext-1", "dom-2", "dom-3", "dom-4", "dom-5", "ref-1", "so-att-1", "so-att-2", "slice-min", "slice-max"}
    manifest = json.loads((tmp_path / "corpus" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["count"] == len(rows) == len(manifest["inputs"])
    files = {p.name for p in (tmp_path / "corpus").glob("*.json")} - {"manifest.json"}
    assert files == {r.file for r in rows}
    assert all(r.expect in ("valid", "warning", "error") for r in rows)
    assert not [r for r in rows if r.kind == "business" and r.hapi]


def test_each_mutation_differs_from_its_base(tmp_path: Path) -> None:
    rows = generate(tmp_path / "corpus", PackageCache(), ROOT / "examples")
    base_of: dict[str, str] = {r.base: r.file for r in rows if r.rule == "base"}
    for row in rows:
        if row.rule == "base" or row.kind == "business":
            continue
        mutated = (tmp_path / "corpus" / row.file).read_text(encoding="utf-8")
        assert mutated != (tmp_path / "corpus" / base_of[row.base]).read_text(encoding="utf-8"), row
