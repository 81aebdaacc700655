"""Parameter types: inputs checked at the edge, so a bad value is a usage error (exit 2) naming the option.

``ServerUrl`` (a FHIR server's base URL), ``CaseFile`` (a case file, or with
``bundles=True`` also a transaction Bundle, loaded and schema-checked) and ``PackageRef``
(``NAME#VERSION``, a package folder or a ``.tgz``). Each delegates the rule to the library,
so the command line and Python agree on what is valid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from fhir_so.case import load_case
from fhir_so.errors import InputError
from fhir_so.fhirtypes import check_base_url
from fhir_so.packages import parse_spec

__all__ = ["CaseFile", "PackageRef", "ServerUrl"]


class ServerUrl(click.ParamType):
    """A FHIR server's base URL: http(s), a host, no credentials, no query (canonical: no trailing slash)."""

    name = "url"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return check_base_url(str(value))
        except InputError as exc:
            self.fail(str(exc), param, ctx)


class CaseFile(click.ParamType):
    """A case file, loaded (schema-checked, attachment files read); with ``bundles`` a transaction Bundle too.

    The value is the loaded :class:`~fhir_so.case.Case` (or the Bundle as a dict); a bad file is a
    usage error whose message names the file and the place in it.
    """

    name = "case"

    def __init__(self, *, bundles: bool = False) -> None:
        self.bundles = bundles

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, (str, Path)):
            return value  # already loaded (a default, or a second conversion)
        # --files-root is eager, so it is known before the case file is read
        files_root = ctx.params.get("files_root") if ctx is not None else None
        try:
            if self.bundles:
                from fhir_so.workflow.push import load_push_input

                return load_push_input(value, files_root=files_root)
            return load_case(value, files_root=files_root)
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
