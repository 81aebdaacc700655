"""Scenario figures kept on the pytest config, printed in the terminal summary (tests/conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest


@dataclass
class Figures:
    """Per table (unit named, unit combinations, live): scenarios run, violations, disagreements."""

    rows: dict[str, list[int]] = field(default_factory=dict)

    def add(self, table: str, scenarios: int, violations: int, disagreements: int) -> None:
        row = self.rows.setdefault(table, [0, 0, 0])
        row[0] += scenarios
        row[1] += violations
        row[2] += disagreements

    def lines(self) -> list[str]:
        return [f"consent scenarios [{table}]: {n} scenarios x {v} violations (records moved that the consent does not allow), "
                f"{d} disagreements with the oracle" for table, (n, v, d) in sorted(self.rows.items())]


KEY = pytest.StashKey[Figures]()


def figures(config: pytest.Config) -> Figures:
    if KEY not in config.stash:
        config.stash[KEY] = Figures()
    return config.stash[KEY]
