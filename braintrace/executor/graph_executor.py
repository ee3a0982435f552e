r"""Running a compiled graph: the forward step plus what the traces need.

For one time step, :class:`ETraceGraphExecutor` computes:

* the model's outputs and new state values, and the operands (``x`` and
  trainable inputs) of every online relation;
* ``D^t``, the exact per-position ``S × S`` blocks of the cut Jacobian
  ``∂h^t/∂h^{t-1}`` of every hidden group, shape ``(*V, S, S)``;
* ``df^t``, the derivative of each reached group with respect to each
  relation's output, shape ``(*V, S)``.

``D`` and ``df`` of a group come from one forward-mode pass over the group's
cut step, with the ``S`` state directions and one direction per relation
batched (``vmap``) over a tangent axis.

:class:`ETraceVjpGraphExecutor` adds the step's linearisation
(:meth:`~ETraceVjpGraphExecutor.linearize`) and its transposition
(:meth:`~ETraceVjpGraphExecutor.transpose`), for one step or a stack of
``K`` steps: the cotangents of the uncovered parameters are their
instantaneous gradients, those of zero perturbations of the hidden states'
new values are the learning signals ``δ^t = ∂L^t/∂h^t``, and those of the
direct reads of the hidden states' old values (the graph's
:attr:`~braintrace.ETraceGraph.bypass_paths`) are ``δ_prev^t = ∂L^t/∂h^{t-1}``.

Inputs are flat lists aligned with ``graph.module_info.jaxpr.invars``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from ..compiler import ETraceGraph, HiddenGroup, HiddenParamOpRelation, evaluate_step
from .influence import InfluenceLayout
from .trace_data import StepTraceData, zeros_cotangent

__all__ = ["ETraceGraphExecutor", "ETraceVjpGraphExecutor"]

Path = tuple[Any, ...]


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
        if not isinstance(graph, ETraceGraph):
            raise TypeError(
                f"{type(self).__name__}: `graph` must be an ETraceGraph (from braintrace.compile_etrace_graph), "
                f"got {type(graph).__name__}."
            )
        self.graph = graph
        self.minfo = graph.module_info
        self._hidden = {s.path: s for s in self.minfo.hidden_slots}
        self._influence: InfluenceLayout | None = None

    # -- inputs ------------------------------------------------------------
    def current_invals(self, *args: Any) -> list[Any]:
        """Flat inputs from ``args`` and the states' current values."""
        leaves = jax.tree.leaves(args)
        for slot in self.minfo.slots:
            leaves += jax.tree.leaves(slot.state.value)
        return [jnp.asarray(v) if not hasattr(v, "dtype") else v for v in leaves]

    def hidden_values(self, invals: Sequence[Any]) -> dict[Path, Any]:
        """``{hidden path: old value}`` from the flat inputs."""
        return {p: invals[s.invars[0]] for p, s in self._hidden.items()}

    def with_hidden(self, invals: Sequence[Any], hidden: Mapping[Path, Any]) -> list[Any]:
        """The flat inputs with some hidden states' old values replaced."""
        iv = list(invals)
        for p, v in hidden.items():
            iv[self._hidden[p].invars[0]] = v
        return iv

    def hidden_outputs(self, outvals: Sequence[Any]) -> dict[Path, Any]:
        """``{hidden path: new value}`` from the flat outputs."""
        return {p: outvals[s.outvars[0]] for p, s in self._hidden.items()}

    # -- forward -----------------------------------------------------------
    def forward(self, invals: Sequence[Any]) -> list[Any]:
        """Output values of the step (model output leaves, then state leaves)."""
        return evaluate_step(self.minfo, invals)[0]

    def _cut_group_fn(self, invals, group: HiddenGroup, relations: Sequence[HiddenParamOpRelation]):
        """``(h packed, {eqn: y perturbation}) -> group's new values packed``: ETP data inputs cut,
        the other groups' new values held constant (their dynamics are not this group's); only
        the equations the group's new values depend on are evaluated."""
        others = tuple(p for p in self._hidden if p not in group.hidden_paths)
        wanted = {k for p in group.hidden_paths for k in self._hidden[p].outvars}

        def fn(packed, ypert):
            iv = self.with_hidden(invals, group.unpack(packed))
            y_perturb = {r.eqn_index: ypert[r.index] for r in relations}
            out, _ = evaluate_step(
                self.minfo, iv, cut=True, y_perturb=y_perturb, stop_hidden=others, outputs=wanted
            )
            new = self.hidden_outputs(out)
            return group.pack({p: new[p] for p in group.hidden_paths})

        return fn

    def group_derivatives(
        self, invals: Sequence[Any], group: HiddenGroup
    ) -> tuple[jax.Array, dict[int, jax.Array]]:
        """``(D, {relation index: df})`` of one hidden group, by forward mode on its cut step.

        ``D[v, s, s'] = ∂h_s^t[v] / ∂h_{s'}^{t-1}[v]`` (cut) and
        ``df[v, s] = ∂h_s^t[v] / ∂y[v]`` for every relation reaching the group.
        One pass pushes the ``S`` unit directions of the state (batched on a
        tangent axis when ``S > 1``), another the ``R`` all-ones directions of
        the relations' outputs; each carries only its own tangents, so no work
        is spent on zero tangents. A group whose transition mixes positions gets
        its exact blocks from the full Jacobian instead.
        """
        rels = [r for r in self.graph.hidden_param_op_relations if group.index in r.hidden_groups]
        packed = group.pack({p: v for p, v in self.hidden_values(invals).items() if p in group.hidden_paths})
        S = group.num_state
        y_zero = {r.index: jnp.zeros(r.y_shape, self._y_dtype(r)) for r in rels}
        fn = self._cut_group_fn(invals, group, rels)
        if not group.elementwise:
            D = self._dense_blocks(fn, packed, y_zero, group)
        elif S == 1:
            D = jax.jvp(lambda h: fn(h, y_zero), (packed,), (jnp.ones_like(packed),))[1][..., None]
        else:
            eye = jnp.eye(S, dtype=packed.dtype).reshape((S,) + (1,) * (packed.ndim - 1) + (S,))
            dirs = jnp.broadcast_to(eye, (S,) + packed.shape)
            cols = jax.vmap(lambda th: jax.jvp(lambda h: fn(h, y_zero), (packed,), (th,))[1])(dirs)
            D = jnp.moveaxis(cols, 0, -1)
        df: dict[int, jax.Array] = {}
        for r in rels:
            def fy(y, r=r):
                return fn(packed, {**y_zero, r.index: y})

            df[r.index] = jax.jvp(fy, (y_zero[r.index],), (jnp.ones(r.y_shape, self._y_dtype(r)),))[1]
        return D, df

    def _y_dtype(self, relation: HiddenParamOpRelation) -> Any:
        eqn = self.minfo.jaxpr.eqns[relation.eqn_index]
        return eqn.outvars[relation.entry.y_outvar_index].aval.dtype

    @staticmethod
    def _dense_blocks(fn, packed, y_zero, group: HiddenGroup) -> jax.Array:
        S = group.num_state
        jac = jax.jacfwd(lambda hp: fn(hp, y_zero))(packed)  # (*V, S, *V, S)
        P = packed.size // S
        blocks = jnp.einsum("aiaj->aij", jac.reshape(P, S, P, S))
        return blocks.reshape(tuple(group.varshape) + (S, S))

    def jacobian_blocks(self, invals: Sequence[Any], group: HiddenGroup) -> jax.Array:
        """Exact per-position blocks ``D[v, s, s'] = ∂h_s^t[v] / ∂h_{s'}^{t-1}[v]`` (cut)."""
        return self.group_derivatives(invals, group)[0]

    def output_derivative(self, invals: Sequence[Any], relation: HiddenParamOpRelation) -> dict[int, jax.Array]:
        """``df[g] = ∂h_g^t / ∂y`` for every group the relation reaches, ``(*V, S)`` each
        (the other groups' new values held constant)."""
        return {
            gi: self.group_derivatives(invals, self.graph.hidden_groups[gi])[1][relation.index]
            for gi in relation.hidden_groups
        }

    @property
    def influence_layout(self) -> InfluenceLayout:
        """The flat hidden and parameter orders of the full Jacobians (built once, on first use)."""
        if self._influence is None:
            self._influence = InfluenceLayout(self.graph)
        return self._influence

    def trace_data(
        self, invals: Sequence[Any], outvals: Any = None, operands: Any = None, *, tangent: bool = False
    ) -> StepTraceData:
        """Run the step and compute ``operands``, ``D`` and ``df`` for every relation.

        ``outvals`` and ``operands``, when the caller has them already (from
        :meth:`ETraceVjpGraphExecutor.linearize`), are not computed again.
        With ``tangent``, the step's full linearisation with respect to
        ``(h^{t-1}, θ)`` (a :class:`~braintrace.executor.StepTangent`, for the
        influence learners) replaces the cut blocks: ``D`` and ``df`` are empty.
        """
        rels = self.graph.hidden_param_op_relations
        if outvals is None or operands is None:
            outvals, recorded = evaluate_step(self.minfo, invals, record=[r.eqn_index for r in rels])
            operands = {r.index: recorded[r.eqn_index] for r in rels}
        if tangent:
            lin = self.influence_layout.linearize(invals)
            return StepTraceData(outvals=outvals, operands=operands, D={}, df={}, tangent=lin)
        D, df = {}, {}
        for gi in sorted({gi for r in rels for gi in r.hidden_groups}):
            D[gi], per_rel = self.group_derivatives(invals, self.graph.hidden_groups[gi])
            for ri, val in per_rel.items():
                df[(ri, gi)] = val
        return StepTraceData(outvals=outvals, operands=operands, D=D, df=df)


class ETraceVjpGraphExecutor(ETraceGraphExecutor):
    """The eligibility trace graph executor for the VJP-based online learning algorithms.

    Adds the step's linearisation (:meth:`linearize`) with respect to chosen
    parameter leaves, zero perturbations ``p`` of the hidden states' new values
    and the direct reads of the bypass states' old values, and its
    transposition (:meth:`transpose`), for one step or ``K`` stacked steps.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.VanillaRNNCell(2, 3)
    >>> brainstate.nn.init_all_states(cell)  # doctest: +ELLIPSIS
    VanillaRNNCell(...)
    >>> ex = braintrace.ETraceVjpGraphExecutor(braintrace.compile_etrace_graph(cell, jnp.zeros(2)))
    >>> outvals, operands, lin = ex.linearize(ex.current_invals(jnp.zeros(2)), diff_invars=())
    >>> grads, delta, delta_prev = ex.transpose(lin, [jnp.ones_like(v) for v in outvals], diff_avals=())
    >>> {k: v.shape for k, v in delta.items()}, delta_prev
    ({('h',): (3,)}, {})
    """

    def _perturbed_step(self, invals: Sequence[Any], diff_invars: Sequence[int], old_hidden: bool = False):
        graph = self.graph
        pert = graph.hidden_perturbation
        rels = graph.hidden_param_op_relations
        diff_invars = tuple(diff_invars)

        def fn(diff_vals, p, direct, old):
            iv = self.with_hidden(invals, old)
            for i, v in zip(diff_invars, diff_vals):
                iv[i] = v
            outvals, recorded = evaluate_step(
                self.minfo,
                iv,
                hidden_perturb=p,
                perturb_groups=pert.groups or None,
                hidden_direct=direct or None,
                record=[r.eqn_index for r in rels],
            )
            return outvals, {r.index: recorded[r.eqn_index] for r in rels}

        direct = {p: invals[self._hidden[p].invars[0]] for p in graph.bypass_paths}
        old = self.hidden_values(invals) if old_hidden else {}
        return fn, (tuple(invals[i] for i in diff_invars), pert.zeros(), direct, old)

    def linearize(
        self, invals: Sequence[Any], diff_invars: Sequence[int], *, old_hidden: bool = False
    ) -> tuple[list[Any], dict, Any]:
        """``(outvals, operands, lin)``: the step's outputs, the relations' operands and its linearisation.

        ``lin(d_params, d_p, d_direct, d_old)`` gives the outputs' tangents for tangents
        of the parameter leaves ``diff_invars``, of the hidden perturbations
        ``p`` (``{path: array}``), of the bypass states' direct reads and, with
        ``old_hidden``, of every hidden state's old value ``h^{t-1}`` (``{path:
        array}``; else ``d_old`` is ``{}`` and the old values are constants). It is
        a pytree of residual arrays, so the linearisations of a window's steps
        can be stacked by ``scan`` and transposed together (:meth:`transpose`).
        Everything not differentiated (the previous hidden values above all) is
        held constant.
        """
        fn, primals = self._perturbed_step(invals, diff_invars, old_hidden)
        outvals, lin, operands = jax.linearize(fn, *primals, has_aux=True)
        return outvals, operands, lin

    def _cotangents(self, cotangents: Sequence[Any], lead: tuple[int, ...] = ()) -> list[Any]:
        outs = self.minfo.jaxpr.outvars
        return [
            zeros_cotangent(jax.ShapeDtypeStruct(lead + tuple(v.aval.shape), v.aval.dtype)) if c is None else c
            for v, c in zip(outs, cotangents)
        ]

    def _tangent_avals(self, diff_avals: Sequence[Any], lead: tuple[int, ...], old_hidden: bool) -> tuple:
        pert = self.graph.hidden_perturbation

        def aval(x):
            return jax.ShapeDtypeStruct(lead + tuple(jnp.shape(x)), jnp.result_type(x))

        params = tuple(jax.ShapeDtypeStruct(tuple(a.shape), a.dtype) for a in diff_avals)
        p = jax.tree.map(aval, pert.zeros())
        direct = {path: aval(pert.zeros()[path]) for path in self.graph.bypass_paths}
        invars = self.minfo.jaxpr.invars
        old = {path: aval(jax.ShapeDtypeStruct(invars[s.invars[0]].aval.shape, invars[s.invars[0]].aval.dtype))
               for path, s in self._hidden.items()} if old_hidden else {}
        return params, p, direct, old

    def transpose(
        self,
        lin: Any,
        cotangents: Sequence[Any],
        diff_avals: Sequence[Any],
        *,
        steps: int | None = None,
        in_axes: Any = 0,
        old_hidden: bool = False,
    ) -> tuple:
        """Transpose one linearised step, or ``steps`` stacked ones at once.

        Parameters
        ----------
        lin
            From :meth:`linearize`; with ``steps``, ``K`` of them stacked on a
            leading axis (``in_axes``: one axis per leaf, ``None`` for a leaf
            shared by every step).
        cotangents : sequence
            One per jaxpr output (``None`` for zero); ``(K, ...)`` each with ``steps``.
        diff_avals : sequence
            Shapes and dtypes of the differentiated parameter leaves.
        old_hidden : bool, default False
            ``lin`` was built with ``old_hidden`` (:meth:`linearize`): also return
            the cotangents of the old hidden values.

        Returns
        -------
        grads : tuple
            The parameter leaves' cotangents, *summed over the steps* (the
            parameters are shared, so nothing of size ``K × |θ|`` is formed).
        delta : dict
            ``{hidden path: δ}`` (``(K, ...)`` with ``steps``).
        delta_prev : dict
            ``{bypass path: δ_prev}`` (empty when the graph has no bypass).
        delta_old : dict
            Only with ``old_hidden``: ``{hidden path: ∂L^t/∂h^{t-1}}`` along every
            path but the bypass states' direct reads (whose part is ``delta_prev``):
            ``delta_old + delta_prev`` is the whole adjoint of ``h^{t-1}`` within the step.
        """
        lead = () if steps is None else (int(steps),)
        params, p, direct, old = self._tangent_avals(diff_avals, lead, old_hidden)
        if steps is None:
            linear = lin
        else:
            leaves, treedef = jax.tree.flatten(lin)
            axes = [in_axes] * len(leaves) if not isinstance(in_axes, list) else in_axes

            def linear(d_params, d_p, d_direct, d_old):
                def one(leaves, dp, dd, do):
                    return jax.tree.unflatten(treedef, leaves)(d_params, dp, dd, do)

                return jax.vmap(one, in_axes=(axes, 0, 0, 0))(leaves, d_p, d_direct, d_old)

        # integer outputs (a state of indices or counters, passed through) have no tangent space
        real = [i for i, v in enumerate(self.minfo.jaxpr.outvars) if jnp.issubdtype(v.aval.dtype, jnp.inexact)]

        def real_linear(*tangents):
            outs = linear(*tangents)
            return [outs[i] for i in real]

        cts = self._cotangents(cotangents, lead)
        out = jax.linear_transpose(real_linear, params, p, direct, old)([cts[i] for i in real])
        return out if old_hidden else out[:3]
