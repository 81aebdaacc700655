"""Build the project's FHIR package (``profiles/``, FSH) with SUSHI, offline, and install it in the package cache.

SUSHI reads packages only from ``$HOME/.fhir/packages``; when the cache lives elsewhere, SUSHI runs
with a temporary HOME whose ``.fhir/packages`` points at it. The compiled package is assembled in
``profiles/fsh-generated/package/`` (package.json, conformance resources with snapshots, examples
under ``example/``) and copied into the cache as ``fhir-so.profiles#0.1.0``.

A build is skipped when a stamp (a hash of the FSH sources, sushi-config.yaml and SUSHI's version)
matches both the compiled folder and the cached package: re-running set-up costs milliseconds.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from fhir_so import terminology as term
from fhir_so.errors import ProfileError, ToolMissingError
from fhir_so.packages import (
    CORE_NAME,
    CORE_VERSION,
    SUSHI_AUTO_PACKAGES,
    Package,
    PackageCache,
    load_folder,
    write_index,
)

BUILD_STAMP = ".fhir-so-build.json"
EXAMPLE_DIR = "example"
# Resource types that define things (uploaded by `profiles install`); everything else SUSHI writes is an example.
CONFORMANCE_TYPES = frozenset(
    {"StructureDefinition", "ValueSet", "CodeSystem", "SearchParameter", "OperationDefinition", "CapabilityStatement", "ConceptMap", "NamingSystem", "ImplementationGuide"}
)
SUSHI_TIMEOUT_S = 300


@dataclass(frozen=True)
class BuildResult:
    """What a profiles build did: the compiled folder, the cached package, and whether SUSHI ran."""

    package_dir: Path
    installed_dir: Path
    built: bool
    seconds: float
    resources: int
    examples: int


def find_project_root(start: Path | None = None) -> Path:
    """The folder holding profiles/sushi-config.yaml: the current folder or a parent, else the source checkout."""
    candidates = []
    for base in ((start or Path.cwd()).resolve(), Path(__file__).resolve().parent):
        candidates.extend([base, *base.parents])
    for base in candidates:
        if (base / "profiles" / "sushi-config.yaml").is_file():
            return base
    raise ProfileError("cannot find profiles/sushi-config.yaml (run from the fhir-so checkout or give --profiles DIR)")


def find_sushi(project_root: Path) -> Path:
    """SUSHI from the project's pinned node tools (tools/node_modules/.bin/sushi), or $FHIR_SO_SUSHI."""
    env = os.environ.get("FHIR_SO_SUSHI")
    path = Path(env) if env else project_root / "tools" / "node_modules" / ".bin" / "sushi"
    if not path.exists():
        raise ToolMissingError("SUSHI is not installed (run ./run setup, which installs the node tools)", source=str(path))
    return path


def _inputs(profiles_dir: Path) -> list[Path]:
    files = [profiles_dir / "sushi-config.yaml"]
    files += sorted(p for p in (profiles_dir / "input").rglob("*") if p.is_file())
    return files


def _sushi_version(sushi: Path) -> str:
    """SUSHI's version from its package.json (no process start: `sushi --version` takes seconds)."""
    pkg = sushi.resolve().parent.parent / "package.json"
    try:
        return str(orjson.loads(pkg.read_bytes()).get("version"))
    except (OSError, orjson.JSONDecodeError, AttributeError):
        return "unknown"


def source_stamp(profiles_dir: Path, sushi: Path) -> str:
    """A hash of everything the compiled package depends on."""
    digest = hashlib.sha256()
    digest.update(f"sushi {_sushi_version(sushi)}\n".encode())
    digest.update(f"package {term.PACKAGE_NAME}#{term.PACKAGE_VERSION} {term.CANONICAL}\n".encode())
    for path in _inputs(profiles_dir):
        digest.update(str(path.relative_to(profiles_dir)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _stamp_of(folder: Path) -> str | None:
    try:
        return str(orjson.loads((folder / BUILD_STAMP).read_bytes()).get("stamp"))
    except (OSError, orjson.JSONDecodeError, AttributeError):
        return None


def package_manifest() -> dict[str, object]:
    """The package.json of the compiled profiles package (SUSHI writes none in FSH-only mode)."""
    return {
        "name": term.PACKAGE_NAME,
        "version": term.PACKAGE_VERSION,
        "type": "fhir.ig",
        "canonical": term.CANONICAL,
        "fhirVersions": [CORE_VERSION],
        "title": "fhir-so second-opinion profiles",
        "description": "Profiles, code systems and value sets for carrying a medical second opinion across FHIR R4 servers.",
        "license": "Apache-2.0",
        "dependencies": {CORE_NAME: CORE_VERSION},
    }


def _sushi_home(cache: PackageCache, scratch: Path) -> Path:
    """A HOME under which SUSHI finds the cache as ~/.fhir/packages."""
    real_home = Path.home()
    if cache.root.resolve() == (real_home / ".fhir" / "packages").resolve():
        return real_home
    (scratch / ".fhir").mkdir(parents=True)
    (scratch / ".fhir" / "packages").symlink_to(cache.root.resolve(), target_is_directory=True)
    return scratch


_SUSHI_PROBLEM = re.compile(r"^(error)\s+(.*)$")


def run_sushi(sushi: Path, profiles_dir: Path, cache: PackageCache) -> str:
    """Run `sushi build PROFILES -s` offline against the cache; return its output, raise ProfileError on errors."""
    with tempfile.TemporaryDirectory(prefix="fhir-so-sushi-") as scratch:
        env = dict(os.environ)
        env["HOME"] = str(_sushi_home(cache, Path(scratch)))
        env["npm_config_offline"] = "true"  # skips SUSHI's start-up check for a newer version
        env.setdefault("NO_COLOR", "1")
        try:
            proc = subprocess.run(
                [str(sushi), "build", str(profiles_dir), "-s"],
                capture_output=True,
                text=True,
                env=env,
                timeout=SUSHI_TIMEOUT_S,
                check=False,
            )
        except OSError as exc:
            raise ToolMissingError(f"cannot run SUSHI: {exc.strerror or exc}", source=str(sushi)) from None
        except subprocess.TimeoutExpired:
            raise ProfileError(f"SUSHI did not finish within {SUSHI_TIMEOUT_S} s", source=str(profiles_dir)) from None
    output = _strip_ansi(proc.stdout + proc.stderr)
    problems = _sushi_errors(output)
    if proc.returncode != 0 or problems:
        detail = "\n".join(problems[:20]) or output.strip()[-2000:]
        raise ProfileError(f"SUSHI failed (exit {proc.returncode}):\n{detail}", source=str(profiles_dir))
    return output


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _sushi_errors(output: str) -> list[str]:
    """The error lines of SUSHI's log, each with the File/Line lines that follow it."""
    lines = output.splitlines()
    found = []
    for i, line in enumerate(lines):
        if _SUSHI_PROBLEM.match(line.strip()):
            context = [lines[j].strip() for j in range(i + 1, min(i + 3, len(lines))) if lines[j].strip().startswith(("File:", "Line:"))]
            found.append(" ".join([line.strip(), *context]))
    return found


def assemble_package(generated: Path, target: Path, stamp: str) -> tuple[int, int]:
    """Lay out SUSHI's output as an NPM package folder: conformance resources at the top, examples under example/."""
    if target.exists():
        shutil.rmtree(target)
    (target / EXAMPLE_DIR).mkdir(parents=True)
    resources = examples = 0
    for path in sorted(generated.glob("*.json")):
        try:
            resource = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError as exc:
            raise ProfileError(f"SUSHI wrote malformed JSON: {exc}", source=str(path)) from None
        if not isinstance(resource, dict):
            continue
        if resource.get("resourceType") in CONFORMANCE_TYPES:
            shutil.copyfile(path, target / path.name)
            resources += 1
        else:
            shutil.copyfile(path, target / EXAMPLE_DIR / path.name)
            examples += 1
    (target / "package.json").write_bytes(orjson.dumps(package_manifest(), option=orjson.OPT_INDENT_2))
    load_folder(target)  # writes .index.json and checks the result loads
    (target / BUILD_STAMP).write_bytes(orjson.dumps({"stamp": stamp}))
    return resources, examples


def install_compiled(cache: PackageCache, package_dir: Path) -> Path:
    """Copy the compiled package folder (with examples and stamp) into the cache as NAME#VERSION."""
    pkg = load_folder(package_dir)

    def build(folder: Path) -> None:
        shutil.copytree(package_dir, folder, dirs_exist_ok=True)
        write_index(folder, pkg.entries)

    return cache.replace_package(pkg.name, pkg.version, build)


def build_profiles(
    cache: PackageCache,
    project_root: Path | None = None,
    *,
    sushi: Path | None = None,
    force: bool = False,
) -> BuildResult:
    """Compile profiles/ with SUSHI into profiles/fsh-generated/package and install it in the cache (skips when up to date)."""
    started = time.perf_counter()
    root = project_root or find_project_root()
    profiles_dir = root / "profiles"
    if not (profiles_dir / "sushi-config.yaml").is_file():
        raise ProfileError("no sushi-config.yaml", source=str(profiles_dir))
    sushi_path = sushi or find_sushi(root)
    stamp = source_stamp(profiles_dir, sushi_path)
    package_dir = profiles_dir / "fsh-generated" / "package"
    installed = cache.package_dir(term.PACKAGE_NAME, term.PACKAGE_VERSION) / "package"
    up_to_date = _stamp_of(package_dir) == stamp
    if not force and up_to_date and _stamp_of(installed) == stamp:
        pkg = cache.load(f"{term.PACKAGE_NAME}#{term.PACKAGE_VERSION}")
        return BuildResult(package_dir, installed.parent, False, time.perf_counter() - started, len(pkg.entries), _count_examples(installed))
    if force or not up_to_date:
        if not (cache.package_dir(CORE_NAME, CORE_VERSION) / "package" / "package.json").is_file():
            raise ProfileError(f"{CORE_NAME}#{CORE_VERSION} is not in the package cache {cache.root} (run: fhir-so packages seed)")
        for name in SUSHI_AUTO_PACKAGES:
            cache.seed_stub(name)
        run_sushi(sushi_path, profiles_dir, cache)
        assemble_package(profiles_dir / "fsh-generated" / "resources", package_dir, stamp)
    install_compiled(cache, package_dir)
    pkg = cache.load(f"{term.PACKAGE_NAME}#{term.PACKAGE_VERSION}")
    return BuildResult(package_dir, installed.parent, True, time.perf_counter() - started, len(pkg.entries), _count_examples(installed))


def _count_examples(package_folder: Path) -> int:
    folder = package_folder / EXAMPLE_DIR
    return sum(1 for p in folder.glob("*.json") if not p.name.startswith(".")) if folder.is_dir() else 0


def examples(package: Package) -> list[dict[str, object]]:
    """The example instances of a package folder (package/example/*.json), parsed."""
    if package.path is None or not (package.path / EXAMPLE_DIR).is_dir():
        return []
    out = []
    for path in sorted((package.path / EXAMPLE_DIR).glob("*.json")):
        if path.name.startswith("."):
            continue  # .index.json: SUSHI's package loader writes one in every folder of the cache it reads
        try:
            out.append(orjson.loads(path.read_bytes()))
        except orjson.JSONDecodeError as exc:
            raise ProfileError(f"malformed JSON: {exc}", source=str(path)) from None
    return out


def upload_order(package: Package) -> list[dict[str, object]]:
    """The package's CodeSystems, ValueSets, then StructureDefinitions (what `profiles install` uploads, in that order)."""
    rank = {"CodeSystem": 0, "ValueSet": 1, "StructureDefinition": 2}
    chosen = sorted((e for e in package.entries if e.resourceType in rank), key=lambda e: (rank[e.resourceType], e.filename))
    return [package.read(e.filename) for e in chosen]
