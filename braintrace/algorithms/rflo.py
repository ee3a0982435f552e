r"""RFLO: random-feedback local online learning (Murray, 2019).

Murray's rule trains a recurrent rate network online with two
simplifications of RTRL, both local in space and time: the influence of a
weight on a unit is propagated only through that unit's own leak (the
recurrent Jacobian through other units is dropped), and the learning signal
of a unit is a fixed random projection of the output error instead of the
back-propagated one. In this library the first is D_RTRL's trace (the cut
Jacobian keeps each unit's own dynamics), the second the random feedback every
learner offers; see :class:`RFLO`.
"""

from __future__ import annotations

from typing import Any

from ..errors import CompilationError
from .d_rtrl import ParamDimVjpAlgorithm
from .feedback import hidden_layer_groups

__all__ = ["RFLO"]


class RFLO(ParamDimVjpAlgorithm):
    r"""Random-feedback local online learning for recurrent rate networks.

    Murray's network, with time constant ``τ`` (in steps), rate ``h``,
    nonlinearity ``φ``, input ``x`` and linear readout ``y``:

    .. math::

        u^t = W h^{t-1} + W_{\rm in} x^t, \qquad
        h^t = h^{t-1} + \tfrac{1}{τ}\big(-h^{t-1} + φ(u^t)\big), \qquad
        y^t = W_{\rm out} h^t,

    and his rule (the loss :math:`L^t = \tfrac12 \lVert y^{*t} - y^t \rVert^2`,
    :math:`e^t = ∂L^t/∂y^t = y^t - y^{*t}`, a fixed random matrix ``B``):

    .. math::

        p_{ij}^t &= \big(1 - \tfrac1τ\big) p_{ij}^{t-1} + \tfrac1τ φ'(u_i^t)\, h_j^{t-1}, \qquad
        q_{ik}^t = \big(1 - \tfrac1τ\big) q_{ik}^{t-1} + \tfrac1τ φ'(u_i^t)\, x_k^t, \\
        \nabla_{W_{ij}} L &\mathrel{+}= [e^t B]_i\, p_{ij}^t, \qquad
        \nabla_{W_{{\rm in}, ik}} L \mathrel{+}= [e^t B]_i\, q_{ik}^t, \qquad
        \nabla_{W_{\rm out}} L \mathrel{+}= h^t \otimes e^t.

    ``p`` and ``q`` are D_RTRL's traces of ``W`` and ``W_in`` on this network:
    the cut Jacobian (``h^{t-1}`` entering through ``W``'s data input counts as
    an input) is the leak ``D = 1 - 1/τ``, and ``df = φ'(u)/τ``. ``W_out``
    reaches no hidden state and gets its instantaneous gradient. In general,
    RFLO is :class:`~braintrace.D_RTRL` with ``feedback='random'``: every
    hidden layer (a group learned online whose new value reaches the output
    only through the data input of an ETP primitive) keeps the per-position
    blocks of its own dynamics (leak, adaptation, reset) in its traces and
    learns from :math:`\mathrm{reshape}(e^t B_g, (*V_g, S_g))`; output groups
    (a leaky readout) keep their true error. ``B_g`` (shape ``(n_out,
    prod(V_g[len(b):])·S_g)``, ``b`` the outputs' batch axes, entries
    ``N(0, 0.1²)``) is drawn at compile time from ``random_feedback_key`` and
    kept in :attr:`feedback_matrices`; it plays the role of Murray's ``Bᵀ``.
    With a leaky readout and ``kappa_filter_decay`` set to its decay, the
    rule is e-prop with random feedback. Memory ``O(B·|θ|·S)``.

    Parameters
    ----------
    model : brainstate.nn.Module
        The network. Read the rates out through an ETP primitive
        (``braintrace.matmul``, :class:`braintrace.nn.Linear`): a state read
        out by a plain JAX product is an output group and would keep its true
        signal.
    random_feedback_key : int or jax PRNG key, optional
        Seed of the random feedback matrices; ``None`` draws one from
        ``brainstate.random`` at compile time.
    name : str, optional
        The module's name.
    fast_solve : bool, default True
        As in :class:`~braintrace.D_RTRL`.
    trace_dtype : dtype, optional
        As in :class:`~braintrace.D_RTRL`.
    kappa_filter_decay : float, default 0.0
        ``κ`` of the filter of the hidden layers' traces (see
        :class:`~braintrace.ETraceVjpAlgorithm`); ``0`` is Murray's rule.

    Attributes
    ----------
    feedback_matrices : dict
        ``{group index: FixedRandomFeedback}`` after compiling.

    Raises
    ------
    CompilationError
        (compile time) no hidden layer learns online (every group reaches the
        output directly, so there is nothing to feed back to), output leaves
        that disagree on their batch axes, or a hidden group whose leading axes
        are not those.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> net = brainstate.nn.Sequential(braintrace.nn.VanillaRNNCell(3, 8), braintrace.nn.Linear(8, 2))
    >>> _ = brainstate.nn.init_all_states(net)
    >>> learner = braintrace.RFLO(net, random_feedback_key=0).compile_graph(jnp.zeros(3))
    >>> [fb.matrix.shape for fb in learner.feedback_matrices.values()]
    [(2, 8)]
    >>> loss = lambda x, y: 0.5 * jnp.sum((learner(x) - y) ** 2)
    >>> grads = brainstate.transform.grad(loss, net.states(brainstate.ParamState))(jnp.ones(3), jnp.ones(2))
    >>> len(grads)
    2

    References
    ----------
    .. [1] Murray, J. M. (2019). Local online learning in recurrent networks
       with random feedback. eLife, 8, e43299.
    """

    def __init__(
        self,
        model: Any,
        random_feedback_key: Any = None,
        name: str | None = None,
        fast_solve: bool = True,
        trace_dtype: Any = None,
        *,
        kappa_filter_decay: float = 0.0,
    ) -> None:
        super().__init__(
            model, name=name, fast_solve=fast_solve, trace_dtype=trace_dtype, feedback="random",
            kappa_filter_decay=kappa_filter_decay, random_feedback_key=random_feedback_key,
        )

    def on_compile(self, graph: Any) -> None:
        if not hidden_layer_groups(graph):
            raise CompilationError(
                "RFLO: no hidden layer learns online: every hidden group learned online reaches a model output "
                "directly (a state read out by a plain JAX product, or a leaky readout), and such output groups "
                "learn from their true error, so RFLO would be D_RTRL. Read the hidden rates out through an ETP "
                "primitive (braintrace.matmul or braintrace.nn.Linear) so that they learn from the random "
                "feedback of the output error."
            )
        super().on_compile(graph)
