"""The deprecated parameter classes: a weight held together with a legacy operator.

``ETraceParam``, ``ElemWiseParam`` and ``NonTempParam`` are
:class:`brainstate.ParamState` subclasses; ``FakeETraceParam`` and
``FakeElemWiseParam`` hold a constant that is never trained. The operators
and the deprecation table are in :mod:`braintrace.legacy`, which serves these
names too (``braintrace.ETraceParam`` is this module's class). Each class warns
(:class:`DeprecationWarning`) the first time it is instantiated.

Examples
--------
>>> import warnings
>>> import jax.numpy as jnp
>>> import braintrace
>>> with warnings.catch_warnings():
...     warnings.simplefilter("ignore", DeprecationWarning)
...     param = braintrace.ETraceParam(jnp.ones((3, 2)), braintrace.MatMulOp())
>>> param.execute(jnp.ones(3)).tolist()
[3.0, 3.0]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import brainstate
import jax

from .compiler.jaxpr_tools import eval_eqn, inline_calls, is_literal
from .errors import InvalidArgumentError
from .legacy import ElemWiseOp, _as_weights, _LegacyOp, _require, _WarnOnce
from .primitives import element_wise, get_etp_primitive

__all__ = ["ETraceParam", "ElemWiseParam", "NonTempParam", "FakeETraceParam", "FakeElemWiseParam"]


class _LegacyParam(_WarnOnce, brainstate.ParamState):
    """Base of the v0.1 parameter shims: a ``ParamState`` holding an operator."""

    op: Any

    def __init__(self, value: Any, op: Any, name: str | None = None) -> None:
        # stacklevel 4: _warn_deprecated <- _LegacyParam.__init__ <- subclass __init__ <- user
        self._warn_deprecated(stacklevel=4)
        super().__init__(value, name=name, op=op)


class ETraceParam(_LegacyParam):
    """Deprecated: use a :class:`brainstate.ParamState` plus an ETP primitive function.

    A ``ParamState`` holding the value (a dict of named arrays, or one array)
    and a legacy operator; ``param.execute(x)`` is ``op(x, param.value)``,
    which binds the operator's ETP primitive, so the weight learns online.

    Parameters
    ----------
    weight : array or dict of arrays
        The parameter, e.g. ``{'weight': W, 'bias': b}``.
    op : MatMulOp, ConvOp, SpMatMulOp, LoraOp or ElemWiseOp
        The operator.
    grad : None
        0.2.0's per-parameter gradient mode. Only ``None`` is accepted: the
        learner decides how every weight is learned (``D_RTRL``: its exact
        trace, ``ES_D_RTRL``: the factored one). Any other value raises
        :class:`~braintrace.errors.InvalidArgumentError`.
    name : str, optional
        State name.

    Examples
    --------
    >>> import warnings
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", DeprecationWarning)
    ...     param = braintrace.ETraceParam({"weight": jnp.ones((3, 2))}, braintrace.MatMulOp())
    >>> isinstance(param, brainstate.ParamState)
    True
    >>> param.execute(jnp.ones(3)).tolist()
    [3.0, 3.0]
    """

    _legacy_name = "ETraceParam"

    def __init__(self, weight: Any, op: Any, grad: Any = None, name: str | None = None) -> None:
        if grad is not None:
            raise InvalidArgumentError(
                f"braintrace.ETraceParam: `grad`={grad!r} is not supported; braintrace has no per-parameter "
                "gradient mode (the learner decides how each weight is learned). Leave grad=None; for a weight "
                "that only gets its instantaneous gradient use NonTempParam."
            )
        if not isinstance(op, _LegacyOp):
            raise TypeError(
                "braintrace.ETraceParam: `op` must be a legacy operator (MatMulOp, ElemWiseOp, ConvOp, "
                f"SpMatMulOp or LoraOp), got {type(op).__name__}. For a plain JAX function of the weight "
                "use NonTempParam, or better a brainstate.ParamState with braintrace.matmul & co."
            )
        super().__init__(weight, op, name=name)

    def execute(self, x: Any = None) -> Any:
        """``op(x, self.value)``; ``x`` stays ``None`` for an :class:`ElemWiseOp`."""
        return self.op(x, self.value)


class ElemWiseParam(_LegacyParam):
    """Deprecated: use a :class:`brainstate.ParamState` plus :func:`braintrace.element_wise`.

    ``param.execute()`` is ``braintrace.element_wise(weight, fn)``.

    Parameters
    ----------
    weight : array or dict with key ``'weight'``
        The parameter, e.g. a vector of time constants.
    op : ElemWiseOp or callable, optional
        The operator, or directly its element-wise function (default identity).
    name : str, optional
        State name.

    Examples
    --------
    >>> import warnings
    >>> import jax, jax.numpy as jnp
    >>> import braintrace
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", DeprecationWarning)
    ...     tau = braintrace.ElemWiseParam(jnp.zeros(2), jax.nn.sigmoid)
    >>> tau.execute().tolist()
    [0.5, 0.5]
    """

    _legacy_name = "ElemWiseParam"

    def __init__(self, weight: Any, op: Any = None, name: str | None = None) -> None:
        if op is not None and not isinstance(op, ElemWiseOp) and not callable(op):
            raise TypeError(
                f"braintrace.ElemWiseParam: `op` must be an ElemWiseOp or a callable, got {type(op).__name__}."
            )
        super().__init__(weight, op, name=name)

    def execute(self, x: Any = None) -> Any:
        """``braintrace.element_wise(weight, fn)``; ``x`` must be ``None`` (element-wise ops take no input)."""
        if x is not None:
            raise TypeError("braintrace.ElemWiseParam.execute: an element-wise parameter takes no input `x`.")
        if isinstance(self.op, ElemWiseOp):
            return self.op(self.value)
        weight = _require(_as_weights(self.value, "ElemWiseParam"), "weight", "ElemWiseParam")
        return element_wise(weight) if self.op is None else element_wise(weight, self.op)


class NonTempParam(_LegacyParam):
    """Deprecated: use a :class:`brainstate.ParamState` plus plain JAX ops.

    ``param.execute(x)`` is ``op(x, param.value)`` with a plain JAX callable, so
    the weight is not learned online: it receives its instantaneous gradient
    only.

    Parameters
    ----------
    value : array or dict of arrays
        The parameter.
    op : callable
        ``op(x, value) -> y`` in plain JAX, e.g. ``lambda x, w: x @ w``.
    name : str, optional
        State name.

    Raises
    ------
    TypeError
        ``op`` is a legacy ETP operator (``MatMulOp`` & co.): it would bind an
        ETP primitive and make the weight learn online; use
        :class:`ETraceParam` for that.

    Examples
    --------
    >>> import warnings
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", DeprecationWarning)
    ...     readout = braintrace.NonTempParam(jnp.ones((3, 2)), lambda x, w: x @ w)
    >>> readout.execute(jnp.ones(3)).tolist()
    [3.0, 3.0]
    """

    _legacy_name = "NonTempParam"

    def __init__(self, value: Any, op: Callable[[Any, Any], Any], name: str | None = None) -> None:
        if isinstance(op, _LegacyOp):
            raise TypeError(
                f"braintrace.NonTempParam: `op` is a {type(op).__name__}, which binds an ETP primitive and "
                "would make this weight learn online. Pass a plain JAX callable op(x, value) (e.g. "
                "lambda x, w: x @ w), or use ETraceParam for an online-learned weight."
            )
        if not callable(op):
            raise TypeError(f"braintrace.NonTempParam: `op` must be callable, got {type(op).__name__}.")
        super().__init__(value, op, name=name)

    def execute(self, x: Any) -> Any:
        """``op(x, self.value)``."""
        return self.op(x, self.value)


def _without_etp(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` with every ETP primitive evaluated by its plain-JAX implementation.

    The result is the same; no ETP primitive is bound, so the compiler sees
    ordinary operations (no eligibility trace, no warning about a constant
    weight).
    """
    closed, shape = jax.make_jaxpr(fn, return_shape=True)(*args)
    closed = inline_calls(closed)
    env: dict[Any, Any] = dict(zip(closed.jaxpr.constvars, closed.consts))
    env.update(zip(closed.jaxpr.invars, jax.tree.leaves(args)))

    def read(v: Any) -> Any:
        return v.val if is_literal(v) else env[v]

    for eqn in closed.jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        entry = get_etp_primitive(eqn.primitive)
        outs = [entry.call(tuple(invals), eqn.params)] if entry is not None else eval_eqn(eqn, invals)
        env.update(zip(eqn.outvars, outs))
    return jax.tree.unflatten(jax.tree.structure(shape), [read(v) for v in closed.jaxpr.outvars])


class FakeETraceParam(_WarnOnce):
    """Deprecated: use a constant array and plain JAX ops on it.

    Holds a value that is **not** trained (a plain attribute, not a
    ``brainstate`` state) and an operator. ``param.execute(x)`` equals
    ``op(x, param.value)``, computed in plain JAX: the model's compiled graph
    has no ETP primitive for it, and the value receives no gradient.

    Parameters
    ----------
    value : array or dict of arrays
        The constant, e.g. ``{'weight': W}``.
    op : MatMulOp, ConvOp, SpMatMulOp, LoraOp, ElemWiseOp or callable
        The operator, or a plain ``op(x, value)``.

    Attributes
    ----------
    value : array or dict of arrays
        The constant (may be replaced).
    op : callable
        The operator.

    Examples
    --------
    >>> import warnings
    >>> import jax, jax.numpy as jnp
    >>> import braintrace
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", DeprecationWarning)
    ...     fixed = braintrace.FakeETraceParam({"weight": jnp.ones((3, 2))}, braintrace.MatMulOp())
    >>> fixed.execute(jnp.ones(3)).tolist()
    [3.0, 3.0]
    >>> jax.make_jaxpr(fixed.execute)(jnp.ones(3)).eqns[0].primitive   # no ETP primitive
    dot_general
    """

    _legacy_name = "FakeETraceParam"

    def __init__(self, value: Any, op: Any) -> None:
        self._warn_deprecated()
        if not callable(op):
            raise TypeError(
                "braintrace.FakeETraceParam: `op` must be a legacy operator or a callable op(x, value), "
                f"got {type(op).__name__}."
            )
        self.value = value
        self.op = op

    def execute(self, x: Any = None) -> Any:
        """``op(x, value)`` in plain JAX; ``x`` stays ``None`` for an :class:`ElemWiseOp`.

        Parameters
        ----------
        x : array, optional
            The input.
        """
        return _without_etp(self.op, x, self.value)


class FakeElemWiseParam(_WarnOnce):
    """Deprecated: use a constant array and a plain JAX function of it.

    Holds a value that is **not** trained (a plain attribute) and an
    element-wise function; ``param.execute()`` is ``fn(value)`` in plain JAX.

    Parameters
    ----------
    weight : array or dict with key ``'weight'``
        The constant.
    op : ElemWiseOp or callable, optional
        The operator, or directly its element-wise function (default identity).
    name : str, optional
        A name, kept as the attribute ``name``.

    Examples
    --------
    >>> import warnings
    >>> import jax, jax.numpy as jnp
    >>> import braintrace
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", DeprecationWarning)
    ...     tau = braintrace.FakeElemWiseParam(jnp.zeros(2), jax.nn.sigmoid)
    >>> tau.execute().tolist()
    [0.5, 0.5]
    """

    _legacy_name = "FakeElemWiseParam"

    def __init__(self, weight: Any, op: Any = None, name: str | None = None) -> None:
        self._warn_deprecated()
        if op is not None and not isinstance(op, ElemWiseOp) and not callable(op):
            raise TypeError(
                f"braintrace.FakeElemWiseParam: `op` must be an ElemWiseOp or a callable, got {type(op).__name__}."
            )
        self.value = weight
        self.op = op
        self.name = name

    def execute(self, x: Any = None) -> Any:
        """``fn(value)`` in plain JAX; ``x`` must be ``None`` (element-wise ops take no input).

        Parameters
        ----------
        x : None
            Must be ``None``.
        """
        if x is not None:
            raise TypeError("braintrace.FakeElemWiseParam.execute: an element-wise parameter takes no input `x`.")
        if isinstance(self.op, ElemWiseOp):
            return _without_etp(self.op, self.value)
        weight = _require(_as_weights(self.value, "FakeElemWiseParam"), "weight", "FakeElemWiseParam")
        return _without_etp(lambda w: element_wise(w) if self.op is None else element_wise(w, self.op), weight)
