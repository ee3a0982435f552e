r"""Input validation and activation lookup shared by the ``braintrace.nn`` layers.

Every layer checks the trailing axes of its input before any primitive runs and
raises a :class:`~braintrace.errors.ShapeMismatchError` (a ``ValueError`` and a
``TypeError``) that names the layer (class and ``name`` if set), the expected
size and the shape it got, e.g.::

    Linear(in_size=3, out_size=4): expected input with last axis 3, got shape (2, 5)

Activations given by name resolve to implementations that trace to flat
primitives (no ``jit``/``custom_jvp`` sub-jaxpr), so the compiler can walk
through them inside ``update``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import MappingProxyType
from typing import Any

import brainstate
import jax
import jax.numpy as jnp
import numpy as np

from ..errors import ArgumentTypeError, InvalidArgumentError, ShapeMismatchError

__all__ = [
    "layer_label",
    "check_trailing",
    "check_batch",
    "get_activation",
    "ACTIVATIONS",
    "to_size",
    "make_param",
]


def _fmt(v: Any) -> str:
    if isinstance(v, tuple) and len(v) == 1:
        return repr(v[0])
    return repr(v)


def layer_label(module: Any, **fields: Any) -> str:
    """``ClassName(name='x', field=value, ...)``, the prefix of every error message."""
    parts = []
    name = getattr(module, "name", None)
    if name is not None:
        parts.append(f"name={name!r}")
    parts.extend(f"{k}={_fmt(v)}" for k, v in fields.items())
    return f"{type(module).__name__}({', '.join(parts)})"


def to_size(size: Any, label: str, arg: str) -> tuple[int, ...]:
    """``int`` or sequence of ``int`` to a tuple of positive ints, else :class:`InvalidArgumentError`."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (int(size),)
    elif isinstance(size, (tuple, list)) and all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size
    ):
        size = tuple(int(s) for s in size)
    else:
        raise InvalidArgumentError(f"{label}: `{arg}` must be an int or a tuple of ints, got {size!r}.")
    if len(size) == 0 or any(s <= 0 for s in size):
        raise InvalidArgumentError(f"{label}: `{arg}` must be non-empty with positive entries, got {size!r}.")
    return size


def make_param(param_type: Any, value: Any, label: str) -> brainstate.State:
    """``param_type(value)``, after checking that ``param_type`` is a ``brainstate.State`` class.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> from braintrace.nn.checks import make_param
    >>> type(make_param(brainstate.ParamState, jnp.zeros(2), "Linear")).__name__
    'ParamState'
    """
    if not (isinstance(param_type, type) and issubclass(param_type, brainstate.State)):
        raise ArgumentTypeError(
            f"{label}: `param_type` must be a brainstate.State class such as brainstate.ParamState, "
            f"got {param_type!r}."
        )
    return param_type(value)


def _shape(x: Any) -> tuple[int, ...]:
    shape = getattr(x, "shape", None)
    return tuple(shape) if shape is not None else tuple(np.shape(x))


def check_trailing(label: str, x: Any, expected: Sequence[int]) -> tuple[int, ...]:
    """Check that ``x``'s trailing axes equal ``expected``; return the leading (batch) shape."""
    expected = tuple(expected)
    shape = _shape(x)
    n = len(expected)
    if len(shape) < n or shape[len(shape) - n:] != expected:
        if n == 1:
            what = f"last axis {expected[0]}"
        else:
            what = f"trailing axes {expected}"
        raise ShapeMismatchError(f"{label}: expected input with {what}, got shape {shape}.")
    return shape[: len(shape) - n]


def check_batch(label: str, x: Any, n_features: int, state_shape: Sequence[int], state: str) -> None:
    """Check that the batch axes of ``x`` equal those of a state of shape ``state_shape``.

    ``n_features`` is the number of trailing feature axes of both ``x`` and the state.
    """
    xb = _shape(x)[: len(_shape(x)) - n_features]
    sb = tuple(state_shape)[: len(tuple(state_shape)) - n_features]
    if xb != sb:
        arg = "" if not xb else (f", {xb[0]}" if len(xb) == 1 else f", {xb}")
        raise ShapeMismatchError(
            f"{label}: input batch shape {xb} does not match the batch shape {sb} of state "
            f"`{state}`; re-initialise the states for this input, e.g. "
            f"brainstate.nn.init_all_states(model{arg})."
        )


def _relu(x):
    return x * (x > 0).astype(x.dtype)


def _softplus(x):
    return jnp.log1p(jnp.exp(-jnp.abs(x))) + jnp.maximum(x, 0)


def _silu(x):
    return x * jax.nn.sigmoid(x)


def _gelu(x):
    return jax.nn.gelu(x, approximate=True)


def _identity(x):
    return x


ACTIVATIONS: MappingProxyType = MappingProxyType({
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "relu": _relu,
    "softplus": _softplus,
    "silu": _silu,
    "gelu": _gelu,
    "identity": _identity,
})
"""Named activations; each traces to flat primitives (no sub-jaxpr)."""


def get_activation(activation: str | Callable[[Any], Any], label: str) -> Callable[[Any], Any]:
    """Resolve an activation name (a key of :data:`ACTIVATIONS`) or return a callable as is."""
    if isinstance(activation, str):
        try:
            return ACTIVATIONS[activation]
        except KeyError:
            raise InvalidArgumentError(
                f"{label}: unknown activation {activation!r}; use one of {sorted(ACTIVATIONS)} "
                "or pass a callable."
            ) from None
    if callable(activation):
        return activation
    raise ArgumentTypeError(f"{label}: `activation` must be a name or a callable, got {type(activation).__name__}.")
