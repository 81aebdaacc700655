"""Options and output helpers shared by every command; library errors become exit codes here."""

from __future__ import annotations

import functools
import json
import re
import sys
from collections.abc import Mapping
from typing import Any, Callable, TypeVar

import click

from fhir_so.cli.app import DEFAULT_TIMEOUT
from fhir_so.cli.params import ServerUrl
from fhir_so.errors import FhirSoError
from fhir_so.jsonio import write_atomic

F = TypeVar("F", bound=Callable[..., Any])


class CliError(click.ClickException):
    """A library error shown to the user with its own exit code and no traceback."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click reads it per instance


def translate_errors(func: F) -> F:
    """Run a command body; turn FhirSoError into CliError (message + documented exit code)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except FhirSoError as exc:
            raise CliError(str(exc), exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


json_option = click.option("--json", "as_json", is_flag=True, help="Print a machine-readable JSON result on stdout.")

output_option = click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    help="Write here (atomically) instead of stdout.",
)

files_root_option = click.option(
    "--files-root",
    type=click.Path(file_okay=False, path_type=str),
    metavar="DIR",
    help="Read the case's attachment files (records[].content.file) from inside DIR only. Default: the case file's folder.",
)

server_option = click.option(
    "--server",
    type=ServerUrl(),
    envvar="FHIR_SO_SERVER",
    show_envvar=True,
    metavar="URL",
    help="Base URL of the FHIR server, e.g. http://127.0.0.1:8080/fhir.",
)

timeout_option = click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    envvar="FHIR_SO_TIMEOUT",
    show_envvar=True,
    metavar="SECONDS",
    help="Read timeout of each request to the server (connect: the same, at most 10 s).",
)



def emit_json(obj: Any) -> None:
    """Print one JSON document on stdout."""
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False))


def write_or_echo(text: str, output: str | None) -> None:
    """Write text to the output file atomically, or to stdout when no file is given."""
    if output:
        write_atomic(output, text)
    else:
        sys.stdout.write(text)


def info(message: str) -> None:
    """A progress or log line: always on stderr, so stdout stays clean for pipes."""
    click.echo(message, err=True)
