r"""General contraction of one data operand with one weight: ``y = einsum(spec, x, W) + b``.

Two primitives: ``etp_einsum`` (``x`` with exactly the axes its subscripts
name) and ``etp_einsum_batched`` (``x`` with extra leading batch axes, which
``...`` in front of ``x``'s and the output's subscripts carries through).
:func:`einsum` binds ``etp_einsum`` with the subscripts written out in full (a
leading ``...`` replaced by letters, so the static parameter ``subscripts``
fixes every axis); ``jax.vmap`` of ``etp_einsum`` binds ``etp_einsum_batched``.

Notation for subscripts ``X,W->Y``: ``W_y`` are the weight's letters kept in
the output (in output order), ``W_c`` the weight's letters summed (in weight
order; each must be one of ``x``'s letters).
"""

from __future__ import annotations

import dataclasses
import math
import string
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from .definition import define_primitive
from .record import ETPPrimitive
from .trace_rules import Array, apply_block, sum_leading
from .units import check_float, mantissa_in, split_unit, unit_product, with_unit

__all__ = ["einsum", "etp_einsum_p", "etp_einsum_batched_p", "EinsumRule"]

_RESERVED = 2  # letters the trace rule needs beside the subscripts' own


@dataclasses.dataclass(frozen=True)
class _Spec:
    """Explicit subscripts ``x,w->y`` (letters only, no ``...``)."""

    x: str
    w: str
    y: str

    @classmethod
    def parse(cls, subscripts: str) -> "_Spec":
        ins, y = subscripts.split("->")
        x, w = ins.split(",")
        return cls(x, w, y)

    @property
    def wy(self) -> str:
        """The weight's letters kept in the output, in output order."""
        return "".join(c for c in self.y if c in self.w)

    @property
    def wc(self) -> str:
        """The weight's letters summed (all of them letters of ``x``), in weight order."""
        return "".join(c for c in self.w if c not in self.y)

    @property
    def yx(self) -> str:
        """The output's letters that ``x`` carries, in output order."""
        return "".join(c for c in self.y if c in self.x)

    def fresh(self, n: int) -> str:
        """``n`` letters the subscripts do not use."""
        used = set(self.x + self.w + self.y)
        return "".join([c for c in string.ascii_letters if c not in used][:n])

    def bias_view(self, y_core: Sequence[int]) -> tuple[int, ...]:
        """Shape that broadcasts a ``W_y``-shaped bias against an output whose last axes are ``y_core``."""
        return tuple(n if c in self.w else 1 for c, n in zip(self.y, y_core))


def _impl(x, weight, *bias, subscripts):
    s = _Spec.parse(subscripts)
    y = jnp.einsum(f"...{s.x},{s.w}->...{s.y}", x, weight)
    if bias:
        y = y + bias[0].reshape(s.bias_view(y.shape[y.ndim - len(s.y):]))
    return y


def _factor(x: Array, s: _Spec, varshape: tuple[int, ...], wc: tuple[int, ...]) -> Array:
    """``a[v, c] = ∂y[v]/∂w[W_y(v), c]``, shape ``(*V, *W_c)``: ``x`` summed over its own letters.

    Computed as ``(*lead, *Y', *W_c)``, with ``Y'`` the output's shape with 1
    for the letters ``x`` does not carry, then broadcast to the hidden shape.
    """
    letters = s.yx + s.wc
    xr = jnp.einsum(f"...{s.x}->...{letters}", x)
    lead = xr.shape[: xr.ndim - len(letters)]
    size = dict(zip(letters, xr.shape[len(lead):]))
    xr = xr.reshape(lead + tuple(size.get(c, 1) for c in s.y) + tuple(size[c] for c in s.wc))
    return jnp.broadcast_to(xr, tuple(varshape) + wc)


def _wc_shape(s: _Spec, weight: Array) -> tuple[int, ...]:
    size = dict(zip(s.w, weight.shape))
    return tuple(size[c] for c in s.wc)


class EinsumRule:
    r"""D_RTRL trace of the weight of :func:`einsum`, derived from the subscripts.

    For subscripts ``X,W->Y``, ``W[q, c]`` (``q`` its letters ``W_y`` kept in the
    output, ``c`` its letters ``W_c`` summed) reaches only the outputs ``y[v]``
    whose ``W_y`` letters equal ``q``, with the factor
    ``a[v, c] = Σ x[...]`` (``x`` at the positions named by ``v`` and ``c``,
    summed over the letters only ``x`` has). The trace keeps one entry per
    hidden position ``v`` (batch axes, then ``Y``) and summed weight index
    ``c``, layout ``(*V, *W_c, S)``:

    .. math::

        ε^t[v, c, s] = \sum_{s'} D^t[v, s, s'] ε^{t-1}[v, c, s']
                       + a^t[v, c]\, df^t[v, s], \qquad
        \bar W[q, c] = \sum_{v:\ W_y(v) = q}\ \sum_s δ[v, s]\, ε[v, c, s].

    Memory is ``|V|·|W_c|·S``: for ``'...i,io->...o'`` the dense trace
    ``|B|·O·I·S``, for ``'...gi,gio->...go'`` the grouped one. A bias (shape:
    the sizes of ``W_y``) keeps the diagonal trace of
    :class:`~braintrace.primitives.DiagonalRule`, summed back over the output
    letters it does not have by :meth:`diagonal_to_param`.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> import braintrace
    >>> P = braintrace.primitives
    >>> x, w = jnp.ones((2, 3)), jnp.ones((3, 4))
    >>> eqn = jax.make_jaxpr(lambda x, w: braintrace.einsum('bi,io->bo', x, w))(x, w).eqns[-1]
    >>> entry = P.get_etp_primitive(eqn.primitive)
    >>> eqn.params['subscripts'], isinstance(entry.trace_rule, P.EinsumRule)
    ('bi,io->bo', True)
    >>> entry.trace_rule.init(entry, (x, w), eqn.params, ('weight',), (2, 4), 1, jnp.float32)['weight'].shape
    (2, 4, 3, 1)
    """

    def init(
        self,
        entry: ETPPrimitive,
        operands: Sequence[Array],
        params: Mapping[str, Any],
        names: tuple[str, ...],
        varshape: tuple[int, ...],
        num_state: int,
        dtype: Any,
    ) -> dict[str, Array]:
        s = _Spec.parse(params["subscripts"])
        return {"weight": jnp.zeros(tuple(varshape) + _wc_shape(s, operands[1]) + (num_state,), dtype)}

    def update(
        self,
        entry: ETPPrimitive,
        trace: Mapping[str, Array],
        operands: Sequence[Array],
        params: Mapping[str, Any],
        names: tuple[str, ...],
        D: Array,
        df: Array,
    ) -> dict[str, Array]:
        s = _Spec.parse(params["subscripts"])
        varshape, S = df.shape[:-1], df.shape[-1]
        wc = _wc_shape(s, operands[1])
        a = _factor(operands[0], s, varshape, wc).astype(df.dtype)
        eps = trace["weight"]
        new = apply_block(D, eps.astype(D.dtype), extra_axes=len(wc), at=len(varshape))
        new = new + a[..., None] * df.reshape(varshape + (1,) * len(wc) + (S,))
        return {"weight": new.astype(eps.dtype)}

    def accumulate(
        self,
        entry: ETPPrimitive,
        template: Mapping[str, Array],
        operands: Sequence[Array],
        x_seq: Array | None,
        params: Mapping[str, Any],
        names: tuple[str, ...],
        u_seq: Array,
    ) -> dict[str, Array]:
        """``Σ_k a_k ⊗ u_k`` per position: one batched matrix product over the window.

        Parameters
        ----------
        entry : ETPPrimitive
            The primitive's record.
        template : dict
            ``{'weight': trace}``, a trace in this rule's layout ``(*V, *W_c, S)``;
            only its shape and dtype are read.
        operands : sequence of arrays
            The equation's operands ``(x, weight[, bias])`` at the window's
            first step; only the weight's shape is read.
        x_seq : array
            The window's data inputs stacked, shape ``(K, *x.shape)``.
        params : mapping
            The equation's parameters; ``params['subscripts']`` is read.
        names : tuple of str
            The trainable inputs to accumulate, ``('weight',)`` (a bias keeps the
            diagonal trace).
        u_seq : array
            Every step's source ``u_k = Φ_{K,k} df_k`` (``df_k`` carried to the
            window's end by the later steps' ``D``), shape ``(K, *V, S)``.

        Returns
        -------
        dict
            ``{'weight': (*V, *W_c, S)}``, the window's summed sources, of the
            template's dtype.
        """
        s = _Spec.parse(params["subscripts"])
        K, varshape, S = u_seq.shape[0], u_seq.shape[1:-1], u_seq.shape[-1]
        wc = _wc_shape(s, operands[1])
        a = jax.vmap(lambda xk: _factor(xk, s, varshape, wc))(x_seq).astype(u_seq.dtype)
        M, C = math.prod(varshape), math.prod(wc)
        acc = jnp.einsum("kmc,kms->mcs", a.reshape(K, M, C), u_seq.reshape(K, M, S))
        return {"weight": acc.reshape(varshape + wc + (S,)).astype(template["weight"].dtype)}

    def contract(
        self,
        entry: ETPPrimitive,
        trace: Mapping[str, Array],
        operands: Sequence[Array],
        params: Mapping[str, Any],
        names: tuple[str, ...],
        delta: Array,
    ) -> dict[str, Array]:
        s = _Spec.parse(params["subscripts"])
        n_lead = delta.ndim - 1 - len(s.y)
        M = math.prod(delta.shape[:n_lead])
        eps = trace["weight"].astype(delta.dtype)
        eps = eps.reshape((M,) + eps.shape[n_lead:])
        d = delta.reshape((M,) + delta.shape[n_lead:])
        spare = s.fresh(_RESERVED)  # a letter for the flattened leading axes, one for the states
        g = jnp.einsum(f"{spare[0]}{s.y}{s.wc}{spare[1]},{spare[0]}{s.y}{spare[1]}->{s.w}", eps, d)
        return {"weight": g}

    def diagonal_to_param(
        self, entry: ETPPrimitive, operands: Sequence[Array], params: Mapping[str, Any], name: str, g: Array
    ) -> Array:
        """Sum a hidden-shaped ``g`` to the bias: over the leading axes and the output letters not in ``W``.

        Parameters
        ----------
        entry : ETPPrimitive
            The primitive's record.
        operands : sequence of arrays
            The equation's operands ``(x, weight, bias)`` (not read: the
            subscripts give the shapes).
        params : mapping
            The equation's parameters; ``params['subscripts']`` is read.
        name : str
            The trainable input ``g`` belongs to, ``'bias'``.
        g : array
            ``Σ_s δ[v, s] ε[v, s]``, shape ``(..., *Y)``: any leading (batch,
            window) axes, then the output's letters.

        Returns
        -------
        array
            The bias's gradient, shape: the sizes of ``W_y`` (the output letters
            the weight has, in output order).
        """
        s = _Spec.parse(params["subscripts"])
        g = sum_leading(g, g.ndim - len(s.y))
        drop = tuple(i for i, c in enumerate(s.y) if c not in s.w)
        return jnp.sum(g, axis=drop) if drop else g


_rule = EinsumRule()
_batched = define_primitive("etp_einsum_batched", _impl, batched=True, trace_rule=_rule)
_single = define_primitive("etp_einsum", _impl, batched=False, trace_rule=_rule, batched_partner=_batched)
etp_einsum_batched_p = _batched.primitive
etp_einsum_p = _single.primitive


# --------------------------------------------------------------------------
# subscripts
# --------------------------------------------------------------------------


def _fail(subscripts: str, why: str) -> ValueError:
    return ValueError(
        f"braintrace.einsum: subscripts {subscripts!r} {why} Supported: 'X,W->Y' with one data operand "
        "and one weight, letters a-z/A-Z, no letter twice in one operand, an optional '...' leading both "
        "X and Y (batch axes), every output letter in X or W, every summed letter of W also in X."
    )


def _normalize(subscripts: Any, x_shape: tuple[int, ...], w_shape: tuple[int, ...]) -> _Spec:
    """Validate ``subscripts`` against the shapes and write a leading ``...`` out as letters."""
    if not isinstance(subscripts, str):
        raise TypeError(f"braintrace.einsum: `subscripts` must be a str such as '...i,io->...o', got "
                        f"{type(subscripts).__name__}.")
    text = subscripts.replace(" ", "")
    if text.count("->") != 1:
        raise _fail(subscripts, "needs exactly one '->' followed by the output's letters (implicit output "
                                "is not supported).")
    ins, y = text.split("->")
    if ins.count(",") != 1:
        raise _fail(subscripts, f"names {ins.count(',') + 1} operands; einsum takes exactly two, the data x "
                                "and the weight.")
    x, w = ins.split(",")
    if "..." in w:
        raise _fail(subscripts, "puts '...' on the weight; the weight's axes must all be named.")
    ellipsis = x.startswith("...")
    if ellipsis != y.startswith("...") or "." in x[3 * ellipsis:] + y[3 * ellipsis:]:
        raise _fail(subscripts, "uses '...' other than at the start of both X and Y.")
    x, y = x[3 * ellipsis:], y[3 * ellipsis:]
    bad = sorted({c for c in x + w + y if c not in string.ascii_letters})
    if bad:
        raise _fail(subscripts, f"contains {bad}, which are not letters.")
    for label, part in (("x", x), ("the weight", w), ("the output", y)):
        twice = sorted({c for c in part if part.count(c) > 1})
        if twice:
            raise _fail(subscripts, f"repeats {twice} in {label} (diagonals and traces are not supported).")
    missing = sorted(set(y) - set(x) - set(w))
    if missing:
        raise _fail(subscripts, f"has output letters {missing} that neither operand carries.")
    alone = sorted(set(w) - set(y) - set(x))
    if alone:
        raise _fail(subscripts, f"sums the weight's axes {alone} on their own (they are in neither x nor the "
                                "output); sum the weight before the call.")
    if len(w) != len(w_shape):
        raise ValueError(f"braintrace.einsum: the weight has shape {w_shape} but {subscripts!r} names "
                         f"{len(w)} axes ({w!r}).")
    if len(x_shape) < len(x) or (not ellipsis and len(x_shape) != len(x)):
        raise ValueError(f"braintrace.einsum: `x` has shape {x_shape} but {subscripts!r} names {len(x)} axes "
                         f"({x!r}){' after its batch axes' if ellipsis else ''}.")
    size: dict[str, int] = dict(zip(w, w_shape))
    for c, n in zip(x, x_shape[len(x_shape) - len(x):]):
        if size.setdefault(c, n) != n:
            raise ValueError(f"braintrace.einsum: letter {c!r} has size {n} in `x` (shape {x_shape}) but "
                             f"{size[c]} in the weight (shape {w_shape}).")
    spec = _Spec(x, w, y)
    lead = len(x_shape) - len(x)
    letters = spec.fresh(lead + _RESERVED)
    if len(letters) < lead + _RESERVED:
        raise ValueError(f"braintrace.einsum: `x` of shape {x_shape} has too many axes for {subscripts!r}: "
                         "the 52 letters would not cover them.")
    return _Spec(letters[:lead] + x, w, letters[:lead] + y)


def einsum(subscripts: str, x: Any, weight: Any, *, bias: Any = None) -> Any:
    r"""ETP-aware contraction of a data operand with a weight, ``y = einsum(X,W->Y, x, W) + b``.

    Any contraction of one input with one weight in Einstein notation, e.g.
    ``'...i,io->...o'`` (dense), ``'...gi,gio->...go'`` (grouped),
    ``'bti,io->bto'`` (a sequence of inputs), ``'...i,oi->...o'`` (a
    transposed weight) or ``'...hi,hio->...ho'`` (heads). The weight learns
    online through a trace rule derived from the subscripts
    (:class:`EinsumRule`).

    .. math:: y_{Y} = \sum_{\text{letters not in } Y} x_{X}\, W_{W} + b_{W_y}

    Supported subscripts, ``'X,W->Y'``:

    * exactly two operands, the data ``x`` first, and an explicit output after ``->``;
    * letters ``a-z``, ``A-Z``; no letter twice in one operand (no diagonals or traces);
    * an optional ``...`` at the start of both ``X`` and ``Y`` (batch axes, carried through);
      none on the weight;
    * every output letter in ``X`` or ``W``; every weight letter summed (not in ``Y``)
      also in ``X`` (a weight axis summed on its own is refused: sum the weight first).

    Letters only ``x`` has are summed over ``x`` alone. Anything else raises a
    ``ValueError`` naming the rule broken.

    Parameters
    ----------
    subscripts : str
        ``'X,W->Y'`` as above.
    x : array or Quantity
        Data input with the axes of ``X`` (after any batch axes for ``...``).
    weight : array or Quantity
        Floating-point weight with the axes of ``W``.
    bias : array or Quantity, optional
        Shape: the sizes of the weight's letters kept in the output, in output
        order (``(O,)`` for ``'...i,io->...o'``, ``(G, O)`` for
        ``'...gi,gio->...go'``); added along those axes. Its unit must match
        ``unit(x) * unit(weight)``.

    Returns
    -------
    array or Quantity
        Axes ``Y`` (after the batch axes), unit ``unit(x) * unit(weight)``.

    Raises
    ------
    ValueError
        Subscripts outside the supported patterns, shapes that do not fit
        them, a bias of the wrong shape or unit.
    TypeError
        Subscripts that are not a string, a non-floating-point weight or bias.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> x, w = jnp.ones((2, 3)), jnp.ones((3, 4))
    >>> braintrace.einsum('...i,io->...o', x, w, bias=jnp.ones(4)).tolist()
    [[4.0, 4.0, 4.0, 4.0], [4.0, 4.0, 4.0, 4.0]]
    >>> braintrace.einsum('...gi,gio->...go', jnp.ones((5, 2, 3)), jnp.ones((2, 3, 4))).shape
    (5, 2, 4)
    """
    xm, xu = split_unit(x)
    wm, wu = split_unit(weight)
    spec = _normalize(subscripts, tuple(xm.shape), tuple(wm.shape))
    check_float(wm, op="einsum", arg="weight")
    out_unit = unit_product(xu, wu)
    ops = [xm, wm]
    if bias is not None:
        bm = mantissa_in(bias, out_unit, op="einsum", arg="bias")
        check_float(bm, op="einsum", arg="bias")
        size = dict(zip(spec.w, wm.shape))
        want = tuple(size[c] for c in spec.wy)
        if bm.shape != want:
            raise ValueError(
                f"braintrace.einsum: `bias` has shape {bm.shape}; expected {want}, the sizes of the weight's "
                f"output letters {spec.wy!r} in {subscripts!r}."
            )
        ops.append(bm)
    text = f"{spec.x},{spec.w}->{spec.y}"
    return with_unit(etp_einsum_p.bind(*ops, subscripts=text), out_unit)
