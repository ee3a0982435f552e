"""Loop-invariant residuals of a window's linearised steps.

A fused window (see :mod:`braintrace.algorithms.vjp`) linearises each of its
``K`` steps inside a ``scan`` and transposes the ``K`` linearisations together
afterwards. A linearisation is a pytree of residual arrays; the scan stacks each
of them ``K`` times. Residuals that depend on the parameters (and constants)
only, not on the step's inputs or states (a weight ``W`` for the tangent
``dx @ W``, its transpose, ``sigmoid(decay)`` ...), are the same at every step:
they are kept once, computed from the parameters outside the scan, and restored
unbatched (``vmap`` ``in_axes=None``) when the steps are transposed.

Which residuals are invariant is a dependence analysis over the jaxpr of one
linearised step, traced once per shape (:func:`analyse_residuals`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.extend.core as jcore

from ..compiler.jaxpr_tools import UseDef, eval_eqn, is_literal

__all__ = ["InvariantResiduals", "analyse_residuals", "invariant_outputs"]


def invariant_outputs(jaxpr: jcore.Jaxpr, invariant_invars: Sequence[bool]) -> list[bool]:
    """Which outputs of ``jaxpr`` depend on the invariant inputs (and constants) only.

    A forward pass: constants and literals are invariant, an input is invariant
    where ``invariant_invars`` says so, and an equation's outputs are invariant
    if all its inputs are. Nested calls (``pjit``, ``custom_jvp_call``,
    ``scan`` ...) are opaque: their outputs are invariant only if all their
    inputs are, which is conservative.

    Parameters
    ----------
    jaxpr : jax.extend.core.Jaxpr
        The (open) jaxpr to analyse.
    invariant_invars : sequence of bool
        One flag per ``jaxpr.invars``.

    Returns
    -------
    list of bool
        One flag per ``jaxpr.outvars``.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from braintrace.algorithms.residuals import invariant_outputs
    >>> closed = jax.make_jaxpr(lambda w, x: (w.T, x @ w, 2.0 * w + 1.0))(jnp.ones((2, 3)), jnp.ones(2))
    >>> invariant_outputs(closed.jaxpr, [True, False])
    [True, False, True]
    """
    if len(invariant_invars) != len(jaxpr.invars):
        raise ValueError(f"{len(invariant_invars)} flags for {len(jaxpr.invars)} inputs")
    variant = UseDef(jaxpr).forward(v for v, inv in zip(jaxpr.invars, invariant_invars) if not inv)
    return [is_literal(v) or v not in variant for v in jaxpr.outvars]


class InvariantResiduals:
    """The invariant leaves of a linearised step and how to compute them once.

    Built by :func:`analyse_residuals` from the jaxpr of
    ``(params, *others) -> leaves``; ``mask[i]`` says whether leaf ``i`` depends
    on ``params`` only.

    Parameters
    ----------
    closed : jax.extend.core.ClosedJaxpr
        The traced step, outputs the linearisation's leaves.
    n_params : int
        The number of leading inputs that are parameters.
    mask : sequence of bool
        One flag per output: invariant or not.
    """

    def __init__(self, closed: jcore.ClosedJaxpr, n_params: int, mask: Sequence[bool]) -> None:
        self.closed = closed
        self.n_params = n_params
        self.mask = tuple(bool(m) for m in mask)
        self.avals = tuple((tuple(v.aval.shape), v.aval.dtype) for v in closed.jaxpr.outvars)

    def matches(self, leaves: Sequence[Any]) -> bool:
        """Whether ``leaves`` have the shapes and dtypes of the analysed outputs."""
        return len(leaves) == len(self.avals) and all(
            tuple(jax.numpy.shape(x)) == s and jax.numpy.result_type(x) == d
            for x, (s, d) in zip(leaves, self.avals)
        )

    def values(self, param_vals: Sequence[Any]) -> list[Any]:
        """The invariant leaves (in order), computed from the parameters alone.

        Only the equations that lead to an invariant output are evaluated
        (they depend on parameters and constants only).
        """
        jaxpr = self.closed.jaxpr
        targets = [v for v, m in zip(jaxpr.outvars, self.mask) if m]
        needed = UseDef(jaxpr).backward(targets)
        env: dict[Any, Any] = dict(zip(jaxpr.constvars, self.closed.consts))
        env.update(zip(jaxpr.invars[: self.n_params], param_vals))
        for eqn in (e for e in jaxpr.eqns if any(v in needed for v in e.outvars)):
            outs = eval_eqn(eqn, [v.val if is_literal(v) else env[v] for v in eqn.invars])
            env.update(zip(eqn.outvars, outs))
        return [v.val if is_literal(v) else env[v] for v in targets]


def analyse_residuals(fn: Callable[..., list], param_vals: Sequence[Any], *others: Any) -> InvariantResiduals:
    """Trace ``fn(param_vals, *others) -> leaves`` (abstract values only) and find its invariant leaves.

    Parameters
    ----------
    fn : callable
        ``(param_vals, *others) -> list of arrays``, e.g. the leaves of a
        step's ``jax.linearize``.
    param_vals : sequence of arrays
        The parameters (the invariant inputs).
    *others
        The step's varying inputs (states, data); only their shapes are used.

    Returns
    -------
    InvariantResiduals

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from braintrace.algorithms.residuals import analyse_residuals
    >>> def leaves(params, x):                       # linearised in x: the tangent is dx @ w.T
    ...     _, lin = jax.linearize(lambda h: jnp.tanh(h @ params[0].T), x)
    ...     return jax.tree.leaves(lin)
    >>> res = analyse_residuals(leaves, (jnp.ones((3, 2)),), jnp.ones(2))
    >>> [(s, m) for (s, _), m in zip(res.avals, res.mask)]   # w.T is kept once
    [((2, 3), True), ((3,), False), ((3,), False)]
    >>> [v.shape for v in res.values((jnp.ones((3, 2)),))]
    [(2, 3)]
    """
    param_vals = tuple(param_vals)
    closed = jax.make_jaxpr(fn)(param_vals, *others)
    n_params = len(jax.tree.leaves(param_vals))
    flags = [i < n_params for i in range(len(closed.jaxpr.invars))]
    return InvariantResiduals(closed, n_params, invariant_outputs(closed.jaxpr, flags))
