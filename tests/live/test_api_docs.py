"""docs/api.md runs: every ``python`` block, in order, in one namespace, on the live local servers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "api.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
# The page names the default ports; the tests' servers may listen elsewhere ($FHIR_SO_LIVE_PORT).
DOC_URLS = ("http://127.0.0.1:8090/fhir", "http://127.0.0.1:8091/fhir")


def blocks() -> list[str]:
    return BLOCK.findall(DOC.read_text(encoding="utf-8"))


def test_the_page_has_examples_for_every_part_of_the_api() -> None:
    code = "\n".join(blocks())
    for call in ("case_from_dict", "fhir_so.validate(", "fhir_so.push(", "fhir_so.pull(", "case_id=case.case_id",
                 "revoke_records_consent(", "with_opinion(", "report_back=True", "CaseNotFoundError", "find_request_id("):
        assert call in code, call


def test_every_example_runs_against_the_local_servers(fhir_server_pair: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the examples name files relative to the checkout
    namespace: dict[str, object] = {"__name__": "api_docs"}
    for n, code in enumerate(blocks(), 1):
        for doc_url, live_url in zip(DOC_URLS, fhir_server_pair):
            code = code.replace(doc_url, live_url)
        try:
            exec(compile(code, f"{DOC}:block-{n}", "exec"), namespace)  # noqa: S102 - the page's own examples
        except Exception as exc:  # show which block failed, with its code
            raise AssertionError(f"docs/api.md python block {n} failed: {type(exc).__name__}: {exc}\n{code}") from exc
