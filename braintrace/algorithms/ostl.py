r"""OSTL: online spatio-temporal learning (Bohnstingl et al., 2022).

OSTL separates the gradient into a *spatial* part, the learning signal
:math:`δ^t = ∂L^t/∂h^t` of the current step, and a *temporal* part, an
eligibility trace carried forward in time. Its two variants map onto the two
trace families of this library:

* :class:`OSTLRecurrent` keeps the exact per-synapse temporal trace
  :math:`ε_w^t = D^t ε_w^{t-1} + df^t \otimes ∂y^t/∂w` (the D_RTRL trace);
* :class:`OSTLFeedforward` keeps only an input trace and an output trace per
  neuron (the ES_D_RTRL factorisation), memory :math:`O(B(I+O)S)`.
"""

from __future__ import annotations

from typing import Any

from .d_rtrl import ParamDimVjpAlgorithm
from .es_d_rtrl import IODimVjpAlgorithm

__all__ = ["OSTLRecurrent", "OSTLFeedforward"]


class OSTLRecurrent(ParamDimVjpAlgorithm):
    r"""OSTL with the exact per-synapse temporal trace; identical to :class:`~braintrace.D_RTRL`.

    .. math::

        ε_w^t = D^t ε_w^{t-1} + df^t \otimes \frac{\partial y^t}{\partial w},
        \qquad \nabla_w L \mathrel{+}= δ^t \cdot ε_w^t

    *Keeps*: the temporal term of every neuron's own dynamics — the exact
    per-position ``S × S`` blocks ``D^t`` of :math:`∂h^t/∂h^{t-1}` (leak,
    reset through the spike, adaptation) — and the full synapse-shaped trace.
    *Drops*: the part of :math:`∂h^t/∂h^{t-1}` that passes through trainable
    weights (the recurrent-matrix term of exact OSTL/RTRL, :math:`O(n^3)`
    memory), and credit through other neurons' future states. For
    feed-forward spiking layers (LIF/ALIF with input weights, leaky
    integrators) nothing is dropped and the gradient equals BPTT.

    Parameters
    ----------
    model : brainstate.nn.Module
    name : str, optional
    vjp_method : {'single-step', 'multi-step'}, default 'single-step'
    fast_solve : bool, default True
    trace_dtype : dtype, optional
        As in :class:`~braintrace.D_RTRL`.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> readout = braintrace.nn.LeakyRateReadout(3, 2, decay=0.8)
    >>> _ = brainstate.nn.init_all_states(readout)
    >>> learner = braintrace.OSTLRecurrent(readout).compile_graph(jnp.zeros(3))
    >>> grads = brainstate.transform.grad(lambda x: learner(x).sum(), readout.states(brainstate.ParamState))(jnp.ones(3))
    >>> grads[('W',)].shape
    (3, 2)

    References
    ----------
    .. [1] Bohnstingl, T., Woźniak, S., Pantazi, A., & Eleftheriou, E. (2022).
       Online spatio-temporal learning in deep neural networks. IEEE
       Transactions on Neural Networks and Learning Systems, 34(11), 8894–8908.
    """

    #: the OSTL variant (0.2.0's attribute)
    regime: str = "with-H"

    def __init__(
        self,
        model: Any,
        name: str | None = None,
        vjp_method: str = "single-step",
        fast_solve: bool = True,
        trace_dtype: Any = None,
    ) -> None:
        super().__init__(model, name=name, vjp_method=vjp_method, fast_solve=fast_solve, trace_dtype=trace_dtype)


class OSTLFeedforward(IODimVjpAlgorithm):
    r"""OSTL with factorised input/output traces; identical to :class:`~braintrace.ES_D_RTRL` at its decay.

    .. math::

        ε_x^t = α ε_x^{t-1} + x^t, \qquad
        ε_f^t = α D^t ε_f^{t-1} + (1 - α)\, df^t, \qquad
        \nabla_w L \mathrel{+}= \mathrm{xy\_to\_dw}\big(ε_x^t, (ε_f^t / c_t) ∘ δ^t\big)

    with :math:`c_t = 1 - α^{k+1}` (``k`` time steps since reset).

    *Keeps*: the input (presynaptic) trace :math:`ε_x` and the per-neuron
    output trace :math:`ε_f` with the neuron's own dynamics ``D``; biases and
    element-wise weights keep their exact trace. *Drops*: everything
    :class:`OSTLRecurrent` drops, and in addition the synapse-shaped
    ``I × O`` trace, replaced by the product of the two smoothed traces
    (exact when ``df`` is constant in time). Memory :math:`O(B(I+O)S)`.

    Parameters
    ----------
    model : brainstate.nn.Module
    decay_or_rank : float or int, default 1e-6
        ``α`` in ``(0, 1)``, or an integer rank ``n >= 1`` (``α = (n-1)/(n+1)``).
        The default (0.2.0's) makes the traces those of the current step only.
    name : str, optional
    vjp_method : {'single-step', 'multi-step'}, default 'single-step'
    fast_solve : bool, default True

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> readout = braintrace.nn.LeakyRateReadout(3, 2, decay=0.8)
    >>> _ = brainstate.nn.init_all_states(readout)
    >>> learner = braintrace.OSTLFeedforward(readout, decay_or_rank=0.8).compile_graph(jnp.zeros(3))
    >>> grads = brainstate.transform.grad(lambda x: learner(x).sum(), readout.states(brainstate.ParamState))(jnp.ones(3))
    >>> grads[('W',)].shape
    (3, 2)

    References
    ----------
    .. [1] Bohnstingl, T., Woźniak, S., Pantazi, A., & Eleftheriou, E. (2022).
       Online spatio-temporal learning in deep neural networks. IEEE
       Transactions on Neural Networks and Learning Systems, 34(11), 8894–8908.
    """

    #: the OSTL variant (0.2.0's attribute)
    regime: str = "without-H"

    def __init__(
        self,
        model: Any,
        decay_or_rank: float | int = 1e-6,
        name: str | None = None,
        vjp_method: str = "single-step",
        fast_solve: bool = True,
    ) -> None:
        super().__init__(model, decay_or_rank, name=name, vjp_method=vjp_method, fast_solve=fast_solve)
