"""``fhir-so transfer --all``: the batch transfer's options checked at the edge, and its output.

On a terminal: a progress bar (tqdm) on stderr and the summary on stdout. In a pipe, or with
``--json``: one JSON line per case on stdout as it finishes, then one summary line. The exit
code is the batch's (:attr:`fhir_so.workflow.batch.BatchResult.exit_code`).
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import click
from tqdm import tqdm

from fhir_so.client import FhirClient
from fhir_so.cli.common import info
from fhir_so.workflow.batch import CaseResult, transfer_all

__all__ = ["FhirDate", "run_batch"]

# FHIR R4 date / dateTime / instant (what _lastUpdated=ge... takes)
_FHIR_DATE = re.compile(
    r"^\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01])(T([01]\d|2[0-3]):[0-5]\d(:([0-5]\d|60)(\.\d+)?)?(Z|[+-]((0\d|1[0-3]):[0-5]\d|14:00))?)?)?)?$"
)


class FhirDate(click.ParamType):
    """A FHIR date or dateTime: YYYY, YYYY-MM, YYYY-MM-DD, or YYYY-MM-DDThh:mm[:ss][Z|+hh:mm]."""

    name = "date"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if not _FHIR_DATE.match(text):
            self.fail(f"{text!r} is not a FHIR date or dateTime (e.g. 2026-11-01 or 2026-11-01T08:00:00Z)", param, ctx)
        return text


def run_batch(
    source: FhirClient,
    destination: FhirClient,
    *,
    state: str,
    jobs: int,
    patient: str | None,
    since: str | None,
    status: str | None,
    report_back: bool,
    as_json: bool,
) -> int:
    """Run the batch with the output the terminal or the pipe wants; return the exit code."""
    lines = as_json or not sys.stdout.isatty()
    bar: tqdm[Any] | None = None
    if not as_json and sys.stderr.isatty():
        bar = tqdm(desc="cases", unit="case", file=sys.stderr, dynamic_ncols=True)

    def on_total(total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.refresh()

    def on_result(result: CaseResult) -> None:
        if lines:
            click.echo(json.dumps(result.to_json(), ensure_ascii=False))
        if bar is not None:
            bar.update(1)
            if result.outcome != "moved":
                bar.write(f"{result.outcome}: {result.case_id or 'request ' + result.request_id}: {result.reason}", file=sys.stderr)

    try:
        batch = transfer_all(
            source, destination, state=state, jobs=jobs, patient=patient, since=since, status=status,
            report_back=report_back, on_result=on_result, on_total=on_total,
        )
    finally:
        if bar is not None:
            bar.close()
    if lines:
        click.echo(json.dumps({"summary": batch.to_json()}, ensure_ascii=False))
        for line in batch.summary():
            info(line)
    else:
        for line in batch.summary():
            click.echo(line)
    return batch.exit_code
