"""The application object every command gets on ``ctx.obj``: the environment and a client factory.

One place reads the environment (``FHIR_SO_*``, and ``FHIR_SO_FROM_*`` / ``FHIR_SO_TO_*`` for
the two sides of a transfer) and one timeout policy holds for every client: ``--timeout``
(or ``FHIR_SO_TIMEOUT``) is the read timeout, the connect timeout is the same capped at
10 s. Clients are registered with ``ctx.with_resource``, so they close when the command ends,
whatever way it ends.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import click

from fhir_so.auth import Auth, auth_from_env
from fhir_so.client import FhirClient
from fhir_so.errors import InputError

__all__ = ["App", "DEFAULT_TIMEOUT", "Side", "pass_app"]

Side = Literal["", "from", "to"]
#: Seconds to wait for each answer (``--timeout``); the connect timeout is capped at ``_CONNECT_CAP``.
DEFAULT_TIMEOUT = 30.0
_CONNECT_CAP = 10.0
_PREFIX = "FHIR_SO_"
_SIDE_PREFIX = {"": _PREFIX, "from": "FHIR_SO_FROM_", "to": "FHIR_SO_TO_"}
_AUTH_NAMES = ("CLIENT_ID", "PRIVATE_KEY", "TOKEN_URL", "SCOPE", "KEY_ID", "TOKEN", "USERNAME", "PASSWORD")


@dataclass
class App:
    """What the commands share: the environment they were started in, and the clients they open."""

    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    #: what builds a client (a seam for tests: a subclass that records, or one with a mounted session)
    client_class: type[FhirClient] = FhirClient

    def auth(self, side: Side = "") -> Auth | None:
        """Credentials for one side: ``FHIR_SO_FROM_*`` / ``FHIR_SO_TO_*`` when any is set, else ``FHIR_SO_*``."""
        prefix = _SIDE_PREFIX[side]
        if side and any(self.env.get(prefix + n) for n in _AUTH_NAMES):
            return _auth_from_env({_PREFIX + n: self.env[prefix + n] for n in _AUTH_NAMES if self.env.get(prefix + n)})
        return _auth_from_env(self.env)

    @staticmethod
    def timeouts(read: float) -> tuple[float, float]:
        """(connect, read) seconds for a client, from the one ``--timeout`` value."""
        return min(_CONNECT_CAP, read), read

    def client(self, url: str | None, *, timeout: float = DEFAULT_TIMEOUT, side: Side = "", what: str = "--server") -> FhirClient:
        """A client for ``url``, closed when the current command ends; a clear error when no URL was given."""
        if not url:
            raise InputError(f"give the FHIR server's base URL with {what} (or the environment variable)")
        client = self.client_class(url, auth=self.auth(side), timeout=self.timeouts(timeout))
        return click.get_current_context().with_resource(client)


pass_app = click.make_pass_decorator(App, ensure=True)


# RFC 6750 b64token: what a bearer token may hold. Anything else cannot go in an HTTP header
# (requests raises UnicodeEncodeError on a non-Latin-1 character): refuse it here, never echo it.
_BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def _auth_from_env(environ: Mapping[str, str]) -> Auth | None:
    """:func:`fhir_so.auth.auth_from_env`, after checking that a bearer token can be sent at all."""
    for name, value in environ.items():
        if name.startswith("FHIR_SO_") and name.endswith("TOKEN") and value and not _BEARER_TOKEN.fullmatch(value):
            raise InputError(
                f"{name} holds characters a bearer token cannot have (only ASCII letters, digits and -._~+/=); "
                "the value is not shown"
            )
    return auth_from_env(environ)
