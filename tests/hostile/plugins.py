"""One summary object per pytest session, registered as a plugin so its ``pytest_terminal_summary`` runs."""

from __future__ import annotations

from typing import TypeVar

import pytest

T = TypeVar("T")


def session_plugin(config: pytest.Config, name: str, kind: type[T]) -> T:
    """The session's plugin ``name`` (a ``kind``), made and registered on first use."""
    found = config.pluginmanager.get_plugin(name)
    if found is None:
        found = kind()
        config.pluginmanager.register(found, name)
    assert isinstance(found, kind)
    return found
