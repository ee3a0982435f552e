r"""D_RTRL trace rules: how one primitive's parameter-dimension trace evolves.

Notation of the docs' concepts page (docs/concepts.md, "The mathematics"). A
hidden group has per-position shape ``V`` (batch axes included) and ``S``
states per position. An ETP primitive computes ``y = op(x, w)`` with
``y.shape`` a suffix of ``V`` (extra leading axes of ``V``
are batch axes that ``y`` broadcasts over). The learners hand a rule

* ``D``  of shape ``(*V, S, S)``: the per-position block of the cut Jacobian,
  ``D[v, s, s'] = ∂h_s^t[v] / ∂h_{s'}^{t-1}[v]``;
* ``df`` of shape ``(*V, S)``: ``df[v, s] = ∂h_s^t[v] / ∂y^t[v]``;
* ``delta`` of shape ``(*V, S)``: the learning signal ``∂L^t/∂h^t``.

A rule keeps ``ε_w^t = D^t ε_w^{t-1} + df^t ⊗ ∂y^t/∂w`` in whatever layout is
compact for its primitive and contracts it with ``delta`` into a gradient
shaped like ``w``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import jax
import jax.numpy as jnp

__all__ = [
    "PrimitiveEntry",
    "TraceRule",
    "accumulate_sources",
    "contract_sequence",
    "FullJacobianRule",
    "DiagonalRule",
    "apply_block",
    "broadcast_leading",
    "contract_weight_layout",
    "sum_leading",
    "sum_to_shape",
]

Array = jax.Array


class PrimitiveEntry(Protocol):
    """What a trace rule reads of a primitive's record (:class:`~braintrace.primitives.ETPPrimitive`)."""

    impl: Any
    x_invar_index: int | None
    trace_rule: Any

    def trainable_invars(self, params: Mapping[str, Any], num_invars: int) -> dict[str, int]: ...

    def diagonal_factor(self, operands: tuple, params: Mapping[str, Any], name: str) -> Array: ...


class TraceRule(Protocol):
    """The D_RTRL trace of the x-dependent trainable inputs of a primitive.

    ``names`` are the trainable inputs the rule handles; the trace is a dict
    whose keys the rule chooses (LoRA keeps one trace for ``B`` and ``A``).
    Pass an object with these three methods as ``trace_rule`` to
    :func:`braintrace.register_primitive`. Two more are optional, for
    ``MultiStepData`` windows: ``accumulate`` (see :func:`accumulate_sources`)
    and ``contract_seq`` (see :func:`contract_sequence`); without them a window
    falls back to one step at a time / a vmap over the window.

    Examples
    --------
    >>> import braintrace
    >>> entry = braintrace.primitives.get_etp_primitive(braintrace.primitives.etp_mv_p)
    >>> all(callable(getattr(entry.trace_rule, m)) for m in ("init", "update", "contract"))
    True
    """

    def init(
        self,
        entry: Any,
        operands: Sequence[Array],
        params: Mapping[str, Any],
        names: tuple[str, ...],
        varshape: tuple[int, ...],
        num_state: int,
        dtype: Any,
    ) -> dict[str, Array]:
        """Zero trace."""
        ...

    def update(
        self,
        entry: Any,
        trace: Mapping[str, Array],
        operands: Sequence[Array],
        params: Mapping[str, Any],
        names: tuple[str, ...],
        D: Array,
        df: Array,
    ) -> dict[str, Array]:
        """``D ε + df ⊗ ∂y/∂w`` in the rule's layout."""
        ...

    def contract(
        self,
        entry: Any,
        trace: Mapping[str, Array],
        operands: Sequence[Array],
        params: Mapping[str, Any],
        names: tuple[str, ...],
        delta: Array,
    ) -> dict[str, Array]:
        """``Σ_{v,s} δ[v,s] ε[v,s,·]``, one gradient per name, shaped like the input."""
        ...


def accumulate_sources(
    rule: Any,
    entry: Any,
    template: Mapping[str, Array],
    operands: Sequence[Array],
    x_seq: Array | None,
    params: Mapping[str, Any],
    names: tuple[str, ...],
    u_seq: Array,
) -> dict[str, Array]:
    r"""``Σ_k u_k ⊗ ∂y_k/∂w`` over a window, in the rule's trace layout.

    ``u_seq`` has shape ``(K, *V, S)``; ``x_seq`` holds the ``K`` data inputs
    (``None`` for x-free primitives). A rule may define
    ``accumulate(entry, template, operands, x_seq, params, names, u_seq)`` (one
    pass, e.g. a matrix product over the window); otherwise the sources are
    added one step at a time.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> import braintrace
    >>> from braintrace.primitives.trace_rules import accumulate_sources
    >>> entry = braintrace.primitives.get_etp_primitive(braintrace.primitives.etp_mv_p)
    >>> ops, x_seq = (jnp.ones(2), jnp.ones((2, 3))), jnp.ones((4, 2))
    >>> template = {"weight": jnp.zeros((2, 3, 1))}
    >>> acc = accumulate_sources(entry.trace_rule, entry, template, ops, x_seq, {}, ("weight",), jnp.ones((4, 3, 1)))
    >>> acc["weight"][0, 0, 0].item()
    4.0
    """
    fn = getattr(rule, "accumulate", None)
    if fn is not None:
        return fn(entry, template, operands, x_seq, params, names, u_seq)
    S = u_seq.shape[-1]
    eye = jnp.broadcast_to(jnp.eye(S, dtype=u_seq.dtype), tuple(u_seq.shape[1:]) + (S,))
    xi = entry.x_invar_index

    def body(acc, inp):
        xk, uk = inp
        ops = list(operands)
        if xi is not None:
            ops[xi] = xk
        return rule.update(entry, acc, ops, params, names, eye, uk), None

    zeros = {k: jnp.zeros_like(v) for k, v in template.items()}
    xs = x_seq if (xi is not None and x_seq is not None) else jnp.zeros((u_seq.shape[0],), u_seq.dtype)
    acc, _ = jax.lax.scan(body, zeros, (xs, u_seq))
    return acc


def contract_sequence(
    rule: Any,
    entry: Any,
    trace_seq: Mapping[str, Array],
    operands: Sequence[Array],
    params: Mapping[str, Any],
    names: tuple[str, ...],
    delta_seq: Array,
) -> dict[str, Array]:
    r"""``Σ_k contract(ε_k, δ_k)`` over a window's stacked traces and signals.

    ``trace_seq`` holds ``K`` traces stacked on a leading axis and ``delta_seq``
    has shape ``(K, *V, S)``. A rule may define ``contract_seq`` with the
    arguments of ``contract`` (e.g. :class:`DiagonalRule`, which sums the window
    with the batch in one product); otherwise ``contract`` is vmapped over the
    window and the results summed.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> from braintrace.primitives.trace_rules import contract_sequence
    >>> entry = braintrace.primitives.get_etp_primitive(braintrace.primitives.etp_mm_p)
    >>> ops = (jnp.ones((2, 3)), jnp.ones((3, 4)), jnp.ones(4))
    >>> g = contract_sequence(entry.trace_rule, entry, {"weight": jnp.ones((5, 2, 3, 4, 1))}, ops, {},
    ...                       ("weight",), jnp.ones((5, 2, 4, 1)))
    >>> g["weight"][0, 0].item()     # 5 steps x 2 batch elements
    10.0
    """
    fn = getattr(rule, "contract_seq", None)
    if fn is not None:
        return fn(entry, trace_seq, operands, params, names, delta_seq)
    per_step = jax.vmap(lambda tr, d: rule.contract(entry, tr, operands, params, names, d))(trace_seq, delta_seq)
    return {n: sum_leading(v, 1) for n, v in per_step.items()}


def apply_block(D: Array, eps: Array, extra_axes: int = 0, at: int | None = None) -> Array:
    r"""Apply per-position ``S × S`` blocks to a trace whose last axis is ``S``.

    Parameters
    ----------
    D : array, shape ``(*P, S, S)``
        Blocks per position.
    eps : array, shape ``(*P', S)``
        Trace; ``P'`` is ``P`` with ``extra_axes`` weight axes inserted at
        position ``at`` (default: right after the leading batch axes, i.e.
        before the last position axis) or appended after ``P`` when ``at`` is
        ``len(P)``.

    Returns
    -------
    array, shape of ``eps``
        ``out[..., s] = Σ_{s'} D[..., s, s'] eps[..., s']``.
    """
    if extra_axes:
        npos = D.ndim - 2
        where = npos - 1 if at is None else at
        D = jnp.expand_dims(D, tuple(range(where, where + extra_axes)))
    if D.shape[-1] == 1:
        return D[..., 0] * eps
    return jnp.sum(D * eps[..., None, :], axis=-1)


#: Up to this many batch elements, :func:`contract_weight_layout` sums over the batch
#: as one element-wise pass on a CPU (see there).
UNROLLED_BATCH_MAX = 64


def contract_weight_layout(eps: Array, delta: Array) -> Array:
    r"""``Σ_{b,s} ε[b, i, o, s] δ[b, o, s]`` for a trace in weight layout ``(*B, I, O, S)``.

    On a CPU with at most :data:`UNROLLED_BATCH_MAX` batch elements, the sum over
    ``b`` is written out as ``Σ_b ε[b] ⊙ δ[b]``: XLA fuses it into one pass that
    reads the trace once. As a batched matrix product (an ``einsum``, used
    otherwise) the batch axes ``o, s`` are minor, so XLA first transposes the
    whole trace: on a CPU GRU-128 at batch 16 the contraction took 4x as long.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from braintrace.primitives.trace_rules import contract_weight_layout
    >>> contract_weight_layout(jnp.ones((2, 3, 4, 1)), jnp.ones((2, 4, 1))).shape
    (3, 4)
    """
    n = math.prod(eps.shape[:-3])
    if 1 < n <= UNROLLED_BATCH_MAX and jax.default_backend() == "cpu":
        e = eps.reshape((n,) + eps.shape[-3:])
        d = delta.reshape((n,) + delta.shape[-2:])
        acc = e[0] * d[0][None]
        for b in range(1, n):
            acc = acc + e[b] * d[b][None]
        return jnp.sum(acc, axis=-1)
    return jnp.einsum("...ios,...os->io", eps, delta)


def broadcast_leading(x: Array, varshape: tuple[int, ...], y_ndim: int) -> Array:
    """Give ``x`` the leading batch axes of ``varshape`` that ``y`` lacks."""
    nb = len(varshape) - y_ndim
    return jnp.broadcast_to(x, tuple(varshape[:nb]) + tuple(x.shape))


def sum_leading(x: Array, n: int) -> Array:
    r"""Sum ``x`` over its first ``n`` axes, as a product with a vector of ones.

    .. math:: \mathrm{out}[r] = \sum_{l} x[l, r] = (\mathbf 1^\top X)[r],
              \qquad X = x\text{ reshaped to }(\textstyle\prod_{i<n} x.\mathrm{shape}_i, -1)

    Batch and window sums of gradient terms are column reductions; XLA's CPU
    backend runs them as matrix products many times faster than as reductions
    (30x for a ``(50, 16, 512, 1)`` term, whose size-1 minor axis defeats the
    reduction's vectorisation). The product runs at full precision (GPUs
    would otherwise round float32 operands to TF32).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from braintrace.primitives.trace_rules import sum_leading
    >>> sum_leading(jnp.ones((4, 3, 2)), 2).tolist()
    [12.0, 12.0]
    """
    if n <= 0:
        return x
    lead, rest = x.shape[:n], x.shape[n:]
    m, r = math.prod(lead), math.prod(rest)
    if m == 0 or r == 0 or not jnp.issubdtype(x.dtype, jnp.inexact):
        return jnp.sum(x, axis=tuple(range(n)))
    out = jnp.dot(jnp.ones((m,), x.dtype), x.reshape((m, r)), precision=jax.lax.Precision.HIGHEST)
    return out.reshape(rest)


def sum_to_shape(x: Array, shape: tuple[int, ...]) -> Array:
    """Sum ``x`` over the axes that broadcasting ``shape`` to ``x.shape`` added."""
    shape = tuple(shape)
    lead = x.ndim - len(shape)
    if lead:
        x = sum_leading(x, lead)
    axes = tuple(i for i, (a, b) in enumerate(zip(shape, x.shape)) if a == 1 and b != 1)
    if axes:
        x = x.sum(axis=axes, keepdims=True)
    return x.reshape(shape)


def _to_varshape(y_like: Array, varshape: tuple[int, ...]) -> Array:
    return jnp.broadcast_to(y_like, tuple(varshape))


class DiagonalRule:
    r"""Trace of an input that enters by broadcasting (a bias, an element-wise weight).

    ``y[v]`` depends only on ``w[broadcast(v)]``, with factor
    ``a[v] = ∂y[v]/∂w[broadcast(v)]``. The trace has the hidden group's shape:

    .. math::

        ε^t[v, s] = \sum_{s'} D^t[v, s, s'] ε^{t-1}[v, s'] + df^t[v, s]\, a^t[v],
        \qquad \bar w = \mathrm{sum\_to\_shape}\Big(\sum_s δ[v, s] ε[v, s]\Big).

    ``sum_to_shape`` assumes NumPy broadcasting. If the primitive's trace rule
    defines ``diagonal_to_param(entry, operands, params, name, g)``, that
    method maps the hidden-shaped sum ``g`` back to the input instead.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> import braintrace
    >>> P = braintrace.primitives
    >>> entry = P.get_etp_primitive(P.etp_elemwise_p)
    >>> isinstance(entry.trace_rule, P.DiagonalRule)
    True
    >>> w = jnp.zeros(3)
    >>> eqn = jax.make_jaxpr(lambda w: braintrace.element_wise(w, jnp.exp))(w).eqns[0]
    >>> trace = entry.trace_rule.init(entry, (w,), eqn.params, ("weight",), (3,), 1, jnp.float32)
    >>> trace = entry.trace_rule.update(entry, trace, (w,), eqn.params, ("weight",),
    ...                                 jnp.zeros((3, 1, 1)), jnp.full((3, 1), 2.0))
    >>> trace["weight"][:, 0].tolist()     # df * d exp(w)/dw at w = 0
    [2.0, 2.0, 2.0]
    """

    def init(
        self,
        entry: Any,
        operands: Sequence[Array],
        params: Mapping[str, Any],
        names: tuple[str, ...],
        varshape: tuple[int, ...],
        num_state: int,
        dtype: Any,
    ) -> dict[str, Array]:
        return {n: jnp.zeros(tuple(varshape) + (num_state,), dtype) for n in names}

    def update(
        self,
        entry: Any,
        trace: Mapping[str, Array],
        operands: Sequence[Array],
        params: Mapping[str, Any],
        names: tuple[str, ...],
        D: Array,
        df: Array,
    ) -> dict[str, Array]:
        varshape = df.shape[:-1]
        out = {}
        for n in names:
            a = _to_varshape(entry.diagonal_factor(tuple(operands), params, n), varshape)
            eps = trace[n]
            out[n] = (apply_block(D, eps.astype(D.dtype)) + df * a[..., None]).astype(eps.dtype)
        return out

    def accumulate(
        self,
        entry: Any,
        template: Mapping[str, Array],
        operands: Sequence[Array],
        x_seq: Array | None,
        params: Mapping[str, Any],
        names: tuple[str, ...],
        u_seq: Array,
    ) -> dict[str, Array]:
        varshape = u_seq.shape[1:-1]
        out = {}
        for n in names:
            a = _to_varshape(entry.diagonal_factor(tuple(operands), params, n), varshape)
            out[n] = (jnp.sum(u_seq, axis=0) * a[..., None]).astype(template[n].dtype)
        return out

    def contract(
        self,
        entry: Any,
        trace: Mapping[str, Array],
        operands: Sequence[Array],
        params: Mapping[str, Any],
        names: tuple[str, ...],
        delta: Array,
    ) -> dict[str, Array]:
        return self._contract(entry, trace, operands, params, names, delta, window=False)

    def contract_seq(
        self,
        entry: Any,
        trace_seq: Mapping[str, Array],
        operands: Sequence[Array],
        params: Mapping[str, Any],
        names: tuple[str, ...],
        delta_seq: Array,
    ) -> dict[str, Array]:
        """``Σ_k contract(ε_k, δ_k)``: the window axis is summed with the batch axes (the map to ``w`` is linear)."""
        return self._contract(entry, trace_seq, operands, params, names, delta_seq, window=True)

    @staticmethod
    def _contract(entry, trace, operands, params, names, delta, window: bool) -> dict[str, Array]:
        index = entry.trainable_invars(params, len(operands))
        # A primitive whose diagonal input does not broadcast NumPy-style (a
        # conv bias ``(C,)`` added along the channel axis of an NCHW output)
        # maps the hidden-shaped sum back itself.
        to_param = getattr(entry.trace_rule, "diagonal_to_param", None)
        out = {}
        for n in names:
            g = jnp.sum(delta * trace[n].astype(delta.dtype), axis=-1)
            if to_param is not None:
                out[n] = to_param(entry, operands, params, n, sum_leading(g, 1) if window else g)
            else:
                out[n] = sum_to_shape(g, jnp.shape(operands[index[n]]))  # window and batch axes at once
        return out


class FullJacobianRule:
    r"""Exact D_RTRL trace for any primitive, storing the per-position Jacobian.

    For each trainable input ``w`` the trace has shape ``(*V, S, w.size)``:

    .. math::

        ε^t[v, s, k] = \sum_{s'} D^t[v, s, s'] ε^{t-1}[v, s', k]
                       + df^t[v, s] \frac{\partial y^t[v]}{\partial w_k}.

    It is the default for primitives registered without a compact rule; its
    memory is ``|V|·S·|w|``, so give a compact rule for large weights.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> P = braintrace.primitives
    >>> entry = P.get_etp_primitive(P.etp_mv_p)          # y = x @ W, W of shape (2, 3)
    >>> rule, ops = P.FullJacobianRule(), (jnp.ones(2), jnp.ones((2, 3)))
    >>> trace = rule.init(entry, ops, {}, ("weight",), (3,), 1, jnp.float32)
    >>> trace["weight"].shape                            # (*V, S, |W|)
    (3, 1, 6)
    >>> trace = rule.update(entry, trace, ops, {}, ("weight",), jnp.zeros((3, 1, 1)), jnp.ones((3, 1)))
    >>> rule.contract(entry, trace, ops, {}, ("weight",), jnp.ones((3, 1)))["weight"].tolist()
    [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    """

    def init(
        self,
        entry: Any,
        operands: Sequence[Array],
        params: Mapping[str, Any],
        names: tuple[str, ...],
        varshape: tuple[int, ...],
        num_state: int,
        dtype: Any,
    ) -> dict[str, Array]:
        index = entry.trainable_invars(params, len(operands))
        return {
            n: jnp.zeros(tuple(varshape) + (num_state, int(jnp.size(operands[index[n]]))), dtype)
            for n in names
        }

    def _jacobian(self, entry, operands, params, name, varshape):
        i = entry.trainable_invars(params, len(operands))[name]
        base = list(operands)
        w = base[i]

        def f(wv):
            ops = list(base)
            ops[i] = wv
            return entry.impl(*ops, **params)

        jac = jax.jacfwd(f)(w)  # (*y, *w)
        y_ndim = jac.ndim - jnp.ndim(w)
        jac = jac.reshape(jac.shape[:y_ndim] + (-1,))
        return jnp.broadcast_to(jac, tuple(varshape) + jac.shape[-1:])

    def update(
        self,
        entry: Any,
        trace: Mapping[str, Array],
        operands: Sequence[Array],
        params: Mapping[str, Any],
        names: tuple[str, ...],
        D: Array,
        df: Array,
    ) -> dict[str, Array]:
        varshape = df.shape[:-1]
        out = {}
        for n in names:
            jac = self._jacobian(entry, operands, params, n, varshape)
            eps = trace[n].astype(D.dtype)
            if D.shape[-1] == 1:
                prop = D[..., 0, :, None] * eps
            else:
                prop = jnp.einsum("...st,...tk->...sk", D, eps)
            out[n] = (prop + df[..., :, None] * jac[..., None, :]).astype(trace[n].dtype)
        return out

    def contract(
        self,
        entry: Any,
        trace: Mapping[str, Array],
        operands: Sequence[Array],
        params: Mapping[str, Any],
        names: tuple[str, ...],
        delta: Array,
    ) -> dict[str, Array]:
        index = entry.trainable_invars(params, len(operands))
        out = {}
        for n in names:
            eps = trace[n].astype(delta.dtype)
            g = jnp.sum(delta[..., None] * eps, axis=tuple(range(eps.ndim - 1)))
            out[n] = g.reshape(jnp.shape(operands[index[n]]))
        return out
