"""What the local HAPI FHIR server costs: jar build time, start time, resident memory, disk.

Starts a throw-away instance (a free port, a temporary data folder) through the same
``fhir_so.server.LocalServer`` the CLI uses, and prints:

* start: seconds from launch to the first answer of ``/fhir/metadata`` (empty database, then
  again with the database kept: the second start skips creating the schema);
* RSS of the Java process after start, and after loading every ``examples/*.bundle.json`` as a
  transaction (each N times, with unique identifiers, ``--loads N``);
* disk taken by the data folder;
* with ``--baseline``: the naive start, ``java -Xmx1g -jar`` on Maven's jar (nested jars, no JVM
  options), so the ratio tuned / plain is measured in the same run on the same machine;
* with ``--fresh-build``: the jar built from a copy of server/ against an empty Maven cache
  (``-Dmaven.repo.local=TMP``; downloads about 350 MB from Maven Central).

    .venv/bin/python benchmarks/server.py [--fresh-build] [--baseline] [--loads 3]

The machine's load matters (2 cores): run it when nothing else is busy, and read the numbers
with ``uptime``'s load average, which the script prints.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

from fhir_so.server import LocalServer, ServerConfig

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.live.bundles import with_unique_identifiers  # noqa: E402  (the live tests' helper)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def disk_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def load_avg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def load_examples(base_url: str, loads: int) -> tuple[int, float]:
    """POST every example bundle `loads` times; (resources created, seconds)."""
    bundles = [json.loads(p.read_text()) for p in sorted((ROOT / "examples").glob("*.bundle.json"))]
    if not bundles:
        bundles = [json.loads((ROOT / "tests/live/data/minimal-case.bundle.json").read_text())]
    created = 0
    started = time.perf_counter()
    with requests.Session() as session:
        for _ in range(loads):
            for bundle in bundles:
                reply = session.post(base_url, json=with_unique_identifiers(bundle, uuid.uuid4().hex[:10]), timeout=300)
                reply.raise_for_status()
                created += len(reply.json()["entry"])
    return created, time.perf_counter() - started


def measure_start(config: ServerConfig, label: str) -> tuple[LocalServer, float]:
    server = LocalServer(config)
    status = server.start()
    assert status.pid is not None and status.seconds is not None
    print(f"{label:<34} {status.seconds:7.1f} s   RSS {rss_mb(status.pid):6.0f} MiB   (load {load_avg()})")
    return server, status.seconds


def fresh_build(work: Path) -> None:
    source = work / "server"
    shutil.copytree(ROOT / "server", source, ignore=shutil.ignore_patterns("target"))
    repo = work / "m2"
    config = ServerConfig.resolve(os.environ, data_dir=work / "unused", source_dir=source, maven_args=(f"-Dmaven.repo.local={repo}",))
    started = time.perf_counter()
    LocalServer(config).build(force=True)
    seconds = time.perf_counter() - started
    print(f"{'jar build, empty Maven cache':<34} {seconds:7.1f} s   cache {disk_mb(repo):6.0f} MiB   jar {config.jar.stat().st_size / 2**20:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fresh-build", action="store_true", help="also time a build against an empty Maven cache")
    parser.add_argument("--baseline", action="store_true", help="also start once with plain JVM options (the ratio)")
    parser.add_argument("--loads", type=int, default=3, help="times each example bundle is loaded")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="fhir-so-bench-") as tmp:
        work = Path(tmp)
        if args.fresh_build:
            fresh_build(work)
        LocalServer(ServerConfig.resolve(os.environ)).build()
        config = ServerConfig.resolve(os.environ, port=free_port(), data_dir=work / "data")

        server, cold = measure_start(config, "start, empty database")
        try:
            pid = server.running_pid()
            assert pid is not None
            created, seconds = load_examples(config.base_url, args.loads)
            print(f"{'load examples':<34} {seconds:7.1f} s   RSS {rss_mb(pid):6.0f} MiB   ({created} resources)")
        finally:
            server.stop()
        print(f"{'data folder on disk':<34} {disk_mb(config.data_dir):7.1f} MiB")

        server, _ = measure_start(config, "start, database kept")
        server.stop()

        if args.baseline:
            base = plain_start(config.jar, work / "plain")
            print(f"{'start ratio tuned / plain':<34} {cold / base:7.2f}")


def plain_start(jar: Path, data_dir: Path) -> float:
    """The naive launch, the baseline: ``java -Xmx1g -jar`` on Maven's jar, no JVM options, empty database."""
    port = free_port()
    data_dir.mkdir()
    command = ["java", "-Xmx1g", "-jar", str(jar), f"--server.port={port}", f"--fhirso.data={data_dir}"]
    started = time.perf_counter()
    with (data_dir / "server.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the baseline server exited; see {data_dir / 'server.log'}")
            try:
                if requests.get(f"http://127.0.0.1:{port}/fhir/metadata", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.5)
        seconds = time.perf_counter() - started
        label = "start, plain java -jar (baseline)"
        print(f"{label:<34} {seconds:7.1f} s   RSS {rss_mb(process.pid):6.0f} MiB   (load {load_avg()})")
        return seconds
    finally:
        process.terminate()
        process.wait(timeout=60)


if __name__ == "__main__":
    main()
