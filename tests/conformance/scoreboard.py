"""Run the official FHIR validator suite through fhir-so and write SCOREBOARD.md.

Usage::

    python tests/conformance/scoreboard.py [--write-expected]

``--write-expected`` also rewrites ``expected_disagreements.json`` from this run: steps that now
agree are dropped, new disagreements are added with a reason by category (terminology steps) or
``"unexplained"`` (core steps: write the reason before committing); known reasons are kept. It
also writes ``floors.json``, today's figures on core R4, below which the test fails.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.conformance import fetch_suite  # noqa: E402
from tests.conformance import suite as S  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-expected", action="store_true")
    args = parser.parse_args(argv)
    path = fetch_suite.fetch()
    steps = S.steps(path)
    runner = S.Runner(path)
    outcomes = [runner.run(s) for s in steps if s.category != "skip"]
    skipped = [s for s in steps if s.category == "skip"]
    S.SCOREBOARD_FILE.write_text(S.scoreboard(outcomes, skipped), encoding="utf-8")
    print(S.SCOREBOARD_FILE.read_text(encoding="utf-8"))
    if args.write_expected:
        old = S.load_expected()
        new: dict[str, dict[str, str]] = {}
        for o in outcomes:
            if o.agrees:
                continue
            reason = old.get(o.step.id, {}).get("reason") or (
                "terminology: the Java verdict depends on the terminology server" if o.step.category == "terminology" else "unexplained"
            )
            new[o.step.id] = {"verdict": S.verdict(o), "java": "valid" if o.step.expected_valid else "invalid", "category": o.step.category, "reason": reason}
        S.EXPECTED_FILE.write_text(json.dumps(dict(sorted(new.items())), indent=1) + "\n", encoding="utf-8")
        print(f"{len(new)} expected disagreements written to {S.EXPECTED_FILE}")
        score = S.Score()
        for o in outcomes:
            if o.step.category == "core":
                score.add(o)
        m = score.metrics
        # floors a hair under today's figures (rounding), ceilings a hair over
        floors = {
            "agreement": math.floor(m["agreement"] * 1000) / 1000,
            "caught": math.floor(m["caught"] * 1000) / 1000,
            "same_path": math.floor(m["same_path"] * 1000) / 1000,
            "false_alarms": math.ceil(m["false_alarms"] * 1000) / 1000,
            "exit2": score.exit2,
        }
        S.FLOORS_FILE.write_text(json.dumps(floors, indent=1) + "\n", encoding="utf-8")
        print(f"floors written to {S.FLOORS_FILE}: {floors}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
