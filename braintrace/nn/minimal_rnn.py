r"""Minimal gated recurrent cells: MinimalRNN, minGRU and minLSTM in the braintrace 0.2.0 form.

Each cell blends its hidden state with an input embedding through sigmoid gates
computed from the input and the previous state:

* :class:`MinimalRNNCell` (Chen, 2017): the embedding is ``phi(x)``, one gate.
* :class:`MiniGRU`: one update gate, the embedding a linear map of the input.
* :class:`MiniLSTM`: separate forget and input gates, unnormalised.

The gates read :math:`[x^t, h^{t-1}]` (concatenation along the last axis), as in
braintrace 0.2.0; the papers' minGRU/minLSTM (Feng et al., 2024) read the input
only. Weights sit in :class:`braintrace.nn.Linear` sub-layers named as in 0.2.0
(``phi``, ``W_u``, ``W_x``, ``W_z``, ``W_f``, ``W_i``). Notation and input checks
are those of :mod:`braintrace.nn.rnn`: :math:`x^t` of size :math:`I`,
:math:`h^t` of size :math:`N`, :math:`\sigma` the logistic sigmoid,
:math:`W_g[\cdot]` the ``Linear`` sub-layer ``W_g`` (weight and bias).

Because the gates read :math:`h^{t-1}`, the cut Jacobian
:math:`\partial h^t/\partial h^{t-1}` is not diagonal: D_RTRL keeps its diagonal
(the exact part of an element-wise recurrence), as for :class:`~braintrace.nn.GRUCell`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import brainstate
import jax
import jax.numpy as jnp

from ..errors import ArgumentTypeError
from .rnn import Initializer, _CellBase

__all__ = ["MinimalRNNCell", "MiniGRU", "MiniLSTM"]

init = brainstate.nn.init


class MinimalRNNCell(_CellBase):
    r"""MinimalRNN (Chen, 2017): the input is embedded once, the state blends it in.

    .. math::

        z^t &= \phi(x^t) \\
        u^t &= \sigma\big(W_u[z^t, h^{t-1}]\big) \\
        h^t &= u^t \odot h^{t-1} + (1 - u^t) \odot z^t

    Parameters
    ----------
    in_size : int
        :math:`I`.
    out_size : int
        :math:`N`.
    w_init : initializer, default ``Orthogonal()``
        Weights of ``W_u`` (shape ``(2N, N)``) and of the default ``phi``
        (shape ``(I, N)``).
    b_init : initializer or None, default ``ZeroInit()``
        Their biases, shape ``(N,)``.
    state_init : initializer or array, default ``ZeroInit()``
        Initial :math:`h`.
    phi : callable, optional
        The embedding :math:`\phi`, mapping ``(..., I)`` to ``(..., N)``; a
        module (e.g. ``braintrace.nn.Linear(I, N)`` followed by a
        non-linearity) is registered as a sub-module. Default
        ``braintrace.nn.Linear(I, N, w_init, b_init)``.
    name : str, optional
        Module name.

    Attributes
    ----------
    h : brainstate.HiddenState
        Shape ``(N,)`` or ``(B, N)``.
    phi : callable
        The embedding; by default a ``Linear`` with ParamState path ``('phi', 'weight')``.
    W_u : Linear
        ParamState path ``('W_u', 'weight')``.

    Raises
    ------
    ArgumentTypeError
        ``phi`` is not callable (construction).

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.MinimalRNNCell(3, 5)
    >>> _ = brainstate.nn.init_all_states(cell, 2)
    >>> cell(jnp.ones((2, 3))).shape
    (2, 5)
    >>> cell.phi.weight.value['weight'].shape, cell.W_u.weight.value['weight'].shape
    ((3, 5), (10, 5))

    References
    ----------
    .. [1] Chen, M. (2017). MinimalRNN: Toward more interpretable and trainable
       recurrent neural networks. arXiv:1711.06788.
    """

    def __init__(
        self,
        in_size: int,
        out_size: int,
        w_init: Initializer = init.Orthogonal(),
        b_init: Initializer | None = init.ZeroInit(),
        state_init: Initializer = init.ZeroInit(),
        phi: Callable[[Any], Any] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(in_size, out_size, state_init, name)
        if phi is None:
            phi = self._linear(self.num_in, w_init, b_init)
        elif not callable(phi):
            raise ArgumentTypeError(f"{self._label}: `phi` must be callable, got {type(phi).__name__}.")
        self.phi = phi
        self.W_u = self._linear(2 * self.num_out, w_init, b_init)

    def update(self, x: Any) -> Any:
        """One step; ``x`` of shape ``(I,)`` or ``(B, I)``; returns :math:`h^t`."""
        self._check(x)
        h = self.h.value
        z = self.phi(x)
        gate = jax.nn.sigmoid(self.W_u(jnp.concatenate([z, h], axis=-1)))
        h = gate * h + (1 - gate) * z
        self.h.value = h
        return h


class MiniGRU(_CellBase):
    r"""Minimal GRU: one update gate between the state and a linear embedding of the input.

    .. math::

        z^t &= \sigma\big(W_z[x^t, h^{t-1}]\big), \qquad \tilde h^t = W_x x^t \\
        h^t &= (1 - z^t) \odot h^{t-1} + z^t \odot \tilde h^t

    Parameters
    ----------
    in_size : int
        :math:`I`.
    out_size : int
        :math:`N`.
    w_init : initializer, default ``Orthogonal()``
        Weights of ``W_x`` (shape ``(I, N)``) and ``W_z`` (shape ``(I + N, N)``).
    b_init : initializer or None, default ``ZeroInit()``
        Their biases, shape ``(N,)``.
    state_init : initializer or array, default ``ZeroInit()``
        Initial :math:`h`.
    name : str, optional
        Module name.

    Attributes
    ----------
    h : brainstate.HiddenState
        Shape ``(N,)`` or ``(B, N)``.
    W_x, W_z : Linear
        ParamState paths ``('W_x', 'weight')``, ``('W_z', 'weight')``.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.MiniGRU(3, 5)
    >>> _ = brainstate.nn.init_all_states(cell, 2)
    >>> cell(jnp.ones((2, 3))).shape
    (2, 5)

    References
    ----------
    .. [1] Feng, L., Tung, F., Ahmed, M. O., Bengio, Y., & Hajimirsadeghi, H.
       (2024). Were RNNs all we needed? arXiv:2410.01201.
    """

    def __init__(
        self,
        in_size: int,
        out_size: int,
        w_init: Initializer = init.Orthogonal(),
        b_init: Initializer | None = init.ZeroInit(),
        state_init: Initializer = init.ZeroInit(),
        name: str | None = None,
    ) -> None:
        super().__init__(in_size, out_size, state_init, name)
        self.W_x = self._linear(self.num_in, w_init, b_init)
        self.W_z = self._linear(self.num_in + self.num_out, w_init, b_init)

    def update(self, x: Any) -> Any:
        """One step; ``x`` of shape ``(I,)`` or ``(B, I)``; returns :math:`h^t`."""
        self._check(x)
        h = self.h.value
        z = jax.nn.sigmoid(self.W_z(jnp.concatenate([x, h], axis=-1)))
        h = (1 - z) * h + z * self.W_x(x)
        self.h.value = h
        return h


class MiniLSTM(_CellBase):
    r"""Minimal LSTM: forget and input gates, no cell state and no output gate.

    .. math::

        f^t &= \sigma\big(W_f[x^t, h^{t-1}]\big), \quad
        i^t = \sigma\big(W_i[x^t, h^{t-1}]\big), \quad \tilde h^t = W_x x^t \\
        h^t &= f^t \odot h^{t-1} + i^t \odot \tilde h^t

    The gates are not normalised (:math:`f + i \ne 1` in general), as in
    braintrace 0.2.0.

    Parameters
    ----------
    in_size : int
        :math:`I`.
    out_size : int
        :math:`N`.
    w_init : initializer, default ``Orthogonal()``
        Weights of ``W_x`` (shape ``(I, N)``), ``W_f`` and ``W_i`` (shape ``(I + N, N)``).
    b_init : initializer or None, default ``ZeroInit()``
        Their biases, shape ``(N,)``.
    state_init : initializer or array, default ``ZeroInit()``
        Initial :math:`h`.
    name : str, optional
        Module name.

    Attributes
    ----------
    h : brainstate.HiddenState
        Shape ``(N,)`` or ``(B, N)``.
    W_x, W_f, W_i : Linear
        ParamState paths ``('W_x', 'weight')``, ``('W_f', 'weight')``, ``('W_i', 'weight')``.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.MiniLSTM(3, 5)
    >>> _ = brainstate.nn.init_all_states(cell)
    >>> cell(jnp.ones(3)).shape
    (5,)

    References
    ----------
    .. [1] Feng, L., Tung, F., Ahmed, M. O., Bengio, Y., & Hajimirsadeghi, H.
       (2024). Were RNNs all we needed? arXiv:2410.01201.
    """

    def __init__(
        self,
        in_size: int,
        out_size: int,
        w_init: Initializer = init.Orthogonal(),
        b_init: Initializer | None = init.ZeroInit(),
        state_init: Initializer = init.ZeroInit(),
        name: str | None = None,
    ) -> None:
        super().__init__(in_size, out_size, state_init, name)
        n = self.num_in + self.num_out
        self.W_x = self._linear(self.num_in, w_init, b_init)
        self.W_f = self._linear(n, w_init, b_init)
        self.W_i = self._linear(n, w_init, b_init)

    def update(self, x: Any) -> Any:
        """One step; ``x`` of shape ``(I,)`` or ``(B, I)``; returns :math:`h^t`."""
        self._check(x)
        h = self.h.value
        xh = jnp.concatenate([x, h], axis=-1)
        f = jax.nn.sigmoid(self.W_f(xh))
        i = jax.nn.sigmoid(self.W_i(xh))
        h = f * h + i * self.W_x(x)
        self.h.value = h
        return h
