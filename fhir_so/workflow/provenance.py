"""The Provenance a transfer leaves on the destination: what was written, from where, when, by whom.

One transaction of two conditional creates, so writing it twice leaves one of each:

* a ``Device`` standing for fhir-so (identifier ``SID_SOFTWARE|fhir-so``), the assembler;
* the ``Provenance``: ``target`` = the resources the transfer wrote (versioned), ``recorded``
  = when the transfer began, ``agent`` = fhir-so (assembler) and the physician on whose
  behalf the data moved (author: the requester for records, the performer for the report),
  ``entity`` = the source ServiceRequest's URL (role ``source``). R4 Provenance has no
  identifier, so the transfer id is a ``meta.tag`` and the conditional create searches
  ``_tag=TAG_TRANSFER|<transfer id>``.

The source URL is carried as an identifier (system ``urn:ietf:rfc:3986``) rather than a
literal reference: servers such as HAPI refuse references to other servers by default.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from fhir_so import __version__
from fhir_so import terminology as term
from fhir_so.bundle import search_key

__all__ = ["DEVICE_ID", "provenance_bundle", "transfer_tag_query"]

DEVICE_ID = "fhir-so"
_DEVICE_URN = "urn:uuid:4a7c3a0e-2f8e-5b36-9d0c-6f0f2b1c7e11"
_PROVENANCE_URN = "urn:uuid:9b1e6d2c-7a4f-5c83-8e21-3d5a0c4b6f72"


def transfer_tag_query(transfer_id: str) -> str:
    """The search that finds the Provenance of one transfer."""
    return search_key(term.TAG_TRANSFER, transfer_id, "_tag")


def provenance_bundle(
    *,
    transfer_id: str,
    recorded: str,
    targets: Sequence[str],
    source_url: str,
    author: str | None,
    description: str,
) -> dict[str, Any]:
    """A transaction that writes the Device for fhir-so (once) and this transfer's Provenance (once)."""
    device = {
        "resourceType": "Device",
        "identifier": [{"system": term.SID_SOFTWARE, "value": DEVICE_ID}],
        "deviceName": [{"name": "fhir-so", "type": "user-friendly-name"}],
        "version": [{"value": __version__}],
    }
    agents: list[dict[str, Any]] = [{"type": term.PROVENANCE_ASSEMBLER.concept(), "who": {"reference": _DEVICE_URN, "display": "fhir-so"}}]
    if author is not None:
        agents.append({"type": term.PROVENANCE_AUTHOR.concept(), "who": {"reference": author}})
    provenance = {
        "resourceType": "Provenance",
        "meta": {"tag": [{"system": term.TAG_TRANSFER, "code": transfer_id, "display": description}]},
        "target": [{"reference": t} for t in targets],
        "recorded": recorded,
        "reason": [term.PURPOSE_TREATMENT.concept()],
        "activity": term.ACTIVITY_CREATE.concept(),
        "agent": agents,
        "entity": [
            {
                "role": "source",
                "what": {"identifier": {"system": term.URI, "value": source_url}, "display": description},
            }
        ],
    }
    device_query = search_key(term.SID_SOFTWARE, DEVICE_ID)
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": _DEVICE_URN, "resource": device, "request": {"method": "POST", "url": "Device", "ifNoneExist": device_query}},
            {
                "fullUrl": _PROVENANCE_URN,
                "resource": provenance,
                "request": {"method": "POST", "url": "Provenance", "ifNoneExist": transfer_tag_query(transfer_id)},
            },
        ],
    }
