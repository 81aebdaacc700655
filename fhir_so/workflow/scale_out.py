"""validate, scaled out: the report of :func:`~fhir_so.workflow.run_validation.validate`, from local processes or a Dask cluster.

::

    from fhir_so.workflow.scale_out import validate_parallel

    for result in validate_parallel(["export/Observation.ndjson"], jobs=2):                       # local processes
        ...
    for result in validate_parallel(["export/"], scheduler="tcp://10.0.0.5:8786"):                 # a Dask cluster
        ...

How it works: this process (the client) reads the inputs — each JSON file whole, NDJSON line by
line, unparsed (:func:`~fhir_so.validation.sources.iter_raw`) — and cuts them into chunks of at most
``chunk_size`` inputs and :data:`CHUNK_BYTES` bytes. Each chunk is one task: a worker process parses
and validates it exactly as a single process does (:func:`validate_chunk`), with a validator it
builds once and keeps for the chunks that follow (loading the definitions costs seconds). The
findings come back per chunk, without the resources, and are yielded in input order; at most a
window of chunks (twice the workers) is in flight, so memory stays flat however large the input.
Workers read nothing from disk but their package cache: the client sends them the bytes, so a
cluster needs no shared file system.

Results therefore equal the single process's, in the same order, with one difference a report
never shows: ``result.input.resource`` is None (the resources are not sent back).

``jobs`` uses :class:`concurrent.futures.ProcessPoolExecutor` (no Dask needed); ``scheduler``
connects a :class:`distributed.Client` (``pip install 'fhir-so[dask]'``). A scheduler that cannot be
reached, a cluster without workers, a worker process that dies (after Dask's own retries on other
workers) all raise :class:`ClusterError` (exit 3): a run never ends with a silent gap.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from fhir_so.errors import FhirSoError, ServerError, ToolMissingError
from fhir_so.packages import PackageCache, RegistryClient, ensure_installed
from fhir_so.validation import Input, Result, Validator
from fhir_so.validation.sources import Raw, iter_raw, parse_raw
from fhir_so.workflow.run_validation import existing_paths, offline_validator

__all__ = ["CHUNK_BYTES", "ClusterError", "DEFAULT_CHUNK_SIZE", "ValidatorSpec", "validate_chunk", "validate_parallel"]

#: inputs per task: large enough that a task's overhead (a few ms) is lost in its work (about a second)
DEFAULT_CHUNK_SIZE = 2000
#: bytes of input per task at most: a task travels through the scheduler, which warns about graphs of 10 MB
CHUNK_BYTES = 4 * 1024 * 1024


class ClusterError(ServerError):
    """The Dask scheduler cannot be reached or has no workers, or a worker died and the run cannot finish (exit 3)."""


@dataclass(frozen=True)
class ValidatorSpec:
    """Everything a worker needs to build the validator the client would: picklable, and the key of the worker's cache."""

    profiles: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    business_rules: bool = False
    #: the package cache folder; None: the worker's own default (``$FHIR_SO_PACKAGES`` or ``~/.fhir/packages``)
    cache_root: str | None = None

    def build(self) -> tuple[Validator, list[str]]:
        """The validator and the warnings its definitions gave (a dependency at the nearest version, say)."""
        warnings: list[str] = []
        cache = PackageCache(Path(self.cache_root)) if self.cache_root else None
        validator = offline_validator(
            cache, profiles=self.profiles, packages=self.packages, business_rules=self.business_rules, on_warning=warnings.append
        )
        return validator, warnings


# The validator of this worker process, built on its first chunk and kept for the next ones (and
# the next runs with the same settings, on a long-lived Dask worker): loading the definitions costs
# seconds and about 100 MB, validating a chunk about a second. Module state on purpose — it belongs
# to the worker process, never to a caller — and only one entry, so a worker serving runs with other
# settings does not grow. The lock: a Dask worker may run tasks in threads, and the validator is
# not thread-safe (fhirpathpy keeps module state).
_WORKER_VALIDATOR: dict[tuple[ValidatorSpec, int], tuple[Validator, list[str]]] = {}
_WORKER_LOCK = threading.Lock()


def _cache_stamp(spec: ValidatorSpec) -> int:
    """When the package cache folder last changed: a package installed since the validator was built rebuilds it."""
    root = PackageCache(Path(spec.cache_root)) if spec.cache_root else PackageCache()
    try:
        return os.stat(root.root).st_mtime_ns
    except OSError:
        return 0


def validate_chunk(spec: ValidatorSpec, raws: Sequence[Raw]) -> tuple[list[str], list[Result]]:
    """The worker's task: parse and validate ``raws`` in order; (warnings of a validator built for it, findings).

    Each result keeps the input's name, line and error but not its resource: only findings travel back.
    """
    with _WORKER_LOCK:
        key = (spec, _cache_stamp(spec))
        fresh = key not in _WORKER_VALIDATOR
        if fresh:
            _WORKER_VALIDATOR.clear()
            _WORKER_VALIDATOR[key] = spec.build()
        validator, warnings = _WORKER_VALIDATOR[key]
        results = [
            Result(Input(r.input.source, error=r.input.error, line=r.input.line), r.issues)
            for r in validator.validate_inputs(parse_raw(raw) for raw in raws)
        ]
    return (list(warnings) if fresh else []), results


class _Handle(Protocol):
    """A submitted chunk's future: concurrent.futures' or Dask's."""

    def result(self, timeout: float | None = None) -> Any: ...

    def cancel(self) -> Any: ...


class _Engine(Protocol):
    slots: int

    def submit(self, spec: ValidatorSpec, raws: tuple[Raw, ...]) -> _Handle: ...

    def close(self) -> None: ...


class _ProcessEngine:
    """``jobs`` local worker processes (spawned, not forked: the caller may have threads, and a fork would copy their locks)."""

    def __init__(self, jobs: int) -> None:
        self.slots = jobs
        self._pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))

    def submit(self, spec: ValidatorSpec, raws: tuple[Raw, ...]) -> Future[tuple[list[str], list[Result]]]:
        return self._pool.submit(validate_chunk, spec, raws)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class _DaskEngine:
    """Tasks on a Dask distributed cluster, through its scheduler."""

    def __init__(self, address: str, timeout: float) -> None:
        try:
            from distributed import Client
        except ImportError:
            raise ToolMissingError("--scheduler needs Dask: pip install 'fhir-so[dask]'") from None
        self.address = address
        try:
            self._client = Client(address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise ClusterError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
        try:
            self._client.wait_for_workers(1, timeout=timeout)
        except TimeoutError:
            self._client.close()
            raise ClusterError(f"the Dask scheduler at {address} has no workers (waited {timeout:g} s)") from None
        # two chunks per worker thread in flight: one running, one waiting, so no worker idles between tasks
        self.slots = max(1, sum(self._client.nthreads().values()))

    def submit(self, spec: ValidatorSpec, raws: tuple[Raw, ...]) -> _Handle:
        with warnings.catch_warnings():
            # one big JSON file (up to 256 MiB) travels inside its task, through the scheduler: Dask warns
            # about tasks over 10 MB, but scattering it to one worker first would lose it with that worker
            warnings.filterwarnings("ignore", message="Sending large graph", category=UserWarning)
            handle: _Handle = self._client.submit(validate_chunk, spec, raws, pure=False)
        return handle

    def close(self) -> None:
        self._client.close()


def _chunks(paths: Iterable[str], chunk_size: int, chunk_bytes: int) -> Iterator[tuple[Raw, ...]]:
    """The inputs, read here, in chunks; at least one (empty) chunk, so that a worker builds the validator even for no input."""
    batch: list[Raw] = []
    size = 0
    sent = False
    for raw in iter_raw(paths):
        batch.append(raw)
        size += len(raw.data or b"")
        if len(batch) >= chunk_size or size >= chunk_bytes:
            yield tuple(batch)
            sent = True
            batch, size = [], 0
    if batch or not sent:
        yield tuple(batch)


def _where(raws: tuple[Raw, ...]) -> str:
    if not raws:
        return "no input (building the validator)"
    if len(raws) == 1:
        return raws[0].source
    return f"{raws[0].source} to {raws[-1].source}"


def _stream(
    engine: _Engine,
    spec: ValidatorSpec,
    chunks: Iterator[tuple[Raw, ...]],
    on_warning: Callable[[str], None] | None,
) -> Iterator[Result]:
    """Submit chunks while at most a window is in flight; yield each chunk's results in input order."""
    window = 2 * engine.slots
    pending: deque[tuple[str, _Handle]] = deque()
    seen: set[str] = set()

    def collect(where: str, handle: _Handle) -> list[Result]:
        try:
            warnings, results = handle.result()
        except FhirSoError:
            raise  # a broken --profile or package: the worker says so as a single process would
        except BrokenProcessPool:
            raise ClusterError(f"a worker process died while validating {where}; the report is incomplete") from None
        except Exception as exc:  # Dask's KilledWorker after its retries, a lost scheduler, a cancelled task
            raise ClusterError(f"validating {where} failed on the cluster: {type(exc).__name__}: {exc}") from None
        for warning in warnings:
            if warning not in seen and on_warning is not None:
                on_warning(warning)
            seen.add(warning)
        return list(results)

    try:
        for raws in chunks:
            pending.append((_where(raws), engine.submit(spec, raws)))
            del raws  # the chunk's bytes are the engine's now; the client keeps only its name
            if len(pending) >= window:
                yield from collect(*pending.popleft())
        while pending:
            yield from collect(*pending.popleft())
    finally:
        for _, handle in pending:
            handle.cancel()
        engine.close()


def validate_parallel(
    paths: Iterable[str | os.PathLike[str]],
    *,
    jobs: int | None = None,
    scheduler: str | None = None,
    profiles: Sequence[str] = (),
    packages: Sequence[str] = (),
    cache: PackageCache | None = None,
    business_rules: bool = False,
    registry: Callable[[], RegistryClient] | None = None,
    on_warning: Callable[[str], None] | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    timeout: float = 30.0,
) -> Iterator[Result]:
    """Like :func:`~fhir_so.workflow.run_validation.validate` (offline), on ``jobs`` local processes or the Dask cluster at ``scheduler``.

    The same results in the same order (without the resources). Errors of the setup come before
    the first result, as in a single process: a missing path, a broken ``--profile`` or package
    (InputError / ProfileError, exit 2), a scheduler not reached within ``timeout`` seconds or
    without workers (:class:`ClusterError`, exit 3). Packages missing from the cache are installed
    here (with ``registry``); each Dask worker loads them from its own package cache.
    """
    if (jobs is None) == (scheduler is None):
        raise ValueError("give either jobs or scheduler")
    if jobs is not None and jobs < 1:
        raise ValueError("jobs must be at least 1")
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    names = existing_paths(paths)
    if registry is not None:
        for warning in ensure_installed(cache or PackageCache(), packages, registry):
            if on_warning is not None:
                on_warning(warning)
    # a package given as a folder or .tgz is named absolutely: a worker's working directory is not ours
    spec = ValidatorSpec(
        profiles=tuple(profiles),
        packages=tuple(str(Path(p).resolve()) if Path(p).exists() else p for p in packages),
        business_rules=business_rules,
        cache_root=str(cache.root) if cache is not None else None,
    )
    engine: _Engine = _ProcessEngine(jobs) if jobs is not None else _DaskEngine(str(scheduler), timeout)
    stream = _stream(engine, spec, _chunks(names, chunk_size, CHUNK_BYTES), on_warning)
    # the first chunk's results (or the worker's ProfileError) before returning, so that setup errors
    # come before any report is written, as in a single process
    try:
        first = next(stream)
    except StopIteration:
        return iter(())
    return _prepend(first, stream)


def _prepend(first: Result, rest: Iterator[Result]) -> Iterator[Result]:
    yield first
    yield from rest
