"""validate: what ``fhir-so validate`` does, as one library call.

Offline (core R4, the project's profiles when they are in the package cache, any extra
package, the pruned R4 JSON schema, the domain's business rules), or through a server's
``$validate`` when a client is given. Results stream one input at a time::

    import fhir_so

    for result in fhir_so.validate(["examples/urology-second-opinion.bundle.json"]):
        print(result.input.source, result.is_valid, [i.message for i in result.issues if i.is_error])

Broken or unknown ``profiles`` fail before any input is read (ProfileError, exit 2).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path

from fhir_so.client import FhirClient
from fhir_so.errors import InputError
from fhir_so.packages import PackageCache, RegistryClient, ensure_installed
from fhir_so.validation import Validator, ValidatorOptions
from fhir_so.validation.loading import load_definitions
from fhir_so.validation.validator import Result
from fhir_so.workflow.remote_validate import RemoteValidator

__all__ = ["existing_paths", "offline_validator", "validate"]


def existing_paths(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """``paths`` as strings, each checked to exist (InputError, exit 2, naming the first that does not)."""
    names = [os.fspath(p) for p in paths]
    for name in names:
        try:
            found = Path(name).exists()
        except (OSError, ValueError) as exc:  # a name too long, a NUL byte
            raise InputError(f"cannot read: {getattr(exc, 'strerror', None) or exc}", source=name) from None
        if not found:
            raise InputError("no such file or directory", source=name)
    return names


def offline_validator(
    cache: PackageCache | None = None,
    *,
    profiles: Sequence[str] = (),
    packages: Sequence[str] = (),
    business_rules: bool = False,
    now: datetime | None = None,
    registry: Callable[[], RegistryClient] | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> Validator:
    """The validator ``fhir-so validate`` uses, ready: definitions loaded, JSON schema on, ``profiles`` checked.

    Build it once and reuse it (it caches plans and expansions): ``validator.iter_issues(resource)``.
    With ``registry`` (a factory of :class:`RegistryClient`), a ``NAME#VERSION`` missing from the
    cache is installed from the registries first; later runs are offline. Warnings (a dependency
    at the nearest version, say) go to ``on_warning``.
    """
    cache = cache or PackageCache()
    warnings = ensure_installed(cache, packages, registry) if registry is not None else []
    options = ValidatorOptions(business_rules=business_rules, now=now, json_schema=cache.r4_json_schema_path())
    definitions = load_definitions(cache, packages)
    for warning in [*warnings, *definitions.warnings]:
        if on_warning is not None:
            on_warning(warning)
    validator = Validator(definitions, profiles, options)
    validator.check_profiles()
    return validator


def validate(
    paths: Iterable[str | os.PathLike[str]],
    *,
    profiles: Sequence[str] = (),
    packages: Sequence[str] = (),
    cache: PackageCache | None = None,
    client: FhirClient | None = None,
    business_rules: bool = False,
    registry: Callable[[], RegistryClient] | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> Iterator[Result]:
    """Validate files, folders, Bundles and NDJSON; one :class:`Result` per resource read, lazily.

    ``paths`` must exist (InputError, exit 2, naming the first that does not). ``packages``
    are names (``hl7.fhir.us.core#5.0.1``), folders or ``.tgz`` files; ``profiles`` are
    canonical URLs every resource of their type is also checked against. With ``client``,
    each resource goes to that server's ``$validate`` instead (``packages`` do not apply). With
    ``registry``, packages missing from the cache are downloaded first (see :func:`offline_validator`).
    """
    names = existing_paths(paths)
    if client is not None:
        return RemoteValidator(client, profiles).validate_paths(names)
    validator = offline_validator(
        cache, profiles=profiles, packages=packages, business_rules=business_rules, registry=registry, on_warning=on_warning
    )
    return validator.validate_paths(names)
