r"""Event-driven sparse matrix multiplication: ``y = x @ M + b`` at the cost of the nonzeros of ``x``.

On spikes, most entries of ``x`` are zero, and only the rows of ``M`` whose
input is nonzero contribute. The CSR product of :mod:`.sparse` gathers every
nonzero of ``M`` at every step; this one visits the rows of the active inputs
only. ``M``'s nonzeros, row by row, are cut into *blocks* of at most ``L``
consecutive nonzeros of one row (:class:`EventCSR`). A step

1. marks the blocks whose row has a nonzero input (one gather over the
   ``n_b ≈ nnz / L + n_rows`` blocks),
2. compacts up to ``capacity`` active blocks per batch element
   (``jnp.nonzero`` with a static size), and
3. scatters ``x[row] · w[k]`` for the ``L`` nonzeros ``k`` of each active block
   into ``y``,

so its work is ``O(n_b + capacity · L)`` against ``O(nnz)``. A step with more
active blocks than the capacity takes the CSR product instead (``lax.cond``):
the value is the same either way, only the cost differs. Shapes are static, so
the event path costs what its capacity allows, whatever the number of events:
give a capacity a few times the expected fraction of active blocks.

Differentiation: the product is linear in ``x`` and in ``w``. The tangent in
``w`` (and so ``xy_to_dw``, the weight gradient the learners contract) is
event-driven as well, a linear primitive of its own (``etp_event_sparse_dw``,
whose transpose forms ``w̄[k] = x[row(k)] ȳ[col(k)]`` for the nonzeros of
active rows only, and which a ``vmap`` over steps folds into its batch). The
tangent in ``x`` and the transpose rule in ``x`` use the CSR product, since a
tangent of ``x`` is not sparse where ``x`` is.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import saiunit as u
from jax.custom_derivatives import SymbolicZero
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from .definition import define_primitive
from .sparse import SparseRule, sparse_product, times_weight_sign
from .sparse_window import sampled_outer_sum, sparse_window_xy_to_dw
from .units import check_float, mantissa_in, split_unit, unit_product, with_unit

__all__ = [
    "EventCSR", "event_sparse_matmul", "etp_event_sparse_mv_p", "etp_event_sparse_mm_p", "etp_event_sparse_dw_p"
]

#: Nonzeros per block (the ``L`` above): a block is read as one contiguous run.
DEFAULT_BLOCK = 32


@dataclasses.dataclass(frozen=True, eq=False)
class EventCSR:
    """The structure of a CSR matrix, prepared once (with NumPy) for event-driven products.

    Attributes
    ----------
    rows : numpy.ndarray of int32, shape ``(nnz,)``
        Row of every nonzero, in the CSR data order.
    cols : numpy.ndarray of int32, shape ``(nnz,)``
        Column of every nonzero, in the CSR data order.
    block_row : numpy.ndarray of int32, shape ``(n_blocks,)``
        Each block's row.
    block_start : numpy.ndarray of int32, shape ``(n_blocks,)``
        Each block's first nonzero.
    block_end : numpy.ndarray of int32, shape ``(n_blocks,)``
        One past each block's last nonzero (a block is ``[start, end)``).
    n_rows : int
        Rows of the matrix (the size of ``x``'s last axis).
    n_cols : int
        Columns of the matrix (the size of ``y``'s last axis).
    block : int
        Nonzeros per block (at most).
    capacity : int
        Active blocks per batch element that the event path handles; more go
        to the CSR product.

    Examples
    --------
    >>> import jax.numpy as jnp, saiunit as u
    >>> from braintrace.primitives import EventCSR
    >>> csr = u.sparse.CSR.fromdense(jnp.array([[1., 1., 1.], [0., 1., 0.]]))
    >>> s = EventCSR.from_csr(csr, block=2, max_active=1.0)
    >>> s.block_row.tolist(), s.block_start.tolist(), s.block_end.tolist(), s.capacity
    ([0, 0, 1], [0, 2, 3], [2, 3, 4], 3)
    """

    rows: np.ndarray
    cols: np.ndarray
    block_row: np.ndarray
    block_start: np.ndarray
    block_end: np.ndarray
    n_rows: int
    n_cols: int
    block: int
    capacity: int

    #: The names of the index arrays (see :attr:`arrays`).
    ARRAYS = ("rows", "cols", "block_row", "block_start", "block_end")

    @property
    def nnz(self) -> int:
        return int(self.cols.shape[0])

    @property
    def arrays(self) -> dict[str, Any]:
        """The index arrays by name: what a compiled step may take as arguments rather than as
        constants (see :meth:`with_arrays`)."""
        return {name: getattr(self, name) for name in self.ARRAYS}

    def with_arrays(self, arrays: dict[str, Any]) -> EventCSR:
        """The same structure with its index arrays replaced, e.g. by traced values of the same
        shapes (a state read inside ``jit``: the arrays are then arguments of the compiled
        program, not constants embedded in it, which XLA compiles slowly when they are large).

        Parameters
        ----------
        arrays : dict
            One array per name of :attr:`ARRAYS`, of the shape the structure's has.

        Raises
        ------
        ValueError
            ``arrays`` does not hold exactly :attr:`ARRAYS`, or an array's shape differs.
        """
        if set(arrays) != set(self.ARRAYS):
            raise ValueError(
                f"EventCSR.with_arrays: expected the arrays {list(self.ARRAYS)}, got {sorted(arrays)}."
            )
        for name in self.ARRAYS:
            if tuple(np.shape(arrays[name])) != tuple(np.shape(getattr(self, name))):
                raise ValueError(
                    f"EventCSR.with_arrays: `{name}` has shape {tuple(np.shape(arrays[name]))}; the structure's "
                    f"has shape {tuple(np.shape(getattr(self, name)))}."
                )
        return dataclasses.replace(self, **arrays)

    @property
    def n_blocks(self) -> int:
        return int(self.block_row.shape[0])

    @classmethod
    def from_csr(cls, csr: Any, *, block: int = DEFAULT_BLOCK, max_active: float = 0.1) -> EventCSR:
        """Blocks of the CSR matrix ``csr``.

        Parameters
        ----------
        csr : saiunit.sparse.CSR, shape ``(n_rows, n_cols)``
            With concrete (not traced) indices.
        block : int, default 32
            Nonzeros per block.
        max_active : float in (0, 1], default 0.1
            The fraction of the blocks that may be active in one step (per
            batch element) before a step takes the CSR product; ``1.0``: never.

        Raises
        ------
        TypeError
            ``csr`` is not a ``saiunit.sparse.CSR`` matrix (the event path
            visits the nonzeros row by row, in CSR order).
        ValueError
            ``block < 1``, ``max_active`` outside (0, 1], or traced indices.
        """
        if not isinstance(csr, u.sparse.CSR):
            raise TypeError(
                f"EventCSR.from_csr: the event-driven product needs a saiunit.sparse.CSR matrix (nonzeros "
                f"stored row by row), got {type(csr).__name__}; convert it with e.g. "
                "`saiunit.sparse.CSR.fromdense(m.todense())`, and keep its data order for the weights."
            )
        if int(block) < 1:
            raise ValueError(f"EventCSR.from_csr: block={block} must be a positive number of nonzeros.")
        if not 0.0 < float(max_active) <= 1.0:
            raise ValueError(
                f"EventCSR.from_csr: max_active={max_active} must lie in (0, 1]: the fraction of the blocks "
                "that may be active in one step before it takes the CSR product."
            )
        try:
            indptr = np.asarray(csr.indptr, dtype=np.int64)
            cols = np.asarray(csr.indices, dtype=np.int32)
        except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError) as err:
            raise ValueError(
                "EventCSR.from_csr: the matrix's indices are traced; build the EventCSR outside `jit` "
                "(it is a fixed structure, computed once)."
            ) from err
        n_rows, n_cols = (int(s) for s in csr.shape)
        if cols.shape[0] >= 2**31 or max(n_rows, n_cols) >= 2**31:
            raise ValueError(
                f"EventCSR.from_csr: a matrix of shape {(n_rows, n_cols)} with {cols.shape[0]} nonzeros "
                "overflows the int32 indices of the event-driven product."
            )
        deg = np.diff(indptr)
        per_row = -(-deg // int(block))  # blocks per row
        block_row = np.repeat(np.arange(n_rows, dtype=np.int32), per_row)
        first = np.repeat(np.cumsum(per_row) - per_row, per_row)
        block_start = np.repeat(indptr[:-1], per_row) + (np.arange(block_row.shape[0]) - first) * int(block)
        block_end = np.minimum(block_start + int(block), np.repeat(indptr[1:], per_row))
        rows = np.repeat(np.arange(n_rows, dtype=np.int32), deg)
        n_blocks = max(int(block_row.shape[0]), 1)
        return cls(
            rows=rows, cols=cols, block_row=block_row, block_start=block_start.astype(np.int32),
            block_end=block_end.astype(np.int32), n_rows=n_rows, n_cols=n_cols, block=int(block),
            capacity=max(1, min(n_blocks, math.ceil(float(max_active) * n_blocks))),
        )


class _Events:
    """The active blocks of ``x`` (flattened to ``(B, n_rows)``): their nonzeros ``k`` and input values."""

    def __init__(self, x, block_row, block_start, block_end, capacity: int, block: int, n_cols: int):
        xf = x.reshape((-1, x.shape[-1]))
        self.batch, n_blocks = xf.shape[0], block_row.shape[0]
        if self.batch * max(n_blocks, capacity * block, n_cols) >= 2**31:
            raise ValueError(
                f"braintrace.event_sparse_matmul: {self.batch} batch elements (or window steps) of a matrix "
                f"with {n_blocks} blocks overflow the event path's int32 indices; use fewer at a time."
            )
        active = (jnp.take(xf, block_row, axis=1) != 0).reshape(-1)  # (B * n_blocks,)
        cap = capacity * self.batch
        self.fits = jnp.count_nonzero(active) <= cap
        (flat,) = jnp.nonzero(active, size=cap, fill_value=self.batch * n_blocks)
        used = flat < self.batch * n_blocks
        b = jnp.where(used, flat // max(n_blocks, 1), 0)
        blk = jnp.where(used, flat % max(n_blocks, 1), 0)
        start = jnp.take(block_start, blk)
        end = jnp.where(used, jnp.take(block_end, blk), start)
        k = start[:, None] + jnp.arange(block, dtype=start.dtype)  # (cap, L)
        self.valid = k < end[:, None]
        self.k = jnp.where(self.valid, k, 0)
        self.b = b
        self.x = jnp.where(used, xf[b, jnp.take(block_row, blk)], 0)  # (cap,)

    def gather(self, values) -> jax.Array:
        """``values[k]`` for the active blocks' nonzeros, shape ``(capacity, L)``."""
        return jnp.take(values, self.k)

    def product(self, w_k, cols, n_cols: int, lead: tuple, dtype) -> jax.Array:
        """``Σ_k x[b, row(k)] w_k`` into ``y[b, col(k)]`` over the active blocks' nonzeros.

        ``w_k`` are the nonzeros' values from :meth:`gather`.
        """
        val = jnp.where(self.valid, self.x[:, None].astype(dtype) * w_k.astype(dtype), 0)
        dest = jnp.where(self.valid, self.b[:, None] * n_cols + jnp.take(cols, self.k), self.batch * n_cols)
        y = jnp.zeros((self.batch * n_cols,), dtype).at[dest.reshape(-1)].add(val.reshape(-1), mode="drop")
        return y.reshape(lead + (n_cols,))


def _dense(x, weight, rows, cols, n_cols):
    return sparse_product(x, weight, rows, cols, n_cols=n_cols)


def _fallback(x, weight, rows, cols, n_cols):
    """The CSR product, one batch element at a time: a branch that is rarely taken (but whose
    buffers XLA reserves anyway) then needs ``O(nnz)`` memory rather than ``O(B · nnz)``."""
    if x.ndim == 1:
        return _dense(x, weight, rows, cols, n_cols)
    # rematerialised per element: a transposed loop would otherwise stack every element's x[rows]
    one = jax.checkpoint(lambda xb: _dense(xb, weight, rows, cols, n_cols))
    y = jax.lax.map(one, x.reshape((-1, x.shape[-1])))
    return y.reshape(x.shape[:-1] + (n_cols,))


# -- the product as a function of the weight alone: its own linear primitive ------------------
# The weight's tangent chooses between the event path and the CSR product with a ``cond`` on
# ``x``. Written inline, a vmap over steps whose ``x`` differ (a window's stacked
# linearisations) turns the cond into a select that wraps its operands, the tangent among them,
# in ``stop_gradient``, and the linear map no longer transposes. As a primitive, vmap folds the
# steps into the batch (one cond for all) and the transpose is the event-driven ``w̄`` below.
_dw_p = Primitive("etp_event_sparse_dw")
etp_event_sparse_dw_p = _dw_p


def _dw_impl(x, dw, rows, cols, block_row, block_start, block_end, *, n_cols, capacity, block):
    """``Σ_k x[..., row(k)] dw_k`` into column ``col(k)``: event-driven, or the CSR product over capacity."""
    ev = _Events(x, block_row, block_start, block_end, capacity, block, n_cols)
    dtype = jnp.result_type(x, dw)
    # the CSR branch is rematerialised: its residual x[rows] (nnz values) would otherwise be
    # stored even by the steps that take the event branch
    dense = jax.checkpoint(lambda x, dw: _fallback(x, dw, rows, cols, n_cols).astype(dtype))
    return jax.lax.cond(
        ev.fits, lambda: ev.product(ev.gather(dw), cols, n_cols, x.shape[:-1], dtype), lambda: dense(x, dw)
    )


def _dw_transpose_impl(ct, x, rows, cols, block_row, block_start, block_end, *, n_cols, capacity, block):
    """``w̄_k = Σ_b x[b, row(k)] ȳ[b, col(k)]``: over the active blocks' nonzeros, or every nonzero."""
    ev = _Events(x, block_row, block_start, block_end, capacity, block, n_cols)
    nnz = rows.shape[0]
    dtype = jnp.result_type(x, ct)
    xf, cf = x.reshape((-1, x.shape[-1])), ct.reshape((-1, n_cols))

    def events():
        val = ev.x[:, None].astype(dtype) * cf[ev.b[:, None], jnp.take(cols, ev.k)].astype(dtype)
        dest = jnp.where(ev.valid, ev.k, nnz).reshape(-1)
        return jnp.zeros((nnz,), dtype).at[dest].add(jnp.where(ev.valid, val, 0).reshape(-1), mode="drop")

    return jax.lax.cond(ev.fits, events, lambda: sampled_outer_sum(xf, cf, rows, cols).astype(dtype))


def _dw_abstract_eval(x, dw, *structure, n_cols, capacity, block):
    return jax.core.ShapedArray(x.shape[:-1] + (n_cols,), jnp.result_type(x.dtype, dw.dtype))


def _dw_jvp(primals, tangents, **params):
    x, dw, *structure = primals
    tx, tdw = tangents[0], tangents[1]
    y = _dw_p.bind(*primals, **params)
    terms = []
    if type(tdw) is not ad.Zero:
        terms.append(_dw_p.bind(x, tdw, *structure, **params))
    if type(tx) is not ad.Zero:  # bilinear: the CSR product in x (a tangent of x is not sparse)
        terms.append(_dense(tx, dw, structure[0], structure[1], params["n_cols"]).astype(y.dtype))
    return y, functools.reduce(jnp.add, terms) if terms else ad.Zero.from_primal_value(y)


def _dw_transpose(ct, x, dw, *structure, **params):
    if ad.is_undefined_primal(x) or not ad.is_undefined_primal(dw):
        raise NotImplementedError("etp_event_sparse_dw is transposed in the weight, with x known.")
    if type(ct) is ad.Zero:
        return [None] * (2 + len(structure))
    return [None, _dw_transpose_impl(ct, x, *structure, **params).astype(dw.aval.dtype)] + [None] * len(structure)


def _dw_batch(args, dims, **params):
    x, dw, *structure = args
    if dims[0] is not None and all(d is None for d in dims[1:]):  # a batch of x: fold it into x's batch
        return _dw_p.bind(jnp.moveaxis(x, dims[0], 0), dw, *structure, **params), 0
    if any(d is not None for d in dims[2:]):  # a batch of structures: the impl, vmapped
        return jax.vmap(lambda *a: _dw_impl(*a, **params), in_axes=tuple(dims))(*args), 0
    # a batch of weight tangents (with or without one of x): one bind per element, a loop that
    # transposes (vmap would turn the cond into a select, see above)
    size = x.shape[dims[0]] if dims[0] is not None else dw.shape[dims[1]]
    xs = jnp.moveaxis(x, dims[0], 0) if dims[0] is not None else jnp.broadcast_to(x, (size,) + x.shape)
    return jax.lax.map(lambda a: _dw_p.bind(a[0], a[1], *structure, **params),
                       (xs, jnp.moveaxis(dw, dims[1], 0))), 0


_dw_p.def_impl(_dw_impl)
_dw_p.def_abstract_eval(_dw_abstract_eval)
mlir.register_lowering(_dw_p, mlir.lower_fun(_dw_impl, multiple_results=False))
ad.primitive_jvps[_dw_p] = _dw_jvp
ad.primitive_transposes[_dw_p] = _dw_transpose
batching.primitive_batchers[_dw_p] = _dw_batch


def _magnitude(weight, abs_weight: bool):
    return jnp.abs(weight) if abs_weight else weight


def _tangent(dw, weight, abs_weight: bool):
    """The tangent of ``|w|`` (``sign(w) · dw``) or of ``w``."""
    return dw * jnp.sign(weight).astype(dw.dtype) if abs_weight else dw


def _primal(x, weight, rows, cols, block_row, block_start, block_end, n_cols, capacity, block, abs_weight):
    ev = _Events(x, block_row, block_start, block_end, capacity, block, n_cols)
    dtype = jnp.result_type(x, weight)
    # |w| is taken of the gathered values inside each branch: a whole-weight |w| outside the
    # branches would be computed at every step (nnz values) whichever branch runs
    return jax.lax.cond(
        ev.fits,
        lambda: ev.product(_magnitude(ev.gather(weight), abs_weight), cols, n_cols, x.shape[:-1], dtype),
        lambda: _fallback(x, _magnitude(weight, abs_weight), rows, cols, n_cols).astype(dtype),
    )


_product = jax.custom_jvp(_primal, nondiff_argnums=(7, 8, 9, 10))


def _product_jvp(n_cols, capacity, block, abs_weight, primals, tangents):
    x, weight, rows, cols, block_row, block_start, block_end = primals
    dx, dw = tangents[0], tangents[1]
    dtype = jnp.result_type(x, weight)
    y = _primal(*primals, n_cols, capacity, block, abs_weight)
    terms = []
    if not isinstance(dx, SymbolicZero):  # a tangent of x is not sparse: the CSR product
        terms.append(_dense(dx, _magnitude(weight, abs_weight), rows, cols, n_cols).astype(dtype))
    if not isinstance(dw, SymbolicZero):  # linear in dw, over the active rows only
        dw = _tangent(dw, weight, abs_weight)
        terms.append(_dw_p.bind(x, dw, rows, cols, block_row, block_start, block_end, n_cols=n_cols,
                                capacity=capacity, block=block).astype(dtype))
    dy = functools.reduce(jnp.add, terms) if terms else jnp.zeros_like(y)
    return y, dy


_product.defjvp(_product_jvp, symbolic_zeros=True)


def _impl(x, weight, rows, cols, block_row, block_start, block_end, *bias, n_cols, capacity, block,
          abs_weight=False):
    y = _product(x, weight, rows, cols, block_row, block_start, block_end, n_cols, capacity, block,
                 bool(abs_weight))
    return y + bias[0] if bias else y


def _linear_impl(x, weight, rows, cols, block_row, block_start, block_end, *bias, n_cols, capacity, block,
                 abs_weight=False):
    """The same values by the CSR product (linear in ``x``: for the transpose rule)."""
    return sparse_product(x, _magnitude(weight, abs_weight), rows, cols, *bias, n_cols=n_cols)


def _window_rule(operands, x_seq, params, dy_seq, index):
    """The sparse window rule, times ``sign(w)`` for a product of ``|w|``."""
    out = sparse_window_xy_to_dw(operands, x_seq, params, dy_seq, index)
    if out is not None and "weight" in out:
        out["weight"] = times_weight_sign(out["weight"], operands, params)
    return out


def _trainables(params, num_invars):
    names = {"weight": 1}
    if num_invars > 7:
        names["bias"] = 7
    return names


_rule = SparseRule()
_mm = define_primitive(
    "etp_event_sparse_mm", _impl, batched=True, trainable_invars_fn=_trainables, trace_rule=_rule,
    transpose_impl=_linear_impl, event_driven=True, window_rule=_window_rule,
)
_mv = define_primitive(
    "etp_event_sparse_mv", _impl, batched=False, trainable_invars_fn=_trainables, trace_rule=_rule,
    batched_partner=_mm, transpose_impl=_linear_impl, event_driven=True, window_rule=_window_rule,
)
etp_event_sparse_mm_p = _mm.primitive
etp_event_sparse_mv_p = _mv.primitive


def event_sparse_matmul(
    x: Any, weight_data: Any, *, structure: EventCSR, bias: Any = None, abs_weight: bool = False
) -> Any:
    r"""ETP-aware event-driven sparse matrix multiplication, ``y = x @ M + b``.

    The same product as :func:`braintrace.sparse_matmul` (and the same online
    learning: the ``weight_data`` values of the nonzeros and ``bias`` are
    trainable), computed from the nonzero entries of ``x`` only:

    .. math:: y_{\ldots c} = \sum_{k:\, col(k) = c,\ x_{\ldots\, row(k)} \ne 0} x_{\ldots\, row(k)}\, w_k + b_c

    A step with more active blocks than ``structure.capacity`` (per batch
    element) takes the CSR product: equal values, higher cost. See the module
    notes for the algorithm.

    Parameters
    ----------
    x : array or Quantity, shape ``(n_rows,)`` or ``(..., n_rows)``
        Input, mostly zeros (spikes). Rank 1 binds ``etp_event_sparse_mv``,
        higher ranks ``etp_event_sparse_mm`` (leading axes are batch axes).
    weight_data : array or Quantity, shape ``(nnz,)``
        Floating-point values of the nonzeros, in CSR data order.
    structure : EventCSR
        The matrix's structure, from :meth:`EventCSR.from_csr`.
    bias : array or Quantity, shape ``(n_cols,)``, optional
        Its unit must match ``unit(x) * unit(weight_data)``.
    abs_weight : bool, default False
        Multiply by ``|weight_data|`` instead (Dale's law with the signs on
        ``x``): the magnitudes are taken of the nonzeros the step reads, not of
        the whole weight at every step. The gradient is that of ``|w|``
        (``sign(w)`` times the gradient of the magnitude).

    Returns
    -------
    array or Quantity, shape ``(..., n_cols)``

    Raises
    ------
    TypeError
        ``structure`` is not an :class:`EventCSR`; a non-floating-point weight or bias.
    ValueError
        ``x``'s last axis is not ``n_rows``; ``weight_data`` is not ``(nnz,)``;
        a bias of the wrong shape or unit.

    Examples
    --------
    >>> import jax.numpy as jnp, saiunit as u
    >>> import braintrace
    >>> csr = u.sparse.CSR.fromdense(jnp.array([[1., 0., 1.], [0., 1., 0.]]))
    >>> s = braintrace.primitives.EventCSR.from_csr(csr)
    >>> w = jnp.array([1., 2., 3.])
    >>> braintrace.primitives.event_sparse_matmul(jnp.array([0., 1.]), w, structure=s).tolist()
    [0.0, 3.0, 0.0]
    >>> braintrace.sparse_matmul(jnp.array([0., 1.]), w, sparse_mat=csr).tolist()
    [0.0, 3.0, 0.0]
    """
    if not isinstance(structure, EventCSR):
        raise TypeError(
            f"braintrace.event_sparse_matmul: `structure` must be an EventCSR (from "
            f"`EventCSR.from_csr(csr)`), got {type(structure).__name__}."
        )
    n_rows, n_cols, nnz = structure.n_rows, structure.n_cols, structure.nnz
    xm, xu = split_unit(x)
    wm, wu = split_unit(weight_data)
    if xm.ndim < 1 or xm.shape[-1] != n_rows:
        raise ValueError(
            f"braintrace.event_sparse_matmul: `x` has shape {xm.shape} but the matrix has shape "
            f"{(n_rows, n_cols)}; x must be (..., {n_rows})."
        )
    if wm.shape != (nnz,):
        raise ValueError(
            f"braintrace.event_sparse_matmul: `weight_data` has shape {wm.shape}; expected ({nnz},), one "
            "value per nonzero of the matrix."
        )
    check_float(wm, op="event_sparse_matmul", arg="weight_data")
    out_unit = unit_product(xu, wu)
    ops = [xm, wm, structure.rows, structure.cols, structure.block_row, structure.block_start,
           structure.block_end]
    if bias is not None:
        bm = mantissa_in(bias, out_unit, op="event_sparse_matmul", arg="bias")
        check_float(bm, op="event_sparse_matmul", arg="bias")
        if bm.shape != (n_cols,):
            raise ValueError(
                f"braintrace.event_sparse_matmul: `bias` has shape {bm.shape}; expected ({n_cols},) to match "
                f"the matrix of shape {(n_rows, n_cols)}."
            )
        ops.append(bm)
    prim = etp_event_sparse_mv_p if xm.ndim == 1 else etp_event_sparse_mm_p
    return with_unit(
        prim.bind(*ops, n_cols=n_cols, capacity=structure.capacity, block=structure.block,
                  abs_weight=bool(abs_weight)),
        out_unit,
    )
