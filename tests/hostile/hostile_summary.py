"""Figures of the hostile-server runs, printed in pytest's terminal summary (so CI logs show them).

The tests register one :class:`HostileSummary` per session as a plugin (no conftest needed):
the fake-server tests count, per mode, the requests that reached the foreign origin and the
secrets among them; the fault-proxy live test counts faults injected and the duplicates,
losses and Provenance count found after each seeded run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.hostile.plugins import session_plugin

PLUGIN_NAME = "fhir-so-hostile-summary"


@dataclass
class HostileSummary:
    """Counters the tests fill; ``pytest_terminal_summary`` prints them."""

    modes: Counter[str] = field(default_factory=Counter)
    foreign_requests: Counter[str] = field(default_factory=Counter)
    foreign_secrets: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    runs: int = 0
    operations: int = 0
    resumes: int = 0
    duplicates: int = 0
    losses: int = 0
    provenance_errors: int = 0

    def record_mode(self, mode: str, foreign_requests: int, foreign_secrets: int) -> None:
        self.modes[mode] += 1
        self.foreign_requests[mode] += foreign_requests
        self.foreign_secrets[mode] += foreign_secrets

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        tr = terminalreporter
        if self.modes:
            tr.section("hostile servers (tests/hostile/fake_server.py)")
            tr.write_line(
                f"{sum(self.modes.values())} runs over {len(self.modes)} modes: "
                f"{sum(self.foreign_requests.values())} requests reached a foreign origin, "
                f"{sum(self.foreign_secrets.values())} secrets seen at a foreign origin"
            )
            for mode in sorted(self.modes):
                tr.write_line(
                    f"  {mode:<22} runs {self.modes[mode]:>2}  foreign requests {self.foreign_requests[mode]:>2}"
                    f"  secrets seen {self.foreign_secrets[mode]}"
                )
        if self.runs:
            tr.section("fault proxy in front of the local HAPI (tests/hostile/fault_proxy.py)")
            injected = sum(self.faults.values())
            kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.faults.items()))
            tr.write_line(
                f"{self.runs} seeded runs, {self.operations} push/transfer/report-back operations, "
                f"{injected} faults injected ({kinds}); {self.resumes} steps failed after retries and were resumed"
            )
            tr.write_line(
                f"duplicates {self.duplicates}, losses {self.losses}, "
                f"transfers without exactly one Provenance {self.provenance_errors}"
            )


def summary(config: pytest.Config) -> HostileSummary:
    """The session's summary, registered as a plugin on first use."""
    return session_plugin(config, PLUGIN_NAME, HostileSummary)
