r"""Stacking a window's linearised steps without stacking what does not vary.

A window of ``K`` steps is linearised step by step inside a ``scan``; the
linearisations (pytrees of residual arrays) are stacked on a leading axis and
transposed together afterwards (:meth:`ETraceVjpGraphExecutor.transpose`).
:class:`WindowResiduals` decides, once per shape, which residual leaves are not
stacked (:mod:`braintrace.executor.residuals`): leaves that depend on the
parameters only are computed once after the scan, leaves that cheap
operations derive from the others and the window's data are recomputed for
the whole window at once. States the step reads but never writes (a sparse
layer's index arrays, say) count as parameters here: nothing changes them
within a window, so what derives from them alone is not stacked either. It
owns the caches of those analyses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from .residuals import InvariantResiduals, analyse_residuals

__all__ = ["WindowResiduals"]


def _structure_key(stacked: Any) -> tuple:
    return jax.tree.structure(stacked), tuple(
        (jnp.shape(v), str(jnp.result_type(v))) for v in jax.tree.leaves(stacked)
    )


class WindowResiduals:
    """Which leaves of a window's linearisations are stacked, kept once or recomputed.

    Parameters
    ----------
    leaves_fn : callable
        ``(param_vals, state_vals, args_t) -> list of arrays``: the leaves of one
        step's linearisation (traced abstractly, once per shape).
    fixed : sequence of int, default ()
        Positions, among the state leaves, of the states the step never writes:
        invariant over a window, like the parameters.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from braintrace.executor.window_residuals import WindowResiduals
    >>> def lin_leaves(params, states, args):          # leaves of a step's linearisation
    ...     return [params[0].T, jnp.tanh(args[0] @ params[0])]
    >>> res = WindowResiduals(lin_leaves)
    >>> p, s, x = (jnp.ones((2, 3)),), (), (jnp.ones(2),)
    >>> kept, shared = res.drop([jnp.ones((3, 2)), jnp.ones(3)], res.analysis(p, s, x))
    >>> [k is None for k in kept]                     # W.T is kept once, not per step
    [True, False]
    """

    def __init__(self, leaves_fn: Callable[..., list], fixed: Sequence[int] = ()) -> None:
        self.leaves_fn = leaves_fn
        self.fixed = tuple(fixed)
        self._analyses: dict[tuple, InvariantResiduals] = {}
        self._structures: dict[tuple, tuple[Any, InvariantResiduals | None]] = {}

    @property
    def recorded(self) -> dict[tuple, tuple[Any, InvariantResiduals | None]]:
        """``{(tree structure, ((shape, dtype), ...)): (linearisation treedef, analysis used)}`` of
        every window residual built so far (a copy)."""
        return dict(self._structures)

    def _invariant(self, param_vals: Sequence[Any], state_vals: Sequence[Any]) -> tuple:
        """The inputs that do not vary over a window: the parameter leaves, then the fixed state leaves."""
        return (*param_vals, *(state_vals[i] for i in self.fixed))

    def _leaves(self, invariant, varying, args_t):
        """:attr:`leaves_fn` with the state leaves split into fixed (in ``invariant``) and varying."""
        n_params = len(invariant) - len(self.fixed)
        fixed, rest = dict(zip(self.fixed, invariant[n_params:])), iter(varying)
        states = [fixed[i] if i in fixed else next(rest) for i in range(len(fixed) + len(varying))]
        return self.leaves_fn(invariant[:n_params], states, args_t)

    def analysis(self, param_vals: Sequence[Any], state_vals: Sequence[Any], first_args: Sequence[Any]):
        """The residual analysis for these shapes (cached per shapes and dtypes)."""
        key = tuple(jax.typeof(v) for v in (*param_vals, *state_vals, *first_args))
        if key in self._analyses:
            return self._analyses[key]
        n_data = len(jax.tree.leaves(tuple(first_args)))
        varying = tuple(v for i, v in enumerate(state_vals) if i not in self.fixed)
        analysis = analyse_residuals(
            self._leaves, self._invariant(param_vals, state_vals), varying, tuple(first_args), n_data=n_data
        )
        if not any(isinstance(c, jax.core.Tracer) for c in analysis.closed.consts):
            self._analyses[key] = analysis  # one closing over an enclosing trace's values is not reusable
        return analysis

    def drop(self, lin: Any, analysis: InvariantResiduals) -> tuple[list, dict]:
        """``(leaves to stack, shared)``: the other leaves replaced by ``None``.

        ``shared`` receives the tree structure and the analysis used (``None``
        should the leaves not be those analysed: then every leaf is stacked).
        """
        leaves, treedef = jax.tree.flatten(lin)
        used = analysis if analysis.matches(leaves) else None
        shared = {"treedef": treedef, "analysis": used}
        if used is None:
            return leaves, shared
        return [leaf if k else None for leaf, k in zip(leaves, used.stacked)], shared

    def finish(self, stacked: list, shared: dict, param_vals: Sequence[Any], state_vals: Sequence[Any]) -> tuple:
        """``(stacked, invariant values, fixed state values)`` after the scan; records the structure for
        :meth:`restore`."""
        used = shared["analysis"]
        inputs = self._invariant(param_vals, state_vals)
        out = (stacked, used.values(inputs) if used is not None and any(used.mask) else [],
               inputs[len(param_vals):])
        self._structures[_structure_key(out)] = (shared["treedef"], used)
        return out

    def restore(self, residual: tuple, param_vals: Sequence[Any], arg_seq: Sequence[Any]) -> tuple[Any, list]:
        """``(stacked linearisations, in_axes)``: the invariant leaves put back unbatched
        (``in_axes`` ``None``), the derived ones recomputed for every step at once."""
        stacked, invariant, fixed = residual
        treedef, analysis = self._structures[_structure_key(residual)]
        if analysis is None:
            return jax.tree.unflatten(treedef, list(stacked)), [0] * len(stacked)
        derived: Any = iter(())
        if any(analysis.derived):
            kept = [leaf for leaf, k in zip(stacked, analysis.stacked) if k]
            data = jax.tree.leaves(tuple(arg_seq))
            inputs = (*param_vals, *fixed)
            derived = iter(jax.vmap(lambda s, d: analysis.derived_values(inputs, s, d))(kept, data))
        once = iter(invariant)
        leaves = [next(once) if m else next(derived) if d else leaf
                  for leaf, m, d in zip(stacked, analysis.mask, analysis.derived)]
        return jax.tree.unflatten(treedef, leaves), [None if m else 0 for m in analysis.mask]
