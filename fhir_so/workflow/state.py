"""The state file of a transfer: which steps are done, so a killed run resumes without loss or duplicates.

A JSON object, rewritten atomically (:func:`fhir_so.jsonio.write_atomic`) after each step::

    {"format": "fhir-so-transfer-state/1",
     "transfer": {"direction": "records", "source": URL, "destination": URL, "request": ID},
     "transfer_id": UUID, "recorded": INSTANT,
     "steps": {"pulled": {...}, "pushed": {...}, "provenance": {...}, "done": {...}}}

``transfer`` names the transfer the file belongs to: the same file given for another transfer
is refused (exit 2) rather than silently mixing two. ``transfer_id`` and ``recorded`` are fixed
by the first run, so the Provenance a resumed run writes is the same one (a conditional create
on that id finds it instead of adding a second).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from fhir_so.errors import InputError
from fhir_so.jsonio import dumps, load_json, write_atomic

__all__ = ["STATE_FORMAT", "STEPS", "StateStore", "TransferState", "read_state_file"]

STATE_FORMAT = "fhir-so-transfer-state/1"
STEPS = ("pulled", "pushed", "provenance", "done")


@runtime_checkable
class StateStore(Protocol):
    """Somewhere else a transfer's state lives: one case's slot in a batch's state file
    (:mod:`fhir_so.workflow.batch`). ``load`` gives what ``save`` last stored (None at first);
    ``save`` must have stored it when it returns so that a run started after this one is killed
    finds it, or an earlier state from which redoing the steps since adds nothing (the batch
    writes a case's push at once, its other steps with the next write)."""

    def load(self) -> dict[str, Any] | None: ...

    def save(self, data: dict[str, Any]) -> None: ...


class TransferState:
    """Progress of one transfer; with no path it lives in memory only (nothing is written)."""

    def __init__(
        self, path: Path | None, key: dict[str, str], data: dict[str, Any] | None = None, store: StateStore | None = None
    ) -> None:
        self.path = path
        self.key = key
        self.store = store
        self.data: dict[str, Any] = data or {"format": STATE_FORMAT, "transfer": key, "steps": {}}

    @classmethod
    def open(cls, path: str | os.PathLike[str] | StateStore | None, key: dict[str, str]) -> TransferState:
        """Load the state of this transfer, or start a fresh one when the file (or store) has none yet."""
        if path is None:
            return cls(None, key)
        if isinstance(path, StateStore):
            held = path.load()
            if held is not None and (held.get("transfer") != key or not isinstance(held.get("steps"), dict)):
                raise InputError(f"the batch state holds another transfer here ({_describe(held.get('transfer'))}), "
                                 f"not {_describe(key)}; give a new --state file")
            return cls(None, key, held, store=path)
        p = Path(path)
        return cls(p, key, read_state_file(p, fmt=STATE_FORMAT, kind="transfer", items="steps", key=key, describe=_describe))

    @property
    def transfer_id(self) -> str | None:
        value = self.data.get("transfer_id")
        return value if isinstance(value, str) else None

    @property
    def recorded(self) -> str | None:
        value = self.data.get("recorded")
        return value if isinstance(value, str) else None

    def done(self, step: str) -> bool:
        return step in self.data["steps"]

    def get(self, step: str) -> dict[str, Any]:
        """What a finished step recorded (empty when the step is not done)."""
        found = self.data["steps"].get(step)
        return found if isinstance(found, dict) else {}

    @property
    def resumed(self) -> bool:
        """True when an earlier run already finished some step."""
        return bool(self.data["steps"])

    def begin(self, transfer_id: str, recorded: str) -> None:
        """Fix the transfer's id and time (kept when already set by an earlier run)."""
        self.data.setdefault("transfer_id", transfer_id)
        self.data.setdefault("recorded", recorded)

    def mark(self, step: str, info: dict[str, Any]) -> None:
        """Record a finished step and save the file (atomically) before anything else happens."""
        if step not in STEPS:
            raise ValueError(f"unknown step {step!r}")
        self.data["steps"][step] = info
        if self.store is not None:
            self.store.save(self.data)
        elif self.path is not None:
            write_atomic(self.path, dumps(self.data))


def _describe(key: Any) -> str:
    if not isinstance(key, dict):
        return "unknown"
    return f"{key.get('direction')} of request {key.get('request')} from {key.get('source')} to {key.get('destination')}"


def read_state_file(
    p: Path,
    *,
    fmt: str,
    kind: str,
    items: str,
    key: Any,
    describe: Callable[[Any], str],
    remedy: str = "give a new --state file",
) -> dict[str, Any] | None:
    """A state file's JSON when it belongs to ``key`` (None: no file yet, a fresh start).

    The file's ``format`` must be ``fmt``, its ``items`` an object and its ``kind`` field equal
    to ``key``; anything else is an InputError naming the file and the place (exit 2) and, for a
    file of another run, what to do (``remedy``).
    """
    if not p.exists():
        if not p.absolute().parent.is_dir():
            raise InputError("the folder of the state file does not exist", source=str(p))
        return None
    data = load_json(p)
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise InputError(f"not a fhir-so {kind} state file (expected format {fmt})", source=str(p), location="$.format")
    if not isinstance(data.get(items), dict):
        raise InputError(f"the state file has no {items} object", source=str(p), location=f"$.{items}")
    if data.get(kind) != key:
        raise InputError(
            f"this state file belongs to another {kind} ({describe(data.get(kind))}), not {describe(key)}; {remedy}",
            source=str(p),
            location=f"$.{kind}",
        )
    return data
