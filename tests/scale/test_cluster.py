"""validate --scheduler on a real Dask cluster: a ``dask scheduler`` and two ``dask worker`` processes over TCP on the loopback.

The report must be the single process's, byte for byte, on a few thousand NDJSON resources the
project did not write (the official validator suite's, the examples'), and stay so when a worker
is killed in the middle of the run (Dask gives its chunks to the other worker).
The cluster listens on loopback ports of 18786-18799 and is torn down at the end of the module.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fhir_so.workflow import validate
from fhir_so.workflow.scale_out import CHUNK_BYTES, validate_parallel
from tests.scale.cluster import BIN, Cluster, ClusterStartError, local_cluster
from tests.scale.inputs import ROOT, ndjson_lines, real_resources, reports

pytestmark = pytest.mark.cluster

N = 3000


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    try:
        with local_cluster(tmp_path_factory.mktemp("dask"), workers=2) as running:
            yield running
    except ClusterStartError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def ndjson(suite: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """N resources from the suite and the examples, with fresh ids, and two bad lines."""
    path = tmp_path_factory.mktemp("cluster-input") / "resources.ndjson"
    with path.open("wb") as fh:
        for i, line in enumerate(ndjson_lines(real_resources(suite), N)):
            if i == 1234:
                fh.write(b'{"resourceType": "Patient", "id": \n')
            fh.write(line)
        fh.write(b"42\n")
    return path


@pytest.fixture(scope="module")
def inputs(ndjson: Path, suite: Path) -> list[Path]:
    """The NDJSON and one JSON file bigger than a chunk's 4 MiB (a chunk of its own)."""
    big = suite / "fr-smsse-regulee.json"
    assert big.stat().st_size > CHUNK_BYTES
    return [ndjson, big]


@pytest.fixture(scope="module")
def single(inputs: list[Path]) -> dict[str, tuple[bytes, str, int]]:
    return reports(validate(inputs))


def test_cli_on_the_cluster_writes_the_single_process_report(cluster: Cluster, inputs: list[Path], ndjson: Path, single: dict[str, tuple[bytes, str, int]], tmp_path: Path) -> None:
    out = tmp_path / "report.txt"
    proc = subprocess.run(
        [str(BIN / "fhir-so"), "validate", *map(str, inputs), "--scheduler", cluster.address, "--chunk-size", "250", "-o", str(out)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300,
    )
    report, summary, code = single["text"]
    assert proc.returncode == code == 2, proc.stderr[-3000:]
    assert out.read_bytes() == report
    assert proc.stderr.splitlines()[-1] == summary
    assert f"{ndjson}: at line 1235 column" in proc.stderr and f"{ndjson}: at line {N + 2}: expected a FHIR resource" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert summary.startswith(f"{N + 3} inputs: ")


def test_every_format_is_the_single_process_report_even_when_a_worker_is_killed_mid_run(
    cluster: Cluster, inputs: list[Path], single: dict[str, tuple[bytes, str, int]]
) -> None:
    """The last test of the module: it leaves one worker."""
    results = validate_parallel(inputs, scheduler=cluster.address, chunk_size=200)
    first = next(results)  # the first chunk is back: the next ones are in flight on both workers
    victim = cluster.workers[0]
    victim.kill()
    victim.wait(timeout=30)
    assert reports([first, *results]) == single  # Dask ran the lost chunks again on the other worker
    assert cluster.workers[1].poll() is None
