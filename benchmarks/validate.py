"""Validation throughput and memory: fhir-so validate against HAPI $validate and the HL7 validator engine, same inputs, same run.

Inputs: the validation corpus (tests/corpus/make_corpus.py, ~610 resources and Bundles) and a
generated NDJSON of N resources (default 100,000) cycled from the corpus's single resources; its
first --sample lines (default 2,000) are the shared sample every validator gets.
For fhir-so it runs the real command (``fhir-so validate --format json -o FILE``) in a child
process and reads its CPU time and peak RSS, at two NDJSON sizes to show memory is flat in input
size. The HL7 validator engine (the reference, ``reference/``, offline, built with Maven on first
use) validates the sample in one JVM, start included, as a user of the HL7 CLI would run it.
HAPI (when reachable at --server, default http://127.0.0.1:8090/fhir) gets the corpus and the
sample through ``POST [type]/$validate`` one by one, as a client would.

    .venv/bin/python benchmarks/validate.py [--n 100000] [--sample 2000] [--server URL] [--no-reference]
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

from tests import reference_validator  # noqa: E402

FHIR_SO = str(Path(sys.executable).with_name("fhir-so"))


def make_ndjson(path: Path, n: int, pool: list[dict[str, Any]]) -> None:
    """Write n lines cycled from the pool, each with its own id, streamed."""
    with path.open("wb") as fh:
        for i in range(n):
            res = dict(pool[i % len(pool)])
            res["id"] = f"r{i}"
            fh.write(orjson.dumps(res) + b"\n")


def run_fhir_so(inputs: list[Path], out: Path) -> tuple[float, float, int]:
    """Seconds, CPU seconds and peak RSS (KiB) of one `fhir-so validate` child process."""
    start = time.perf_counter()
    proc = subprocess.Popen([FHIR_SO, "validate", *map(str, inputs), "--format", "json", "-o", str(out)], stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        sys.exit(f"fhir-so validate failed (exit {code}) on {inputs}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


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


def invalid_by_line(report: Path) -> dict[int | None, bool]:
    """Line number -> has an error, from fhir-so's JSON report of one NDJSON file (fullUrl ...#line=N)."""
    found: dict[int | None, bool] = {}
    for entry in orjson.loads(report.read_bytes()).get("entry", []):
        line = int(entry["fullUrl"].rsplit("#line=", 1)[1]) if "#line=" in entry["fullUrl"] else None
        found[line] = any(i.get("severity") in ("error", "fatal") for i in entry["resource"].get("issue", []))
    return found


def reference_run(sample: Path, heap: str) -> reference_validator.RunResult:
    """The HL7 validator engine over the sample, one JVM, start included (the jar is built first, untimed)."""
    reference_validator.build(progress=lambda msg: print(f"  {msg}", file=sys.stderr))
    return reference_validator.run([sample], igs=["fhir-so.profiles#0.1.0"], heap=heap)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="NDJSON size (the smaller run uses n/10)")
    ap.add_argument("--sample", type=int, default=2000, help="NDJSON lines every validator gets (HAPI and the HL7 engine are slow)")
    ap.add_argument("--server", default=os.environ.get("FHIR_SO_SERVER", "http://127.0.0.1:8090/fhir"))
    ap.add_argument("--no-reference", action="store_true", help="skip the HL7 validator engine (needs Java 17 and Maven)")
    ap.add_argument("--heap", default=reference_validator.DEFAULT_HEAP, help="the HL7 engine's -Xmx")
    args = ap.parse_args()

    corpus = list(cases())
    singles = [c.resource for c in corpus if c.resource.get("resourceType") != "Bundle"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        corpus_dir = folder / "corpus"
        corpus_dir.mkdir()
        for c in corpus:
            (corpus_dir / f"{c.name}.json").write_bytes(orjson.dumps(c.resource))
        sample, small, big = folder / "sample.ndjson", folder / "small.ndjson", folder / "big.ndjson"
        make_ndjson(sample, args.sample, singles)
        make_ndjson(small, max(1, args.n // 10), singles)
        make_ndjson(big, args.n, singles)

        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
        cpu_us = in_process_cpu(singles)
        print(f"fhir-so in-process CPU per resource, steady state (corpus, profiles + invariants + rules): {cpu_us:.0f} µs (target <= 250 µs)")

        rows = []
        secs, cpu_c, rss_c = run_fhir_so([corpus_dir], folder / "out-corpus.json")
        rows.append(("fhir-so validate corpus", len(corpus), secs, cpu_c, rss_c))
        secs_p, cpu_p, rss_p = run_fhir_so([sample], folder / "out-sample.json")
        rows.append((f"fhir-so validate sample {args.sample:,}", args.sample, secs_p, cpu_p, rss_p))
        secs_s, cpu_s, rss_s = run_fhir_so([small], folder / "out-small.json")
        rows.append((f"fhir-so validate NDJSON {args.n // 10:,}", args.n // 10, secs_s, cpu_s, rss_s))
        secs_b, cpu_b, rss_b = run_fhir_so([big], folder / "out-big.json")
        rows.append((f"fhir-so validate NDJSON {args.n:,}", args.n, secs_b, cpu_b, rss_b))
        engine = None
        if not args.no_reference:
            engine = reference_run(sample, args.heap)
            rows.append((f"HL7 engine sample {args.sample:,}", len(engine.outcomes), engine.seconds, engine.cpu_seconds, engine.max_rss_kib))
        print("(process start included; CPU = user + system of the process)")
        for name, count, seconds, cpu, rss in rows:
            print(f"{name:<36} {count:>8} inputs {seconds:8.1f} s {count / seconds:9.0f} /s  CPU {cpu:8.1f} s  peak RSS {rss / 1024:7.1f} MiB")
        print(f"memory, NDJSON x10 input: {rss_s / 1024:.1f} MiB -> {rss_b / 1024:.1f} MiB (ratio {rss_b / rss_s:.2f}; flat is ~1)")

        if engine is not None:
            assert len(engine.outcomes) == args.sample, f"the HL7 engine gave {len(engine.outcomes)} outcomes for {args.sample} inputs"
            st = engine.stats
            per = st["validateCpuSeconds"] / max(1, st["inputs"]) * 1e6
            print(
                f"HL7 engine: start {st['startCpuSeconds']:.1f} s CPU ({st['startSeconds']:.1f} s), then {per:,.0f} µs CPU per resource"
                f" ({st['validateCpuSeconds']:.1f} s CPU for {st['inputs']:,}); fhir-so: {cpu_us:.0f} µs"
            )
            ours = invalid_by_line(folder / "out-sample.json")
            theirs = {o.line: not o.valid for o in engine.outcomes}
            same = sum(ours.get(line) == bad for line, bad in theirs.items())
            print(
                f"verdicts on the sample: invalid fhir-so {sum(ours.values())}, HL7 engine {sum(theirs.values())};"
                f" same verdict {same}/{len(theirs)} (a benchmark compares like with like)"
            )
            by_line = {o.line: o for o in engine.outcomes}
            for line in sorted(line for line, bad in theirs.items() if ours.get(line) != bad)[:5]:
                first = next(iter(by_line[line].errors), None)
                said = f"{first.path}: {first.message[:120]}" if first is not None else "no error"
                print(f"  differs, line {line}: fhir-so {'invalid' if ours.get(line) else 'valid'}; HL7 engine: {said}")
            print(
                f"ratio fhir-so / HL7 engine, {args.sample:,} resources, start included: wall {engine.seconds / secs_p:.1f}x,"
                f" CPU {engine.cpu_seconds / cpu_p:.1f}x (target >= 20x)"
            )

        hapi_corpus = hapi_rate(args.server, [c.resource for c in corpus])
        if hapi_corpus is None:
            print(f"HAPI: no server at {args.server}; start one with `fhir-so server start` for the ratio")
            return
        hapi_sample = hapi_rate(args.server, [orjson.loads(line) for line in sample.read_bytes().splitlines()])
        assert hapi_sample is not None
        print(f"{'HAPI $validate corpus':<36} {len(corpus):>8} inputs {'':>10} {hapi_corpus:9.0f} /s")
        print(f"{'HAPI $validate sample':<36} {args.sample:>8} inputs {'':>10} {hapi_sample:9.0f} /s")
        print(
            f"ratio fhir-so / HAPI $validate: corpus {len(corpus) / secs / hapi_corpus:.1f}x,"
            f" sample {args.sample / secs_p / hapi_sample:.1f}x, NDJSON {args.n / secs_b / hapi_sample:.1f}x (target >= 10x)"
        )


if __name__ == "__main__":
    main()
