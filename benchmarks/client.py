"""push and pull N cases with fhir-so against the same HTTP requests made with plain ``requests``,
on the local HAPI server, in the same run; and the peak memory of a paged search over 10,000 resources.

What is compared (the server's own work is the same on both sides):

* push: ``fhir_so.workflow.push(client, bundle)`` (one transaction, per-entry outcome) against
  ``session.post(base, json=bundle)`` + ``response.json()``. Both sides push their own fresh
  cases (distinct case ids), interleaved one by one so server drift hits both alike.
* pull: ``fhir_so.workflow.pull_bundle(client, case_id=...)`` (the searches, includes, paging
  and the Consent read, assembled into a Bundle) against the same GETs made by hand.
  ``pull`` to a Case also maps the resources to the case model; that cost is reported apart,
  since plain requests does no mapping at all.
* memory: tracemalloc peak while iterating a ``_count=100`` search over 1,000 and over 10,000
  ``Basic`` resources (created once, tagged, reused on the next run). Target: flat.

    .venv/bin/python benchmarks/client.py --server http://127.0.0.1:8090/fhir [--cases 100] [--cases 1000] [--resources 10000]

Prints the ratios fhir-so / plain requests (target: at most 1.10).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from fhir_so import terminology as term
from fhir_so.bundle import build_bundle, parse_bundle
from fhir_so.case import Case, load_case
from fhir_so.client import FhirClient
from fhir_so.workflow import pull_bundle, push

ROOT = Path(__file__).resolve().parents[1]
BENCH_TAG = "https://fhir-so.org/fhir/benchmark"
HEADERS = {"Accept": "application/fhir+json", "Content-Type": "application/fhir+json; fhirVersion=4.0"}


def cases(n: int, prefix: str) -> list[Case]:
    base = load_case(ROOT / "examples" / "urology-second-opinion.case.json").model_copy(update={"opinion": None})
    return [base.model_copy(update={"case_id": f"bench-{prefix}-{i:05d}"}) for i in range(n)]


# -- plain requests: the same HTTP work, by hand ------------------------------------------------


def plain_push(session: requests.Session, base: str, bundle: dict[str, Any]) -> dict[str, Any]:
    response = session.post(base, json=bundle, headers=HEADERS, timeout=(5, 60))
    response.raise_for_status()
    answer: dict[str, Any] = response.json()
    return answer


def _plain_search(session: requests.Session, url: str, params: list[tuple[str, str]] | None) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    next_url: str | None = url
    while next_url:
        response = session.get(next_url, params=params, headers=HEADERS, timeout=(5, 60))
        response.raise_for_status()
        page = response.json()
        params = None
        found += [e["resource"] for e in page.get("entry") or []]
        next_url = next((link["url"] for link in page.get("link") or [] if link.get("relation") == "next"), None)
    return found


def plain_pull(session: requests.Session, base: str, case_id: str) -> dict[str, Any]:
    resources = _plain_search(session, f"{base}/ServiceRequest", [
        ("identifier", f"{term.SID_CASE}|{case_id}"),
        ("_include", "ServiceRequest:subject"), ("_include", "ServiceRequest:requester"), ("_include", "ServiceRequest:performer"),
    ])
    request = resources[0]
    ref = f"ServiceRequest/{request['id']}"
    resources += _plain_search(session, f"{base}/DocumentReference", [("related", ref), ("_include", "DocumentReference:author")])
    resources += _plain_search(session, f"{base}/DiagnosticReport", [("based-on", ref), ("_include", "DiagnosticReport:performer")])
    consents = sorted(i["reference"].split("/")[1] for i in request.get("supportingInfo") or [] if "reference" in i)
    if consents:
        resources += _plain_search(session, f"{base}/Consent", [("_id", ",".join(consents))])
    unique = {f"{r['resourceType']}/{r['id']}": r for r in resources}
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"fullUrl": f"{base}/{k}", "resource": r} for k, r in unique.items()]}


# -- timing ----------------------------------------------------------------------------------------


def interleaved(n: int, ours: Callable[[int], Any], theirs: Callable[[int], Any]) -> tuple[float, float]:
    """Total seconds of each side, alternating which goes first."""
    t_ours = t_theirs = 0.0
    for i in range(n):
        order = [(ours, True), (theirs, False)] if i % 2 == 0 else [(theirs, False), (ours, True)]
        for func, mine in order:
            started = time.perf_counter()
            func(i)
            spent = time.perf_counter() - started
            if mine:
                t_ours += spent
            else:
                t_theirs += spent
    return t_ours, t_theirs


def bench_cases(base: str, n: int, run: str) -> None:
    ours_cases, their_cases = cases(n, f"{run}-f"), cases(n, f"{run}-r")
    ours_bundles = [build_bundle(c) for c in ours_cases]
    their_bundles = [build_bundle(c) for c in their_cases]
    session = requests.Session()
    with FhirClient(base) as client:
        client.capabilities()
        t_push_ours, t_push_theirs = interleaved(
            n, lambda i: push(client, ours_bundles[i]), lambda i: plain_push(session, base, their_bundles[i])
        )
        # Pull the same cases from both sides, so the server does exactly the same work.
        same = [c.case_id for c in ours_cases]
        t_pull_ours, t_pull_theirs = interleaved(
            n, lambda i: pull_bundle(client, case_id=same[i]), lambda i: plain_pull(session, base, same[i])
        )
        mapping = []
        for case_id in same[: min(n, 50)]:
            bundle = pull_bundle(client, case_id=case_id)
            started = time.perf_counter()
            parse_bundle(bundle, "bench", case_id)
            mapping.append(time.perf_counter() - started)
    print(f"N = {n} cases ({len(ours_bundles[0]['entry'])} resources each)")
    print(f"  push: fhir-so {t_push_ours:7.2f} s  plain requests {t_push_theirs:7.2f} s  ratio {t_push_ours / t_push_theirs:.3f}"
          f"  ({1000 * t_push_ours / n:.1f} vs {1000 * t_push_theirs / n:.1f} ms per case)")
    print(f"  pull: fhir-so {t_pull_ours:7.2f} s  plain requests {t_pull_theirs:7.2f} s  ratio {t_pull_ours / t_pull_theirs:.3f}"
          f"  ({1000 * t_pull_ours / n:.1f} vs {1000 * t_pull_theirs / n:.1f} ms per case)")
    print(f"  pull to a Case adds the mapping (parse_bundle, R4 model checks): median {1000 * statistics.median(mapping):.1f} ms per case")


# -- memory ----------------------------------------------------------------------------------------


def ensure_resources(client: FhirClient, total: int) -> None:
    """``total`` Basic resources tagged for the benchmark (the first 1,000 also tagged 'small'); created once."""
    have = client.search("Basic", _tag=f"{BENCH_TAG}|all").count()
    if have >= total:
        return
    print(f"  creating {total - have} Basic resources for the memory benchmark (once)...")
    batch = 500
    for start in range(have, total, batch):
        entries = []
        for i in range(start, min(start + batch, total)):
            tags = [{"system": BENCH_TAG, "code": "all"}] + ([{"system": BENCH_TAG, "code": "small"}] if i < 1000 else [])
            entries.append({
                "resource": {
                    "resourceType": "Basic",
                    "meta": {"tag": tags},
                    "identifier": [{"system": BENCH_TAG, "value": f"basic-{i:06d}"}],
                    "code": {"coding": [{"system": BENCH_TAG, "code": "bench"}]},
                    "text": {"status": "generated", "div": f"<div xmlns=\"http://www.w3.org/1999/xhtml\">benchmark resource {i} " + "x" * 200 + "</div>"},
                },
                "request": {"method": "POST", "url": "Basic", "ifNoneExist": f"identifier={BENCH_TAG}|basic-{i:06d}"},
            })
        client.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries})


def peak_while_searching(client: FhirClient, tag: str) -> tuple[int, int, float]:
    gc.collect()
    tracemalloc.start()
    started = time.perf_counter()
    count = 0
    for _ in client.search("Basic", _tag=f"{BENCH_TAG}|{tag}").page_size(100):
        count += 1
    spent = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return count, peak, spent


def plain_peak(base: str, tag: str) -> tuple[int, int]:
    """The same search with plain requests, keeping every resource (the naive 'fetch all pages')."""
    session = requests.Session()
    gc.collect()
    tracemalloc.start()
    found = _plain_search(session, f"{base}/Basic", [("_tag", f"{BENCH_TAG}|{tag}"), ("_count", "100")])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return len(found), peak


def bench_memory(base: str, total: int) -> None:
    with FhirClient(base, timeout=(5.0, 120.0)) as client:
        ensure_resources(client, total)
        print(f"peak memory while paging a search (_count=100), tracemalloc:")
        results = {}
        for tag in ("small", "all"):
            count, peak, spent = peak_while_searching(client, tag)
            results[tag] = peak
            print(f"  fhir-so search over {count:6d} resources: peak {peak / 1024:8.0f} KiB  ({spent:.1f} s)")
        for tag in ("small", "all"):
            count, peak = plain_peak(base, tag)
            print(f"  plain requests, all pages kept, {count:6d} resources: peak {peak / 1024:8.0f} KiB")
        print(f"  fhir-so peak ratio 10x resources / 1x: {results['all'] / results['small']:.2f} (flat = about 1)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default="http://127.0.0.1:8090/fhir")
    parser.add_argument("--cases", type=int, action="append", help="N cases to push and pull (repeatable; default 100)")
    parser.add_argument("--resources", type=int, default=10_000, help="resources for the memory benchmark (0 to skip)")
    args = parser.parse_args()
    run = uuid.uuid4().hex[:6]
    for n in args.cases or [100]:
        bench_cases(args.server.rstrip("/"), n, run)
    if args.resources:
        bench_memory(args.server.rstrip("/"), args.resources)


if __name__ == "__main__":
    main()
