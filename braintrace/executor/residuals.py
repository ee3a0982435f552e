"""Loop-invariant residuals of a window's linearised steps.

A fused window (see :mod:`braintrace.executor.driver`) linearises each of its
``K`` steps inside a ``scan`` and transposes the ``K`` linearisations together
afterwards. A linearisation is a pytree of residual arrays; the scan stacks each
of them ``K`` times. Residuals that depend on the parameters (and constants)
only, not on the step's inputs or states (a weight ``W`` for the tangent
``dx @ W``, its transpose, ``sigmoid(decay)`` ...), are the same at every step:
they are kept once, computed from the parameters outside the scan, and restored
unbatched (``vmap`` ``in_axes=None``) when the steps are transposed.

Residuals that cheap shape-preserving operations (element-wise arithmetic,
concatenation, broadcasting, reshaping) compute from other kept residuals, the
step's data inputs and the parameters (``1 - tanh(x)`` next to ``tanh(x)``, a
new state ``(1 - z) h + z c`` next to ``z``, ``h`` and ``c``, ``[x, h]`` next to
``h``) are not stacked either: they are recomputed after the scan, for all the
window's steps at once (:meth:`InvariantResiduals.derived_values`).

Which residuals are invariant or derived is a dependence analysis over the jaxpr
of one linearised step, traced once per shape (:func:`analyse_residuals`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.extend.core as jcore
from jax import lax

from ..compiler.jaxpr_tools import ELEMENTWISE_PRIMITIVES, UseDef, eval_eqn, is_literal

__all__ = ["InvariantResiduals", "analyse_residuals", "derivable_outputs", "invariant_outputs"]

#: Operations cheap to redo for a whole window after the scan: each output element
#: is a copy or an element-wise function of operand elements.
CHEAP_PRIMITIVES = ELEMENTWISE_PRIMITIVES | frozenset(
    (lax.concatenate_p, lax.broadcast_in_dim_p, lax.reshape_p, lax.squeeze_p)
)


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
    >>> from braintrace.executor.residuals import invariant_outputs
    >>> closed = jax.make_jaxpr(lambda w, x: (w.T, x @ w, 2.0 * w + 1.0))(jnp.ones((2, 3)), jnp.ones(2))
    >>> invariant_outputs(closed.jaxpr, [True, False])
    [True, False, True]
    """
    if len(invariant_invars) != len(jaxpr.invars):
        raise ValueError(f"{len(invariant_invars)} flags for {len(jaxpr.invars)} inputs")
    variant = UseDef(jaxpr).forward(v for v, inv in zip(jaxpr.invars, invariant_invars) if not inv)
    return [is_literal(v) or v not in variant for v in jaxpr.outvars]


def derivable_outputs(jaxpr: jcore.Jaxpr, free: Sequence[Any], candidates: Sequence[bool]) -> list[bool]:
    """Which candidate outputs cheap operations compute from the free variables and the other kept outputs.

    A greedy pass in output order: a candidate is *derived* if walking back
    from it through :data:`CHEAP_PRIMITIVES` ends only at literals, at variables
    in ``free`` or at candidate outputs still kept (the walk goes on through
    outputs already derived); those it uses stay kept.
    Non-candidates are neither derived nor usable (they are not kept per step).

    Parameters
    ----------
    jaxpr : jax.extend.core.Jaxpr
    free : sequence of variables
        Available without being kept (inputs, parameter-only values).
    candidates : sequence of bool
        One flag per ``jaxpr.outvars``: kept per step unless derived.

    Returns
    -------
    list of bool
        One flag per output.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from braintrace.executor.residuals import derivable_outputs
    >>> def leaves(h):
    ...     c = jnp.tanh(h @ h.T)
    ...     return c, 1.0 - c, c * h, jnp.exp(h @ h.T)
    >>> j = jax.make_jaxpr(leaves)(jnp.ones((2, 2))).jaxpr
    >>> derivable_outputs(j, j.invars, [True] * 4)      # 1 - c and c * h from c and h
    [False, True, True, False]
    """
    if len(candidates) != len(jaxpr.outvars):
        raise ValueError(f"{len(candidates)} flags for {len(jaxpr.outvars)} outputs")
    usedef, free_vars = UseDef(jaxpr), set(free)
    kept = {i for i, c in enumerate(candidates) if c and not is_literal(jaxpr.outvars[i])}
    pinned: set[Any] = set()
    derived = [False] * len(candidates)

    def sources(v: Any, base: set) -> set | None:
        """The base variables ``v`` is computed from by cheap operations, or ``None``."""
        used: set[Any] = set()
        todo, seen = [v], set()
        while todo:
            u = todo.pop()
            if is_literal(u) or u in seen:
                continue
            seen.add(u)
            if u in base:
                used.add(u)
                continue
            if u not in usedef.producer:
                return None
            eqn = jaxpr.eqns[usedef.producer[u]]
            if eqn.primitive not in CHEAP_PRIMITIVES:
                return None
            todo.extend(eqn.invars)
        return used

    for i in sorted(kept):
        v = jaxpr.outvars[i]
        others = {jaxpr.outvars[j] for j in kept if j != i}
        if v in pinned and v not in others:
            continue
        used = {v} if v in others else sources(v, free_vars | others) if v not in free_vars else set()
        if used is not None:
            kept.discard(i)
            derived[i] = True
            pinned |= used & others
    return derived


class InvariantResiduals:
    """Which leaves of a linearised step are kept per step, and how to compute the others.

    Built by :func:`analyse_residuals` from the jaxpr of
    ``(params, *others, *data) -> leaves``. ``mask[i]`` says whether leaf ``i``
    depends on ``params`` only (kept once, :meth:`values`); ``derived[i]``
    whether cheap operations compute it from the kept leaves, the data and the
    parameters (recomputed after the scan, :meth:`derived_values`). The other
    leaves are stacked by the scan.

    Parameters
    ----------
    closed : jax.extend.core.ClosedJaxpr
        The traced step, outputs the linearisation's leaves.
    n_params : int
        The number of leading inputs that are parameters.
    mask : sequence of bool
        One flag per output: invariant or not.
    derived : sequence of bool, optional
        One flag per output: derived or not (default: none).
    n_data : int, default 0
        The number of trailing inputs (the step's data) that :meth:`derived_values` receives.
    """

    def __init__(
        self,
        closed: jcore.ClosedJaxpr,
        n_params: int,
        mask: Sequence[bool],
        derived: Sequence[bool] | None = None,
        n_data: int = 0,
    ) -> None:
        self.closed = closed
        self.n_params = n_params
        self.mask = tuple(bool(m) for m in mask)
        self.derived = tuple(bool(d) for d in derived) if derived is not None else (False,) * len(self.mask)
        self.n_data = n_data
        self.avals = tuple((tuple(v.aval.shape), v.aval.dtype) for v in closed.jaxpr.outvars)

    @property
    def stacked(self) -> tuple[bool, ...]:
        """One flag per leaf: neither invariant nor derived (kept per step)."""
        return tuple(not m and not d for m, d in zip(self.mask, self.derived))

    def matches(self, leaves: Sequence[Any]) -> bool:
        """Whether ``leaves`` have the shapes and dtypes of the analysed outputs."""
        return len(leaves) == len(self.avals) and all(
            tuple(jax.numpy.shape(x)) == s and jax.numpy.result_type(x) == d
            for x, (s, d) in zip(leaves, self.avals)
        )

    def _evaluate(self, targets: list, known: dict) -> list[Any]:
        """``targets``' values, evaluating only the equations between ``known`` and them."""
        jaxpr = self.closed.jaxpr
        needed = UseDef(jaxpr).backward(targets, stop=set(known))
        env: dict[Any, Any] = dict(zip(jaxpr.constvars, self.closed.consts))
        env.update(known)
        for eqn in (e for e in jaxpr.eqns if any(v in needed and v not in env for v in e.outvars)):
            outs = eval_eqn(eqn, [v.val if is_literal(v) else env[v] for v in eqn.invars])
            env.update(zip(eqn.outvars, outs))
        return [v.val if is_literal(v) else env[v] for v in targets]

    def values(self, param_vals: Sequence[Any]) -> list[Any]:
        """The invariant leaves (in order), computed from the parameters alone.

        Only the equations that lead to an invariant output are evaluated
        (they depend on parameters and constants only).
        """
        jaxpr = self.closed.jaxpr
        targets = [v for v, m in zip(jaxpr.outvars, self.mask) if m]
        return self._evaluate(targets, dict(zip(jaxpr.invars[: self.n_params], param_vals)))

    def derived_values(self, param_vals: Sequence[Any], stacked: Sequence[Any], data: Sequence[Any]) -> list[Any]:
        """The derived leaves (in order) of one step, from its stacked leaves and data.

        ``stacked``: the values of the leaves flagged by :attr:`stacked`, in
        order; ``data``: the step's last ``n_data`` inputs. ``vmap`` it over a
        window's steps.
        """
        jaxpr = self.closed.jaxpr
        known = dict(zip(jaxpr.invars[: self.n_params], param_vals))
        known.update(zip(jaxpr.invars[len(jaxpr.invars) - self.n_data:], data) if self.n_data else {})
        known.update(zip((v for v, k in zip(jaxpr.outvars, self.stacked) if k), stacked))
        targets = [v for v, d in zip(jaxpr.outvars, self.derived) if d]
        return self._evaluate(targets, known)


def analyse_residuals(
    fn: Callable[..., list], param_vals: Sequence[Any], *others: Any, n_data: int = 0
) -> InvariantResiduals:
    """Trace ``fn(param_vals, *others) -> leaves`` (abstract values only) and find its invariant and derived leaves.

    Parameters
    ----------
    fn : callable
        ``(param_vals, *others) -> list of arrays``, e.g. the leaves of a
        step's ``jax.linearize``.
    param_vals : sequence of arrays
        The parameters (the invariant inputs).
    *others
        The step's varying inputs (states, data); only their shapes are used.
    n_data : int, default 0
        How many of the last input leaves are data available after the scan
        (the window's inputs): derived leaves may be computed from them.

    Returns
    -------
    InvariantResiduals

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from braintrace.executor.residuals import analyse_residuals
    >>> def leaves(params, x):   # what a linearisation of tanh(x @ w.T) in x may keep
    ...     y = jnp.tanh(x @ params[0].T)
    ...     return [params[0].T, y, 1.0 - y * y]     # w.T, tanh, its derivative
    >>> res = analyse_residuals(leaves, (jnp.ones((3, 2)),), jnp.ones(2))
    >>> [(s, m, d) for (s, _), m, d in zip(res.avals, res.mask, res.derived)]   # w.T kept once
    [((2, 3), True, False), ((3,), False, False), ((3,), False, True)]
    >>> [v.shape for v in res.values((jnp.ones((3, 2)),))]
    [(2, 3)]
    >>> stacked = [jnp.tanh(jnp.ones(3) * 2.0)]     # tanh(h @ w.T) for h = w = ones
    >>> [v.shape for v in res.derived_values((jnp.ones((3, 2)),), stacked, [])]
    [(3,)]
    """
    param_vals = tuple(param_vals)
    closed = jax.make_jaxpr(fn)(param_vals, *others)
    jaxpr = closed.jaxpr
    n_params = len(jax.tree.leaves(param_vals))
    flags = [i < n_params for i in range(len(jaxpr.invars))]
    mask = invariant_outputs(jaxpr, flags)
    variant = UseDef(jaxpr).forward(jaxpr.invars[n_params:])
    free = [*jaxpr.constvars, *jaxpr.invars[:n_params], *jaxpr.invars[len(jaxpr.invars) - n_data:]]
    free += [v for e in jaxpr.eqns for v in e.outvars if v not in variant]  # computed from parameters alone
    derived = derivable_outputs(jaxpr, free, [not m for m in mask])
    return InvariantResiduals(closed, n_params, mask, derived, n_data)
