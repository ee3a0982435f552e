r"""The step's full Jacobians with respect to the hidden state and the parameters.

Exact real-time recurrent learning and its approximations (SnAp, UORO) follow
the *influence matrix* of the whole hidden vector on the parameters,

.. math::

    P^t = \frac{d h^t}{d θ} = J^t P^{t-1} + M^t, \qquad
    J^t = \frac{\partial h^t}{\partial h^{t-1}}, \qquad
    M^t = \frac{\partial h^t}{\partial θ}\Big|_{h^{t-1}},

where ``h`` is every hidden state of the model flattened into one vector of
length ``N`` (batch axes included: a batched model's rows are its ``B`` copies)
and ``θ`` every floating parameter leaf whose value reaches a hidden state, by
any path (ETP primitives or plain JAX), flattened into ``|θ|`` entries. ``J``
is the full, coupled Jacobian: no cut at the ETP data inputs, every hidden
state with every other.

:class:`InfluenceLayout` fixes the flat orders (rows: the hidden groups of the
graph, each packed ``(*V, S)`` and raveled, in group order; columns: the
reaching parameter leaves in the order of ``module_info.param_slots``).
:class:`StepTangent` is one step linearised with respect to ``(h^{t-1}, θ)``:
its forward map ``(dh, dθ) ↦ J dh + M dθ`` (:meth:`StepTangent.jvp`), the
transposed map (:meth:`StepTangent.vjp`), the influence update
``P ↦ J P + M`` computed as one forward-mode pass per parameter entry, in
chunks (:meth:`StepTangent.propagate`), never forming ``J`` or ``M``, and, for
checks and small models, the dense ``J`` and ``M`` (:meth:`StepTangent.jacobians`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..compiler import ETraceGraph, evaluate_step
from ..compiler.jaxpr_tools import UseDef, is_literal
from ..compiler.module_info import path_str

__all__ = ["InfluenceLayout", "StepTangent", "chunk_size"]

#: Elements of the one-hot parameter directions and tangents held at once by
#: :meth:`StepTangent.propagate` (about 128 MiB in float64).
CHUNK_ELEMENTS = 2**24


def chunk_size(n_dirs: int, width: int, budget: int = CHUNK_ELEMENTS) -> int:
    """How many of ``n_dirs`` forward-mode directions of ``width`` entries to push at once.

    Examples
    --------
    >>> from braintrace.executor.influence import chunk_size
    >>> chunk_size(10, 100), chunk_size(10**6, 10**4)
    (10, 1677)
    """
    return int(max(1, min(n_dirs, budget // max(width, 1))))


class InfluenceLayout:
    """Flat orders of the hidden vector ``h`` and of the parameters ``θ`` of a compiled step.

    Parameters
    ----------
    graph : ETraceGraph
        The compiled graph.

    Attributes
    ----------
    num_hidden : int
        ``N``: the length of ``h`` (every hidden state, batch axes included).
    num_params : int
        ``|θ|``: the number of entries of the reaching parameter leaves.
    theta_pos : tuple of int
        Positions, among all parameter leaves (``module_info.param_slots`` order),
        of the leaves in ``θ``: floating leaves whose value reaches a hidden
        state's new value. The others get no influence (their gradient is the
        instantaneous one).
    theta_names : tuple of str
        ``'path[key]'`` of each leaf of ``θ``, for messages.
    dtype : dtype
        The dtype of the flat vectors (the promoted dtype of the hidden states and ``θ``).

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> from braintrace.executor import InfluenceLayout
    >>> cell = braintrace.nn.VanillaRNNCell(2, 3)
    >>> _ = brainstate.nn.init_all_states(cell, batch_size=4)
    >>> layout = InfluenceLayout(braintrace.compile_etrace_graph(cell, jnp.zeros((4, 2))))
    >>> layout.num_hidden, layout.num_params, layout.theta_names    # N = B n; W: (2 + 3) x 3 and 3 biases
    (12, 18, ('W.weight.bias', 'W.weight.weight'))
    """

    def __init__(self, graph: ETraceGraph) -> None:
        minfo = graph.module_info
        jaxpr = minfo.jaxpr
        self.graph = graph
        self.groups = graph.hidden_groups
        slot_of = {s.path: s for s in minfo.hidden_slots}
        self.hidden_invar = {p: slot_of[p].invars[0] for g in self.groups for p in g.hidden_paths}
        self.hidden_outvar = {p: slot_of[p].outvars[0] for g in self.groups for p in g.hidden_paths}
        self.group_shapes = tuple(tuple(g.varshape) + (g.num_state,) for g in self.groups)
        h_dtypes = [jaxpr.invars[i].aval.dtype for i in self.hidden_invar.values()]
        self.group_sizes = tuple(int(np.prod(s)) for s in self.group_shapes)
        self.num_hidden = int(sum(self.group_sizes))

        self.param_invars = tuple(i for s in minfo.param_slots for i in s.invars)
        labels = [f"{path_str(s.path)}{''.join(f'.{k}' for k in key)}"
                  for s in minfo.param_slots for key in s.leaf_keys]
        usedef = UseDef(jaxpr)
        targets = {v for i in self.hidden_outvar.values() if not is_literal(v := jaxpr.outvars[i])}

        def reaches(i: int) -> bool:
            aval = jaxpr.invars[i].aval
            return jnp.issubdtype(aval.dtype, jnp.inexact) and bool(usedef.forward([jaxpr.invars[i]]) & targets)

        self.theta_pos = tuple(k for k, i in enumerate(self.param_invars) if reaches(i))
        self.theta_names = tuple(labels[k] for k in self.theta_pos)
        self.theta_shapes = tuple(tuple(jaxpr.invars[self.param_invars[k]].aval.shape) for k in self.theta_pos)
        self.theta_dtypes = tuple(jaxpr.invars[self.param_invars[k]].aval.dtype for k in self.theta_pos)
        self.theta_sizes = tuple(int(np.prod(s)) for s in self.theta_shapes)
        self.num_params = int(sum(self.theta_sizes))
        self.dtype = jnp.result_type(*h_dtypes, *self.theta_dtypes) if h_dtypes else jnp.result_type(float)

    # -- flat vectors --------------------------------------------------------------
    def ravel_hidden(self, values: Mapping[int, Any]) -> jax.Array:
        """``(N,)`` from ``{group index: (*V, S)}``; missing groups count as zeros."""
        parts = [
            jnp.ravel(values[g.index]).astype(self.dtype) if g.index in values else jnp.zeros(n, self.dtype)
            for g, n in zip(self.groups, self.group_sizes)
        ]
        return jnp.concatenate(parts) if parts else jnp.zeros((0,), self.dtype)

    def unravel_hidden(self, vec: jax.Array) -> dict[int, jax.Array]:
        """``{group index: (*V, S)}`` from ``(N,)``."""
        out, start = {}, 0
        for g, shape, n in zip(self.groups, self.group_shapes, self.group_sizes):
            out[g.index] = jnp.reshape(vec[start: start + n], shape)
            start += n
        return out

    def hidden_of(self, invals: Sequence[Any]) -> dict[int, jax.Array]:
        """``{group index: packed old values}`` from the step's flat inputs."""
        return {g.index: g.pack({p: invals[self.hidden_invar[p]] for p in g.hidden_paths}) for g in self.groups}

    def theta_of(self, invals: Sequence[Any]) -> tuple:
        """The leaves of ``θ`` from the step's flat inputs."""
        return tuple(invals[self.param_invars[k]] for k in self.theta_pos)

    def ravel_theta(self, leaves: Sequence[Any]) -> jax.Array:
        """``(|θ|,)`` from the leaves of ``θ``."""
        parts = [jnp.ravel(v).astype(self.dtype) for v in leaves]
        return jnp.concatenate(parts) if parts else jnp.zeros((0,), self.dtype)

    def unravel_theta(self, vec: jax.Array) -> tuple:
        """The leaves of ``θ`` (their shapes and dtypes) from ``(|θ|,)``."""
        out, start = [], 0
        for shape, dtype, n in zip(self.theta_shapes, self.theta_dtypes, self.theta_sizes):
            out.append(jnp.reshape(vec[start: start + n], shape).astype(dtype))
            start += n
        return tuple(out)

    def add_to(self, grads: Sequence[Any], vec: jax.Array) -> tuple:
        """``grads`` (one per parameter leaf, in ``param_slots`` order) plus the flat gradient ``vec`` of ``θ``."""
        out = list(grads)
        for k, leaf in zip(self.theta_pos, self.unravel_theta(vec)):
            out[k] = out[k] + leaf
        return tuple(out)

    # -- the linearised step ---------------------------------------------------------
    def linearize(self, invals: Sequence[Any]) -> "StepTangent":
        """The step at ``invals`` linearised with respect to ``(h^{t-1}, θ)`` (the new hidden values only)."""
        minfo = self.graph.module_info
        groups = self.groups

        def step(h_old: Mapping[int, Any], theta: Sequence[Any]) -> dict[int, Any]:
            iv = list(invals)
            for g in groups:
                for p, v in g.unpack(h_old[g.index]).items():
                    iv[self.hidden_invar[p]] = v
            for k, leaf in zip(self.theta_pos, theta):
                iv[self.param_invars[k]] = leaf
            out, _ = evaluate_step(minfo, iv)
            return {g.index: g.pack({p: out[self.hidden_outvar[p]] for p in g.hidden_paths}) for g in groups}

        _, lin = jax.linearize(step, self.hidden_of(invals), self.theta_of(invals))
        return StepTangent(self, lin)


class StepTangent:
    """One step linearised with respect to the old hidden state and the parameters.

    Built by :meth:`InfluenceLayout.linearize`. Every method works on the flat
    vectors of the layout: ``dh`` of length ``N``, ``dθ`` of length ``|θ|``.

    Parameters
    ----------
    layout : InfluenceLayout
    lin : callable
        ``(dh {group: (*V, S)}, dθ leaves) -> {group: (*V, S)}`` (from ``jax.linearize``).

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> from braintrace.executor import InfluenceLayout
    >>> cell = braintrace.nn.VanillaRNNCell(2, 3)
    >>> _ = brainstate.nn.init_all_states(cell)
    >>> graph = braintrace.compile_etrace_graph(cell, jnp.zeros(2))
    >>> layout = InfluenceLayout(graph)
    >>> tangent = layout.linearize(braintrace.ETraceGraphExecutor(graph).current_invals(jnp.ones(2)))
    >>> J, M = tangent.jacobians()
    >>> J.shape, M.shape
    ((3, 3), (3, 18))
    >>> P = tangent.propagate(jnp.zeros((18, 3)))     # from a zero influence: P = M (rows: θ entries)
    >>> bool(jnp.allclose(P, M.T))
    True
    """

    def __init__(self, layout: InfluenceLayout, lin: Any) -> None:
        self.layout = layout
        self.lin = lin

    def jvp(self, dh: jax.Array, dtheta: jax.Array) -> jax.Array:
        """``J dh + M dθ`` (``(N,)``)."""
        L = self.layout
        out = self.lin(L.unravel_hidden(dh.astype(L.dtype)), L.unravel_theta(dtheta))
        return L.ravel_hidden(out)

    def vjp(self, ct: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(J^T ct, M^T ct)`` for a cotangent ``ct`` (``(N,)``) of the new hidden values."""
        L = self.layout

        def linear(dh, dtheta):
            return self.jvp(dh, dtheta)

        zeros_h = jax.ShapeDtypeStruct((L.num_hidden,), L.dtype)
        zeros_t = jax.ShapeDtypeStruct((L.num_params,), L.dtype)
        return jax.linear_transpose(linear, zeros_h, zeros_t)(ct.astype(L.dtype))

    def propagate(self, P: jax.Array, entries: Any = None, batch_size: int | None = None) -> jax.Array:
        r"""The influence update ``J P + M`` with ``P`` stored row per parameter entry, ``(m, N)``.

        ``entries`` (``(m,)`` integers, default every entry of ``θ``) says which
        parameter entry each row belongs to. Row ``j`` is one forward-mode pass
        in the direction ``(P[j], e_j)``; ``batch_size`` rows are pushed at once
        (default: :func:`chunk_size`).
        """
        L = self.layout
        n = L.num_params
        entries = jnp.arange(n) if entries is None else jnp.asarray(entries)
        if entries.shape[0] == 0:
            return P

        def row(args):
            p_j, j = args
            return self.jvp(p_j, jax.nn.one_hot(j, n, dtype=L.dtype))

        bs = batch_size or chunk_size(entries.shape[0], n + L.num_hidden)
        return jax.lax.map(row, (P, entries), batch_size=bs).astype(P.dtype)

    def propagate_on(self, values: jax.Array, rows: Any, entries: Any = None, batch_size: int | None = None) -> jax.Array:
        r"""``J P + M`` restricted to a pattern: ``P[j, rows[j, k]] = values[j, k]``.

        ``rows`` is an integer ``(m, k)`` table of hidden indices (``N`` pads a
        row with fewer entries), ``entries`` as in :meth:`propagate`; the result
        has the layout of ``values``. Each row is one forward-mode pass.
        """
        L = self.layout
        n, N = L.num_params, L.num_hidden
        entries = jnp.arange(n) if entries is None else jnp.asarray(entries)
        if entries.shape[0] == 0:
            return values
        rows = jnp.asarray(rows)

        def row(args):
            v_j, r_j, j = args
            dense = jnp.zeros((N + 1,), L.dtype).at[r_j].set(v_j.astype(L.dtype))[:N]
            new = self.jvp(dense, jax.nn.one_hot(j, n, dtype=L.dtype))
            return jnp.concatenate([new, jnp.zeros((1,), L.dtype)])[r_j]

        bs = batch_size or chunk_size(entries.shape[0], n + N)
        return jax.lax.map(row, (values, rows, entries), batch_size=bs).astype(values.dtype)

    def jacobians(self) -> tuple[jax.Array, jax.Array]:
        """The dense ``J`` (``(N, N)``) and ``M`` (``(N, |θ|)``): for checks and small models."""
        L = self.layout

        @jax.jit
        def dense(lin):
            tangent = StepTangent(L, lin)
            eye_h = jnp.eye(L.num_hidden, dtype=L.dtype)
            eye_t = jnp.eye(L.num_params, dtype=L.dtype)
            J = jax.vmap(lambda e: tangent.jvp(e, jnp.zeros((L.num_params,), L.dtype)))(eye_h).T
            M = jax.vmap(lambda e: tangent.jvp(jnp.zeros((L.num_hidden,), L.dtype), e))(eye_t).T
            return J.reshape(L.num_hidden, L.num_hidden), M.reshape(L.num_hidden, L.num_params)

        return dense(self.lin)
