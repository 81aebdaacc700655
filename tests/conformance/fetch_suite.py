"""Fetch the official FHIR validator test suite from Maven Central into ~/.cache/fhir-so.

The suite is ``org.hl7.fhir.testcases:fhir-test-cases`` (pinned below): a 93 MB jar of which only
``org/hl7/fhir/testcases/validator/`` is kept. The jar's SHA-1 is checked against Maven Central's
``.sha1`` file before anything is extracted; a finished extraction is marked by a stamp file, so
a second run does nothing.

Usage::

    python tests/conformance/fetch_suite.py [--cache DIR]

Prints the folder holding ``manifest.json``. Exit 2 with a one-line message when the download or
the checksum fails.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

import requests

GROUP = "org.hl7.fhir.testcases"
ARTIFACT = "fhir-test-cases"
VERSION = "1.7.69"
REPOSITORY = os.environ.get("FHIR_SO_MAVEN_REPOSITORY", "https://repo1.maven.org/maven2")
PREFIX = "org/hl7/fhir/testcases/validator/"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fhir-so" / f"{ARTIFACT}-{VERSION}"


def suite_dir(cache: Path | None = None) -> Path:
    """Where the suite's ``manifest.json`` lives once fetched."""
    return (cache or cache_dir()) / PREFIX.rstrip("/")


def is_fetched(cache: Path | None = None) -> bool:
    return ((cache or cache_dir()) / ".complete").is_file()


def _url(suffix: str) -> str:
    path = GROUP.replace(".", "/")
    return f"{REPOSITORY}/{path}/{ARTIFACT}/{VERSION}/{ARTIFACT}-{VERSION}{suffix}"


def fetch(cache: Path | None = None) -> Path:
    """Download, verify and extract the suite unless already done; returns the suite folder."""
    cache = cache or cache_dir()
    if is_fetched(cache):
        return suite_dir(cache)
    cache.mkdir(parents=True, exist_ok=True)
    response = requests.get(_url(".jar.sha1"), timeout=60)
    response.raise_for_status()
    expected = response.text.split()[0].strip().lower()
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        jar = Path(tmp) / "suite.jar"
        digest = hashlib.sha1()  # noqa: S324 - Maven Central publishes SHA-1 checksums
        with requests.get(_url(".jar"), timeout=600, stream=True) as download:
            download.raise_for_status()
            with jar.open("wb") as out:
                for chunk in download.iter_content(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
        if digest.hexdigest() != expected:
            raise RuntimeError(f"{_url('.jar')}: SHA-1 {digest.hexdigest()} is not the published {expected}")
        target = cache / PREFIX.rstrip("/")
        if target.exists():
            shutil.rmtree(target)
        with zipfile.ZipFile(jar) as archive:
            for member in archive.infolist():
                if not member.filename.startswith(PREFIX) or member.is_dir():
                    continue
                dest = (cache / member.filename).resolve()
                if not dest.is_relative_to(cache.resolve()):
                    raise RuntimeError(f"{member.filename}: path leaves the cache folder")
                dest.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as src, dest.open("wb") as out:
                    shutil.copyfileobj(src, out)
    (cache / ".complete").write_text(f"{GROUP}:{ARTIFACT}:{VERSION} sha1 {expected}\n", encoding="utf-8")
    return suite_dir(cache)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=None, help="cache folder (default ~/.cache/fhir-so/...)")
    args = parser.parse_args(argv)
    try:
        print(fetch(args.cache))
    except (requests.RequestException, RuntimeError, OSError, zipfile.BadZipFile) as exc:
        print(f"fetch_suite: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
