"""Validation throughput and memory: fhir-so validate (one process) against HAPI $validate, same inputs, same run.

Inputs: the validation corpus (tests/corpus/make_corpus.py, ~585 resources and Bundles) and a
generated NDJSON of N resources (default 100,000) cycled from the corpus's single resources.
For fhir-so it runs the real command (``fhir-so validate --format json -o FILE``) in a child
process and reads its peak RSS, at two NDJSON sizes to show memory is flat in input size. For
HAPI (when reachable at --server, default http://127.0.0.1:8090/fhir) it sends the corpus and
the first --hapi-sample NDJSON lines to ``POST [type]/$validate`` one by one, as a client would.

    .venv/bin/python benchmarks/validate.py [--n 100000] [--server URL] [--hapi-sample 2000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson



sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root: tests.corpus is ours
from tests.corpus.make_corpus import cases  # noqa: E402

FHIR_SO = str(Path(sys.executable).with_name("fhir-so"))


def make_ndjson(path: Path, n: int, pool: list[dict[str, Any]]) -> None:
    """Write n lines cycled from the pool, each with its own id, streamed."""
    with path.open("wb") as fh:
        for i in range(n):
            res = dict(pool[i % len(pool)])
            res["id"] = f"r{i}"
            fh.write(orjson.dumps(res) + b"\n")


def run_fhir_so(inputs: list[Path], out: Path) -> tuple[float, int, int]:
    """Seconds, exit code and peak RSS (KiB) of one `fhir-so validate` child process."""
    start = time.perf_counter()
    proc = subprocess.Popen([FHIR_SO, "validate", *map(str, inputs), "--format", "json", "-o", str(out)], stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    return seconds, os.waitstatus_to_exitcode(status), usage.ru_maxrss


def in_process_cpu(pool: list[dict[str, Any]]) -> float:
    """CPU µs per resource for the in-process validator (warm caches), business rules included."""
    from fhir_so.packages import PackageCache
    from fhir_so.validation import Validator
    from fhir_so.validation.loading import load_definitions

    v = Validator(load_definitions(PackageCache()))
    for r in pool:
        list(v.iter_issues(r))
    rounds = 5
    start = time.process_time()
    for _ in range(rounds):
        for r in pool:
            list(v.iter_issues(r))
    return (time.process_time() - start) / (rounds * len(pool)) * 1e6


def hapi_rate(server: str, resources: list[dict[str, Any]]) -> float | None:
    """Resources per second through HAPI's $validate, or None when the server is not reachable."""
    from fhir_so.client import FhirClient
    from fhir_so.errors import FhirSoError
    from fhir_so.workflow.remote_validate import RemoteValidator

    with FhirClient(server, timeout=(3.0, 300.0)) as client:
        try:
            client.capabilities()
        except FhirSoError:
            return None
        remote = RemoteValidator(client)
        list(remote.iter_issues(resources[0]))  # warm-up: HAPI loads its validation support lazily
        start = time.perf_counter()
        for r in resources:
            list(remote.iter_issues(r))
        return len(resources) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="NDJSON size (the smaller run uses n/10)")
    ap.add_argument("--server", default=os.environ.get("FHIR_SO_SERVER", "http://127.0.0.1:8090/fhir"))
    ap.add_argument("--hapi-sample", type=int, default=2000, help="NDJSON lines sent to HAPI (it is slow)")
    args = ap.parse_args()

    corpus = list(cases())
    singles = [c.resource for c in corpus if c.resource.get("resourceType") != "Bundle"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        corpus_dir = folder / "corpus"
        corpus_dir.mkdir()
        for c in corpus:
            (corpus_dir / f"{c.name}.json").write_bytes(orjson.dumps(c.resource))
        small, big = folder / "small.ndjson", folder / "big.ndjson"
        make_ndjson(small, max(1, args.n // 10), singles)
        make_ndjson(big, args.n, singles)

        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
        cpu_us = in_process_cpu(singles)
        print(f"in-process CPU time per resource (corpus, profiles + invariants + rules): {cpu_us:.0f} µs")

        rows = []
        secs, code, rss_c = run_fhir_so([corpus_dir], folder / "out-corpus.json")
        rows.append(("fhir-so validate corpus", len(corpus), secs, rss_c))
        secs_s, _, rss_s = run_fhir_so([small], folder / "out-small.json")
        rows.append((f"fhir-so validate NDJSON {args.n // 10:,}", args.n // 10, secs_s, rss_s))
        secs_b, _, rss_b = run_fhir_so([big], folder / "out-big.json")
        rows.append((f"fhir-so validate NDJSON {args.n:,}", args.n, secs_b, rss_b))
        for name, count, seconds, rss in rows:
            print(f"{name:<36} {count:>8} inputs {seconds:8.1f} s {count / seconds:9.0f} /s   peak RSS {rss / 1024:7.1f} MiB")
        print(f"memory, NDJSON x10 input: {rss_s / 1024:.1f} MiB -> {rss_b / 1024:.1f} MiB (ratio {rss_b / rss_s:.2f}; flat is ~1)")

        ours_corpus = len(corpus) / secs
        ours_ndjson = args.n / secs_b
        sample = [orjson.loads(line) for line, _ in zip(big.open("rb"), range(args.hapi_sample))]
        hapi_corpus = hapi_rate(args.server, [c.resource for c in corpus])
        if hapi_corpus is None:
            print(f"HAPI: no server at {args.server}; start one with `fhir-so server start` for the ratio")
            return
        hapi_ndjson = hapi_rate(args.server, sample)
        assert hapi_ndjson is not None
        print(f"{'HAPI $validate corpus':<36} {len(corpus):>8} inputs {'':>10} {hapi_corpus:9.0f} /s")
        print(f"{'HAPI $validate NDJSON sample':<36} {len(sample):>8} inputs {'':>10} {hapi_ndjson:9.0f} /s")
        print(f"ratio fhir-so / HAPI: corpus {ours_corpus / hapi_corpus:.1f}x, NDJSON {ours_ndjson / hapi_ndjson:.1f}x (target >= 10x)")


if __name__ == "__main__":
    main()
