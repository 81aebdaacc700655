"""The resources of one case with their references resolved: what parsing reads from.

A bundle built here uses ``urn:uuid`` fullUrls; one pulled from a server uses absolute
fullUrls and relative references (``Patient/123``). The graph resolves both, and a
reference that resolves to nothing is an error naming where it stands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from fhir_so.errors import InputError

Resource = dict[str, Any]


@dataclass(frozen=True)
class Node:
    """One resource and where it stands in the input (a FHIRPath-like location)."""

    resource: Resource
    where: str
    full_url: str | None = None


class Graph:
    """Resources indexed by every name a reference may use for them."""

    def __init__(self, nodes: list[Node], source: str) -> None:
        self.nodes = nodes
        self.source = source
        self._by_name: dict[str, Node] = {}
        for node in nodes:
            for name in _names(node):
                self._by_name.setdefault(name, node)

    def of_type(self, resource_type: str) -> Iterator[Node]:
        return (n for n in self.nodes if n.resource.get("resourceType") == resource_type)

    def find(self, ref: Any) -> Node | None:
        """The node a Reference points to, or None (logical references included)."""
        if not isinstance(ref, dict) or not isinstance(ref.get("reference"), str):
            return None
        target = ref["reference"]
        node = self._by_name.get(target)
        if node is None and "/_history/" in target:
            node = self._by_name.get(target.split("/_history/")[0])
        if node is None and "://" in target:
            parts = target.rstrip("/").split("/")
            node = self._by_name.get("/".join(parts[-2:]))
        return node

    def resolve(self, ref: Any, where: str) -> Node:
        """The node a Reference points to; an error naming ``where`` when it dangles."""
        node = self.find(ref)
        if node is None:
            shown = ref.get("reference") if isinstance(ref, dict) else ref
            raise InputError(f"reference {shown!r} does not resolve to a resource in the bundle", source=self.source, location=where)
        return node

    def points_to(self, ref: Any, node: Node) -> bool:
        return self.find(ref) is node


def _names(node: Node) -> list[str]:
    res = node.resource
    names = []
    if node.full_url:
        names.append(node.full_url)
        if "://" in node.full_url and not node.full_url.startswith("urn:"):
            parts = node.full_url.rstrip("/").split("/")
            names.append("/".join(parts[-2:]))
    if isinstance(res.get("id"), str):
        names.append(f"{res.get('resourceType')}/{res['id']}")
    return names
