"""FHIRPath invariants with fhirpathpy: each expression compiled once and cached per engine instance.

The invariants checked natively by the walker (see ``plan.NATIVE_INVARIANTS``: ele-1, ext-1,
dom-2..6, txt-1/2, ref-1) never reach this module. fhirpathpy's gaps are handled here:

* ``hasValue()`` is added through its user-function table;
* ``trace()`` gets a no-op ``traceFn`` (it would print to stdout);
* ``%resource`` and ``%rootResource`` are passed in as typed nodes, and ``%context`` too;
* a primitive carrying an ``_x`` extension breaks comparisons, so the walker hands over values
  with the ``_x`` keys stripped.

Deliberately skipped (no offline or no fhirpathpy support), listed in ``UNSUPPORTED_FUNCTIONS``:
``resolve()`` (needs the referenced resource), ``memberOf()`` (terminology), ``conformsTo()``,
``htmlChecks()`` (the walker checks the narrative natively), ``checkModifiers()``. An invariant
that fhirpathpy fails to compile is skipped for the rest of the run; one it fails to evaluate on a
value is skipped on that value. Either is reported as an information issue, once per input.
"""

from __future__ import annotations

import re
from typing import Any, Callable

UNSUPPORTED_FUNCTIONS: tuple[str, ...] = ("resolve", "memberOf", "conformsTo", "htmlChecks", "checkModifiers", "extension(")

_UNSUPPORTED_RE = re.compile(r"\b(resolve|memberOf|conformsTo|htmlChecks|checkModifiers)\s*\(")


def _has_value(inputs: list[Any]) -> list[bool]:
    return [len(inputs) == 1 and inputs[0] is not None and not isinstance(inputs[0], (dict, list))]


def _typed(resource: Any) -> Any:
    """A resource as a typed node, so ``%resource.type()`` names its type (a bare dict is an 'Object')."""
    from fhirpathpy.engine.nodes import ResourceNode

    if isinstance(resource, dict) and isinstance(resource.get("resourceType"), str):
        return ResourceNode.create_node(resource, resource["resourceType"])
    return resource


def _no_trace(*_args: Any) -> None:
    return None


Compiled = Callable[[Any, Any], list[Any]]


class InvariantEngine:
    """Compiles (once) and evaluates FHIRPath invariants; keeps the list of those it had to skip."""

    def __init__(self) -> None:
        self._model: Any = None  # fhirpathpy is imported on first use: most resources never need it
        self._options = {"userInvocationTable": {"hasValue": {"fn": _has_value, "arity": {0: []}}}, "traceFn": _no_trace}
        self._compiled: dict[str, Compiled | None] = {}
        #: expression -> why it is skipped (unsupported function, compile or evaluation failure)
        self.skipped: dict[str, str] = {}

    def compiled(self, expression: str) -> Compiled | None:
        """The compiled function for an expression, or None when it is skipped."""
        try:
            return self._compiled[expression]
        except KeyError:
            pass
        fn: Compiled | None = None
        m = _UNSUPPORTED_RE.search(expression)
        if m:
            self.skipped[expression] = f"uses {m.group(1)}(), which is not evaluated offline"
        else:
            try:
                import fhirpathpy
                from fhirpathpy.models import models

                if self._model is None:
                    self._model = models["r4"]
                fn = fhirpathpy.compile(expression, self._model, self._options)
            except Exception as exc:  # fhirpathpy raises bare exceptions from its parser
                self.skipped[expression] = f"fhirpathpy cannot compile it: {exc}"
        self._compiled[expression] = fn
        return fn

    def evaluate(self, expression: str, value: Any, type_path: str, resource: Any, root: Any) -> bool | None:
        """True/False for an invariant on ``value`` (typed as ``type_path``); None when skipped."""
        fn = self.compiled(expression)
        if fn is None:
            return None
        from fhirpathpy.engine.nodes import ResourceNode

        node = value if isinstance(value, dict) and "resourceType" in value else ResourceNode.create_node(value, type_path)
        try:
            result = fn(node, {"resource": _typed(resource), "rootResource": _typed(root), "context": node})
        except Exception as exc:  # a fhirpathpy gap on this data: skip the invariant here
            # only here, not for the rest of the run: an input's findings never depend on the inputs
            # validated before it (a run split over processes gives the same report as one process)
            self.skipped[expression] = f"fhirpathpy failed to evaluate it: {type(exc).__name__}: {exc}"
            return None
        if not result:
            return True  # an empty result does not violate the invariant
        first = result[0]
        return bool(first) if isinstance(first, bool) else True
