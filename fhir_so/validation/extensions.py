"""Extensions as the HL7 validator judges them: found by url, used in their context, modifier or not.

- An extension whose definition no loaded package has is an error, except HL7's own
  (``http://hl7.org/fhir/...``, which the HL7 validator knows from its extensions pack), relative
  URLs of sub-extensions, URLs in the allowed extension domains and, unless switched off, example
  URLs (example.org, acme.com). An unknown modifier extension is always an error, a cross-version
  one (``http://hl7.org/fhir/5.0/StructureDefinition/extension-...``) excepted.
- A known extension must be used where its ``context`` allows: an element path (``Patient.name``),
  a type (``HumanName``, ``Element``, ``Resource``), a data type's element wherever the type is used
  (``Address.line``), or inside a given extension; a ``fhirpath`` context is not evaluated.
- A modifier extension belongs in ``modifierExtension`` and the other way round.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from fhir_so.validation.findings import INFORMATIONAL, INVARIANT, STRUCTURE, Issue
from fhir_so.validation.plan import Node, Plan, PlanRegistry
from fhir_so.validation.walkstate import WalkState

_HL7_EXTENSION_BASES = ("http://hl7.org/fhir/",)
_XVER = re.compile(r"http://hl7\.org/fhir/[0-9.]+/StructureDefinition/extension-")


class ExtensionChecker:
    """Checks extensions against their definitions; one per walker (caches context verdicts)."""

    def __init__(self, plans: PlanRegistry, *, domains: Sequence[str] = (), allow_examples: bool = True) -> None:
        self.plans = plans
        #: URL prefixes whose unknown extensions are accepted (the HL7 validator's allowed extension domains)
        self.domains: tuple[str, ...] = tuple(domains)
        #: example URLs (example.org, acme.com) accepted as unknown extensions, as the HL7 validator does by default
        self.allow_examples = allow_examples
        self._context_ok: dict[tuple[str, str, str, str | None], bool] = {}

    def node(self, node: Node, value: dict[str, Any], loc: str, ctx: WalkState) -> Node:
        """The node an Extension value is walked against: its definition's root when it is known."""
        url = value.get("url")
        profiles = node.type_profiles.get("Extension", ())
        for p in profiles:
            plan = self.plans.plan(p)
            if plan is not None:
                self._check_context(plan, node, loc, ctx)
                return plan.root
        if not isinstance(url, str):
            return node
        has_ext, has_val = "extension" in value, any(k.startswith("value") for k in value)
        if has_ext == has_val:
            ctx.sink.append(Issue("error", INVARIANT, loc, "ext-1: an extension must have either extensions or a value[x], not both", "ext-1"))
        if node.children is not None and node.path.startswith("Extension.extension"):
            return node  # a sub-extension of a complex extension: checked against its own slice
        if url.startswith(("http://", "https://", "urn:")):
            plan = self.plans.plan(url)
            if plan is not None and plan.type == "Extension":
                self._check_context(plan, node, loc, ctx)
                return plan.root
        modifier = node.name == "modifierExtension"
        if modifier and _XVER.match(url):
            # a cross-version extension (an element of another FHIR version): the HL7 validator builds
            # its definition from that version; without it, only its structure is checked here
            ctx.sink.append(Issue("information", INFORMATIONAL, loc, f"cross-version modifier extension {url}: its definition is not loaded, so only its structure was checked", "extension-unknown"))
        elif modifier:
            ctx.sink.append(Issue("error", STRUCTURE, loc, f"unknown modifier extension {url}: a modifier extension must be understood to process the resource", "extension-unknown"))
        elif (
            url.startswith(_HL7_EXTENSION_BASES) or url.startswith(self.domains)
            or not url.startswith(("http:", "https:", "urn:"))
            or (self.allow_examples and ("example.org" in url or "acme.com" in url))
        ):
            # HL7's own extensions (the extensions pack, cross-version ones) are known to the HL7
            # validator even when no loaded package defines them: not an error here either
            ctx.sink.append(Issue("information", INFORMATIONAL, loc, f"unknown extension {url}: not in any loaded package, so only its structure was checked", "extension-unknown"))
        else:
            ctx.sink.append(Issue("error", STRUCTURE, loc, f"the extension {url} could not be found (not in any loaded package), so it is not allowed here", "extension-unknown"))
        return node

    def _check_context(self, plan: Plan, node: Node, loc: str, ctx: WalkState) -> None:
        """The extension's definition says where it may be used (context) and whether it is a modifier."""
        modifier = node.name == "modifierExtension"
        if plan.is_modifier != modifier and node.name in ("extension", "modifierExtension") and not node.path.startswith("Extension.extension"):
            where = "a modifierExtension" if modifier else "an extension"
            ctx.sink.append(Issue("error", STRUCTURE, loc, f"the extension {plan.url} must not be used as {where} (it is {'' if plan.is_modifier else 'not '}a modifier extension)", "extension-modifier"))
        if not plan.contexts:
            return
        path, code, parent_url = ctx.ext_parent
        if not path and not code:
            return
        key = (plan.url, path, code, parent_url)
        ok = self._context_ok.get(key)
        if ok is None:
            ok = self._context_ok[key] = self._context_allows(plan.contexts, path, code, parent_url)
        if not ok:
            allowed = ", ".join(e for _, e in plan.contexts)
            here = path if path == code else f"{code}, {path}"
            # the HL7 validator reads HL7's own extensions from the newer extensions pack, whose
            # contexts are often wider (an element's parent): a mismatch there is only a warning
            widened = plan.url.startswith(_HL7_EXTENSION_BASES) and any(e.startswith(path + ".") or e.split(".")[0] in ("CanonicalResource", "MetadataResource") for _, e in plan.contexts)
            ctx.sink.append(Issue("warning" if widened else "error", STRUCTURE, loc.rsplit(".", 1)[0] if "." in loc else loc, f"the extension {plan.url} is not allowed to be used here ({here}); it is allowed on: {allowed}", "extension-context"))

    def _context_allows(self, contexts: tuple[tuple[str, str], ...], path: str, code: str, parent_url: str | None) -> bool:
        names = {path, code, "Element", "Base"}
        if self.plans.is_resource_type(code):
            names.update(("Resource", "DomainResource"))
        elif code[:1].isupper() and code not in ("BackboneElement", "Element"):
            base = self.plans.plan(code)
            sd_base = self.plans.definitions.structure_definition(code) if base is not None else None
            if sd_base is not None:
                # a specialised data type (Age is a Quantity) takes its base type's extensions
                parent_type = str(sd_base.get("baseDefinition") or "").rsplit("/", 1)[-1]
                if parent_type:
                    names.add(parent_type)
        for kind, expression in contexts:
            if kind == "fhirpath":
                return True  # not evaluated here: accepted rather than guessed
            expr = re.sub(r":[^.]+", "", expression.split("#")[-1] if expression.startswith("http") and "#" in expression else expression)
            if kind == "extension":
                if parent_url is not None and expression == parent_url:
                    return True
                continue
            if expr in names:
                return True
            # 'Address.line' names the element of a data type wherever it is used ('Patient.address.line')
            head, _, rest = expr.partition(".")
            if rest and head[:1].isupper() and not self.plans.is_resource_type(head) and path.endswith("." + rest):
                return True
        return False
