"""A real local Dask cluster for tests and benchmarks: ``dask scheduler`` and ``dask worker`` processes over TCP on the loopback.

Ports come from this project's Dask range (18786-18799). Workers run one thread each, without a
nanny (so a killed worker stays dead, as a lost machine would), and import this checkout's fhir_so.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PORTS = range(18786, 18800)


class ClusterStartError(RuntimeError):
    """The local cluster did not come up; the message holds the tail of its logs."""


@dataclass
class Cluster:
    address: str
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]]


def free_ports(n: int) -> list[int]:
    """``n`` loopback ports of the project's Dask range that nothing listens on."""
    found = []
    for port in PORTS:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        found.append(port)
        if len(found) == n:
            return found
    raise ClusterStartError(f"fewer than {n} free loopback ports in {PORTS.start}-{PORTS.stop - 1}")


def _tail(logs: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in sorted(logs.glob("*.log")))


@contextmanager
def local_cluster(logs: Path, workers: int = 2, *, timeout: float = 90.0) -> Iterator[Cluster]:
    """Start a scheduler and ``workers`` workers, wait until all registered, stop them all at the end."""
    scheduler_port, *worker_ports = free_ports(1 + workers)
    address = f"tcp://127.0.0.1:{scheduler_port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs: list[subprocess.Popen[bytes]] = []

    def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as fh:
            proc = subprocess.Popen([str(BIN / "dask"), *args], stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=logs)
        procs.append(proc)
        return proc

    try:
        scheduler = start(["scheduler", "--host", "127.0.0.1", "--port", str(scheduler_port), "--no-dashboard"], logs / "scheduler.log")
        deadline = time.monotonic() + timeout
        while True:
            if scheduler.poll() is not None:
                raise ClusterStartError(f"the dask scheduler exited ({scheduler.returncode}):\n{_tail(logs)}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", scheduler_port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise ClusterStartError(f"the dask scheduler did not listen on {scheduler_port}:\n{_tail(logs)}")
            time.sleep(0.2)
        started = [
            start(
                [
                    "worker", address, "--host", "127.0.0.1", "--worker-port", str(port), "--nthreads", "1", "--no-nanny",
                    "--no-dashboard", "--name", f"w{i}", "--death-timeout", "60",
                ],
                logs / f"worker{i}.log",
            )
            for i, port in enumerate(worker_ports)
        ]
        # every worker registered before the first run (asked from a child: the caller keeps no Dask threads)
        code = f"from distributed import Client; c = Client({address!r}, timeout=60); c.wait_for_workers({workers}, timeout={timeout}); c.close()"
        waited = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=timeout + 90)
        if waited.returncode != 0:
            raise ClusterStartError(f"the dask workers did not register: {waited.stderr[-1500:]}\n{_tail(logs)}")
        yield Cluster(address, scheduler, started)
    finally:
        for proc in reversed(procs):  # workers first, then the scheduler
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:  # a graceful close that waits on a lost peer: not worth CI time
                proc.kill()
                proc.wait()
