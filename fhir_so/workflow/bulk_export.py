"""``fhir-so export``: a Bulk Data export into a folder, resumable, cancellable, each file verified.

The folder gets one file per manifest entry: ``Type.N.ndjson`` for the output (N counts the
files of that type from 1, in manifest order), ``errors/OperationOutcome.N.ndjson`` for the
server's error files, ``manifest.json`` (the manifest as the server sent it), and the state
file ``.fhir-so-export.json``::

    {"format": "fhir-so-export-state/1",
     "export": {"server": URL, "request": {level, group, types, since, patients}},
     "status_url": URL | null, "manifest": {...} | null,
     "files": {URL: {"name": "Patient.1.ndjson", "resources": 12, "bytes": 5120, "sha256": HEX}},
     "complete": false}

Written atomically after each step, so a run killed at any moment and started again resumes:
the status URL is polled again (the same job, when the server still has it; when it answers
404 the job is gone and a new one starts, the old job's files removed), and the files already
downloaded and still matching their recorded size and hash are not fetched again. A state of
another export (another server or other parameters) is refused (exit 2): give another folder.
A complete state is reported again without a request.

Ctrl-C (``KeyboardInterrupt``) while the job runs or its files download cancels the job on the
server (``DELETE`` on the status URL), removes what this export wrote and the state, and is
raised again for the CLI to exit 130. After a complete download the job is deleted on the
server (the spec's way of saying the files may go) unless ``keep_job``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from fhir_so.client import FhirClient
from fhir_so.client.bulk import MAX_FILE_BYTES, BulkClient, ExportRequest, Manifest, NdjsonSink, PollPolicy, Status
from fhir_so.errors import FhirSoError, InputError, NotFoundError
from fhir_so.jsonio import atomic_writer, dumps, write_atomic
from fhir_so.workflow.state import read_state_file

__all__ = ["ExportCancelled", "ExportEvents", "ExportResult", "STATE_FILE", "export"]

STATE_FILE = ".fhir-so-export.json"
STATE_FORMAT = "fhir-so-export-state/1"
MANIFEST_FILE = "manifest.json"
ERRORS_DIR = "errors"


class ExportCancelled(KeyboardInterrupt):
    """Ctrl-C stopped the export; ``problem`` is None when the job was cancelled on the server and the files removed."""

    def __init__(self, problem: str | None) -> None:
        super().__init__(problem or "export cancelled")
        self.problem = problem


class ExportEvents:
    """What an export tells its caller as it goes (the CLI draws progress bars from it); no-ops here."""

    def kicked_off(self, status_url: str, resumed: bool) -> None:
        """The job to wait for (``resumed``: an earlier run's job, still on the server)."""

    def polled(self, progress: str | None, wait: float) -> None:
        """The job is still running; the next poll is in ``wait`` seconds."""

    def job_gone(self, status_url: str) -> None:
        """An earlier run's job is no longer on the server: a new one starts."""

    def file_started(self, name: str, index: int, total: int) -> None:
        """Downloading file ``index`` (1-based) of ``total``."""

    def file_bytes(self, count: int) -> None:
        """``count`` more bytes of the current file arrived."""

    def file_done(self, name: str, resources: int, skipped: bool) -> None:
        """A file is on disk and verified (``skipped``: an earlier run downloaded it)."""


@dataclass
class ExportResult:
    """What an export did: where the files are, how many resources of each type, the errors."""

    server: str
    folder: str
    transaction_time: str
    files: list[dict[str, Any]]
    error_files: list[dict[str, Any]]
    error_issues: int
    downloaded: int
    reused: int
    job_deleted: bool
    already_complete: bool = False
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """0, or 3 when the server reported errors for some resources (its error files)."""
        return 3 if self.error_issues else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "folder": self.folder,
            "transactionTime": self.transaction_time,
            "counts": self.counts,
            "files": self.files,
            "errorFiles": self.error_files,
            "errorIssues": self.error_issues,
            "downloaded": self.downloaded,
            "reused": self.reused,
            "jobDeleted": self.job_deleted,
            "alreadyComplete": self.already_complete,
        }

    def summary(self) -> list[str]:
        total = sum(self.counts.values())
        lines = [
            f"exported {total} resources in {len(self.files)} files to {self.folder} "
            f"(transaction time {self.transaction_time}; {self.downloaded} downloaded, {self.reused} from an earlier run)"
        ]
        lines.extend(f"  {t}: {n}" for t, n in sorted(self.counts.items()))
        if self.error_files:
            lines.append(
                f"the server reported {self.error_issues} error(s) in {len(self.error_files)} file(s): "
                + ", ".join(f["path"] for f in self.error_files)
            )
        if self.already_complete:
            lines.append("(the folder already held this complete export; nothing was requested)")
        return lines


def _describe(key: Any) -> str:
    if not isinstance(key, dict):
        return "an unknown one"
    return f"{key.get('server')} {json.dumps(key.get('request'), sort_keys=True)}"


class _State:
    def __init__(self, path: Path, key: dict[str, Any]) -> None:
        self.path = path
        self.key = key
        data = read_state_file(
            path, fmt=STATE_FORMAT, kind="export", items="files", key=key, describe=_describe, remedy="give another -o folder"
        )
        self.data: dict[str, Any] = data or self.fresh()

    def fresh(self) -> dict[str, Any]:
        return {"format": STATE_FORMAT, "export": self.key, "status_url": None, "manifest": None, "files": {}, "complete": False}

    def save(self) -> None:
        write_atomic(self.path, dumps(self.data))


def export(
    client: FhirClient,
    request: ExportRequest,
    folder: str | os.PathLike[str],
    *,
    keep_job: bool = False,
    allowed_origins: tuple[str, ...] = (),
    poll: PollPolicy | None = None,
    max_file_bytes: int = MAX_FILE_BYTES,
    events: ExportEvents | None = None,
) -> ExportResult:
    """Run (or resume) a Bulk Data export into ``folder``; see the module docstring."""
    events = events or ExportEvents()
    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise InputError("the export folder is a file", source=str(out))
    out.mkdir(parents=True, exist_ok=True)
    bulk = BulkClient(client, allowed_origins=allowed_origins, poll=poll)
    state = _State(out / STATE_FILE, {"server": client.base_url, "request": request.to_json()})
    if state.data.get("complete") and state.data.get("manifest"):
        manifest = Manifest.parse(state.data["manifest"], bulk.origin, bulk.allowed, source=str(state.path))
        if all(_intact(out, state.data["files"].get(f.url)) for f in manifest.files):
            return _result(client, out, manifest, state, downloaded=0, job_deleted=False, already_complete=True)
        state.data["complete"] = False  # a file was removed or changed since: fetch what is missing
    status_url = state.data.get("status_url")
    try:
        manifest, status_url = _manifest(bulk, request, state, out, events)
        downloaded = _download_all(bulk, manifest, state, out, max_file_bytes, events)
    except KeyboardInterrupt:
        status_url = state.data.get("status_url") or status_url
        if not status_url:
            raise ExportCancelled(None) from None
        try:
            bulk.cancel(status_url)
        except FhirSoError as exc:
            # The job may still run: keep the state, so the same command resumes (or cancels) it.
            raise ExportCancelled(f"the job could not be cancelled ({exc}); run the same command to resume it") from None
        _forget(state, out)
        raise ExportCancelled(None) from None
    job_deleted = False
    if not keep_job:
        job_deleted = bulk.cancel(status_url)
    state.data["complete"] = True
    state.save()
    return _result(client, out, manifest, state, downloaded=downloaded, job_deleted=job_deleted)


def _manifest(bulk: BulkClient, request: ExportRequest, state: _State, out: Path, events: ExportEvents) -> tuple[Manifest, str]:
    """The finished job's manifest: the earlier run's job when the server still has it, else a new job."""
    status_url = state.data.get("status_url")
    resumed = isinstance(status_url, str)
    if resumed:
        try:
            status_url = bulk.status_url(str(status_url), str(state.path))
            first: Status | None = bulk.status(status_url)
        except NotFoundError:
            events.job_gone(str(status_url))
            _forget(state, out)
            resumed, first = False, None
    if not resumed:
        status_url = bulk.kick_off(request)
        state.data["status_url"] = status_url
        state.save()
        first = None
    assert isinstance(status_url, str)
    events.kicked_off(status_url, resumed)
    if first is not None and first.manifest is not None:
        manifest = first.manifest
    else:
        manifest = bulk.wait(status_url, lambda status, wait: events.polled(status.progress, wait))
    if state.data.get("manifest") != manifest.raw:
        # A new (or changed) manifest: files recorded for another one are not reused.
        _remove_files(state, out)
        state.data["files"] = {}
        state.data["manifest"] = manifest.raw
        write_atomic(out / MANIFEST_FILE, dumps(manifest.raw))
        state.save()
    return manifest, status_url


def _local_names(manifest: Manifest) -> dict[str, str]:
    """URL -> the file's name in the folder (``Type.N.ndjson``; errors under ``errors/``)."""
    names: dict[str, str] = {}
    seen: Counter[tuple[str, str]] = Counter()
    for f in manifest.files:
        seen[(f.kind, f.type)] += 1
        name = f"{f.type}.{seen[(f.kind, f.type)]}.ndjson"
        names[f.url] = f"{ERRORS_DIR}/{name}" if f.kind == "error" else name
    return names


def _download_all(
    bulk: BulkClient, manifest: Manifest, state: _State, out: Path, max_file_bytes: int, events: ExportEvents
) -> int:
    names = _local_names(manifest)
    files = manifest.files
    downloaded = 0
    scrub = bulk.client.data_scrubber()
    for i, f in enumerate(files, start=1):
        name = names[f.url]
        record = state.data["files"].get(f.url)
        if _intact(out, record):
            events.file_done(name, int(record["resources"]), True)
            continue
        events.file_started(name, i, len(files))
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        expected = "OperationOutcome" if f.kind == "error" else f.type
        with atomic_writer(target) as fh:
            sink = NdjsonSink(fh, name=str(target), expected_type=expected, max_bytes=max_file_bytes, scrub=scrub, on_bytes=events.file_bytes)
            bulk.download(f, sink, requires_access_token=manifest.requires_access_token)
        state.data["files"][f.url] = {"name": name, "resources": sink.resources, "bytes": target.stat().st_size, "sha256": sink.sha256}
        state.save()
        downloaded += 1
        events.file_done(name, sink.resources, False)
    return downloaded


def _intact(out: Path, record: Any) -> bool:
    """True when an earlier run's file is still there as it was written (size and SHA-256)."""
    if not isinstance(record, dict) or not isinstance(record.get("name"), str):
        return False
    path = out / record["name"]
    try:
        if not path.is_file() or path.stat().st_size != record.get("bytes"):
            return False
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return False
    return digest.hexdigest() == record.get("sha256")


def _remove_files(state: _State, out: Path) -> None:
    for record in state.data.get("files", {}).values():
        if isinstance(record, dict) and isinstance(record.get("name"), str) and ".." not in record["name"]:
            (out / record["name"]).unlink(missing_ok=True)


def _forget(state: _State, out: Path) -> None:
    """Drop the job: its files and the state (a rerun starts a new export)."""
    _remove_files(state, out)
    (out / MANIFEST_FILE).unlink(missing_ok=True)
    state.data = state.fresh()
    state.path.unlink(missing_ok=True)


def _result(
    client: FhirClient, out: Path, manifest: Manifest, state: _State, *, downloaded: int, job_deleted: bool, already_complete: bool = False
) -> ExportResult:
    names = _local_names(manifest)
    counts: Counter[str] = Counter()
    files, errors = [], []
    issues = 0
    for f in manifest.files:
        record = state.data["files"].get(f.url, {})
        entry = {"type": f.type, "path": str(out / names[f.url]), "resources": record.get("resources"), "url": f.url}
        if f.kind == "error":
            errors.append(entry)
            issues += _error_issues(out / names[f.url])
        else:
            files.append(entry)
            counts[f.type] += int(record.get("resources") or 0)
    reused = len(manifest.files) - downloaded
    return ExportResult(
        client.base_url, str(out), manifest.transaction_time, files, errors, issues, downloaded, reused, job_deleted,
        already_complete, dict(counts),
    )


def _error_issues(path: Path) -> int:
    """How many issues of severity error or fatal an error file holds (information and warnings aside)."""
    found = 0
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                outcome = orjson.loads(line)
                found += sum(1 for i in outcome.get("issue") or [] if isinstance(i, dict) and i.get("severity") in ("error", "fatal"))
    return found
