"""Transaction bundles made repeatable: unique business identifiers per run (live tests, benchmarks)."""

from __future__ import annotations

import copy
import re
from typing import Any


def with_unique_identifiers(bundle: dict[str, Any], token: str) -> dict[str, Any]:
    """A copy whose identifier values (and the conditional URLs naming them) end in -token.

    The servers may be reused across sessions: unique business identifiers make every
    conditional create or update a create (201) on every run.
    """
    out = copy.deepcopy(bundle)
    renamed: dict[str, str] = {}

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            ident = node.get("identifier")
            for item in ident if isinstance(ident, list) else [ident]:
                if isinstance(item, dict) and isinstance(item.get("value"), str):
                    item["value"] = renamed.setdefault(item["value"], f"{item['value']}-{token}")
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(out)
    for entry in out.get("entry", []):
        request = entry.get("request", {})
        for key in ("url", "ifNoneExist"):
            if key in request:
                request[key] = re.sub(
                    r"\|([^&]+)", lambda m: "|" + renamed.get(m.group(1), m.group(1)), request[key]
                )
    return out
