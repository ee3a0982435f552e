"""Checks shared by the braintrace 0.2.0 compatibility tests (``shared/compat-0.2.0.md``)."""

from __future__ import annotations

import inspect
from typing import Any

import brainstate
import jax

REQUIRED = inspect.Parameter.empty


class Init:
    """A default that is an initializer instance of the named class (e.g. ``Init('KaimingNormal')``)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def matches(self, value: Any) -> bool:
        return type(value).__name__ == self.name


def assert_signature(obj: Any, expected: list[tuple[str, Any]], keyword_only: tuple[str, ...] = ()) -> None:
    """The first parameters of ``obj`` are ``expected`` (name, default) in this order.

    A 0.2.0 call that passes arguments positionally or by name binds the same
    way; parameters added after them must not be required. Names in
    ``keyword_only`` must be keyword-only (0.2.0 rejected them positionally).
    """
    fn = obj.__init__ if isinstance(obj, type) else obj  # brainstate modules hide the class signature
    params = [p for p in inspect.signature(fn).parameters.values() if p.name != "self"]
    names = [p.name for p in params]
    assert names[: len(expected)] == [n for n, _ in expected], f"{obj.__name__}: parameters {names}"
    for p, (_, default) in zip(params, expected):
        if isinstance(default, Init):
            assert default.matches(p.default), f"{obj.__name__}.{p.name} default {p.default!r}"
        elif default is REQUIRED:
            assert p.default is REQUIRED, f"{obj.__name__}.{p.name} should be required"
        else:
            assert p.default == default, f"{obj.__name__}.{p.name} default {p.default!r} != {default!r}"
        if p.name in keyword_only:
            assert p.kind is inspect.Parameter.KEYWORD_ONLY, f"{obj.__name__}.{p.name} should be keyword-only"
        elif p.kind is not inspect.Parameter.VAR_KEYWORD:
            assert p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD, f"{obj.__name__}.{p.name} is {p.kind}"
    for p in params[len(expected):]:
        assert p.default is not REQUIRED or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD), (
            f"{obj.__name__}: added parameter {p.name} must have a default"
        )


def param_shapes(module: Any) -> dict:
    """``{path: shape or {key: shape}}`` of every ParamState of ``module``."""
    return {
        path: jax.tree.map(lambda v: tuple(v.shape), state.value)
        for path, state in module.states(brainstate.ParamState).items()
    }
