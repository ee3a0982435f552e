r"""Dense, sign-constrained, weight-standardised, sparse and low-rank linear layers.

Each layer keeps one ``brainstate.ParamState`` (or the ``param_type`` given)
called ``weight`` holding a dict (``weight``, and ``bias`` unless
``b_init=None``; ``gain``, ``lora_a``/``lora_b`` where relevant; a bare array for
:class:`SignedWLinear`) and computes its output through an ETP primitive, so the weight
learns online whenever the output reaches a hidden state. A transform of the
weight (``|W| * sign``, weight standardisation, a mask) is plain JAX applied to
the parameter value *before* the primitive; the compiler traces the primitive's
weight operand back to the ``ParamState`` through such transforms.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import brainstate
import jax
import jax.numpy as jnp
import numpy as np
import saiunit as u

from ..errors import ArgumentTypeError, InvalidArgumentError
from ..primitives import StructureState, lora_matmul, matmul, sparse_matmul
from .checks import check_trailing, layer_label, make_param, to_size

__all__ = ["Linear", "SignedWLinear", "ScaledWSLinear", "SparseLinear", "LoRA"]

init = brainstate.nn.init
Initializer = Callable[..., Any] | Any


class _Dense(brainstate.nn.Module):
    """Sizes, the input check and the error label shared by the dense layers.

    Only the last axis of the input is checked: leading axes (batch, time,
    the leading entries of ``in_size``) are carried through unchanged.
    """

    def _set_sizes(self, in_size: Any, out_size: Any) -> None:
        label = type(self).__name__
        self.in_size = to_size(in_size, label, "in_size")
        self.out_size = to_size(out_size, label, "out_size")
        if self.in_size[:-1] != self.out_size[:-1]:
            raise InvalidArgumentError(
                f"{self._label}: all but the last axis of in_size and out_size must agree "
                f"(the leading axes are carried through unchanged), got in_size={self.in_size} "
                f"and out_size={self.out_size}."
            )

    @property
    def _label(self) -> str:
        return layer_label(self, in_size=self.in_size, out_size=self.out_size)

    def _check(self, x: Any) -> None:
        check_trailing(self._label, x, self.in_size[-1:])


class Linear(_Dense):
    r"""Dense layer whose weight and bias learn online, ``y = x W + b``.

    Drop-in for :class:`brainstate.nn.Linear`; the product goes through
    :func:`braintrace.matmul`.

    .. math:: y_{\ldots o} = \sum_i x_{\ldots i} (W \odot M)_{io} + b_o

    with :math:`M` the optional fixed mask ``w_mask``.

    Parameters
    ----------
    in_size : int or tuple of int
        Input size; the last entry :math:`I` is contracted. Leading entries
        must equal those of ``out_size``; they are not checked against the
        input (any ``(..., I)`` input is accepted).
    out_size : int or tuple of int
        Output size; the last entry is :math:`O`.
    w_init : initializer or array, default ``KaimingNormal()``
        Weight of shape ``(I, O)``; an array may carry a saiunit unit.
    b_init : initializer, array or None, default ``ZeroInit()``
        Bias of shape ``(O,)``; ``None`` gives no bias (no ``'bias'`` key).
        Its unit must be ``unit(x) * unit(W)``.
    w_mask : array or initializer, optional
        Fixed (not learned) mask of shape ``(I, O)`` multiplied into the weight.
    name : str, optional
        Module name, used in error messages.
    param_type : type, default ``brainstate.ParamState``
        The state class holding the parameters.

    Attributes
    ----------
    in_size, out_size : tuple of int
    weight : brainstate.ParamState
        ``dict(weight=(I, O), bias=(O,))`` (``bias`` absent when ``b_init=None``).
    w_mask : array or None

    Raises
    ------
    InvalidArgumentError
        At construction, when the leading entries of ``in_size`` and
        ``out_size`` differ (a ``ValueError`` and an ``AssertionError``).
    ShapeMismatchError
        At call time, when the input's last axis is not :math:`I` (a
        ``ValueError`` and a ``TypeError``).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> layer = braintrace.nn.Linear(3, 4)
    >>> layer(jnp.ones((2, 3))).shape
    (2, 4)
    >>> sorted(layer.weight.value)
    ['bias', 'weight']
    """

    def __init__(
        self,
        in_size: int | tuple[int, ...],
        out_size: int | tuple[int, ...],
        w_init: Initializer = init.KaimingNormal(),
        b_init: Initializer | None = init.ZeroInit(),
        w_mask: Any = None,
        name: str | None = None,
        param_type: type = brainstate.ParamState,
    ) -> None:
        super().__init__(name=name)
        self._set_sizes(in_size, out_size)
        shape = (self.in_size[-1], self.out_size[-1])
        self.w_mask = init.param(w_mask, shape)
        params = dict(weight=init.param(w_init, shape, allow_none=False))
        if b_init is not None:
            params["bias"] = init.param(b_init, (self.out_size[-1],), allow_none=False)
        self.weight = make_param(param_type, params, self._label)

    def update(self, x: Any) -> Any:
        """One forward pass.

        Parameters
        ----------
        x : array_like
            The input, shape ``(..., I)`` (only the last axis is checked).

        Returns
        -------
        jax.Array
            ``x W + b``, shape ``(..., O)``.
        """
        self._check(x)
        params = self.weight.value
        w = params["weight"]
        if self.w_mask is not None:
            w = w * self.w_mask
        return matmul(x, w, params.get("bias"))


class SignedWLinear(_Dense):
    r"""Linear layer with sign-constrained weights, for excitatory/inhibitory networks.

    The learned parameter :math:`W` is unconstrained; the effective weight is
    :math:`|W| \odot S` with a fixed sign array :math:`S \in \{-1, +1\}`, so each
    connection keeps its sign during training (Dale's law when ``S`` is constant
    along the output axis).

    .. math:: y_{\ldots o} = \sum_i x_{\ldots i}\, |W_{io}|\, S_{io}

    There is no bias (as in :class:`brainstate.nn.SignedWLinear`). The transform :math:`|W| \odot S` is plain JAX; the product goes through
    :func:`braintrace.matmul`.

    Parameters
    ----------
    in_size, out_size : int or tuple of int
        As in :class:`Linear`.
    w_init : initializer or array, default ``KaimingNormal()``
        :math:`W`, shape ``(I, O)``.
    w_sign : array of +1/-1, optional
        :math:`S`, shape broadcastable to ``(I, O)`` (``(I, 1)`` gives one sign
        per presynaptic unit). ``None`` means all positive.
    name : str, optional
        Module name.
    param_type : type, default ``brainstate.ParamState``
        The state class holding the parameter.

    Attributes
    ----------
    weight : brainstate.ParamState
        :math:`W` itself, a bare array of shape ``(I, O)``.
    w_sign : array or None

    Raises
    ------
    InvalidArgumentError
        ``w_sign`` of the wrong shape or with entries other than +1/-1
        (construction).
    ShapeMismatchError
        An input whose last axis is not :math:`I` (call).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> sign = jnp.array([[1.], [1.], [-1.]])   # third input unit is inhibitory
    >>> layer = braintrace.nn.SignedWLinear(3, 2, w_init=jnp.ones((3, 2)), w_sign=sign)
    >>> layer(jnp.ones(3)).tolist()
    [1.0, 1.0]
    """

    def __init__(
        self,
        in_size: int | tuple[int, ...],
        out_size: int | tuple[int, ...],
        w_init: Initializer = init.KaimingNormal(),
        w_sign: Any = None,
        name: str | None = None,
        param_type: type = brainstate.ParamState,
    ) -> None:
        super().__init__(name=name)
        self._set_sizes(in_size, out_size)
        shape = (self.in_size[-1], self.out_size[-1])
        if w_sign is not None:
            sign = np.asarray(w_sign)
            try:
                np.broadcast_shapes(sign.shape, shape)
                ok_shape = np.broadcast_shapes(sign.shape, shape) == shape
            except ValueError:
                ok_shape = False
            if not ok_shape:
                raise InvalidArgumentError(
                    f"{self._label}: `w_sign` has shape {sign.shape}, which does not broadcast to the "
                    f"weight shape {shape}."
                )
            if not np.all(np.abs(sign) == 1):
                raise InvalidArgumentError(
                    f"{self._label}: `w_sign` must contain only +1 and -1, got values "
                    f"{sorted(set(np.unique(sign).tolist()))}. Use a Linear with `w_mask` to remove connections."
                )
            w_sign = jnp.asarray(sign, dtype=brainstate.environ.dftype())
        self.w_sign = w_sign
        self.weight = make_param(param_type, init.param(w_init, shape, allow_none=False), self._label)

    def update(self, x: Any) -> Any:
        """One forward pass; ``x`` has shape ``(..., I)``."""
        self._check(x)
        w = u.math.abs(self.weight.value)
        if self.w_sign is not None:
            w = w * self.w_sign
        return matmul(x, w)


def _standardize(w: Any, eps: float, gain: Any) -> Any:
    """Weight standardisation over the fan-in axis (plain JAX, flat primitives)."""
    fan_in = w.shape[0]
    mean = u.math.mean(w, axis=0, keepdims=True)
    var = u.math.mean((w - mean) ** 2, axis=0, keepdims=True)
    scale = jax.lax.rsqrt(jnp.maximum(var * fan_in, eps))
    if gain is not None:
        scale = gain * scale
    return (w - mean) * scale


class ScaledWSLinear(_Dense):
    r"""Linear layer with weight standardisation (Qiao et al., 2019).

    The weight is standardised over its fan-in before every product; an optional
    learnable per-output gain :math:`g` rescales it:

    .. math::

        \hat W_{io} = g_o\, \frac{W_{io} - \mu_o}{\sqrt{\max(I \sigma_o^2, \epsilon)}}, \qquad
        y_{\ldots o} = \sum_i x_{\ldots i} (\hat W \odot M)_{io} + b_o

    with :math:`\mu_o, \sigma_o^2` the mean and variance of column :math:`W_{:o}`.
    The standardisation is plain JAX on the parameter values (it mixes the
    entries of a column, so :math:`W` and :math:`g` receive their online gradient
    through :math:`\hat W`); the product goes through :func:`braintrace.matmul`.

    Parameters
    ----------
    in_size, out_size : int or tuple of int
        As in :class:`Linear`.
    w_init : initializer or array, default ``KaimingNormal()``
        :math:`W`, shape ``(I, O)``. Unitless.
    b_init : initializer, array or None, default ``ZeroInit()``
        Bias, shape ``(O,)``.
    w_mask : array or initializer, optional
        Fixed mask, shape ``(I, O)`` or ``(I, 1)``.
    ws_gain : bool, default True
        Learn the gain :math:`g` of shape ``(1, O)`` (initialised to ones).
    eps : float, default 1e-4
        :math:`\epsilon`.
    name : str, optional
        Module name.
    param_type : type, default ``brainstate.ParamState``
        The state class holding the parameters.

    Attributes
    ----------
    weight : brainstate.ParamState
        ``dict(weight=(I, O), bias=(O,), gain=(1, O))`` (``bias``/``gain`` optional).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> layer = braintrace.nn.ScaledWSLinear(3, 2)
    >>> layer(jnp.ones((5, 3))).shape
    (5, 2)

    References
    ----------
    .. [1] Qiao, S., Wang, H., Liu, C., Shen, W., & Yuille, A. (2019). Micro-batch
       training with batch-channel normalization and weight standardization.
       arXiv:1903.10520.
    """

    def __init__(
        self,
        in_size: int | tuple[int, ...],
        out_size: int | tuple[int, ...],
        w_init: Initializer = init.KaimingNormal(),
        b_init: Initializer | None = init.ZeroInit(),
        w_mask: Any = None,
        ws_gain: bool = True,
        eps: float = 1e-4,
        name: str | None = None,
        param_type: type = brainstate.ParamState,
    ) -> None:
        super().__init__(name=name)
        self._set_sizes(in_size, out_size)
        shape = (self.in_size[-1], self.out_size[-1])
        self.w_mask = init.param(w_mask, (self.in_size[-1], 1))
        self.eps = eps
        params = dict(weight=init.param(w_init, shape, allow_none=False))
        if b_init is not None:
            params["bias"] = init.param(b_init, (self.out_size[-1],), allow_none=False)
        if ws_gain:
            params["gain"] = jnp.ones((1, shape[1]), dtype=params["weight"].dtype)
        self.weight = make_param(param_type, params, self._label)

    def update(self, x: Any) -> Any:
        """One forward pass; ``x`` has shape ``(..., I)``."""
        self._check(x)
        params = self.weight.value
        w = _standardize(params["weight"], self.eps, params.get("gain"))
        if self.w_mask is not None:
            w = w * self.w_mask
        return matmul(x, w, params.get("bias"))


class SparseLinear(brainstate.nn.Module):
    r"""Linear layer with a fixed sparsity pattern; only the nonzero values learn.

    .. math:: y_{\ldots c} = \sum_{k:\, \mathrm{col}(k) = c} x_{\ldots\, \mathrm{row}(k)}\, w_k + b_c

    The product goes through :func:`braintrace.sparse_matmul`; :math:`w` (the
    ``nnz`` values, in ``spar_mat``'s data order) is initialised from
    ``spar_mat.data``.

    Parameters
    ----------
    spar_mat : saiunit.sparse.CSR, CSC or COO, shape ``(I, O)``
        Pattern and initial values.
    b_init : initializer, array or None, default None
        Bias, shape ``(O,)``.
    in_size : int or tuple of int, optional
        Input size; its last entry must be :math:`I` (default ``(I,)``).
    name : str, optional
        Module name.
    param_type : type, default ``brainstate.ParamState``
        The state class holding the parameters.

    Attributes
    ----------
    weight : brainstate.ParamState
        ``dict(weight=(nnz,))`` plus ``bias=(O,)`` if ``b_init`` is given.
    spar_mat : saiunit.sparse.SparseMatrix
        The fixed pattern.
    indices : braintrace.primitives.StructureState
        The pattern's ``rows`` and ``cols`` as a state: a compiled step receives
        them as arguments, not as constants, which XLA compiles slowly when
        they are large.
    in_size, out_size : tuple of int
        ``out_size`` is ``in_size[:-1] + (O,)``.

    Raises
    ------
    ArgumentTypeError
        ``spar_mat`` is not a CSR, CSC or COO matrix, e.g. a dense array (a
        ``TypeError`` and an ``AssertionError``).
    InvalidArgumentError
        ``in_size`` does not end in :math:`I`.
    ShapeMismatchError
        An input whose last axis is not :math:`I` (call).

    Examples
    --------
    >>> import jax.numpy as jnp, saiunit as u
    >>> import braintrace
    >>> csr = u.sparse.CSR.fromdense(jnp.array([[1., 0., 2.], [0., 3., 0.]]))
    >>> layer = braintrace.nn.SparseLinear(csr)
    >>> layer(jnp.array([1., 1.])).tolist()
    [1.0, 3.0, 2.0]
    """

    def __init__(
        self,
        spar_mat: Any,
        b_init: Initializer | None = None,
        in_size: int | tuple[int, ...] | None = None,
        name: str | None = None,
        param_type: type = brainstate.ParamState,
    ) -> None:
        super().__init__(name=name)
        if not isinstance(spar_mat, (u.sparse.CSR, u.sparse.CSC, u.sparse.COO)):
            raise ArgumentTypeError(
                f"{type(self).__name__}: `spar_mat` must be a saiunit.sparse.CSR, CSC or COO matrix, got "
                f"{type(spar_mat).__name__}; build one with e.g. saiunit.sparse.CSR.fromdense(w)."
            )
        n_rows, n_cols = (int(s) for s in spar_mat.shape)
        self.in_size = (n_rows,) if in_size is None else to_size(in_size, type(self).__name__, "in_size")
        self.out_size = self.in_size[:-1] + (n_cols,)
        if self.in_size[-1] != n_rows:
            raise InvalidArgumentError(
                f"{self._label}: in_size={self.in_size} must end in {n_rows}, the number of rows of "
                f"`spar_mat` (shape {(n_rows, n_cols)})."
            )
        self.spar_mat = spar_mat
        self.indices = StructureState.of_matrix(spar_mat)
        params = dict(weight=spar_mat.data)
        if b_init is not None:
            params["bias"] = init.param(b_init, (n_cols,), allow_none=False)
        self.weight = make_param(param_type, params, self._label)

    @property
    def _label(self) -> str:
        return layer_label(self, in_size=self.in_size, out_size=self.out_size)

    def update(self, x: Any) -> Any:
        """One forward pass; ``x`` has shape ``(..., I)``."""
        check_trailing(self._label, x, self.in_size[-1:])
        params = self.weight.value
        w = params["weight"]
        return sparse_matmul(x, w, sparse_mat=self.indices.matrix(w, self.spar_mat.shape), bias=params.get("bias"))


class LoRA(brainstate.nn.Module):
    r"""Low-rank adapter (Hu et al., 2021), optionally added to a base module.

    .. math:: y = \alpha\, (x A_{\downarrow}) A_{\uparrow} + b \;[+\; \mathrm{base}(x)]

    with :math:`A_{\downarrow}` = ``lora_a`` of shape ``(I, r)`` and
    :math:`A_{\uparrow}` = ``lora_b`` of shape ``(r, O)`` (brainstate's names and
    layout). The product goes through :func:`braintrace.lora_matmul` (its ``B``
    is ``lora_a``, its ``A`` is ``lora_b``), which keeps one eligibility trace
    of the effective weight :math:`\alpha A_{\downarrow} A_{\uparrow}`.

    Parameters
    ----------
    in_features : int
        :math:`I`.
    lora_rank : int
        :math:`r`.
    out_features : int
        :math:`O`.
    base_module : callable, optional
        Added to the adapter's output, e.g. a frozen :class:`Linear`.
    kernel_init : initializer, default ``LecunNormal()``
        For ``lora_a`` and ``lora_b``.
    param_type : type, default ``brainstate.ParamState``
        The state class holding the parameters.
    in_size : int or tuple of int, optional
        Input size ending in :math:`I` (default ``(I,)``); ``out_size`` is
        ``in_size[:-1] + (O,)``.
    alpha : float, default 1.0
        Static scale :math:`\alpha`.
    b_init : initializer, array or None, default None
        Bias :math:`b`, shape ``(O,)``.
    name : str, optional
        Module name.

    Attributes
    ----------
    weight : brainstate.ParamState
        ``dict(lora_a=(I, r), lora_b=(r, O))`` plus ``bias=(O,)`` if given.
    in_features, out_features, lora_rank : int
    in_size, out_size : tuple of int
    base_module : callable or None

    Raises
    ------
    ArgumentTypeError
        ``base_module`` is not callable (construction).
    InvalidArgumentError
        ``in_size`` does not end in :math:`I` (construction).
    ShapeMismatchError
        An input whose last axis is not :math:`I` (call).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> lora = braintrace.nn.LoRA(4, 2, 3, kernel_init=lambda shape: jnp.ones(shape), alpha=0.5)
    >>> lora(jnp.ones((1, 4))).tolist()
    [[4.0, 4.0, 4.0]]

    References
    ----------
    .. [1] Hu, E. J. et al. (2021). LoRA: Low-rank adaptation of large language
       models. arXiv:2106.09685.
    """

    def __init__(
        self,
        in_features: int,
        lora_rank: int,
        out_features: int,
        *,
        base_module: Callable[[Any], Any] | None = None,
        kernel_init: Initializer = init.LecunNormal(),
        param_type: type = brainstate.ParamState,
        in_size: int | tuple[int, ...] | None = None,
        alpha: float = 1.0,
        b_init: Initializer | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        label = type(self).__name__
        self.in_features = to_size(in_features, label, "in_features")[0]
        self.out_features = to_size(out_features, label, "out_features")[0]
        self.lora_rank = to_size(lora_rank, label, "lora_rank")[0]
        self.in_size = (self.in_features,) if in_size is None else to_size(in_size, label, "in_size")
        self.out_size = self.in_size[:-1] + (self.out_features,)
        if self.in_size[-1] != self.in_features:
            raise InvalidArgumentError(
                f"{self._label}: in_size={self.in_size} must end in in_features={self.in_features}."
            )
        if base_module is not None and not callable(base_module):
            raise ArgumentTypeError(f"{self._label}: `base_module` must be callable, got {type(base_module).__name__}.")
        self.base_module = base_module
        self.alpha = float(alpha)
        params = dict(
            lora_a=init.param(kernel_init, (self.in_features, self.lora_rank), allow_none=False),
            lora_b=init.param(kernel_init, (self.lora_rank, self.out_features), allow_none=False),
        )
        if b_init is not None:
            params["bias"] = init.param(b_init, (self.out_features,), allow_none=False)
        self.weight = make_param(param_type, params, self._label)

    @property
    def _label(self) -> str:
        return layer_label(self, in_features=self.in_features, lora_rank=self.lora_rank,
                           out_features=self.out_features)

    def update(self, x: Any) -> Any:
        """One forward pass; ``x`` has shape ``(..., I)``."""
        check_trailing(self._label, x, self.in_size[-1:])
        params = self.weight.value
        y = lora_matmul(x, params["lora_a"], params["lora_b"], alpha=self.alpha, bias=params.get("bias"))
        if self.base_module is not None:
            y = y + self.base_module(x)
        return y
