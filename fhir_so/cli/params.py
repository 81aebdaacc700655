"""Parameter types: inputs checked at the edge, so a bad value is a usage error (exit 2) naming the option.

``ServerUrl`` (a FHIR server's base URL) and ``PackageRef`` (``NAME#VERSION``, a package
folder or a ``.tgz``). A case file is not a parameter type on purpose: what is wrong inside
it is bad input (exit 2, one line naming the file and the place), not a usage error. Each delegates the rule to the library,
so the command line and Python agree on what is valid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from fhir_so.errors import InputError
from fhir_so.client.urls import check_base_url
from fhir_so.packages import parse_spec

__all__ = ["PackageRef", "ServerUrl"]


class ServerUrl(click.ParamType):
    """A FHIR server's base URL: http(s), a host, no credentials, no query (canonical: no trailing slash)."""

    name = "url"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return check_base_url(str(value))
        except InputError as exc:
            self.fail(str(exc), param, ctx)



class PackageRef(click.ParamType):
    """A FHIR package: ``NAME#VERSION`` (from the cache), a folder holding package.json, or a ``.tgz``."""

    name = "package"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        path = Path(text).expanduser()
        if path.is_dir() or (path.is_file() and text.endswith((".tgz", ".tar.gz"))):
            return text
        if path.exists():
            self.fail(f"{text}: not a FHIR package: expected a folder with package.json or a .tgz", param, ctx)
        if parse_spec(text) is None:
            self.fail(f"{text!r} is not NAME#VERSION (e.g. hl7.fhir.us.core#5.0.1), a package folder or a .tgz", param, ctx)
        return text
