"""Batch transfer at the servers' speed: ``transfer_all`` against the same HTTP work done by a plain
``requests`` loop with the same concurrency, and memory flat in the number of cases.

In one run, on two FHIR servers (default: the local ones on 8090 and 8091):

1. generates cases (the urology example under new case ids and patients, tagged by a run token)
   and pushes a small batch (``--small``, 100) to the source and transfers it, then a big one
   (``--cases``, 500), each selected by ``since`` (the instant before its push);
2. each transfer is ``fhir_so.transfer_all(..., jobs=--jobs)``,
   each in a fresh child process that reports its wall time and peak RSS (``ru_maxrss``): the
   small run is the warm-up and the memory reference; the child records every request it makes
   (method, URL, body) to a file as it goes (that costs fhir-so, not the baseline); the small
   run is replayed by the baseline before the big one runs, the big one after it, so the
   order of the two alternates;
3. the baseline replays the big run's recorded requests with plain ``requests.Session`` objects,
   one per worker, ``--jobs`` workers, in the same per-worker order: the same reads of the
   source and the same transaction Bundles posted to the destination, with the run token (and
   the transfer ids) renamed so the destination creates new resources, as it did for fhir-so;
4. prints cases per second of each, the ratio (target: fhir-so >= 0.90 of the baseline), and the
   peak RSS at the small and big batch (target: flat). ``--posts-only`` adds the narrower
   baseline the issue names (only the transaction Bundles, no reads) for reference.

    .venv/bin/python benchmarks/transfer.py --source http://127.0.0.1:8090/fhir --destination http://127.0.0.1:8091/fhir
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import resource
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fhir_so.case import Case, load_case  # noqa: E402
from fhir_so.client import FhirClient  # noqa: E402
from fhir_so.workflow import push, transfer_all  # noqa: E402

HEADERS = {"Accept": "application/fhir+json", "Content-Type": "application/fhir+json; fhirVersion=4.0"}


def cases(n: int, token: str) -> list[Case]:
    base = load_case(ROOT / "examples" / "urology-second-opinion.case.json").model_copy(update={"opinion": None})
    out = []
    for i in range(n):
        patient = base.patient.model_copy(update={"identifier": base.patient.identifier.model_copy(update={"value": f"{token}-{i:05d}"})})
        out.append(base.model_copy(update={"case_id": f"{token}-{i:05d}", "patient": patient}))
    return out


def push_all(url: str, batch: list[Case], jobs: int) -> float:
    local = threading.local()

    def one(case: Case) -> None:
        if not hasattr(local, "client"):
            local.client = FhirClient(url, timeout=(10, 120))
        push(local.client, case)

    began = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(one, batch))
    return time.perf_counter() - began


def instant_after_now() -> str:
    """A whole second after now, waited for: cases pushed from here on are newer than it (--since)."""
    now = time.time()
    at = math.ceil(now) + 1
    time.sleep(at - now)
    return dt.datetime.fromtimestamp(at, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the fhir-so run, in a child process -----------------------------------------------------------


def child(args: argparse.Namespace) -> None:
    """Run transfer_all once; record each request per worker thread; print wall time, peak RSS, counts."""
    log = open(args.record, "w", encoding="utf-8")  # noqa: SIM115 (closed at the end of the run)
    lock = threading.Lock()

    def record(response: requests.Response, *_a: Any, **_k: Any) -> None:
        request = response.request
        body = request.body.decode() if isinstance(request.body, bytes) else request.body
        line = json.dumps({"t": threading.current_thread().name, "m": request.method, "u": request.url, "b": body})
        with lock:
            log.write(line + "\n")

    class Recording(FhirClient):
        def __init__(self, base_url: str, **kwargs: Any) -> None:
            session = requests.Session()
            session.hooks["response"].append(record)
            super().__init__(base_url, session=session, **kwargs)

    began = time.perf_counter()
    with Recording(args.source, timeout=(10, 120)) as src, Recording(args.destination, timeout=(10, 120)) as dst:
        # with a state file, as the command line runs it (one atomic write per step of each case)
        result = transfer_all(src, dst, jobs=args.jobs, since=args.since, state=args.record + ".state.json")
    seconds = time.perf_counter() - began
    usage = resource.getrusage(resource.RUSAGE_SELF)
    log.close()
    print(json.dumps({
        "seconds": seconds,
        "rss_kib": usage.ru_maxrss,
        "cpu": usage.ru_utime + usage.ru_stime,
        "moved": len(result.moved), "refused": len(result.refused), "failed": len(result.failed),
        "transfer_ids": [c.transfer_id for c in result.moved],
    }))


def run_child(args: argparse.Namespace, since: str, record: Path) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", "--source", args.source, "--destination", args.destination,
               "--jobs", str(args.jobs), "--since", since, "--record", str(record)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    if done.returncode != 0:
        sys.exit(f"the fhir-so run failed:\n{done.stderr}")
    return dict(json.loads(done.stdout.splitlines()[-1]))


# -- the baseline: the same requests, by hand --------------------------------------------------------


def replay(record: Path, args: argparse.Namespace, token: str, renamed: str, transfer_ids: list[str], posts_only: bool) -> float:
    """Replay the recorded requests with plain requests, --jobs workers, each a recorded thread's sequence;
    on the destination, ``token`` becomes ``renamed`` (same length: the same bytes on the wire)."""
    ids = {t: str(uuid.uuid5(uuid.NAMESPACE_URL, t + renamed)) for t in transfer_ids}
    lanes: dict[str, list[tuple[str, str, str | None]]] = defaultdict(list)
    for line in record.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        url, body = r["u"], r["b"]
        if url.startswith(args.destination):
            url = url.replace(token, renamed)
            if body:
                body = body.replace(token, renamed)
                for old, new in ids.items():
                    body = body.replace(old, new)
        if posts_only and r["m"] != "POST":
            continue
        lanes[r["t"]].append((r["m"], url, body))
    main = [lane for name, lane in lanes.items() if not name.startswith("fhir-so-transfer")]
    workers = [lane for name, lane in lanes.items() if name.startswith("fhir-so-transfer")]

    def play(lane: list[tuple[str, str, str | None]]) -> None:
        with requests.Session() as session:
            for method, url, body in lane:
                response = session.request(method, url, data=body.encode() if body else None, headers=HEADERS, timeout=(10, 120))
                response.raise_for_status()
                response.json()

    began = time.perf_counter()
    for lane in main:
        play(lane)
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(play, workers))
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="http://127.0.0.1:8090/fhir")
    parser.add_argument("--destination", default="http://127.0.0.1:8091/fhir")
    parser.add_argument("--cases", type=int, default=500)
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--posts-only", action="store_true", help="also time the baseline that only posts the transaction Bundles")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--since", help=argparse.SUPPRESS)
    parser.add_argument("--record", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"fhir-so-bench-transfer-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    token = "a" + uuid.uuid4().hex[:7]
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; {args.jobs} jobs; run token {token}")

    # each batch is selected by --since: the small one is pushed and moved before the big one exists
    since_small = instant_after_now()
    pushed = push_all(args.source, cases(args.small, token + "s"), args.jobs)
    print(f"pushed {args.small} cases to the source in {pushed:.1f} s")
    small = run_child(args, since_small, work / "small.jsonl")
    print(f"fhir-so transfer_all, {args.small} cases: {small['seconds']:.1f} s, peak RSS {small['rss_kib'] / 1024:.1f} MiB"
          f" (moved {small['moved']}, refused {small['refused']}, failed {small['failed']})")
    # a first sample of the ratio, taken before the big run (so the order of the two alternates)
    small_base = replay(work / "small.jsonl", args, token + "s", "b" + token[1:] + "s", small["transfer_ids"], posts_only=False)
    print(f"baseline replay of the {args.small}-case run: {small_base:.1f} s; ratio {small_base / small['seconds']:.2f}")
    since_big = instant_after_now()
    pushed = push_all(args.source, cases(args.cases, token), args.jobs)
    print(f"pushed {args.cases} cases to the source in {pushed:.1f} s ({args.cases / pushed:.1f} cases/s)")
    big = run_child(args, since_big, work / "big.jsonl")
    print(f"fhir-so transfer_all, {args.cases} cases: {big['seconds']:.1f} s, CPU {big['cpu']:.1f} s"
          f" ({1000 * big['cpu'] / args.cases:.0f} ms per case, recording included), peak RSS {big['rss_kib'] / 1024:.1f} MiB"
          f" (moved {big['moved']}, refused {big['refused']}, failed {big['failed']})")
    if (small["moved"], big["moved"]) != (args.small, args.cases):
        sys.exit("the runs did not move exactly their own cases: is another client writing to the source?")
    requests_made = sum(1 for _ in (work / "big.jsonl").open())
    baseline = replay(work / "big.jsonl", args, token, "b" + token[1:], big["transfer_ids"], posts_only=False)
    print(f"baseline (plain requests, the same {requests_made} requests, {args.jobs} workers): {baseline:.1f} s")
    ours, theirs = args.cases / big["seconds"], args.cases / baseline
    print(f"throughput: fhir-so {ours:.2f} cases/s, baseline {theirs:.2f} cases/s, ratio {ours / theirs:.2f} (target >= 0.90)")
    print(f"peak RSS {args.small} -> {args.cases} cases: {small['rss_kib'] / 1024:.1f} -> {big['rss_kib'] / 1024:.1f} MiB,"
          f" ratio {big['rss_kib'] / small['rss_kib']:.2f} (target: flat, about 1.0)")
    if args.posts_only:
        posts = replay(work / "big.jsonl", args, token, "c" + token[1:], big["transfer_ids"], posts_only=True)
        print(f"posts-only baseline (just the transaction Bundles): {posts:.1f} s; fhir-so / posts-only throughput {posts / big['seconds']:.2f}")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
