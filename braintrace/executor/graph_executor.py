r"""Running a compiled graph: the forward step plus what the traces need.

For one time step, :class:`ETraceGraphExecutor` computes, inside one traced
computation:

* the model's outputs and new state values;
* the operands (``x`` and trainable inputs) of every online relation;
* ``D^t``, the exact per-position ``S × S`` blocks of the cut Jacobian
  ``∂h^t/∂h^{t-1}`` of every hidden group, shape ``(*V, S, S)``;
* ``df^t``, the derivative of each reached group with respect to each
  relation's output, shape ``(*V, S)``.

:class:`ETraceVjpGraphExecutor` adds the VJP of the step with respect to the
parameters and to zero perturbations of the hidden states, whose cotangents are
the instantaneous parameter gradients and the learning signals ``δ^t``.

Inputs are flat lists aligned with ``graph.module_info.jaxpr.invars``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ..compiler import ETraceGraph, HiddenGroup, HiddenParamOpRelation, evaluate_step

__all__ = ["StepTraceData", "WindowTraceData", "ETraceGraphExecutor", "ETraceVjpGraphExecutor", "zeros_cotangent"]

Path = tuple[Any, ...]


class WindowTraceData(NamedTuple):
    """What a window of ``K`` steps hands to the trace updates.

    Attributes
    ----------
    operands : dict
        ``{relation index: operands}`` at the window's first step (the
        trainable inputs and any structure are the same at every step).
    x : dict
        ``{relation index: (K, *x.shape)}`` data inputs (x-free relations absent).
    D : dict
        ``{group index: (K, *V, S, S)}``.
    df : dict
        ``{(relation index, group index): (K, *V, S)}``.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> from braintrace.executor import WindowTraceData
    >>> cell = braintrace.nn.VanillaRNNCell(2, 3)
    >>> brainstate.nn.init_all_states(cell)  # doctest: +ELLIPSIS
    VanillaRNNCell(...)
    >>> relations = braintrace.compile_etrace_graph(cell, jnp.zeros(2)).hidden_param_op_relations
    >>> K = 4                                                  # a window of 4 steps
    >>> seq = WindowTraceData(operands={0: (jnp.zeros(5), jnp.ones((5, 3)))},
    ...                       x={0: jnp.arange(20.0).reshape(K, 5)},
    ...                       D={0: jnp.zeros((K, 3, 1, 1))}, df={(0, 0): jnp.ones((K, 3, 1))})
    >>> step = seq.step(2, relations)                          # the StepTraceData of step 2
    >>> step.operands[0][0].tolist(), step.D[0].shape
    ([10.0, 11.0, 12.0, 13.0, 14.0], (3, 1, 1))
    """

    operands: dict
    x: dict
    D: dict
    df: dict

    def step(self, k: Any, relations: Sequence[HiddenParamOpRelation]) -> "StepTraceData":
        """The :class:`StepTraceData` of step ``k`` (without ``outvals``)."""
        ops = {}
        for r in relations:
            o = list(self.operands[r.index])
            if r.index in self.x:
                xi = r.entry.x_invar_index
                assert xi is not None  # x-free relations have no entry in x
                o[xi] = self.x[r.index][k]
            ops[r.index] = o
        return StepTraceData(
            outvals=[],
            operands=ops,
            D={g: v[k] for g, v in self.D.items()},
            df={key: v[k] for key, v in self.df.items()},
        )


class StepTraceData(NamedTuple):
    """Everything one step hands to the trace updates.

    Attributes
    ----------
    outvals : list
        Values of the jaxpr outputs (model output leaves, then state leaves).
    operands : dict
        ``{relation index: operands of its ETP equation}``.
    D : dict
        ``{group index: (*V, S, S) blocks}``.
    df : dict
        ``{(relation index, group index): (*V, S)}``.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.VanillaRNNCell(2, 3)
    >>> brainstate.nn.init_all_states(cell)  # doctest: +ELLIPSIS
    VanillaRNNCell(...)
    >>> ex = braintrace.ETraceGraphExecutor(braintrace.compile_etrace_graph(cell, jnp.zeros(2)))
    >>> data = ex.trace_data(ex.current_invals(jnp.zeros(2)))
    >>> type(data).__name__, {k: v.shape for k, v in data.df.items()}
    ('StepTraceData', {(0, 0): (3, 1)})
    """

    outvals: list
    operands: dict
    D: dict
    df: dict


def zeros_cotangent(x: Any) -> Any:
    """A zero cotangent for ``x`` (``float0`` for integer and boolean values).

    Parameters
    ----------
    x : array or scalar
        A primal value.

    Returns
    -------
    array
        Zeros shaped like ``x``: of ``x``'s dtype if it is inexact, else of
        dtype ``jax.dtypes.float0`` (what JAX expects for non-differentiable values).

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from braintrace.executor import zeros_cotangent
    >>> zeros_cotangent(jnp.ones(2)).tolist()
    [0.0, 0.0]
    >>> zeros_cotangent(jnp.arange(3)).dtype == jax.dtypes.float0
    True
    """
    dtype = x.dtype if hasattr(x, "dtype") else jnp.result_type(x)
    if jnp.issubdtype(dtype, jnp.inexact):
        return jnp.zeros(jnp.shape(x), dtype)
    return jnp.zeros(jnp.shape(x), jax.dtypes.float0)


class ETraceGraphExecutor:
    """The eligibility trace graph executor.

    Parameters
    ----------
    graph : ETraceGraph
        From :func:`braintrace.compile_etrace_graph`.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.VanillaRNNCell(2, 3)
    >>> brainstate.nn.init_all_states(cell)  # doctest: +ELLIPSIS
    VanillaRNNCell(...)
    >>> ex = braintrace.ETraceGraphExecutor(braintrace.compile_etrace_graph(cell, jnp.zeros(2)))
    >>> data = ex.trace_data(ex.current_invals(jnp.zeros(2)))
    >>> [d.shape for d in data.D.values()]
    [(3, 1, 1)]
    """

    def __init__(self, graph: ETraceGraph) -> None:
        self.graph = graph
        self.minfo = graph.module_info
        self._hidden = {s.path: s for s in self.minfo.hidden_slots}

    # -- inputs ------------------------------------------------------------
    def current_invals(self, *args: Any) -> list[Any]:
        """Flat inputs from ``args`` and the states' current values."""
        leaves = jax.tree.leaves(args)
        for slot in self.minfo.slots:
            leaves += jax.tree.leaves(slot.state.value)
        return [jnp.asarray(v) if not hasattr(v, "dtype") else v for v in leaves]

    def hidden_values(self, invals: Sequence[Any]) -> dict[Path, Any]:
        return {p: invals[s.invars[0]] for p, s in self._hidden.items()}

    def with_hidden(self, invals: Sequence[Any], hidden: Mapping[Path, Any]) -> list[Any]:
        iv = list(invals)
        for p, v in hidden.items():
            iv[self._hidden[p].invars[0]] = v
        return iv

    def hidden_outputs(self, outvals: Sequence[Any]) -> dict[Path, Any]:
        return {p: outvals[s.outvars[0]] for p, s in self._hidden.items()}

    # -- forward -----------------------------------------------------------
    def forward(self, invals: Sequence[Any]) -> list[Any]:
        """Output values of the step (model output leaves, then state leaves)."""
        return evaluate_step(self.minfo, invals)[0]

    def _cut_hidden_fn(self, invals, group: HiddenGroup, eqn=None):
        """``h (subset) [, y perturbation] -> new hidden values``, ETP data inputs cut and the
        other groups' new values held constant (their dynamics are not this group's)."""
        others = tuple(p for p in self._hidden if p not in group.hidden_paths)

        def fn(h_sub, ypert=None):
            iv = self.with_hidden(invals, h_sub)
            out, _ = evaluate_step(
                self.minfo,
                iv,
                cut=True,
                y_perturb=None if eqn is None else {eqn: ypert},
                stop_hidden=others,
            )
            return self.hidden_outputs(out)

        return fn

    def jacobian_blocks(self, invals: Sequence[Any], group: HiddenGroup) -> jax.Array:
        """Exact per-position blocks ``D[v, s, s'] = ∂h_s^t[v] / ∂h_{s'}^{t-1}[v]`` (cut)."""
        hvals = self.hidden_values(invals)
        members = {p: hvals[p] for p in group.hidden_paths}
        fn = self._cut_hidden_fn(invals, group)
        packed = group.pack(members)
        S = group.num_state

        def packed_fn(hp):
            out = fn(group.unpack(hp))
            return group.pack({p: out[p] for p in group.hidden_paths})

        if group.elementwise:
            cols = []
            for s in range(S):
                tangent = jnp.zeros_like(packed).at[..., s].set(1.0)
                _, col = jax.jvp(packed_fn, (packed,), (tangent,))
                cols.append(col)
            return jnp.stack(cols, axis=-1)
        n = packed.size
        jac = jax.jacfwd(packed_fn)(packed)  # (*V, S, *V, S)
        P = n // S
        jac = jac.reshape(P, S, P, S)
        blocks = jnp.einsum("aiaj->aij", jac)
        return blocks.reshape(tuple(group.varshape) + (S, S))

    def output_derivative(
        self, invals: Sequence[Any], relation: HiddenParamOpRelation, y_shape: tuple[int, ...], dtype: Any
    ) -> dict[int, jax.Array]:
        """``df[g] = ∂h_g^t / ∂y`` for every group the relation reaches, ``(*V, S)`` each
        (the other groups' new values held constant)."""
        zeros = jnp.zeros(y_shape, dtype)
        out = {}
        for gi in relation.hidden_groups:
            g = self.graph.hidden_groups[gi]
            fn = self._cut_hidden_fn(invals, g, eqn=relation.eqn_index)
            _, tout = jax.jvp(lambda q: fn({}, q), (zeros,), (jnp.ones(y_shape, dtype),))
            out[gi] = g.pack({p: tout[p] for p in g.hidden_paths})
        return out

    def trace_data(self, invals: Sequence[Any]) -> StepTraceData:
        """Run the step and compute ``operands``, ``D`` and ``df`` for every relation."""
        rels = self.graph.hidden_param_op_relations
        outvals, recorded = evaluate_step(self.minfo, invals, record=[r.eqn_index for r in rels])
        needed = sorted({gi for r in rels for gi in r.hidden_groups})
        D = {gi: self.jacobian_blocks(invals, self.graph.hidden_groups[gi]) for gi in needed}
        df = {}
        for r in rels:
            eqn = self.minfo.jaxpr.eqns[r.eqn_index]
            y_aval = eqn.outvars[r.entry.y_outvar_index].aval
            for gi, val in self.output_derivative(invals, r, tuple(y_aval.shape), y_aval.dtype).items():
                df[(r.index, gi)] = val
        return StepTraceData(
            outvals=outvals,
            operands={r.index: recorded[r.eqn_index] for r in rels},
            D=D,
            df=df,
        )


class ETraceVjpGraphExecutor(ETraceGraphExecutor):
    """The eligibility trace graph executor for the VJP-based online learning algorithms.

    Adds :meth:`step_vjp`: the step's VJP with respect to chosen parameter
    leaves and to zero perturbations of the hidden states.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.VanillaRNNCell(2, 3)
    >>> brainstate.nn.init_all_states(cell)  # doctest: +ELLIPSIS
    VanillaRNNCell(...)
    >>> ex = braintrace.ETraceVjpGraphExecutor(braintrace.compile_etrace_graph(cell, jnp.zeros(2)))
    >>> outvals, vjp = ex.step_vjp(ex.current_invals(jnp.zeros(2)), diff_invars=())
    >>> grads, delta = ex.apply_vjp(vjp, [jnp.ones_like(v) for v in outvals])
    >>> {k: v.shape for k, v in delta.items()}
    {('h',): (3,)}
    """

    def _perturbed_step(self, invals: Sequence[Any], diff_invars: Sequence[int]):
        pert = self.graph.hidden_perturbation
        diff_invars = tuple(diff_invars)

        def fn(diff_vals, p):
            iv = list(invals)
            for i, v in zip(diff_invars, diff_vals):
                iv[i] = v
            return pert.apply(iv, p)

        return fn, tuple(invals[i] for i in diff_invars), pert.zeros()

    def step_vjp(self, invals: Sequence[Any], diff_invars: Sequence[int]) -> tuple[list[Any], Any]:
        """Outputs and the VJP of the step w.r.t. ``diff_invars`` and hidden perturbations.

        The hidden states' new values carry a zero perturbation ``p``; the
        cotangent of ``p`` is the learning signal ``δ^t = ∂L^t/∂h^t``.
        Everything not in ``diff_invars`` (the previous hidden values above
        all) is held constant. The returned ``vjp`` is a pytree (it can be a
        ``custom_vjp`` residual); apply it with :meth:`apply_vjp`.
        """
        fn, primals, zeros = self._perturbed_step(invals, diff_invars)
        return jax.vjp(fn, primals, zeros)

    def _cotangents(self, cotangents: Sequence[Any], lead: tuple[int, ...] = ()) -> list[Any]:
        outs = self.minfo.jaxpr.outvars
        return [
            zeros_cotangent(jax.ShapeDtypeStruct(lead + tuple(v.aval.shape), v.aval.dtype)) if c is None else c
            for v, c in zip(outs, cotangents)
        ]

    def apply_vjp(self, vjp: Any, cotangents: Sequence[Any]) -> tuple[tuple[Any, ...], dict[Path, Any]]:
        """``cotangents`` (one per jaxpr output, ``None`` for zero) -> (param grads, ``{path: δ}``)."""
        return vjp(self._cotangents(cotangents))

    def step_linearize(self, invals: Sequence[Any], diff_invars: Sequence[int]) -> tuple[list[Any], Any]:
        """Outputs and the step linearised in ``diff_invars`` and the hidden perturbations.

        The forward-mode counterpart of :meth:`step_vjp`: ``jvp(d_params, d_p)``
        gives the outputs' tangents. It is a pytree of residuals, so the
        linearisations of a window's steps can be stacked by ``scan`` and
        transposed together with :meth:`transpose_steps`.
        """
        fn, primals, zeros = self._perturbed_step(invals, diff_invars)
        return jax.linearize(fn, primals, zeros)

    def transpose_steps(
        self, jvps: Any, cotangents: Sequence[Any], diff_avals: Sequence[Any], in_axes: Any = 0
    ) -> tuple[tuple[Any, ...], dict[Path, Any]]:
        """Transpose ``K`` stacked linearised steps at once.

        ``jvps`` are :meth:`step_linearize` results stacked on a leading axis
        ``K``; ``cotangents`` one per jaxpr output, ``(K, ...)`` each (``None``
        for zero); ``diff_avals`` the shapes and dtypes of the ``diff_invars``.
        Returns the parameter gradients *summed over the steps* (the parameters
        are shared, so the transposed products contract over the steps and
        nothing of size ``K × |θ|`` is formed) and ``{path: δ (K, ...)}``.
        """
        K = int(jax.tree.leaves(cotangents)[0].shape[0])
        leaves, treedef = jax.tree.flatten(jvps)
        axes = [in_axes] * len(leaves) if not isinstance(in_axes, list) else in_axes
        pert = self.graph.hidden_perturbation
        p_avals = jax.tree.map(
            lambda z: jax.ShapeDtypeStruct((K,) + tuple(jnp.shape(z)), jnp.result_type(z)), pert.zeros()
        )

        def linear(d_params, d_p):
            def one(leaves, dp):
                return jax.tree.unflatten(treedef, leaves)(d_params, dp)

            return jax.vmap(one, in_axes=(axes, 0))(leaves, d_p)

        d_avals = tuple(jax.ShapeDtypeStruct(tuple(a.shape), a.dtype) for a in diff_avals)
        transposed = jax.linear_transpose(linear, d_avals, p_avals)
        return transposed(self._cotangents(cotangents, (K,)))
