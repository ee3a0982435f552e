r"""Recurrent cells whose recurrence is diagonal (element-wise) in the hidden state.

:class:`MiniGRU` and :class:`MiniLSTM` (Feng et al., 2024) compute their gates
from the input only; :class:`LRUCell` (Orvieto et al., 2023) has a learnable
diagonal decay. In all three the cut Jacobian :math:`\partial h^t/\partial h^{t-1}`
is diagonal, so D_RTRL computes their exact (BPTT) gradient online.

Inputs are checked as in :mod:`braintrace.nn.rnn` (``ValueError`` naming the
cell). Notation as there: :math:`x^t` of size :math:`I`,
:math:`h^t` of size :math:`N`, :math:`W_g` the ``Linear`` sub-layer named ``Wg``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import brainstate
import jax
import jax.numpy as jnp

from ..primitives import element_wise
from .rnn import Initializer, _CellBase

__all__ = ["MiniGRU", "MiniLSTM", "LRUCell"]

init = brainstate.nn.init


class MiniGRU(_CellBase):
    r"""minGRU (Feng et al., 2024): a GRU whose gates do not read the state.

    .. math::

        z^t &= \sigma\big(W_z x^t\big), \qquad \tilde h^t = W_h x^t \\
        h^t &= (1 - z^t) \odot h^{t-1} + z^t \odot \tilde h^t

    Parameters
    ----------
    in_size : int
        :math:`I`.
    out_size : int
        :math:`N`.
    w_init : initializer, default ``XavierNormal()``
        Weights of ``Wz`` and ``Wh``, each of shape ``(I, N)``.
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
    Wz, Wh : Linear
        ParamState paths ``('Wz', 'weight')``, ``('Wh', 'weight')``.

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
        w_init: Initializer = init.XavierNormal(),
        b_init: Initializer | None = init.ZeroInit(),
        state_init: Initializer = init.ZeroInit(),
        name: str | None = None,
    ) -> None:
        super().__init__(in_size, out_size, state_init, name)
        self.Wz = self._linear(self.num_in, w_init, b_init)
        self.Wh = self._linear(self.num_in, w_init, b_init)

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
        z = jax.nn.sigmoid(self.Wz(x))
        h = (1 - z) * self.h.value + z * self.Wh(x)
        self.h.value = h
        return h


class MiniLSTM(_CellBase):
    r"""minLSTM (Feng et al., 2024): normalised forget and input gates from the input only.

    .. math::

        f^t &= \sigma\big(W_f x^t\big), \quad i^t = \sigma\big(W_i x^t\big), \quad
        \tilde h^t = W_h x^t \\
        h^t &= \frac{f^t}{f^t + i^t} \odot h^{t-1} + \frac{i^t}{f^t + i^t} \odot \tilde h^t

    Parameters
    ----------
    in_size : int
        :math:`I`.
    out_size : int
        :math:`N`.
    w_init : initializer, default ``XavierNormal()``
        Weights of ``Wf``, ``Wi``, ``Wh``, each of shape ``(I, N)``.
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
    Wf, Wi, Wh : Linear
        ParamState paths ``('Wf', 'weight')``, ``('Wi', 'weight')``, ``('Wh', 'weight')``.

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
        w_init: Initializer = init.XavierNormal(),
        b_init: Initializer | None = init.ZeroInit(),
        state_init: Initializer = init.ZeroInit(),
        name: str | None = None,
    ) -> None:
        super().__init__(in_size, out_size, state_init, name)
        self.Wf = self._linear(self.num_in, w_init, b_init)
        self.Wi = self._linear(self.num_in, w_init, b_init)
        self.Wh = self._linear(self.num_in, w_init, b_init)

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
        f = jax.nn.sigmoid(self.Wf(x))
        i = jax.nn.sigmoid(self.Wi(x))
        total = f + i
        h = (f / total) * self.h.value + (i / total) * self.Wh(x)
        self.h.value = h
        return h


def _lru_decay(nu_log: jax.Array) -> jax.Array:
    """:math:`\\lambda = \\exp(-\\exp(\\nu))`, in (0, 1) for every real :math:`\\nu`."""
    return jnp.exp(-jnp.exp(nu_log))


class LRUCell(_CellBase):
    r"""Linear recurrent unit (Orvieto et al., 2023), real-valued diagonal form.

    .. math::

        \lambda &= \exp\big(-\exp(\nu)\big) \in (0, 1)^N, \qquad
        \gamma = \sqrt{1 - \lambda^2} \\
        h^t &= \lambda \odot h^{t-1} + \gamma \odot \big(B x^t\big)

    The paper's complex eigenvalues are replaced by real ones so that the decay is
    a learnable element-wise parameter: :math:`\lambda` is computed from the
    ParamState ``nu_log`` through :func:`braintrace.element_wise`, :math:`B x`
    through :func:`braintrace.matmul`. :math:`\gamma` (the paper's normalisation,
    switched off with ``normalize=False``) is plain JAX on :math:`\lambda`.
    :math:`|\lambda|^2` is initialised uniformly in :math:`[r_{min}^2, r_{max}^2]`.
    The paper's read-out :math:`y = \mathrm{Re}(C h) + D x` is left to the next
    layer (e.g. :class:`braintrace.nn.Linear`); the cell returns :math:`h^t`.

    Parameters
    ----------
    in_size : int
        :math:`I`.
    out_size : int
        :math:`N`.
    r_min, r_max : float, default 0.4 and 0.99
        Range of the initial decay magnitudes, :math:`0 \le r_{min} < r_{max} < 1`.
    w_init : initializer, default ``LecunNormal()``
        Weight of ``B``, shape ``(I, N)``.
    b_init : initializer or None, default None
        Bias of ``B``, shape ``(N,)``.
    normalize : bool, default True
        Multiply the input by :math:`\gamma`.
    state_init : initializer or array, default ``ZeroInit()``
        Initial :math:`h`.
    name : str, optional
        Module name.

    Attributes
    ----------
    h : brainstate.HiddenState
        Shape ``(N,)`` or ``(B, N)``.
    B : Linear
        ParamState path ``('B', 'weight')``.
    nu_log : brainstate.ParamState
        :math:`\nu`, shape ``(N,)``, path ``('nu_log',)``.

    Raises
    ------
    ValueError
        ``r_min``/``r_max`` outside :math:`0 \le r_{min} < r_{max} < 1`.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.LRUCell(3, 5)
    >>> _ = brainstate.nn.init_all_states(cell, 2)
    >>> cell(jnp.ones((2, 3))).shape
    (2, 5)

    References
    ----------
    .. [1] Orvieto, A., Smith, S. L., Gu, A., Fernando, A., Gulcehre, C.,
       Pascanu, R., & De, S. (2023). Resurrecting recurrent neural networks for
       long sequences. ICML.
    """

    def __init__(
        self,
        in_size: int,
        out_size: int,
        r_min: float = 0.4,
        r_max: float = 0.99,
        w_init: Initializer = init.LecunNormal(),
        b_init: Initializer | None = None,
        normalize: bool = True,
        state_init: Initializer = init.ZeroInit(),
        name: str | None = None,
    ) -> None:
        super().__init__(in_size, out_size, state_init, name)
        if not (0.0 <= r_min < r_max < 1.0):
            raise ValueError(
                f"{self._label}: need 0 <= r_min < r_max < 1 for decays in (0, 1), got "
                f"r_min={r_min}, r_max={r_max}."
            )
        self.normalize = normalize
        self.B = self._linear(self.num_in, w_init, b_init)
        mag2 = brainstate.random.uniform(r_min**2, r_max**2, (self.num_out,))
        self.nu_log = brainstate.ParamState(jnp.log(-0.5 * jnp.log(mag2)))

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
        lam = element_wise(self.nu_log.value, _lru_decay)
        inp = self.B(x)
        if self.normalize:
            inp = jnp.sqrt(1 - lam**2) * inp
        h = lam * self.h.value + inp
        self.h.value = h
        return h
