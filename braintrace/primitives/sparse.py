r"""Sparse matrix multiplication: ``y = x @ M + b`` with a fixed sparsity pattern.

``M`` has ``nnz`` nonzeros at ``(row(k), col(k))``, ``k = 0 … nnz-1``, whose
values ``weight[k]`` are the trainable input. Two primitives:
``etp_sparse_mv`` (``x`` of shape ``(n_rows,)``) and ``etp_sparse_mm`` (``x`` of
shape ``(..., n_rows)``). ``jax.vmap`` of ``etp_sparse_mv`` binds
``etp_sparse_mm``. Operands are ``(x, weight, rows, cols[, bias])``; the integer
index arrays ``rows``/``cols`` are operands, not trainable inputs, and the
number of columns is the static parameter ``n_cols``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import saiunit as u

from .definition import define_primitive
from .record import ETPPrimitive
from .sparse_window import sampled_outer_sum, sparse_window_xy_to_dw
from .trace_rules import Array, apply_block, broadcast_leading
from .units import check_float, mantissa_in, split_unit, unit_product, with_unit

__all__ = ["sparse_matmul", "etp_sparse_mv_p", "etp_sparse_mm_p", "SparseRule"]


def sparse_product(x, weight, rows, cols, *bias, n_cols):
    """``y[..., c] = Σ_{k: cols[k] = c} x[..., rows[k]] weight[k] (+ bias[c])``: one gather over the nonzeros."""
    contrib = jnp.take(x, rows, axis=-1) * weight  # (..., nnz)
    y = jax.ops.segment_sum(jnp.moveaxis(contrib, -1, 0), cols, num_segments=n_cols)
    y = jnp.moveaxis(y, 0, -1)  # (..., n_cols)
    if bias:
        y = y + bias[0]
    return y


def _trainables(params, num_invars):
    names = {"weight": 1}
    if num_invars > 4:
        names["bias"] = 4
    return names


def times_weight_sign(
    v: Array, operands: Sequence[Array], params: Mapping[str, Any], trailing: int = 0
) -> Array:
    """``v`` (nonzeros on the axis ``trailing`` places before the last), times ``sign(w[k])`` for a
    product of ``|w|`` (``abs_weight``: the event-driven product's Dale's law)."""
    if params.get("abs_weight", False):
        sign = jnp.sign(operands[1]).astype(v.dtype)
        return v * sign.reshape(sign.shape + (1,) * trailing)
    return v


class SparseRule:
    r"""D_RTRL trace of the nonzero values of a sparse weight.

    Nonzero ``k`` reaches exactly one output, column ``col(k)``, so the trace
    keeps one entry per nonzero and batch element, layout ``(*B, nnz, S)``
    (``B`` = the hidden group's leading axes, ``V = (*B, n_cols)``):

    .. math::

        ε^t[b, k, s] = \sum_{s'} D^t[b, col(k), s, s'] ε^{t-1}[b, k, s']
                       + x^t[b, row(k)]\, df^t[b, col(k), s], \qquad
        \bar w[k] = \sum_{b, s} δ[b, col(k), s]\, ε[b, k, s].

    Every batch element keeps its own trace; memory is ``|B|·nnz·S``.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> import saiunit as u
    >>> import braintrace
    >>> P = braintrace.primitives
    >>> csr = u.sparse.CSR.fromdense(jnp.array([[1., 0., 1.], [0., 1., 0.]]))
    >>> x, w = jnp.ones((4, 2)), jnp.ones(3)                    # batch of 4, 3 nonzeros
    >>> jaxpr = jax.make_jaxpr(lambda x, w: braintrace.sparse_matmul(x, w, sparse_mat=csr))(x, w)
    >>> eqn = jaxpr.eqns[-1]
    >>> entry = P.get_etp_primitive(eqn.primitive)
    >>> isinstance(entry.trace_rule, P.SparseRule)
    True
    >>> ops = (x, w, jnp.array([0, 0, 1]), jnp.array([0, 2, 1]))
    >>> entry.trace_rule.init(entry, ops, eqn.params, ("weight",), (4, 3), 1, jnp.float32)["weight"].shape
    (4, 3, 1)
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
        nnz = operands[1].shape[0]
        return {"weight": jnp.zeros(tuple(varshape[:-1]) + (nnz, num_state), dtype)}

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
        varshape = df.shape[:-1]
        x, rows, cols = operands[0], operands[2], operands[3]
        x = broadcast_leading(x, varshape, x.ndim)
        xr = times_weight_sign(jnp.take(x, rows, axis=-1).astype(df.dtype), operands, params)  # (*B, nnz)
        d_k = jnp.take(D, cols, axis=-3)  # (*B, nnz, S, S)
        df_k = jnp.take(df, cols, axis=-2)  # (*B, nnz, S)
        eps = trace["weight"]
        new = apply_block(d_k, eps.astype(D.dtype)) + xr[..., None] * df_k
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
        """``Σ_k x_k[row] u_k[col]`` per batch element and state, by :func:`.sampled_outer_sum`
        (no ``(K, *B, nnz, S)`` intermediate)."""
        varshape = u_seq.shape[1:-1]
        rows, cols = operands[2], operands[3]
        x = jax.vmap(lambda xk: broadcast_leading(xk, varshape, xk.ndim))(x_seq)
        steps = u_seq.shape[0]
        xs = x.reshape((steps, -1, x.shape[-1])).astype(u_seq.dtype)  # (K, B, n_rows)
        us = u_seq.reshape((steps, -1) + u_seq.shape[-2:])  # (K, B, n_cols, S)
        per_state = jax.vmap(
            lambda xb, ub: sampled_outer_sum(xb, ub, rows, cols), in_axes=(None, 2), out_axes=1
        )
        acc = jax.vmap(per_state, in_axes=(1, 1))(xs, us)  # (B, nnz, S)
        acc = acc.reshape(varshape[:-1] + acc.shape[1:])
        acc = times_weight_sign(acc, operands, params, trailing=1)
        return {"weight": acc.astype(template["weight"].dtype)}

    def contract(
        self,
        entry: ETPPrimitive,
        trace: Mapping[str, Array],
        operands: Sequence[Array],
        params: Mapping[str, Any],
        names: tuple[str, ...],
        delta: Array,
    ) -> dict[str, Array]:
        delta_k = jnp.take(delta, operands[3], axis=-2)  # (*B, nnz, S)
        eps = trace["weight"].astype(delta.dtype)
        g = jnp.sum(eps * delta_k, axis=tuple(range(eps.ndim - 2)) + (eps.ndim - 1,))
        return {"weight": g}


_rule = SparseRule()
_mm = define_primitive(
    "etp_sparse_mm", sparse_product, batched=True, trainable_invars_fn=_trainables, trace_rule=_rule,
    window_rule=sparse_window_xy_to_dw,
)
_mv = define_primitive(
    "etp_sparse_mv", sparse_product, batched=False, trainable_invars_fn=_trainables, trace_rule=_rule,
    batched_partner=_mm, window_rule=sparse_window_xy_to_dw,
)
etp_sparse_mm_p = _mm.primitive
etp_sparse_mv_p = _mv.primitive


def _host(a: Any) -> np.ndarray | None:
    """``a`` as a NumPy array, or ``None`` if it is traced (a structure passed into ``jit``)."""
    try:
        return np.asarray(a)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def _structure(sparse_mat: Any) -> tuple[Any, Any, int, int, int]:
    """``(rows, cols, n_rows, n_cols, nnz)`` of a CSR, CSC or COO matrix, in its data order.

    A concrete structure gives NumPy arrays (computed once, at trace time: they
    enter the compiled step as constants, not as per-step work); a traced one
    (a matrix passed through ``jit``) gives traced arrays.
    """
    if not isinstance(sparse_mat, (u.sparse.CSR, u.sparse.CSC, u.sparse.COO)):
        raise TypeError(
            f"braintrace.sparse_matmul: `sparse_mat` must be a saiunit.sparse.CSR, CSC or COO matrix, "
            f"got {type(sparse_mat).__name__}. Build one with e.g. `saiunit.sparse.CSR.fromdense(mask)`."
        )
    n_rows, n_cols = (int(s) for s in sparse_mat.shape)
    nnz = int(jnp.shape(u.get_mantissa(sparse_mat.data))[0])
    if isinstance(sparse_mat, u.sparse.COO):
        rows, cols = sparse_mat.row, sparse_mat.col
    else:
        n_major = n_rows if isinstance(sparse_mat, u.sparse.CSR) else n_cols
        indptr, host_minor = _host(sparse_mat.indptr), _host(sparse_mat.indices)
        minor: Any = host_minor
        if indptr is not None and host_minor is not None:
            major: Any = np.repeat(np.arange(n_major, dtype=np.int32), np.diff(indptr))
        else:
            major = jnp.repeat(
                jnp.arange(n_major, dtype=jnp.int32), jnp.diff(jnp.asarray(sparse_mat.indptr)),
                total_repeat_length=nnz,
            )
            minor = jnp.asarray(sparse_mat.indices)
        rows, cols = (major, minor) if isinstance(sparse_mat, u.sparse.CSR) else (minor, major)
    hr, hc = _host(rows), _host(cols)
    if hr is not None and hc is not None:
        return hr.astype(np.int32), hc.astype(np.int32), n_rows, n_cols, nnz
    return jnp.asarray(rows).astype(jnp.int32), jnp.asarray(cols).astype(jnp.int32), n_rows, n_cols, nnz


def nonzero_indices(sparse_mat: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, cols)``: the row and column of every nonzero of a matrix, in its data order (NumPy, int32).

    Parameters
    ----------
    sparse_mat : saiunit.sparse.CSR, CSC or COO
        With concrete (not traced) indices.

    Raises
    ------
    TypeError
        ``sparse_mat`` is not a CSR, CSC or COO matrix.
    ValueError
        Its indices are traced.

    Examples
    --------
    >>> import jax.numpy as jnp, saiunit as u
    >>> from braintrace.primitives.sparse import nonzero_indices
    >>> rows, cols = nonzero_indices(u.sparse.CSR.fromdense(jnp.array([[1., 0., 2.], [0., 3., 0.]])))
    >>> rows.tolist(), cols.tolist()
    ([0, 0, 1], [0, 2, 1])
    """
    rows, cols, *_ = _structure(sparse_mat)
    if not isinstance(rows, np.ndarray) or not isinstance(cols, np.ndarray):
        raise ValueError(
            "nonzero_indices: the matrix's indices are traced; read them outside `jit` (the pattern is "
            "fixed, computed once)."
        )
    return rows, cols


def sparse_matmul(x: Any, weight_data: Any, *, sparse_mat: Any, bias: Any = None) -> Any:
    r"""ETP-aware sparse matrix multiplication, ``y = x @ M + b``.

    ``M`` has the sparsity pattern of ``sparse_mat`` and the values
    ``weight_data`` (in ``sparse_mat``'s data order); only those values (and
    ``bias``) are trainable. With nonzero ``k`` at ``(row(k), col(k))``:

    .. math:: y_{\ldots c} = \sum_{k:\, col(k) = c} x_{\ldots\, row(k)}\, w_k + b_c

    Parameters
    ----------
    x : array or Quantity, shape ``(n_rows,)`` or ``(..., n_rows)``
        Input. Rank 1 binds ``etp_sparse_mv``, higher ranks ``etp_sparse_mm``
        (leading axes are batch axes).
    weight_data : array or Quantity, shape ``(nnz,)``
        Floating-point values of the nonzeros.
    sparse_mat : saiunit.sparse.CSR, CSC or COO, shape ``(n_rows, n_cols)``
        Gives the sparsity pattern; its own values are not used.
    bias : array or Quantity, shape ``(n_cols,)``, optional
        Its unit must match ``unit(x) * unit(weight_data)``.

    Returns
    -------
    array or Quantity, shape ``(..., n_cols)``
        With unit ``unit(x) * unit(weight_data)``.

    Raises
    ------
    TypeError
        ``sparse_mat`` of another type; a non-floating-point weight or bias.
    ValueError
        ``x``'s last axis is not ``n_rows``; ``weight_data`` is not ``(nnz,)``;
        a bias of the wrong shape or unit.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import saiunit as u
    >>> import braintrace
    >>> mask = jnp.array([[1., 0., 1.], [0., 1., 0.]])
    >>> csr = u.sparse.CSR.fromdense(mask)
    >>> braintrace.sparse_matmul(jnp.array([1., 2.]), jnp.array([1., 2., 3.]), sparse_mat=csr).tolist()
    [1.0, 6.0, 2.0]
    """
    rows, cols, n_rows, n_cols, nnz = _structure(sparse_mat)
    xm, xu = split_unit(x)
    wm, wu = split_unit(weight_data)
    if xm.ndim < 1 or xm.shape[-1] != n_rows:
        raise ValueError(
            f"braintrace.sparse_matmul: `x` has shape {xm.shape} but `sparse_mat` has shape "
            f"{(n_rows, n_cols)}; x must be (..., {n_rows})."
        )
    if wm.shape != (nnz,):
        raise ValueError(
            f"braintrace.sparse_matmul: `weight_data` has shape {wm.shape}; expected ({nnz},), one value "
            f"per nonzero of `sparse_mat`."
        )
    check_float(wm, op="sparse_matmul", arg="weight_data")
    out_unit = unit_product(xu, wu)
    ops = [xm, wm, rows, cols]
    if bias is not None:
        bm = mantissa_in(bias, out_unit, op="sparse_matmul", arg="bias")
        check_float(bm, op="sparse_matmul", arg="bias")
        if bm.shape != (n_cols,):
            raise ValueError(
                f"braintrace.sparse_matmul: `bias` has shape {bm.shape}; expected ({n_cols},) to match "
                f"`sparse_mat` of shape {(n_rows, n_cols)}."
            )
        ops.append(bm)
    prim = etp_sparse_mv_p if xm.ndim == 1 else etp_sparse_mm_p
    return with_unit(prim.bind(*ops, n_cols=n_cols), out_unit)
