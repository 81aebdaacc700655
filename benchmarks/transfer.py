"""Batch transfer at the servers' speed: ``fhir_so.transfer_all`` against the same transaction Bundles
posted by a plain ``requests`` loop with the same concurrency, and memory flat in the number of cases.

Method (everything in one run, on two FHIR servers: the local ones on 8090/8091 by default, or
``--fresh PORT``: two new local servers on PORT and PORT+1 with empty databases, stopped at the end):

1. Warm-up: one case pushed alone (it creates the parties every case shares, so concurrent pushes
   do not race to create them), then ``--warmup`` cases pushed and moved by fhir-so. This warms
   both JVMs, creates the shared parties on the destination, and gives the first recording.
2. ``--cases`` generated cases (the urology example under new case ids and patients, tagged by a
   run token) are pushed to the source in ``--rounds`` slices, each just before its round (so
   that the round's ``since`` finds that slice only); the pushes are not timed.
3. Each round moves one slice with fhir-so and posts as many Bundles with the baseline, in
   alternating order (round 0: fhir-so first; round 1: the baseline first; ...), so that neither
   side always meets the warmer server or the fuller database:
   * fhir-so: ``transfer_all(source, destination, since=..., jobs=--jobs, state=FILE)`` in a fresh
     child process (as ``fhir-so transfer --all`` runs it: a state file, consent checks,
     Provenance), timed around the call; every request it makes is logged (method and URL;
     the body of each POST);
   * the baseline (the issue's): the transaction Bundles fhir-so posted in its latest recorded
     run (per case: the case's, then its Provenance's), their run token and transfer ids
     renamed so that they create new resources as fhir-so's did, posted by ``--jobs`` threads,
     one ``requests.Session`` each (keep-alive, as fhir-so's workers), each answer parsed. It
     reads nothing from the source and checks no consent: the ratio is what reading the case
     and the patient's consents from the source, and the client's own work, cost.
   The ratio of a round is fhir-so's throughput over the baseline's; the script prints each
   round's, then the median and the spread (min-max) over the rounds.
4. Round trips per case, by kind, counted from fhir-so's logs (the selection's pages and each
   worker's ``/metadata`` apart, they are per batch).
5. Memory: for each of ``--memory`` (default 100 and 500) a child process moves the last that many
   cases again (they are on the destination already: every write finds its match and changes
   nothing, the client's work per case is the same) and reports its peak RSS (``ru_maxrss``).

``--replay`` adds a second, narrower baseline each round: every request of fhir-so's run (its
reads of the source and its Provenance too) replayed by plain ``requests`` with the same
per-worker order: the client's own overhead, the servers' work being equal.

    .venv/bin/python benchmarks/transfer.py --fresh 8092
    .venv/bin/python benchmarks/transfer.py --source http://127.0.0.1:8090/fhir --destination http://127.0.0.1:8091/fhir
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import queue
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fhir_so.case import Case, load_case  # noqa: E402
from fhir_so.client import FhirClient  # noqa: E402
from fhir_so.workflow import push, transfer_all  # noqa: E402

HEADERS = {"Accept": "application/fhir+json", "Content-Type": "application/fhir+json; fhirVersion=4.0"}
TIMEOUT = (10, 120)
# the first letter of the baseline's Bundles' run token, one per round (fhir-so's start with "a"; the replay's with "r")
RENAMES = "bcdefghijk"


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
            local.client = FhirClient(url, timeout=TIMEOUT)
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


def fhir_so_command() -> list[str]:
    script = Path(sys.executable).parent / "fhir-so"
    return [str(script)] if script.exists() else [sys.executable, "-c", "from fhir_so.cli import main; main()"]


def server_pids(urls: list[str], data: dict[int, Path] | None = None) -> list[int]:
    """The pids of the local fhir-so servers at these URLs (none when one is not a local fhir-so server)."""
    pids = []
    for url in urls:
        port = urlsplit(url).port
        if urlsplit(url).hostname not in ("127.0.0.1", "localhost") or port is None:
            return []
        command = [*fhir_so_command(), "server", "status", "--port", str(port), "--json"]
        if data and port in data:
            command += ["--data", str(data[port])]
        done = subprocess.run(command, capture_output=True, text=True, check=False, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        try:
            pid = json.loads(done.stdout).get("pid")
        except ValueError:
            return []
        if not isinstance(pid, int):
            return []
        pids.append(pid)
    return pids


def server_cpu(pids: list[int]) -> list[float]:
    """CPU seconds each server process has used so far (all its threads: user + system)."""
    out = []
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        out.append((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))  # utime, stime (fields 14, 15 of stat(5))
    return out


@contextmanager
def fresh_servers(port: int) -> Iterator[tuple[str, str, dict[int, Path]]]:
    """Two new local servers with empty databases (temporary data folders), stopped at the end."""
    folder = Path(tempfile.mkdtemp(prefix="fhir-so-bench-servers-"))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    ports = (port, port + 1)
    try:
        # built once first: two starts building the jar at once would race in one target folder
        built = subprocess.run([*fhir_so_command(), "server", "build"], capture_output=True, text=True, check=False, env=env)
        if built.returncode != 0:
            sys.exit(f"could not build the server:\n{built.stdout}{built.stderr}")
        starts = [subprocess.Popen([*fhir_so_command(), "server", "start", "--port", str(p), "--data", str(folder / str(p))],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) for p in ports]
        for p, proc in zip(ports, starts):
            out, _ = proc.communicate(timeout=900)
            if proc.returncode != 0:
                sys.exit(f"could not start a server on {p}:\n{out}")
        yield f"http://127.0.0.1:{port}/fhir", f"http://127.0.0.1:{port + 1}/fhir", {p: folder / str(p) for p in ports}
    finally:
        for p in ports:
            subprocess.run([*fhir_so_command(), "server", "stop", "--port", str(p), "--data", str(folder / str(p))],
                           capture_output=True, check=False, env=env)
        shutil.rmtree(folder, ignore_errors=True)


# -- the fhir-so run, in a child process -----------------------------------------------------------


def child(args: argparse.Namespace) -> None:
    """Run transfer_all once; log each request (and POST bodies) per worker thread; print time, peak RSS, counts."""
    log = open(args.record, "w", encoding="utf-8") if args.record else None  # noqa: SIM115 (closed at the end)
    lock = threading.Lock()

    def record(response: requests.Response, *_a: Any, **_k: Any) -> None:
        request = response.request
        body = request.body if request.method == "POST" else None
        line = json.dumps({"t": threading.current_thread().name, "m": request.method, "u": request.url,
                           "b": body.decode() if isinstance(body, bytes) else body})
        with lock:
            assert log is not None
            log.write(line + "\n")

    class Recording(FhirClient):
        def __init__(self, base_url: str, **kwargs: Any) -> None:
            session = requests.Session()
            session.hooks["response"].append(record)
            super().__init__(base_url, session=session, **kwargs)

    client = Recording if log is not None else FhirClient
    began = time.perf_counter()
    with client(args.source, timeout=TIMEOUT) as src, client(args.destination, timeout=TIMEOUT) as dst:
        result = transfer_all(src, dst, jobs=args.jobs, since=args.since, state=args.state)
    seconds = time.perf_counter() - began
    usage = resource.getrusage(resource.RUSAGE_SELF)
    if log is not None:
        log.close()
    print(json.dumps({
        "seconds": seconds, "rss_kib": usage.ru_maxrss, "cpu": usage.ru_utime + usage.ru_stime,
        "moved": len(result.moved), "refused": len(result.refused), "failed": len(result.failed),
        "reasons": sorted({c.reason or "" for c in result.failed})[:3],
    }))


def run_child(args: argparse.Namespace, since: str, work: Path, name: str, *, record: bool) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", "--source", args.source, "--destination", args.destination,
               "--jobs", str(args.jobs), "--since", since, "--state", str(work / f"{name}.state.json")]
    if record:
        command += ["--record", str(work / f"{name}.jsonl")]
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    if done.returncode != 0:
        sys.exit(f"the fhir-so run {name} failed:\n{done.stderr}")
    out = dict(json.loads(done.stdout.splitlines()[-1]))
    if out["failed"] or out["refused"]:
        sys.exit(f"the fhir-so run {name} did not move every case: {out}")
    return out


# -- the baselines: plain requests ---------------------------------------------------------------


def recorded(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def transactions(log: list[dict[str, Any]], destination: str) -> list[list[str]]:
    """The transaction Bundles fhir-so posted, as sent, grouped by case: [the case's, its Provenance's]."""
    units: list[list[str]] = []
    current: dict[str, list[str]] = {}
    for r in log:
        if r["m"] != "POST" or not r["u"].startswith(destination):
            continue
        if '"Provenance"' in r["b"]:
            current.setdefault(r["t"], []).append(r["b"])
        else:
            current[r["t"]] = [r["b"]]  # a new case (or the same one again after a lost race: the last try counts)
            units.append(current[r["t"]])
    return units


def renamed_bundle(body: str, token: str, renamed: str) -> bytes:
    """A recorded transaction Bundle under another run token (and, for a Provenance, another transfer
    id), so that it creates new resources as fhir-so's did; then as a program would send it."""
    body = body.replace(token, renamed)
    if '"Provenance"' in body:
        old = orjson.loads(body)["entry"][1]["resource"]["meta"]["tag"][0]["code"]
        body = body.replace(old, str(uuid.uuid5(uuid.NAMESPACE_URL, old + renamed)))
    return orjson.dumps(orjson.loads(body))


def post_all(destination: str, units: list[list[str]], token: str, renamed: str, jobs: int) -> float:
    """The issue's baseline: the same transaction Bundles (renamed) posted by ``jobs`` threads, one
    Session each; a case's Bundles in order by one thread, as fhir-so's worker posts them."""
    todo: queue.SimpleQueue[list[str]] = queue.SimpleQueue()
    for unit in units:
        todo.put(unit)

    def worker() -> None:
        with requests.Session() as session:
            while True:
                try:
                    unit = todo.get_nowait()
                except queue.Empty:
                    return
                for body in unit:
                    response = session.post(destination, data=renamed_bundle(body, token, renamed), headers=HEADERS, timeout=TIMEOUT)
                    response.raise_for_status()
                    answer = response.json()
                    if answer.get("type") != "transaction-response":
                        raise RuntimeError(f"not a transaction-response: {str(answer)[:200]}")

    began = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        for f in [pool.submit(worker) for _ in range(jobs)]:
            f.result()
    return time.perf_counter() - began


def replay(log: list[dict[str, Any]], destination: str, token: str, renamed: str, jobs: int) -> float:
    """Every request of a fhir-so run (token renamed on the destination), each worker's in its order."""
    lanes: dict[str, list[tuple[str, str, str | None]]] = defaultdict(list)
    for r in log:
        url, body = r["u"], r["b"]
        if url.startswith(destination):
            url = url.replace(token, renamed)
            if body:
                body = renamed_bundle(body, token, renamed).decode()
        lanes[r["t"]].append((r["m"], url, body))
    main = [lane for name, lane in lanes.items() if not name.startswith("fhir-so-transfer")]
    workers = [lane for name, lane in lanes.items() if name.startswith("fhir-so-transfer")]

    def play(lane: list[tuple[str, str, str | None]]) -> None:
        with requests.Session() as session:
            for method, url, body in lane:
                response = session.request(method, url, data=body.encode() if body else None, headers=HEADERS, timeout=TIMEOUT)
                response.raise_for_status()
                response.json()

    began = time.perf_counter()
    for lane in main:
        play(lane)
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(play, workers))
    return time.perf_counter() - began


def round_trips(log: list[dict[str, Any]], source: str, n: int) -> tuple[dict[str, float], dict[str, int]]:
    """Requests per case by kind, and the per-batch ones (selection pages, /metadata)."""
    per_case: Counter[str] = Counter()
    per_batch: Counter[str] = Counter()
    for r in log:
        server = "source" if r["u"].startswith(source) else "destination"
        path = r["u"].split("/fhir", 1)[1].split("?")[0] or "/"
        query = r["u"].split("?", 1)[1] if "?" in r["u"] else ""
        kind = f"{r['m']} {path} on the {server}"
        if path == "/metadata" or "_elements=" in query or "_getpages=" in query:
            # the selection's pages (a next page is a GET of the base with the server's paging token)
            per_batch[kind if path == "/metadata" else f"GET (selection page) on the {server}"] += 1
        elif r["m"] == "POST":
            per_case[kind + (" (Provenance)" if '"Provenance"' in r["b"] else " (the case)")] += 1
        else:
            per_case[kind] += 1
    return {k: v / n for k, v in sorted(per_case.items())}, dict(sorted(per_batch.items()))


# -- the run --------------------------------------------------------------------------------------


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f}, min {min(values):.2f}, max {max(values):.2f}"


def bench(args: argparse.Namespace, data: dict[int, Path] | None) -> None:
    work = Path(tempfile.mkdtemp(prefix="fhir-so-bench-transfer-"))
    pids = server_pids([args.source, args.destination], data)
    if not pids:
        print("(the servers are not local fhir-so servers: their CPU is not measured)")
    token = "a" + uuid.uuid4().hex[:7]
    size = args.cases // args.rounds
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; {args.jobs} jobs; "
          f"{args.rounds} rounds of {size} cases; run token {token}")
    if any(m % size or m > args.cases for m in args.memory):
        sys.exit(f"--memory sizes must be multiples of the round size ({size}) up to --cases")

    # 1. warm-up
    push_all(args.source, cases(1, token + "w"), 1)
    since = instant_after_now()
    push_all(args.source, cases(args.warmup, token + "x"), args.jobs)
    warm = run_child(args, since, work, "warmup", record=True)
    print(f"warm-up: {args.warmup} cases moved in {warm['seconds']:.1f} s")
    last_log = recorded(work / "warmup.jsonl")

    # 2-3. rounds, each on a slice of cases pushed just before it (so that its since finds only them)
    slices = []
    pushed = 0.0
    ratios, replay_ratios, fhir_so_s, base_s, work_ratios = [], [], [], [], []
    server_ms: dict[str, list[float]] = {"fhir-so": [], "baseline": []}
    destination_ms: dict[str, list[float]] = {"fhir-so": [], "baseline": []}
    trips: dict[str, float] = {}
    batch_trips: dict[str, int] = {}
    cpu = 0.0
    for k in range(args.rounds):
        slice_token = f"{token[:-1]}{k}"
        slices.append(instant_after_now())
        pushed += push_all(args.source, cases(size, slice_token), args.jobs)
        order = ["fhir-so", "baseline"] if k % 2 == 0 else ["baseline", "fhir-so"]
        times: dict[str, float] = {}
        spent: dict[str, float] = {}
        for side in order:
            before = server_cpu(pids) if pids else []
            if side == "fhir-so":
                out = run_child(args, slices[k], work, f"round{k}", record=True)
                times[side] = out["seconds"]
                cpu += out["cpu"]
                last_log = recorded(work / f"round{k}.jsonl")
                last_token = slice_token
                trips, batch_trips = round_trips(last_log, args.source, out["moved"])
            else:
                units = transactions(last_log, args.destination)[:size]
                source_token = slice_token if order[0] == "fhir-so" else _token_of(units[0][0], token)
                # a new name each round: the Bundles must create new resources, as fhir-so's did
                times[side] = post_all(args.destination, units, source_token, RENAMES[k] + source_token[1:], args.jobs)
            if pids:
                used = [1000 * (after - start) / size for after, start in zip(server_cpu(pids), before)]
                spent[side] = sum(used)
                server_ms[side].append(spent[side])
                destination_ms[side].append(used[1])
        ratio = times["baseline"] / times["fhir-so"]
        ratios.append(ratio)
        fhir_so_s.append(times["fhir-so"])
        base_s.append(times["baseline"])
        line = (f"round {k} ({' then '.join(order)}): fhir-so {times['fhir-so']:.1f} s ({size / times['fhir-so']:.2f} cases/s), "
                f"baseline {times['baseline']:.1f} s ({size / times['baseline']:.2f} cases/s), ratio {ratio:.2f}")
        if pids:
            work_ratios.append(spent["baseline"] / spent["fhir-so"])
            line += (f"; server CPU per case: fhir-so {spent['fhir-so']:.0f} ms ({destination_ms['fhir-so'][-1]:.0f} of it the destination's),"
                     f" baseline {spent['baseline']:.0f} ms ({destination_ms['baseline'][-1]:.0f}) (ratio {work_ratios[-1]:.2f})")
        if args.replay:
            again = replay(last_log, args.destination, last_token, "r" + last_token[1:], args.jobs)
            replay_ratios.append(again / times["fhir-so"])
            line += f"; replay of its {len(last_log)} requests {again:.1f} s, ratio {replay_ratios[-1]:.2f}"
        print(line + f"; load {os.getloadavg()[0]:.1f}")

    print(f"pushed {args.cases} cases to the source (before the rounds, untimed) in {pushed:.1f} s ({args.cases / pushed:.1f} cases/s)")
    print(f"throughput fhir-so / baseline over {args.rounds} rounds: {spread(ratios)}; "
          f"all rounds together {sum(base_s) / sum(fhir_so_s):.2f} (target >= 0.90)")
    if work_ratios:
        print(f"server CPU per case (both servers, all their threads): fhir-so median {statistics.median(server_ms['fhir-so']):.0f} ms, "
              f"baseline {statistics.median(server_ms['baseline']):.0f} ms; baseline / fhir-so: {spread(work_ratios)} "
              "(what throughput ratio the servers allow when they are the bottleneck, whatever else loads the machine)")
        dest = [b / f for b, f in zip(destination_ms["baseline"], destination_ms["fhir-so"])]
        print(f"the destination's CPU per case: fhir-so median {statistics.median(destination_ms['fhir-so']):.0f} ms, "
              f"baseline {statistics.median(destination_ms['baseline']):.0f} ms; baseline / fhir-so: {spread(dest)} "
              "(the ratio when the source runs on other cores or machines and the destination is the bottleneck)")
    if replay_ratios:
        print(f"fhir-so / replay of the same requests (client overhead): {spread(replay_ratios)}")
    print(f"fhir-so CPU: {1000 * cpu / args.cases:.0f} ms per case (request logging included)")
    print("round trips per case (fhir-so; the baseline: the 2 POSTs on the destination):")
    for kind, n in trips.items():
        print(f"  {n:5.2f}  {kind}")
    print(f"  {sum(trips.values()):5.2f}  in all; per batch: " + ", ".join(f"{n} {k}" for k, n in batch_trips.items()))

    # 5. memory
    rss = {}
    for m in sorted(args.memory):
        out = run_child(args, slices[args.rounds - m // size], work, f"memory{m}", record=False)
        rss[m] = out["rss_kib"] / 1024
        print(f"peak RSS moving {m} cases again: {rss[m]:.1f} MiB ({out['seconds']:.1f} s)")
    sizes = sorted(rss)
    print("peak RSS " + " -> ".join(f"{m}: {rss[m]:.1f} MiB" for m in sizes)
          + f"; ratio {sizes[-1]}/{sizes[0]} cases: {rss[sizes[-1]] / rss[sizes[0]]:.2f} (target: flat, about 1.0)")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    shutil.rmtree(work, ignore_errors=True)


def _token_of(body: str, token: str) -> str:
    """The slice token (run token with its last character the round) of a Bundle of an earlier round."""
    at = body.index(token[:-1])
    return body[at:at + len(token)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="http://127.0.0.1:8090/fhir")
    parser.add_argument("--destination", default="http://127.0.0.1:8091/fhir")
    parser.add_argument("--fresh", type=int, metavar="PORT", help="start two new servers on PORT and PORT+1 (empty databases) and use them")
    parser.add_argument("--cases", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--memory", type=lambda s: [int(x) for x in s.split(",")], default=[100, 500],
                        help="case counts to measure peak RSS at (default 100,500)")
    parser.add_argument("--replay", action="store_true", help="also replay every request of fhir-so's runs (client overhead)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--since", help=argparse.SUPPRESS)
    parser.add_argument("--record", help=argparse.SUPPRESS)
    parser.add_argument("--state", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.cases % args.rounds or args.cases < args.rounds or not 1 <= args.rounds <= len(RENAMES):
        sys.exit(f"--cases must be a multiple of --rounds (1 to {len(RENAMES)})")
    if args.fresh:
        with fresh_servers(args.fresh) as (args.source, args.destination, data):
            bench(args, data)
    else:
        bench(args, None)


if __name__ == "__main__":
    main()
