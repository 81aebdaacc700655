"""Conformance over the manifest corpus (tests/corpus/make_manifest_corpus.py, ~3,300 inputs with the
verdict and location each one should get): fhir-so validate must give the expected verdict, and the
error at the expected place, for at least 99% of them.

One documented policy differs from the manifest: a reference whose target cannot be resolved and
whose URL names a type the element does not allow (``Group/g1`` for a Patient-only subject) is a
warning here, as in HAPI's default reference policy, where the manifest expects an error.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_so.packages import PackageCache
from fhir_so.terminology import PACKAGE_NAME, PACKAGE_VERSION
from fhir_so.validation import Validator, ValidatorOptions
from fhir_so.validation.loading import load_definitions
from tests.prerequisites import need

POLICY_DIFFERENCES = {"target-type"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    cache = PackageCache()
    if (PACKAGE_NAME, PACKAGE_VERSION) not in cache.installed():
        need("the project's profiles are not built (fhir-so profiles build)")
    from tests.corpus.make_manifest_corpus import ROOT, generate

    out = tmp_path_factory.mktemp("manifest") / "corpus"
    generate(out, cache, ROOT / "examples")
    return out, json.loads((out / "manifest.json").read_text(encoding="utf-8"))["inputs"]


def _plain(expression: str) -> str | None:
    """The manifest's expression when it is a plain path we can compare (no where() or resource-relative form)."""
    return None if "(" in expression or not re.match(r"^[A-Z]", expression) else expression


def _near(a: str, b: str) -> bool:
    return a == b or a.startswith((b + ".", b + "[")) or b.startswith((a + ".", a + "["))


def test_expected_verdicts_and_locations(corpus: tuple[Path, list[dict[str, Any]]]) -> None:
    folder, rows = corpus
    definitions = load_definitions(PackageCache())
    # conformance is not policy: the business rows are judged with the rules asked for (--rules transfer)
    conformance, policy = Validator(definitions), Validator(definitions, options=ValidatorOptions(business_rules=True))
    misses = []
    judged = 0
    for row in rows:
        if row["rule"] in POLICY_DIFFERENCES:
            continue
        judged += 1
        resource = orjson.loads((folder / row["file"]).read_bytes())
        issues = list((policy if row["kind"] == "business" else conformance).iter_issues(resource))
        errors = [i for i in issues if i.is_error]
        if row["expect"] == "error":
            ok = bool(errors)
            where = _plain(row.get("expression") or "")
            if ok and where and resource.get("resourceType") != "Bundle":
                ok = any(_near(i.expression, where) for i in errors)
        else:
            ok = not errors and (row["expect"] != "warning" or any(i.severity == "warning" for i in issues))
        if not ok:
            misses.append(f"{row['file']}: expected {row['expect']} at {row.get('expression')}, got {[(i.rule, i.expression) for i in errors][:3]}")
    assert judged >= 3000
    assert len(misses) <= judged // 100, "\n".join(misses[:40])
