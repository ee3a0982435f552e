r"""A sparse linear layer on spikes: event-driven products and Dale's law.

:class:`EventSparseLinear` is :class:`~braintrace.nn.SparseLinear` for inputs
that are mostly zero (spikes): its product visits the rows of the active
inputs only (:func:`braintrace.primitives.event_sparse_matmul`) when that pays,
and the CSR product of :func:`braintrace.sparse_matmul` otherwise. An optional
sign per input unit keeps every outgoing weight of a unit excitatory or
inhibitory (Dale's law), as :class:`~braintrace.nn.SignedWLinear` does for
dense weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import brainstate
import jax.numpy as jnp
import numpy as np
import saiunit as u

from ..primitives import EventCSR, StructureState, event_sparse_matmul, sparse_matmul
from ..primitives.event_sparse import DEFAULT_BLOCK
from .checks import check_trailing, layer_label, to_size

__all__ = ["EventSparseLinear"]

init = brainstate.nn.init
Initializer = Callable[..., Any] | Any

#: Below this many nonzeros the CSR product is cheap whatever the input: no event path.
EVENT_MIN_NNZ = 4096


class EventSparseLinear(brainstate.nn.Module):
    r"""Sparse linear layer for spiking inputs, event-driven, with optional sign constraints.

    .. math::

        y_{\ldots c} = \sum_{k:\, \mathrm{col}(k) = c} x_{\ldots\, \mathrm{row}(k)}\,
                       σ_{\mathrm{row}(k)}\, |w_k| + b_c
        \quad\text{(with signs } σ\text{)}, \qquad
        y_{\ldots c} = \sum_{k:\, \mathrm{col}(k) = c} x_{\ldots\, \mathrm{row}(k)}\, w_k + b_c
        \quad\text{(without)}.

    With ``w_sign`` every input unit ``i`` has a fixed sign :math:`σ_i`; its
    outgoing weights are :math:`σ_i |w_k|` and keep that sign during training.
    The sign is applied to the input (``x ⊙ σ``, ``n_rows`` values per step)
    rather than to the ``nnz`` weights; the learned parameter is :math:`w`
    and :math:`|w|` is plain JAX before the primitive, as in
    :class:`~braintrace.nn.SignedWLinear`.

    The product is event-driven when ``events`` asks for it: ``'auto'`` takes
    it when ``spar_mat`` is a CSR matrix and its cost model pays, i.e. when the
    blocks it scans plus the nonzeros its capacity allows are at most half the
    nonzeros (``n_blocks + capacity · block <= nnz / 2``) and there are at
    least :data:`EVENT_MIN_NNZ` nonzeros. The gradients are the same on either
    path.

    Parameters
    ----------
    spar_mat : saiunit.sparse.CSR, CSC or COO, shape ``(I, O)``
        Pattern and initial values of :math:`w` (in its data order).
    w_sign : array of +1/-1, shape ``(I,)`` or ``(I, 1)``, optional
        Sign of each input unit's outgoing weights. ``None``: unconstrained
        weights (no ``|·|``).
    events : {'auto', True, False}, default 'auto'
        Whether the product is event-driven. ``True`` needs a CSR matrix.
    max_active : float in (0, 1], default 0.1
        The fraction of the blocks that may be active in one step (per batch
        element) on the event path; a step with more takes the CSR product.
        The event path costs what this allows: set it a few times the expected
        fraction of active inputs (weighted by their out-degree).
    block : int, default 32
        Nonzeros per block of the event path.
    b_init : initializer, array or None, default None
        Bias, shape ``(O,)``.
    in_size : int or tuple of int, optional
        Input size; its last entry must be :math:`I` (default ``(I,)``).
    name : str, optional
        Module name.

    Attributes
    ----------
    weight : brainstate.ParamState
        ``dict(weight=(nnz,))`` plus ``bias=(O,)`` if ``b_init`` is given.
    events : bool
        Whether the product is event-driven.
    structure : EventCSR or None
        The event path's structure (``None`` on the CSR path), as built.
    indices : braintrace.primitives.StructureState
        The index arrays as a state (the event path's
        :attr:`~braintrace.primitives.EventCSR.arrays`, or the ``rows`` and
        ``cols`` of the CSR path): a compiled step receives them as arguments,
        not as constants, which XLA compiles slowly when they are large.

    Raises
    ------
    TypeError
        ``spar_mat`` is not a CSR, CSC or COO matrix; ``events=True`` with a
        matrix that is not CSR.
    ValueError
        ``w_sign`` of the wrong shape or with entries other than +1/-1; a bad
        ``events``, ``max_active`` or ``block``; ``in_size`` not ending in
        :math:`I`; an input of the wrong size (call).

    Examples
    --------
    >>> import jax.numpy as jnp, saiunit as u
    >>> import braintrace
    >>> csr = u.sparse.CSR.fromdense(jnp.array([[1., 0., 2.], [0., 3., 0.]]))
    >>> layer = braintrace.nn.EventSparseLinear(csr, w_sign=jnp.array([1., -1.]), events=True)
    >>> layer(jnp.array([1., 1.])).tolist()
    [1.0, -3.0, 2.0]
    >>> layer.events, braintrace.nn.EventSparseLinear(csr).events   # 'auto': too small to pay
    (True, False)
    """

    def __init__(
        self,
        spar_mat: Any,
        w_sign: Any = None,
        events: bool | str = "auto",
        max_active: float = 0.1,
        block: int = DEFAULT_BLOCK,
        b_init: Initializer | None = None,
        in_size: int | tuple[int, ...] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        if not isinstance(spar_mat, (u.sparse.CSR, u.sparse.CSC, u.sparse.COO)):
            raise TypeError(
                f"{type(self).__name__}: `spar_mat` must be a saiunit.sparse.CSR, CSC or COO matrix, got "
                f"{type(spar_mat).__name__}; build one with e.g. saiunit.sparse.CSR.fromdense(w)."
            )
        n_rows, n_cols = (int(s) for s in spar_mat.shape)
        self.in_size = (n_rows,) if in_size is None else to_size(in_size, type(self).__name__, "in_size")
        self.out_size = self.in_size[:-1] + (n_cols,)
        if self.in_size[-1] != n_rows:
            raise ValueError(
                f"{self._label}: in_size={self.in_size} must end in {n_rows}, the number of rows of "
                f"`spar_mat` (shape {(n_rows, n_cols)})."
            )
        self.spar_mat = spar_mat
        self.w_sign = self._sign(w_sign, n_rows)
        self.structure = self._structure(spar_mat, events, max_active, block)
        self.events = self.structure is not None
        if self.structure is not None:
            self.indices = StructureState(self.structure.arrays)
        else:
            self.indices = StructureState.of_matrix(spar_mat)
        params = dict(weight=spar_mat.data)
        if b_init is not None:
            params["bias"] = init.param(b_init, (n_cols,), allow_none=False)
        self.weight = brainstate.ParamState(params)

    @property
    def _label(self) -> str:
        return layer_label(self, in_size=self.in_size, out_size=self.out_size)

    def _sign(self, w_sign: Any, n_rows: int) -> Any:
        if w_sign is None:
            return None
        sign = np.asarray(w_sign)
        if sign.shape not in ((n_rows,), (n_rows, 1)):
            raise ValueError(
                f"{self._label}: `w_sign` has shape {sign.shape}; give one sign per input unit, shape "
                f"({n_rows},) or ({n_rows}, 1)."
            )
        if not np.all(np.abs(sign) == 1):
            raise ValueError(
                f"{self._label}: `w_sign` must contain only +1 and -1, got values "
                f"{sorted(set(np.unique(sign).tolist()))}."
            )
        return jnp.asarray(sign.reshape(n_rows), dtype=brainstate.environ.dftype())

    def _structure(self, spar_mat: Any, events: Any, max_active: float, block: int) -> EventCSR | None:
        if events not in ("auto", True, False):
            raise ValueError(f"{self._label}: events={events!r} must be 'auto', True or False.")
        if events is False:
            return None
        if not isinstance(spar_mat, u.sparse.CSR):
            if events is True:
                raise TypeError(
                    f"{self._label}: events=True needs a saiunit.sparse.CSR matrix (the event path visits "
                    f"the nonzeros row by row), got {type(spar_mat).__name__}."
                )
            return None
        structure = EventCSR.from_csr(spar_mat, block=block, max_active=max_active)
        if events == "auto":
            work = structure.n_blocks + structure.capacity * structure.block
            if structure.nnz < EVENT_MIN_NNZ or 2 * work > structure.nnz:
                return None
        return structure

    def update(self, x: Any) -> Any:
        """One forward pass.

        Parameters
        ----------
        x : array or Quantity, shape ``(..., *in_size)``
            The input (spikes, for the event path to pay).

        Returns
        -------
        array or Quantity, shape ``(..., *out_size)``
        """
        check_trailing(self._label, x, self.in_size)
        params = self.weight.value
        w = params["weight"]
        signed = self.w_sign is not None
        if signed:
            x = x * self.w_sign
        if self.structure is not None:  # |w| of the nonzeros each step reads
            structure = self.structure.with_arrays(self.indices.value)
            return event_sparse_matmul(x, w, structure=structure, bias=params.get("bias"), abs_weight=signed)
        w = u.math.abs(w) if signed else w
        return sparse_matmul(x, w, sparse_mat=self.indices.matrix(w, self.spar_mat.shape), bias=params.get("bias"))
