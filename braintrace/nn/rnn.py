r"""Gated recurrent cells whose weights learn online.

Every cell is a :class:`brainstate.nn.RNNCell` advancing one time step per
``update(x)``. Each weight sits in its own :class:`braintrace.nn.Linear`
sub-layer (one per gate, never one fused matrix split afterwards), so that every
ETP product has the shape of the hidden state it drives: a product that is
sliced before reaching a state cannot be connected to it by the compiler.
``update`` uses only element-wise operations and concatenation (no ``cond``,
``scan`` or ``while``).

Notation: :math:`x^t` input of size :math:`I` (``in_size``), :math:`h^t` hidden
state of size :math:`N` (``out_size``), :math:`[a, b]` concatenation along the
last axis, :math:`\sigma` the logistic sigmoid, :math:`\phi` the ``activation``,
:math:`\odot` the element-wise product. :math:`W_g[\cdot]` is the ``Linear``
sub-layer named ``Wg`` (weight and bias).

Every ``update`` raises :class:`~braintrace.errors.ShapeMismatchError` (a
``ValueError`` and a ``TypeError``) naming the cell when the input's last axis
is not :math:`I` or its batch shape differs from the hidden state's. An
``activation`` that is neither a known name nor a callable raises
:class:`~braintrace.errors.ArgumentTypeError` at construction.

The minimal gated cells (:class:`~braintrace.nn.MinimalRNNCell`,
:class:`~braintrace.nn.MiniGRU`, :class:`~braintrace.nn.MiniLSTM`) are in
:mod:`braintrace.nn.minimal_rnn`; :class:`~braintrace.nn.LRUCell` is in
:mod:`braintrace.nn.linear_rnn`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import brainstate
import jax
import jax.numpy as jnp
import numpy as np

from ..primitives import element_wise
from .checks import check_batch, check_trailing, get_activation, layer_label, to_size
from .linear import Linear

__all__ = [
    "VanillaRNNCell",
    "ValinaRNNCell",
    "GRUCell",
    "LSTMCell",
    "MGUCell",
    "URLSTMCell",
]

init = brainstate.nn.init
Initializer = Callable[..., Any] | Any


def _init_value(initializer: Initializer, size: int, batch_size: int | None) -> Any:
    """``init.param`` that also broadcasts a scalar initial value to the full state shape."""
    value = init.param(initializer, (size,), batch_size)
    shape = (size,) if batch_size is None else (batch_size, size)
    if np.ndim(value) == 0:
        value = jnp.full(shape, value, dtype=brainstate.environ.dftype())
    return value


class _CellBase(brainstate.nn.RNNCell):
    """Sizes, hidden states (listed in ``_state_names``, each of size N) and the input check."""

    _state_names: tuple[str, ...] = ("h",)

    def __init__(
        self,
        in_size: int | tuple[int],
        out_size: int | tuple[int],
        state_init: Initializer,
        name: str | None,
    ) -> None:
        super().__init__(name=name)
        label = type(self).__name__
        size_in = to_size(in_size, label, "in_size")
        size_out = to_size(out_size, label, "out_size")
        for arg, size in (("in_size", size_in), ("out_size", size_out)):
            if len(size) != 1:
                raise ValueError(f"{label}: `{arg}` must be an int (a cell is 1-D), got {size}.")
        self.num_in, self.num_out = size_in[0], size_out[0]
        self.in_size = size_in
        self.out_size = size_out
        self._state_initializer = state_init

    @property
    def _label(self) -> str:
        return layer_label(self, in_size=self.num_in, out_size=self.num_out)

    def init_state(self, batch_size: int | None = None, **kwargs: Any) -> None:
        """Create the hidden states, shape ``(N,)`` or ``(batch_size, N)``.

        Parameters
        ----------
        batch_size : int, optional
            Size of a leading batch axis; ``None`` (default) for unbatched states.
        **kwargs
            Ignored (the ``brainstate.nn.Module`` signature).
        """
        for s in self._state_names:
            setattr(self, s, brainstate.HiddenState(_init_value(self._state_initializer, self.num_out, batch_size)))

    def reset_state(self, batch_size: int | None = None, **kwargs: Any) -> None:
        """Reset the hidden states in place (same objects), shape ``(N,)`` or ``(batch_size, N)``.

        Parameters
        ----------
        batch_size : int, optional
            Size of a leading batch axis; ``None`` (default) for unbatched states.
        **kwargs
            Ignored (the ``brainstate.nn.Module`` signature).
        """
        for s in self._state_names:
            getattr(self, s).value = _init_value(self._state_initializer, self.num_out, batch_size)

    def _check(self, x: Any) -> None:
        check_trailing(self._label, x, self.in_size)
        check_batch(self._label, x, 1, jnp.shape(self.h.value), "h")

    def _linear(self, n_in: int, w_init: Initializer, b_init: Initializer | None) -> Linear:
        return Linear(n_in, self.num_out, w_init=w_init, b_init=b_init)


class VanillaRNNCell(_CellBase):
    r"""Elman recurrent cell.

    .. math:: h^t = \phi\big(W[x^t, h^{t-1}]\big)

    Parameters
    ----------
    in_size : int
        :math:`I`.
    out_size : int
        :math:`N`.
    state_init : initializer or array, default ``ZeroInit()``
        Initial :math:`h`.
    w_init : initializer, default ``XavierNormal()``
        Weight of ``W``, shape ``(I + N, N)``.
    b_init : initializer or None, default ``ZeroInit()``
        Bias of ``W``, shape ``(N,)``.
    activation : str or callable, default ``'relu'``
        :math:`\phi` (a name from :data:`braintrace.nn.checks.ACTIVATIONS` or a callable).
    name : str, optional
        Module name.

    Attributes
    ----------
    h : brainstate.HiddenState
        Shape ``(N,)`` or ``(B, N)``.
    W : Linear
        ParamState path ``('W', 'weight')``.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.VanillaRNNCell(3, 5, activation='tanh')
    >>> _ = brainstate.nn.init_all_states(cell, 2)
    >>> cell(jnp.ones((2, 3))).shape
    (2, 5)
    """

    def __init__(
        self,
        in_size: int,
        out_size: int,
        state_init: Initializer = init.ZeroInit(),
        w_init: Initializer = init.XavierNormal(),
        b_init: Initializer | None = init.ZeroInit(),
        activation: str | Callable[[Any], Any] = "relu",
        name: str | None = None,
    ) -> None:
        super().__init__(in_size, out_size, state_init, name)
        self.activation = get_activation(activation, self._label)
        self.W = self._linear(self.num_in + self.num_out, w_init, b_init)

    def update(self, x: Any) -> Any:
        """One time step.

        Parameters
        ----------
        x : array_like
            The input of this step, shape ``(I,)`` or ``(B, I)``.

        Returns
        -------
        jax.Array
            :math:`h^t`, the new hidden state.
        """
        self._check(x)
        h = self.activation(self.W(jnp.concatenate([x, self.h.value], axis=-1)))
        self.h.value = h
        return h


# brainstate's spelling, used by the tutorials: a plain alias of the same class.
ValinaRNNCell = VanillaRNNCell


class GRUCell(_CellBase):
    r"""Gated recurrent unit (Cho et al., 2014).

    .. math::

        z^t &= \sigma\big(W_z[x^t, h^{t-1}]\big) \\
        r^t &= \sigma\big(W_r[x^t, h^{t-1}]\big) \\
        \tilde h^t &= \phi\big(W_h[x^t, r^t \odot h^{t-1}]\big) \\
        h^t &= (1 - z^t) \odot h^{t-1} + z^t \odot \tilde h^t

    The reset gate's weight :math:`W_r` reaches :math:`h` only through the input
    of :math:`W_h`; the compiler therefore excludes it from online learning
    (weight-to-weight rule) and it receives its instantaneous gradient.

    Parameters
    ----------
    in_size : int
        :math:`I`.
    out_size : int
        :math:`N`.
    w_init : initializer, default ``Orthogonal()``
        Weights of ``Wz``, ``Wr``, ``Wh``, each of shape ``(I + N, N)``.
    b_init : initializer or None, default ``ZeroInit()``
        Their biases, shape ``(N,)``.
    state_init : initializer or array, default ``ZeroInit()``
        Initial :math:`h`.
    activation : str or callable, default ``'tanh'``
        :math:`\phi`.
    name : str, optional
        Module name.

    Attributes
    ----------
    h : brainstate.HiddenState
        Shape ``(N,)`` or ``(B, N)``.
    Wz, Wr, Wh : Linear
        ParamState paths ``('Wz', 'weight')``, ``('Wr', 'weight')``, ``('Wh', 'weight')``.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.GRUCell(in_size=4, out_size=8)
    >>> _ = brainstate.nn.init_all_states(cell, batch_size=2)
    >>> cell(jnp.zeros((2, 4))).shape
    (2, 8)
    >>> sorted(cell.states(brainstate.ParamState))
    [('Wh', 'weight'), ('Wr', 'weight'), ('Wz', 'weight')]

    References
    ----------
    .. [1] Cho, K. et al. (2014). Learning phrase representations using RNN
       encoder-decoder for statistical machine translation. arXiv:1406.1078.
    """

    def __init__(
        self,
        in_size: int,
        out_size: int,
        w_init: Initializer = init.Orthogonal(),
        b_init: Initializer | None = init.ZeroInit(),
        state_init: Initializer = init.ZeroInit(),
        activation: str | Callable[[Any], Any] = "tanh",
        name: str | None = None,
    ) -> None:
        super().__init__(in_size, out_size, state_init, name)
        self.activation = get_activation(activation, self._label)
        n = self.num_in + self.num_out
        self.Wz = self._linear(n, w_init, b_init)
        self.Wr = self._linear(n, w_init, b_init)
        self.Wh = self._linear(n, w_init, b_init)

    def update(self, x: Any) -> Any:
        """One time step.

        Parameters
        ----------
        x : array_like
            The input of this step, shape ``(I,)`` or ``(B, I)``.

        Returns
        -------
        jax.Array
            :math:`h^t`, the new hidden state.
        """
        self._check(x)
        h = self.h.value
        xh = jnp.concatenate([x, h], axis=-1)
        z = jax.nn.sigmoid(self.Wz(xh))
        r = jax.nn.sigmoid(self.Wr(xh))
        cand = self.activation(self.Wh(jnp.concatenate([x, r * h], axis=-1)))
        h = (1 - z) * h + z * cand
        self.h.value = h
        return h


class LSTMCell(_CellBase):
    r"""Long short-term memory cell (Hochreiter & Schmidhuber, 1997).

    .. math::

        i^t &= \sigma\big(W_i[x^t, h^{t-1}]\big), \quad
        f^t = \sigma\big(W_f[x^t, h^{t-1}] + \beta_f\big), \quad
        o^t = \sigma\big(W_o[x^t, h^{t-1}]\big) \\
        g^t &= \phi\big(W_g[x^t, h^{t-1}]\big) \\
        c^t &= f^t \odot c^{t-1} + i^t \odot g^t \\
        h^t &= o^t \odot \phi(c^t)

    :math:`\beta_f` is a fixed forget-gate offset (``forget_bias``, 1 as in
    :class:`brainstate.nn.LSTMCell` and Jozefowicz et al., 2015).

    Parameters
    ----------
    in_size : int
        :math:`I`.
    out_size : int
        :math:`N`.
    w_init : initializer, default ``XavierNormal()``
        Weights of ``Wi``, ``Wf``, ``Wg``, ``Wo``, each of shape ``(I + N, N)``.
    b_init : initializer or None, default ``ZeroInit()``
        Their biases, shape ``(N,)``.
    state_init : initializer or array, default ``ZeroInit()``
        Initial :math:`h` and :math:`c`.
    activation : str or callable, default ``'tanh'``
        :math:`\phi`.
    name : str, optional
        Module name.
    forget_bias : float, default 1.0 (keyword only)
        :math:`\beta_f`.

    Attributes
    ----------
    h, c : brainstate.HiddenState
        Shape ``(N,)`` or ``(B, N)`` each.
    Wi, Wf, Wg, Wo : Linear
        ParamState paths ``('Wi', 'weight')``, ``('Wf', 'weight')``,
        ``('Wg', 'weight')``, ``('Wo', 'weight')``.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.LSTMCell(3, 5)
    >>> _ = brainstate.nn.init_all_states(cell)
    >>> cell(jnp.ones(3)).shape, cell.c.value.shape
    ((5,), (5,))

    References
    ----------
    .. [1] Hochreiter, S., & Schmidhuber, J. (1997). Long short-term memory.
       Neural Computation, 9(8), 1735-1780.
    .. [2] Jozefowicz, R., Zaremba, W., & Sutskever, I. (2015). An empirical
       exploration of recurrent network architectures. ICML.
    """

    _state_names = ("c", "h")

    def __init__(
        self,
        in_size: int,
        out_size: int,
        w_init: Initializer = init.XavierNormal(),
        b_init: Initializer | None = init.ZeroInit(),
        state_init: Initializer = init.ZeroInit(),
        activation: str | Callable[[Any], Any] = "tanh",
        name: str | None = None,
        *,
        forget_bias: float = 1.0,
    ) -> None:
        super().__init__(in_size, out_size, state_init, name)
        self.activation = get_activation(activation, self._label)
        self.forget_bias = forget_bias
        n = self.num_in + self.num_out
        self.Wi = self._linear(n, w_init, b_init)
        self.Wf = self._linear(n, w_init, b_init)
        self.Wg = self._linear(n, w_init, b_init)
        self.Wo = self._linear(n, w_init, b_init)

    def update(self, x: Any) -> Any:
        """One time step.

        Parameters
        ----------
        x : array_like
            The input of this step, shape ``(I,)`` or ``(B, I)``.

        Returns
        -------
        jax.Array
            :math:`h^t`, the new hidden state.
        """
        self._check(x)
        h, c = self.h.value, self.c.value
        xh = jnp.concatenate([x, h], axis=-1)
        i = jax.nn.sigmoid(self.Wi(xh))
        f = jax.nn.sigmoid(self.Wf(xh) + self.forget_bias)
        g = self.activation(self.Wg(xh))
        o = jax.nn.sigmoid(self.Wo(xh))
        c = f * c + i * g
        h = o * self.activation(c)
        self.c.value = c
        self.h.value = h
        return h


class MGUCell(_CellBase):
    r"""Minimal gated unit (Zhou et al., 2016): a GRU with a single forget gate.

    .. math::

        f^t &= \sigma\big(W_f[x^t, h^{t-1}]\big) \\
        \tilde h^t &= \phi\big(W_h[x^t, f^t \odot h^{t-1}]\big) \\
        h^t &= (1 - f^t) \odot h^{t-1} + f^t \odot \tilde h^t

    Parameters
    ----------
    in_size : int
        :math:`I`.
    out_size : int
        :math:`N`.
    w_init : initializer, default ``Orthogonal()``
        Weights of ``Wf`` and ``Wh``, each of shape ``(I + N, N)``.
    b_init : initializer or None, default ``ZeroInit()``
        Their biases, shape ``(N,)``.
    state_init : initializer or array, default ``ZeroInit()``
        Initial :math:`h`.
    activation : str or callable, default ``'tanh'``
        :math:`\phi`.
    name : str, optional
        Module name.

    Attributes
    ----------
    h : brainstate.HiddenState
        Shape ``(N,)`` or ``(B, N)``.
    Wf, Wh : Linear
        ParamState paths ``('Wf', 'weight')``, ``('Wh', 'weight')``.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.MGUCell(3, 5)
    >>> _ = brainstate.nn.init_all_states(cell, 4)
    >>> cell(jnp.ones((4, 3))).shape
    (4, 5)

    References
    ----------
    .. [1] Zhou, G.-B., Wu, J., Zhang, C.-L., & Zhou, Z.-H. (2016). Minimal gated
       unit for recurrent neural networks. International Journal of Automation
       and Computing, 13(3), 226-234.
    """

    def __init__(
        self,
        in_size: int,
        out_size: int,
        w_init: Initializer = init.Orthogonal(),
        b_init: Initializer | None = init.ZeroInit(),
        state_init: Initializer = init.ZeroInit(),
        activation: str | Callable[[Any], Any] = "tanh",
        name: str | None = None,
    ) -> None:
        super().__init__(in_size, out_size, state_init, name)
        self.activation = get_activation(activation, self._label)
        n = self.num_in + self.num_out
        self.Wf = self._linear(n, w_init, b_init)
        self.Wh = self._linear(n, w_init, b_init)

    def update(self, x: Any) -> Any:
        """One time step.

        Parameters
        ----------
        x : array_like
            The input of this step, shape ``(I,)`` or ``(B, I)``.

        Returns
        -------
        jax.Array
            :math:`h^t`, the new hidden state.
        """
        self._check(x)
        h = self.h.value
        f = jax.nn.sigmoid(self.Wf(jnp.concatenate([x, h], axis=-1)))
        cand = self.activation(self.Wh(jnp.concatenate([x, f * h], axis=-1)))
        h = (1 - f) * h + f * cand
        self.h.value = h
        return h


def _forget_bias_init(n: int) -> jax.Array:
    """``b = -log(1/u - 1)`` with ``u ~ U(1/N, 1 - 1/N)`` (Gu et al., 2020, uniform gate init)."""
    uu = brainstate.random.uniform(1 / n, 1 - 1 / n, (n,))
    return -jnp.log(1 / uu - 1)


class URLSTMCell(_CellBase):
    r"""LSTM with a refine gate and uniform gate initialisation (Gu et al., 2020).

    .. math::

        f^t &= \sigma\big(W_f[x^t, h^{t-1}] + b\big), \quad
        r^t = \sigma\big(W_r[x^t, h^{t-1}] - b\big) \\
        g^t &= 2 r^t \odot f^t + (1 - 2 r^t) \odot (f^t)^2 \\
        c^t &= g^t \odot c^{t-1} + (1 - g^t) \odot \phi\big(W_u[x^t, h^{t-1}]\big) \\
        o^t &= \sigma\big(W_o[x^t, h^{t-1}]\big), \quad h^t = o^t \odot \phi(c^t)

    The four ``Linear`` sub-layers have no bias; the shared forget bias
    :math:`b` (ParamState ``bias``) enters through :func:`braintrace.element_wise`
    and so learns online too. It is initialised as :math:`b = -\log(1/u - 1)`,
    :math:`u \sim U(1/N, 1 - 1/N)`.

    Parameters
    ----------
    in_size : int
        :math:`I`.
    out_size : int
        :math:`N`.
    w_init : initializer, default ``XavierNormal()``
        Weights of ``Wf``, ``Wr``, ``Wu``, ``Wo``, each of shape ``(I + N, N)``.
    state_init : initializer or array, default ``ZeroInit()``
        Initial :math:`h` and :math:`c`.
    activation : str or callable, default ``'tanh'``
        :math:`\phi`.
    name : str, optional
        Module name.

    Attributes
    ----------
    h, c : brainstate.HiddenState
        Shape ``(N,)`` or ``(B, N)`` each.
    Wf, Wr, Wu, Wo : Linear
        ParamState paths ``('Wf', 'weight')``, ``('Wr', 'weight')``,
        ``('Wu', 'weight')``, ``('Wo', 'weight')``.
    bias : brainstate.ParamState
        :math:`b`, shape ``(N,)``, path ``('bias',)``.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.URLSTMCell(3, 5)
    >>> _ = brainstate.nn.init_all_states(cell, 2)
    >>> cell(jnp.ones((2, 3))).shape
    (2, 5)

    References
    ----------
    .. [1] Gu, A., Gulcehre, C., Paine, T., Hoffman, M., & Pascanu, R. (2020).
       Improving the gating mechanism of recurrent neural networks. ICML.
    """

    _state_names = ("c", "h")

    def __init__(
        self,
        in_size: int,
        out_size: int,
        w_init: Initializer = init.XavierNormal(),
        state_init: Initializer = init.ZeroInit(),
        activation: str | Callable[[Any], Any] = "tanh",
        name: str | None = None,
    ) -> None:
        super().__init__(in_size, out_size, state_init, name)
        self.activation = get_activation(activation, self._label)
        n = self.num_in + self.num_out
        self.Wf = self._linear(n, w_init, None)
        self.Wr = self._linear(n, w_init, None)
        self.Wu = self._linear(n, w_init, None)
        self.Wo = self._linear(n, w_init, None)
        self.bias = brainstate.ParamState(_forget_bias_init(self.num_out))

    def update(self, x: Any) -> Any:
        """One time step.

        Parameters
        ----------
        x : array_like
            The input of this step, shape ``(I,)`` or ``(B, I)``.

        Returns
        -------
        jax.Array
            :math:`h^t`, the new hidden state.
        """
        self._check(x)
        h, c = self.h.value, self.c.value
        xh = jnp.concatenate([x, h], axis=-1)
        b = element_wise(self.bias.value)
        f = jax.nn.sigmoid(self.Wf(xh) + b)
        r = jax.nn.sigmoid(self.Wr(xh) - b)
        g = 2 * r * f + (1 - 2 * r) * f**2
        c = g * c + (1 - g) * self.activation(self.Wu(xh))
        h = jax.nn.sigmoid(self.Wo(xh)) * self.activation(c)
        self.c.value = c
        self.h.value = h
        return h
