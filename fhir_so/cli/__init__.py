"""The ``fhir-so`` command line: one click group; each command module only parses and calls the library.

Commands live in one module per group of commands (convert, server, validate, profiles,
exchange, bulk, task, status) so that each stays small; this module only assembles them and puts the
application object (:class:`fhir_so.cli.app.App`: the environment, the client factory) on
``ctx.obj`` for every command.
"""

from __future__ import annotations

import os

import click

from fhir_so import __version__
from fhir_so.cli import bulk, convert, exchange, packages, profiles, server, status, task, validate
from fhir_so.cli.app import App

_COMMAND_MODULES = (convert, validate, exchange, task, status, bulk, packages, profiles, server)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="fhir-so")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Carry a medical second opinion across FHIR R4 servers.

    \b
    Exit codes: 0 done; 1 validation failed or consent forbids the step;
    2 bad input or usage (a case not on the server included); 3 the server or the network failed.
    Logs go to stderr; --json results to stdout.
    """
    if ctx.obj is None:  # an embedder or a test may pass its own (CliRunner.invoke(obj=...))
        ctx.obj = App(env=dict(os.environ))


for _module in _COMMAND_MODULES:
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="fhir-so")
