"""A transaction sent as ordered batches, for servers without transactions (not atomic).

An entry whose resource references another entry's ``urn:uuid`` full URL waits for a later
batch, and the reference is rewritten to the ``Type/id`` the server gave. When an entry fails,
the entries of earlier batches stay applied; the error says how many. Idempotent re-runs
(conditional creates) make that recoverable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fhir_so.client.results import EntryResponse, TransactionResponse
from fhir_so.errors import CapabilityError, HttpError, ServerError, outcome_lines
from fhir_so.references import iter_references, rewrite_references

__all__ = ["batch_fallback", "dependency_levels"]

# What a server answers to a POST of a Bundle it cannot process at all.
_NO_SUCH_INTERACTION = frozenset({HTTPStatus.NOT_FOUND, HTTPStatus.METHOD_NOT_ALLOWED, HTTPStatus.NOT_IMPLEMENTED})


def dependency_levels(entries: Sequence[Mapping[str, Any]]) -> list[list[int]]:
    """Group entry indexes so each group only references entries of earlier groups."""
    by_full_url = {e.get("fullUrl"): i for i, e in enumerate(entries) if isinstance(e.get("fullUrl"), str)}
    depends: list[set[int]] = []
    for i, entry in enumerate(entries):
        targets = {by_full_url[r] for r, _ in iter_references(entry.get("resource")) if r in by_full_url}
        targets.discard(i)
        depends.append(targets)
    levels: list[list[int]] = []
    placed: set[int] = set()
    while len(placed) < len(entries):
        level = [i for i in range(len(entries)) if i not in placed and depends[i] <= placed]
        if not level:
            raise CapabilityError(
                "the server lacks transactions and these entries reference each other in a cycle, "
                "so they cannot be sent as ordered batches"
            )
        levels.append(level)
        placed.update(level)
    return levels


def _rewrite(entry: Mapping[str, Any], resolved: Mapping[str, str]) -> dict[str, Any]:
    """A copy of the entry whose references to already-created entries use their real ids."""
    return dict(rewrite_references(dict(entry), resolved)) if resolved else dict(entry)


def batch_fallback(
    base_url: str, bundle: Mapping[str, Any], send_batch: Callable[[dict[str, Any]], dict[str, Any]]
) -> dict[str, Any]:
    """Send a transaction's entries as batches (``send_batch`` posts one), each after what it references."""
    entries = list(bundle.get("entry") or [])
    results: dict[int, dict[str, Any]] = {}
    resolved: dict[str, str] = {}
    applied = 0
    for level in dependency_levels(entries):
        sent = {"resourceType": "Bundle", "type": "batch", "entry": [_rewrite(entries[i], resolved) for i in level]}
        try:
            answer = send_batch(sent)
        except HttpError as exc:
            if applied == 0 and exc.status in _NO_SUCH_INTERACTION:
                raise CapabilityError(f"{base_url} supports neither transactions nor batches ({exc.status})") from exc
            raise
        received = answer.get("entry") or []
        if len(received) != len(level):
            raise ServerError(
                f"POST {base_url}: the batch-response has {len(received)} entries "
                f"for {len(level)} sent; {applied} entries were applied before"
            )
        read = TransactionResponse.read(base_url, sent, answer)
        for index, reply, response in zip(level, received, read.responses):
            if not response.ok:
                raise _entry_failed(base_url, index, entries[index], response, applied)
            full_url = entries[index].get("fullUrl")
            if isinstance(full_url, str) and full_url.startswith("urn:") and response.resource_type and response.id:
                resolved[full_url] = f"{response.resource_type}/{response.id}"
            results[index] = reply
        applied += len(level)
    return {"resourceType": "Bundle", "type": "transaction-response", "entry": [results[i] for i in range(len(entries))]}


def _entry_failed(
    base_url: str, index: int, entry: Mapping[str, Any], response: EntryResponse, applied: int
) -> HttpError:
    detail = " ".join("; ".join(outcome_lines(response.outcome)).split()) or response.status_text or "no status"
    detail = detail if len(detail) <= 300 else detail[:299] + "…"
    what = (entry.get("resource") or {}).get("resourceType", "entry")
    return HttpError(
        f"POST {base_url} (batch fallback, not atomic): entry {index} ({what}) "
        f"failed: {detail}; {applied} entries were applied before it",
        status=response.status,
        method="POST",
        url=base_url,
        outcome=response.outcome,
    )
