"""Validation scaled out: one process vs ``--jobs N`` vs a local Dask cluster, on N NDJSON resources (default 1,000,000).

The NDJSON is made by cycling real resources the project did not write (the official FHIR
validator suite's R4 inputs and the examples' resources) with fresh ids, streamed to a temporary
file (never held in memory). Each mode runs the real command, ``fhir-so validate FILE -o REPORT``,
in a child process:

- ``single``: one process (the baseline of the ratios);
- ``jobs``: ``--jobs N`` (local worker processes);
- ``dask``: ``--scheduler tcp://127.0.0.1:PORT`` on a ``dask scheduler`` and N ``dask worker``
  processes (one thread each) started here over TCP on the loopback (ports 18786-18799).

It prints wall time, resources per second and the ratio to the single process, CPU seconds of
every process, and the peak RSS (``VmHWM``) of the client and of each worker, polled from /proc;
then checks that the three reports are identical (SHA-256). On a shared machine read the ratios
with the load average printed at the start and end.

    .venv/bin/python benchmarks/validate_scale.py [--n 1000000] [--jobs 2] [--chunk-size 2000] [--modes single,jobs,dask]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root: tests.* are ours
from tests.conformance import fetch_suite  # noqa: E402
from tests.scale.cluster import local_cluster  # noqa: E402
from tests.scale.inputs import ndjson_lines, real_resources  # noqa: E402

FHIR_SO = str(Path(sys.executable).with_name("fhir-so"))
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Run:
    mode: str
    seconds: float = 0.0
    exit_code: int = 0
    digest: str = ""
    #: pid -> (role, peak RSS in KiB, CPU seconds), last seen
    procs: dict[int, tuple[str, int, float]] = field(default_factory=dict)


def _peak_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _watch(run: Run, role_of: dict[int, str], proc: psutil.Process) -> None:
    """Record peak RSS and CPU of the client, its children (--jobs workers) and the given workers (Dask)."""
    found = {proc.pid: "client"}
    try:
        for child in proc.children(recursive=True):
            if child.pid not in run.procs:  # multiprocessing's resource tracker is no worker
                found[child.pid] = "helper" if "resource_tracker" in " ".join(child.cmdline()) else "worker"
            else:
                found[child.pid] = run.procs[child.pid][0]
    except psutil.Error:
        pass
    found.update(role_of)
    for pid, role in found.items():
        try:
            times = psutil.Process(pid).cpu_times()
            cpu = times.user + times.system
        except psutil.Error:
            continue
        peak = _peak_kib(pid)
        _, old_peak, old_cpu = run.procs.get(pid, (role, 0, 0.0))
        run.procs[pid] = (role, max(peak, old_peak), max(cpu, old_cpu))


def measure(mode: str, ndjson: Path, report: Path, extra: list[str], workers: dict[int, str] | None = None) -> Run:
    run = Run(mode)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    child = subprocess.Popen([FHIR_SO, "validate", str(ndjson), "-o", str(report), *extra], stderr=subprocess.PIPE, env=env)
    watched = psutil.Process(child.pid)
    while child.poll() is None:
        _watch(run, workers or {}, watched)
        time.sleep(0.5)
    run.seconds = time.perf_counter() - start
    stderr = child.stderr.read().decode(errors="replace") if child.stderr else ""
    run.exit_code = child.returncode
    if run.exit_code not in (0, 1):
        sys.exit(f"{mode}: fhir-so validate failed (exit {run.exit_code}):\n{stderr[-2000:]}")
    digest = hashlib.sha256()
    with report.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    run.digest = digest.hexdigest()
    print(f"  {mode}: {run.seconds:.1f} s, exit {run.exit_code}; {stderr.strip().splitlines()[-1] if stderr.strip() else ''}", flush=True)
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000, help="NDJSON resources (default 1,000,000)")
    parser.add_argument("--jobs", type=int, default=2, help="local processes, and Dask workers (default 2)")
    parser.add_argument("--chunk-size", type=int, default=2000)
    parser.add_argument("--modes", default="single,jobs,dask", help="which runs, comma-separated (default all three)")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not fetch_suite.is_fetched():
        sys.exit("the FHIR validator test suite is not fetched: python tests/conformance/fetch_suite.py")

    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="fhir-so-scale-") as tmp:
        work = Path(tmp)
        ndjson = work / "resources.ndjson"
        pool = real_resources(fetch_suite.suite_dir())
        with ndjson.open("wb") as fh:
            for line in ndjson_lines(pool, args.n):
                fh.write(line)
        size = ndjson.stat().st_size
        print(f"{args.n:,} resources ({size / 2**20:,.0f} MiB NDJSON) cycled from {len(pool)} real resources; chunks of {args.chunk_size:,}")

        runs: list[Run] = []
        chunk = ["--chunk-size", str(args.chunk_size)]
        for mode in modes:
            report = work / f"report-{mode}.txt"
            if mode == "single":
                runs.append(measure(mode, ndjson, report, []))
            elif mode == "jobs":
                runs.append(measure(f"--jobs {args.jobs}", ndjson, report, ["--jobs", str(args.jobs), *chunk]))
            elif mode == "dask":
                logs = work / "dask"
                logs.mkdir()
                with local_cluster(logs, workers=args.jobs) as cluster:
                    roles = {w.pid: "worker" for w in cluster.workers}
                    roles[cluster.scheduler.pid] = "scheduler"
                    runs.append(measure(f"dask, {args.jobs} workers", ndjson, report, ["--scheduler", cluster.address, *chunk], roles))
            else:
                sys.exit(f"unknown mode {mode!r}")
            report.unlink()  # a 1M-resource report is hundreds of MB: keep only its digest

    base = next((r for r in runs if r.mode == "single"), None)
    print(f"\nload average at end: {os.getloadavg()[0]:.1f}")
    base_cpu = sum(c for _, _, c in base.procs.values()) if base else 0.0
    # on a shared machine wall time measures the other load: the CPU of the busiest process is the
    # critical path, and single CPU / that is the ratio the run would reach with a core per process
    print("| mode | wall s | resources/s | vs single (wall) | vs single (busiest process's CPU) | CPU s, all processes | CPU s: client / each worker | client peak RSS | peak RSS per worker |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        rate = args.n / r.seconds
        ratio = f"{base.seconds / r.seconds:.2f}x" if base else "-"
        cpu = sum(c for _, _, c in r.procs.values())
        client = max((p for role, p, _ in r.procs.values() if role == "client"), default=0)
        workers = [p for role, p, _ in r.procs.values() if role == "worker"]
        per_worker = ", ".join(f"{p / 1024:.0f} MiB" for p in sorted(workers)) or "-"
        client_cpu = sum(c for role, _, c in r.procs.values() if role == "client")
        worker_cpu = " / ".join(f"{c:,.1f}" for role, _, c in sorted(r.procs.values()) if role == "worker")
        split = f"{client_cpu:,.1f}" + (f" / {worker_cpu}" if worker_cpu else "")
        busiest = max((c for role, _, c in r.procs.values() if role in ("client", "worker")), default=0.0)
        cpu_ratio = f"{base_cpu / busiest:.2f}x" if base and busiest else "-"
        print(f"| {r.mode} | {r.seconds:,.1f} | {rate:,.0f} | {ratio} | {cpu_ratio} | {cpu:,.1f} | {split} | {client / 1024:.0f} MiB | {per_worker} |")
    digests = {r.digest for r in runs}
    same = len(digests) == 1 and len({r.exit_code for r in runs}) == 1
    print(f"\nreports identical (SHA-256, exit code): {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
