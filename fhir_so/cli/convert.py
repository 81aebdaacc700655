"""``fhir-so build`` and ``fhir-so parse``: a case file to a transaction Bundle and back."""

from __future__ import annotations

import click

from fhir_so.bundle import bundle_json, parse_bundle
from fhir_so.case import load_case
from fhir_so.cli.common import files_root_option, info, output_option, translate_errors, write_or_echo
from fhir_so.jsonio import load_json

_case_path = click.Path(dir_okay=True, path_type=str)


@click.command()
@click.argument("case_file", metavar="CASE.json", type=_case_path)
@output_option
@files_root_option
@translate_errors
def build(case_file: str, output: str | None, files_root: str | None) -> None:
    """Build the transaction Bundle of a second-opinion case.

    \b
    The same case always gives the same bytes (urn:uuid fullUrls are derived from
    the case id), so bundles diff cleanly and can be kept as golden files.

    \b
    Examples:
      fhir-so build examples/urology-second-opinion.case.json
      fhir-so build case.json -o bundle.json
      fhir-so build case.json --files-root ~/scans   # records[].content.file under ~/scans

    \b
    Attachment files are read from inside the case file's folder (or --files-root) only:
    regular files of at most 20 MiB; "../", absolute paths out of it, links out of it,
    devices, FIFOs and /proc are refused.
    """
    case = load_case(case_file, files_root=files_root)
    if case.is_stat:
        info(f"flag: case {case.case_id} is a stat request; it must not wait behind missing records")
    write_or_echo(bundle_json(case, source=case_file), output)


@click.command()
@click.argument("bundle_file", metavar="BUNDLE.json", type=_case_path)
@output_option
@click.option("--case", "case_id", metavar="CASE-ID", help="Pick this case when the bundle holds several.")
@translate_errors
def parse(bundle_file: str, output: str | None, case_id: str | None) -> None:
    """Read a second-opinion case back from a Bundle.

    \b
    Works on bundles built by `fhir-so build` and on bundles pulled from a server
    (searchset, collection, transaction); references must resolve inside the bundle.

    \b
    Examples:
      fhir-so parse examples/urology-second-opinion.bundle.json
      fhir-so parse pulled.json --case urology-2025-001 -o case.json
    """
    case = parse_bundle(load_json(bundle_file), bundle_file, case_id)
    write_or_echo(case.to_json(), output)


COMMANDS: list[click.Command] = [build, parse]
