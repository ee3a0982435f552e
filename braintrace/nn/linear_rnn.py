r"""The linear recurrent unit: a complex diagonal recurrence learned online.

:class:`LRUCell` (Orvieto et al., 2023) keeps a complex hidden state
:math:`h = h_{re} + i\, h_{im}` as two real ``brainstate.HiddenState`` s. Its
recurrence is diagonal in the hidden index: unit :math:`n` of
:math:`(h_{re}, h_{im})` depends on unit :math:`n` only (a 2x2 rotation and
scaling), so the cut Jacobian is block-diagonal with one 2x2 block per unit and
D_RTRL computes the exact (BPTT) gradient of every weight that reaches the state.
"""

from __future__ import annotations

from typing import Any

import brainstate
import jax.numpy as jnp
import numpy as np

from ..errors import InvalidArgumentError
from ..primitives import element_wise
from .checks import check_batch, check_trailing, layer_label, to_size
from .linear import Linear

__all__ = ["LRUCell"]

init = brainstate.nn.init


class LRUCell(brainstate.nn.Module):
    r"""Linear recurrent unit (Orvieto et al., 2023) with a complex diagonal state.

    With :math:`\nu, \theta, \gamma` the ParamStates ``nu_log``, ``theta_log``,
    ``gamma_log`` (shape :math:`(N,)`, :math:`N` = ``d_hidden``):

    .. math::

        \lambda &= e^{-e^{\nu}}\, e^{\,i\, e^{\theta}}, \qquad |\lambda| \in (0, 1) \\
        h^t &= \lambda \odot h^{t-1} + e^{\gamma} \odot \big(B_{re} x^t + i\, B_{im} x^t\big) \\
        y^t &= C_{re} h^t_{re} - C_{im} h^t_{im} + D \odot x^t

    with :math:`h = h_{re} + i\, h_{im}` (both parts updated from the previous
    values) and :math:`y = \mathrm{Re}(C h) + D \odot x`, :math:`C = C_{re} + i\,
    C_{im}`. :math:`\lambda` and :math:`e^\gamma` come from
    :func:`braintrace.element_wise`, the four products from
    :class:`braintrace.nn.Linear` sub-layers (no bias), so every parameter that
    reaches the state learns online; ``C_re``, ``C_im`` and ``D`` only read it
    out and receive their instantaneous (exact) gradient.

    Initialisation (as in the paper): :math:`|\lambda|^2` uniform in
    :math:`[r_{min}^2, r_{max}^2]`, the phase :math:`e^\theta` uniform in
    :math:`[0, \text{max\_phase}]`, :math:`e^\gamma = \sqrt{1 - |\lambda|^2}`,
    :math:`B \sim \mathcal N(0, 1/(2 d_{model}))`,
    :math:`C \sim \mathcal N(0, 1/d_{hidden})`, :math:`D \sim \mathcal N(0, 1)`.

    Parameters
    ----------
    d_model : int
        Input and output size :math:`M`.
    d_hidden : int
        Number of complex hidden units :math:`N`.
    r_min, r_max : float, default 0.0 and 1.0
        Range of the initial :math:`|\lambda|`, :math:`0 \le r_{min} < r_{max} \le 1`.
    max_phase : float, default 6.28
        Largest initial phase of :math:`\lambda`, positive.
    name : str, optional
        Module name.

    Attributes
    ----------
    d_model, d_hidden : int
    r_min, r_max, max_phase : float
    in_size : tuple of int
        ``(d_model,)``.
    out_size : tuple of int
        ``(d_hidden,)``, the shape of each hidden part (the output of
        :meth:`update` has ``d_model`` features).
    nu_log, theta_log, gamma_log : brainstate.ParamState
        Bare arrays of shape ``(d_hidden,)``.
    D : brainstate.ParamState
        Bare array of shape ``(d_model,)``.
    B_re, B_im : Linear
        Weight ``(d_model, d_hidden)``, no bias.
    C_re, C_im : Linear
        Weight ``(d_hidden, d_model)``, no bias.
    h_re, h_im : brainstate.HiddenState
        Shape ``(d_hidden,)`` or ``(B, d_hidden)``, zeros after :meth:`init_state`.

    Raises
    ------
    InvalidArgumentError
        Sizes that are not positive ints, :math:`r_{min}, r_{max}` outside
        :math:`0 \le r_{min} < r_{max} \le 1` or a non-positive ``max_phase``
        (construction).
    ShapeMismatchError
        An input whose last axis is not ``d_model`` or whose batch shape
        differs from the state's (call).

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.LRUCell(3, 5)
    >>> _ = brainstate.nn.init_all_states(cell, 4)
    >>> cell(jnp.ones((4, 3))).shape, cell.h_re.value.shape
    ((4, 3), (4, 5))

    References
    ----------
    .. [1] Orvieto, A., Smith, S. L., Gu, A., Fernando, A., Gulcehre, C.,
       Pascanu, R., & De, S. (2023). Resurrecting recurrent neural networks for
       long sequences. ICML.
    """

    def __init__(
        self,
        d_model: int,
        d_hidden: int,
        r_min: float = 0.0,
        r_max: float = 1.0,
        max_phase: float = 6.28,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        cls = type(self).__name__
        (self.d_model,) = to_size(d_model, cls, "d_model")
        (self.d_hidden,) = to_size(d_hidden, cls, "d_hidden")
        self.in_size = (self.d_model,)
        self.out_size = (self.d_hidden,)
        if not (0.0 <= r_min < r_max <= 1.0):
            raise InvalidArgumentError(
                f"{self._label}: need 0 <= r_min < r_max <= 1 for decay magnitudes in [0, 1], got "
                f"r_min={r_min}, r_max={r_max}."
            )
        if not max_phase > 0:
            raise InvalidArgumentError(f"{self._label}: max_phase={max_phase} must be positive.")
        self.r_min, self.r_max, self.max_phase = float(r_min), float(r_max), float(max_phase)
        M, N = self.d_model, self.d_hidden
        dtype = brainstate.environ.dftype()
        tiny = float(np.finfo(dtype).tiny)
        u1 = brainstate.random.uniform(size=(N,), dtype=dtype)
        u2 = brainstate.random.uniform(size=(N,), dtype=dtype)
        # |lambda|^2 kept inside (0, 1): the end points would give nu_log = +-inf
        mag2 = jnp.clip(u1 * (self.r_max**2 - self.r_min**2) + self.r_min**2, tiny, 1.0 - float(np.finfo(dtype).eps))
        self.nu_log = brainstate.ParamState(jnp.log(-0.5 * jnp.log(mag2)))
        self.theta_log = brainstate.ParamState(jnp.log(jnp.maximum(self.max_phase * u2, tiny)))
        self.gamma_log = brainstate.ParamState(0.5 * jnp.log(1.0 - mag2))
        self.D = brainstate.ParamState(brainstate.random.normal(size=(M,), dtype=dtype))
        b_init = init.Normal(scale=1.0 / np.sqrt(2 * M))
        c_init = init.Normal(scale=1.0 / np.sqrt(N))
        self.B_re = Linear(M, N, w_init=b_init, b_init=None)
        self.B_im = Linear(M, N, w_init=b_init, b_init=None)
        self.C_re = Linear(N, M, w_init=c_init, b_init=None)
        self.C_im = Linear(N, M, w_init=c_init, b_init=None)

    @property
    def _label(self) -> str:
        return layer_label(self, d_model=self.d_model, d_hidden=self.d_hidden)

    def init_state(self, batch_size: int | None = None, **kwargs: Any) -> None:
        """Create ``h_re`` and ``h_im`` (zeros), shape ``(d_hidden,)`` or ``(batch_size, d_hidden)``."""
        shape = self.out_size if batch_size is None else (batch_size,) + self.out_size
        self.h_re = brainstate.HiddenState(jnp.zeros(shape, brainstate.environ.dftype()))
        self.h_im = brainstate.HiddenState(jnp.zeros(shape, brainstate.environ.dftype()))

    def reset_state(self, batch_size: int | None = None, **kwargs: Any) -> None:
        """Zero ``h_re`` and ``h_im`` in place (same objects)."""
        shape = self.out_size if batch_size is None else (batch_size,) + self.out_size
        self.h_re.value = jnp.zeros(shape, brainstate.environ.dftype())
        self.h_im.value = jnp.zeros(shape, brainstate.environ.dftype())

    def update(self, x: Any) -> Any:
        """One step; ``x`` of shape ``(d_model,)`` or ``(B, d_model)``; returns :math:`y^t`, same shape."""
        check_trailing(self._label, x, self.in_size)
        check_batch(self._label, x, 1, jnp.shape(self.h_re.value), "h_re")
        modulus = element_wise(self.nu_log.value, lambda v: jnp.exp(-jnp.exp(v)))
        phase = element_wise(self.theta_log.value, jnp.exp)
        lam_re, lam_im = modulus * jnp.cos(phase), modulus * jnp.sin(phase)
        gamma = element_wise(self.gamma_log.value, jnp.exp)
        h_re, h_im = self.h_re.value, self.h_im.value
        new_re = lam_re * h_re - lam_im * h_im + gamma * self.B_re(x)
        new_im = lam_re * h_im + lam_im * h_re + gamma * self.B_im(x)
        self.h_re.value = new_re
        self.h_im.value = new_im
        return self.C_re(new_re) - self.C_im(new_im) + x * self.D.value
