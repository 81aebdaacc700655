"""A package's examples are its example/*.json resources, never the .index.json that SUSHI's loader writes beside them."""

from __future__ import annotations

import json
from pathlib import Path

from fhir_so.packages import load_folder
from fhir_so.profiles import examples
from tests.packages.package_helpers import write_package


def test_examples_skip_dot_files(tmp_path: Path) -> None:
    folder = write_package(tmp_path / "p", "example.p", "1.0.0", [])
    (folder / "package" / "example").mkdir()
    (folder / "package" / "example" / "Patient-a.json").write_text(json.dumps({"resourceType": "Patient", "id": "a"}), encoding="utf-8")
    (folder / "package" / "example" / ".index.json").write_text('{"index-version": 2, "files": []}', encoding="utf-8")
    assert examples(load_folder(folder)) == [{"resourceType": "Patient", "id": "a"}]
