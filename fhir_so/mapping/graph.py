"""The resources of one case with their references resolved: what parsing reads from.

A bundle built here uses ``urn:uuid`` fullUrls; one pulled from a server uses absolute
fullUrls and relative references (``Patient/123``). The graph is the one Bundle index
(:class:`fhir_so.references.BundleIndex`) plus the source it came from, so a reference that
resolves to nothing is an error naming the file and where the reference stands.
"""

from __future__ import annotations

from typing import Any

from fhir_so.errors import InputError
from fhir_so.references import BundleIndex, Entry

# A graph's node is a Bundle entry of the shared index; the mapping modules call it a node.
Node = Entry


class Graph(BundleIndex):
    """A Bundle index that knows its source, for errors that name it."""

    def __init__(self, nodes: list[Node], source: str) -> None:
        super().__init__(nodes)
        self.source = source

    @property
    def nodes(self) -> list[Node]:
        return self.entries

    def resolve(self, ref: Any, where: str) -> Node:
        """The node a Reference points to; an error naming ``where`` when it dangles."""
        node = self.find(ref)
        if node is None:
            shown = ref.get("reference") if isinstance(ref, dict) else ref
            raise InputError(f"reference {shown!r} does not resolve to a resource in the bundle", source=self.source, location=where)
        return node

    def points_to(self, ref: Any, node: Node) -> bool:
        return self.find(ref) is node
