r"""EProp: eligibility propagation (Bellec et al., 2020) on the D_RTRL traces.

e-prop factorises the gradient of a recurrent spiking network into a
*learning signal* per neuron and an *eligibility trace* per synapse. In the
notation of DESIGN.md §3 the eligibility vector of e-prop is the D_RTRL trace

.. math:: ε_w^t = D^t ε_w^{t-1} + df^t \otimes \frac{\partial y^t}{\partial w},

and the gradient contribution at step ``t`` is :math:`L^t \cdot \bar ε_w^t`
with :math:`L^t` the true signal ``δ^t`` (``'symmetric'``) or a fixed random
projection of the output error (``'random'``), and :math:`\bar ε` the
κ-filtered trace, the leaky sum :math:`\bar ε^t = κ\, \bar ε^{t-1} + ε^t`
(:func:`~braintrace.algorithms.feedback.leaky_sum`). See :class:`EProp`.
"""

from __future__ import annotations

from typing import Any

from .d_rtrl import ParamDimVjpAlgorithm

__all__ = ["EProp"]


class EProp(ParamDimVjpAlgorithm):
    r"""e-prop: D_RTRL eligibility traces with e-prop's learning signal and κ filter.

    Notation: ``h_g`` the states of hidden group ``g`` (per-position shape
    ``V``, ``S`` states), ``o^t`` the model's outputs, ``e^t = ∂L^t/∂o^t``
    the output error, ``D^t`` / ``df^t`` as in DESIGN.md §3, ``δ_g^t`` the
    learners' learning signal: ``∂L^t/∂h_g^t``, the other hidden groups
    responding within the step (a spiking layer's signal passes through the
    readout that reads it) and the group's own other states held fixed. An
    *output group* is a hidden group whose new value reaches an
    output without passing the data input of an ETP primitive (a
    :class:`~braintrace.nn.LeakyRateReadout` is one; a spiking layer read out
    through a trainable weight is not).

    .. math::

        ε_w^t &= D^t ε_w^{t-1} + df^t \otimes \frac{\partial y^t}{\partial w}
            \qquad\text{(D_RTRL trace: e-prop's eligibility vector)} \\
        \bar ε_w^t &= κ\, \bar ε_w^{t-1} + ε_w^t
            \qquad\text{(relations into non-output groups; } \bar ε = ε \text{ if } κ = 0) \\
        L_g^t &= \begin{cases}
            δ_g^t & \text{'symmetric', or 'random' and } g \text{ an output group} \\
            \mathrm{reshape}\big(e^t B_g,\ (*V_g, S_g)\big) & \text{'random', } g \text{ not an output group}
        \end{cases} \\
        \nabla_w L &\mathrel{+}= L_g^t \cdot \bar ε_w^t

    ``'symmetric'`` with ``kappa_filter_decay=0`` is exactly
    :class:`~braintrace.D_RTRL`. The κ filter and random feedback are options
    every learner shares (:class:`~braintrace.ETraceVjpAlgorithm`):
    ``EProp(model, f, κ)`` is ``D_RTRL(model, feedback=f,
    kappa_filter_decay=κ)``, under e-prop's name and argument order. As in D_RTRL, a weight whose output reaches the
    loss along a path its traces do not carry (bypassing its hidden group's
    new value) keeps the instantaneous gradient of that path.

    *The κ filter.* In e-prop a leaky readout :math:`r^t = κ r^{t-1} + z^t W`
    makes the loss at step ``t`` depend on a hidden neuron's activity at every
    earlier step; filtering the eligibility traces with the readout's ``κ``
    credits that memory (Bellec et al., eq. 11). Here the filter acts on the
    eligibility vector ε, contracted with the signal of step ``t``, so the
    neuron's pseudo-derivative (inside ``L^t``) enters at step ``t`` (e-prop
    filters :math:`ψ^{t'} ε^{t'}`); the two agree for units with a constant
    gain. Output groups are not filtered: a readout's own trace already
    carries its leak exactly. The filtered values are traces: updated in the
    forward pass, reset with the traces.

    *Random feedback.* Output errors of every output leaf are read as
    ``(*b, n_k)`` (``b`` the batch axes shared by the outputs) and
    concatenated to :math:`e^t` of shape ``(*b, n_out)``. For each non-output
    group ``g`` learned online, ``V_g`` must start with ``b``; :math:`B_g` has
    shape ``(n_out, prod(V_g[len(b):])·S_g)``, entries
    :math:`\mathcal N(0, 0.1^2)` drawn at compile time from
    ``random_feedback_key``, and column ``j`` is the C-order flat index of
    (position, state) over ``V_g[len(b):] + (S_g,)``; each batch element's
    error goes to the same batch element. Output groups keep their true
    signal, so a readout learns from the true error, as in e-prop. The
    matrices are in :attr:`feedback_matrices` (a
    :class:`~braintrace.FixedRandomFeedback` per group). The random signal
    carries no pseudo-derivative (e-prop multiplies it by :math:`ψ^t` inside
    its eligibility trace). For a model that returns a hidden state's old
    value (a spike from the voltage before its update), a random signal
    stands in for the whole error of the step and is credited to the current
    trace; the bypass term (DESIGN.md §3) of those groups is then not added,
    and compiling says so with a warning.

    Parameters
    ----------
    model : brainstate.nn.Module
        The model; weights learned online go through ETP primitives.
    feedback : {'symmetric', 'random'}, default 'symmetric'
    kappa_filter_decay : float, default 0.0
        ``κ`` in ``[0, 1)``; typically the decay of the leaky readout.
    random_feedback_key : int or jax PRNG key, optional
        Seed of the random feedback matrices; ``None`` draws one from
        ``brainstate.random`` at compile time.
    name : str, optional
    vjp_method : {'single-step', 'multi-step'}, default 'single-step'
        ``'multi-step'`` (BPTT inside a ``MultiStepData`` window) only with
        ``'symmetric'`` and ``κ = 0`` (it is then D_RTRL's hybrid); otherwise
        refused, the window's exact gradient would bypass the rule.
    fast_solve : bool, default True
        As in :class:`~braintrace.D_RTRL`.

    Attributes
    ----------
    feedback_matrices : dict
        ``{group index: FixedRandomFeedback}`` (``'random'``, after compiling).

    Raises
    ------
    ValueError
        A bad ``feedback`` or ``kappa_filter_decay``, or ``'multi-step'`` with
        another feedback or ``κ > 0``.
    CompilationError
        (compile time, ``'random'``) output leaves that disagree on their
        batch axes, or a hidden group whose leading axes are not those.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> net = brainstate.nn.Sequential(
    ...     braintrace.nn.Linear(3, 4), braintrace.nn.LIF(4, tau=10., dt=1.),
    ...     braintrace.nn.LeakyRateReadout(4, 2, decay=0.8))
    >>> _ = brainstate.nn.init_all_states(net)
    >>> learner = braintrace.EProp(net, 'random', kappa_filter_decay=0.8, random_feedback_key=0)
    >>> _ = learner.compile_graph(jnp.zeros(3))
    >>> [fb.matrix.shape for fb in learner.feedback_matrices.values()]
    [(2, 4)]
    >>> params = net.states(brainstate.ParamState)
    >>> grads = brainstate.transform.grad(lambda x: learner(x).sum(), params)(jnp.ones(3))
    >>> len(grads)
    2

    References
    ----------
    .. [1] Bellec, G., Scherr, F., Subramoney, A., Hajek, E., Salaj, D.,
       Legenstein, R., & Maass, W. (2020). A solution to the learning dilemma
       for recurrent networks of spiking neurons. Nature Communications, 11, 3625.
    """

    def __init__(
        self,
        model: Any,
        feedback: str = "symmetric",
        kappa_filter_decay: float = 0.0,
        random_feedback_key: Any = None,
        name: str | None = None,
        vjp_method: str = "single-step",
        fast_solve: bool = True,
    ) -> None:
        super().__init__(
            model, name=name, vjp_method=vjp_method, fast_solve=fast_solve, feedback=feedback,
            kappa_filter_decay=kappa_filter_decay, random_feedback_key=random_feedback_key,
        )
