"""Processes and ports of this machine, as the local server's start, stop and status see them.

Read from ``/proc`` on Linux (a process's state and arguments); elsewhere the answers are the
cautious ones (alive when it exists, arguments unknown).
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

__all__ = ["cmdline", "pid_alive", "port_in_use", "process_state"]


def port_in_use(host: str, port: int) -> bool:
    """True when something accepts connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def process_state(pid: int) -> str | None:
    """The kernel's one-letter state of a process (Linux), None when the process does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return "?"
    return stat.rsplit(")", 1)[1].split()[0]


def pid_alive(pid: int) -> bool:
    """True when the process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return process_state(pid) not in (None, "Z") if sys.platform.startswith("linux") else True


def cmdline(pid: int) -> list[str] | None:
    """The process's arguments (Linux), None where they cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.decode(errors="replace").split("\0")
