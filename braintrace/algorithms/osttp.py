r"""OSTTP: online spatio-temporal learning with target projection (Ortner et al., 2023).

OSTL's eligibility traces combined with DRTP's learning signal: a hidden
layer learns from a fixed random projection of the *target* instead of the
back-propagated error, so no error has to travel backwards through the
network (no weight transport, no update locking).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from .. import data as braintrace_data

from ..compiler.module_info import path_str
from ..errors import CompilationError
from .d_rtrl import ParamDimVjpAlgorithm
from .feedback import (
    FixedRandomFeedback, group_label, hidden_layer_groups, layer_size, output_batch_shape, project_to_group,
)

__all__ = ["OSTTP"]

_TIMINGS = ("per-step", "end")


class OSTTP(ParamDimVjpAlgorithm):
    r"""OSTL traces with the learning signal replaced by a random projection of the target.

    Notation: ``y^{*t}`` the target given at step ``t`` (shape ``(*b, n_target)``,
    ``b`` the batch axes of the model's outputs), ``B_g`` the fixed matrix of
    hidden group ``g`` (shape ``(n_target, prod(V_g[len(b):])·S_g)``), an
    *output group* a hidden group whose new value reaches a model output
    without passing the data input of an ETP primitive (e.g. a leaky readout).

    .. math::

        ε_w^t &= D^t ε_w^{t-1} + df^t \otimes \frac{\partial y^t}{\partial w}
            \qquad\text{(the D_RTRL / OSTL trace)} \\
        L_g^t &= \begin{cases}
            \mathrm{reshape}\big(y^{*t} B_g,\ (*V_g, S_g)\big) & g \text{ not an output group, target given at } t \\
            0 & g \text{ not an output group, no target at } t \\
            \hat δ_g^t & g \text{ an output group}
        \end{cases} \\
        \nabla_w L &\mathrel{+}= L_g^t \cdot ε_w^t

    :math:`\hat δ_g^t` is the same-step total derivative ∂L^t/∂h_g^t (every other
    value of the step responding). A weight whose output also reaches the loss
    through another trainable weight (the input weights of a layer feeding the
    readout) gets :math:`L_g^t \cdot ε_w^t` only: the projected target stands
    for its whole same-step credit, and only paths that bypass the group's new
    value keep their instantaneous gradient.

    Column ``j`` of ``B_g`` is the C-order flat index of (position, state)
    over ``V_g[len(b):] + (S_g,)``; each batch element's target is projected
    onto the same batch element. Output groups (the output layer) learn from
    the true error of the loss, as in OSTTP and DRTP. The sign convention of
    DRTP (``-B y^*`` as the error estimate) is absorbed in the random ``B``.

    *Target timing.* ``'per-step'``: a target is required at every call;
    a ``MultiStepData`` window takes one of shape ``(K, *b, n_target)``.
    ``'end'``: the target is optional; a step called without it gives the
    hidden layers no learning signal (their traces still run), a step called
    with it gives :math:`y^* B_g \cdot ε_w^t` — at the end of a sequence,
    where ``ε`` has accumulated the whole sequence. A window called with a
    target (shape ``(*b, n_target)``, no time axis) applies it at the
    window's last step only.

    Parameters
    ----------
    model : brainstate.nn.Module
    B_list : sequence or mapping
        One feedback matrix per hidden group that learns online and is not an
        output group, in ``learner.graph.hidden_groups`` order (a sequence), or
        keyed by a member's hidden path (``'lif.v'`` or ``('lif', 'v')``).
        Each is a :class:`~braintrace.FixedRandomFeedback` or an array of shape
        ``(n_target, n_layer)``; checked at compile time.
    target_timing : {'per-step', 'end'}, default 'per-step'
        (``'sequence-end'``, 0.2.0's name, is ``'end'``.)
    name : str, optional
    vjp_method : {'single-step'}, default 'single-step'
        ``'multi-step'`` is refused: it differentiates a window with the true
        error, which OSTTP replaces.
    fast_solve : bool, default True

    Raises
    ------
    TypeError
        ``B_list`` neither a sequence nor a mapping.
    ValueError
        A bad ``target_timing``, ``'multi-step'``, a missing target under
        ``'per-step'``, or a target of the wrong shape.
    CompilationError
        (compile time) ``B_list`` does not match the hidden groups (count,
        paths or shapes).

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> net = brainstate.nn.Sequential(
    ...     braintrace.nn.Linear(3, 4), braintrace.nn.LIF(4, tau=10., dt=1.),
    ...     braintrace.nn.LeakyRateReadout(4, 2, decay=0.8))
    >>> _ = brainstate.nn.init_all_states(net)
    >>> B = braintrace.FixedRandomFeedback(n_target=2, n_layer=4, key=0)
    >>> learner = braintrace.OSTTP(net, [B]).compile_graph(jnp.zeros(3))
    >>> y_star = jnp.array([1.0, 0.0])
    >>> loss = lambda x: jnp.sum((learner(x, y_star) - y_star) ** 2)
    >>> grads = brainstate.transform.grad(loss, net.states(brainstate.ParamState))(jnp.ones(3))
    >>> len(grads)
    2

    References
    ----------
    .. [1] Ortner, T., Pes, L., Gentinetta, J., Frenkel, C., & Pantazi, A.
       (2023). Online spatio-temporal learning with target projection. IEEE
       AICAS 2023. arXiv:2304.05124.
    .. [2] Frenkel, C., Lefebvre, M., & Bol, D. (2021). Learning without
       feedback: fixed random learning signals allow for feedforward training
       of deep neural networks. Frontiers in Neuroscience, 15, 629892.
    """

    def __init__(
        self,
        model: Any,
        B_list: Sequence[Any] | Mapping[Any, Any],
        target_timing: str = "per-step",
        name: str | None = None,
        vjp_method: str = "single-step",
        fast_solve: bool = True,
    ) -> None:
        super().__init__(model, name=name, vjp_method=vjp_method, fast_solve=fast_solve)
        if target_timing == "sequence-end":  # 0.2.0's name
            target_timing = "end"
        if target_timing not in _TIMINGS:
            raise ValueError(f"OSTTP: target_timing must be one of {_TIMINGS}, got {target_timing!r}.")
        if vjp_method == "multi-step":
            raise ValueError(
                "OSTTP: vjp_method='multi-step' differentiates a window exactly with the true error, but "
                "OSTTP replaces the hidden layers' learning signal by a projection of the target; the two do "
                "not combine. Use vjp_method='single-step' (MultiStepData windows then run step by step)."
            )
        if isinstance(B_list, (str, bytes)) or not isinstance(B_list, (Sequence, Mapping)):
            raise TypeError(
                f"OSTTP: B_list must be a sequence of feedback matrices (one per hidden layer) or a mapping "
                f"from hidden path to matrix, got {type(B_list).__name__}."
            )
        self.B_list: Any = B_list if isinstance(B_list, Mapping) else tuple(B_list)
        self.target_timing: str = target_timing
        self.feedback_matrices: dict[int, jax.Array] = {}
        self.n_target: int | None = None
        self.batch_axes: tuple[int, ...] = ()

    # -- compile: match B_list with the hidden groups ---------------------------
    def on_compile(self, graph: Any) -> None:
        super().on_compile(graph)
        hidden = list(hidden_layer_groups(graph))
        groups = graph.hidden_groups
        names = "; ".join(f"({group_label(groups[gi])})" for gi in hidden) or "none"
        self.batch_axes, _ = output_batch_shape(graph, "OSTTP")
        sizes = {gi: layer_size(groups[gi], self.batch_axes, "OSTTP") for gi in hidden}
        if isinstance(self.B_list, Mapping):
            by_path = {path_str(p): gi for gi in hidden for p in groups[gi].hidden_paths}
            chosen = {}
            for k, v in self.B_list.items():
                key = k if isinstance(k, str) else path_str(tuple(k))
                if key not in by_path:
                    raise CompilationError(f"OSTTP: B_list names `{key}`, which is not a member of a hidden group that learns "
                        f"online through a target projection. Those groups are: {names}.",
                    )
                chosen[by_path[key]] = v
            missing = [gi for gi in hidden if gi not in chosen]
            if missing:
                raise CompilationError("OSTTP: B_list has no matrix for "
                    + "; ".join(f"({group_label(groups[gi])})" for gi in missing)
                    + "; their weights would get a zero gradient. Give one matrix per hidden group.",
                )
        else:
            if len(self.B_list) != len(hidden):
                raise CompilationError(f"OSTTP: B_list has {len(self.B_list)} matrices but the model has {len(hidden)} hidden "
                    f"group(s) learning through a target projection, in this order: {names} (output groups, "
                    "which learn from the true error, take none).",
                )
            chosen = dict(zip(hidden, self.B_list))
        mats, n_targets = {}, set()
        for gi, b in chosen.items():
            m = b.matrix if isinstance(b, FixedRandomFeedback) else jnp.asarray(b)
            if m.ndim != 2 or m.shape[1] != sizes[gi]:
                raise CompilationError(f"OSTTP: the feedback matrix for ({group_label(groups[gi])}) has shape {tuple(m.shape)}; it "
                    f"must be (n_target, {sizes[gi]}) (positions × states per batch element).",
                )
            mats[gi] = m
            n_targets.add(int(m.shape[0]))
        if len(n_targets) > 1:
            raise CompilationError(f"OSTTP: the feedback matrices disagree on n_target: {sorted(n_targets)}.")
        self.feedback_matrices = mats
        self.n_target = n_targets.pop() if n_targets else None

    # -- running ----------------------------------------------------------------
    def update(self, x: Any, y_target: Any = None, *, modulator: Any = None) -> Any:  # type: ignore[override]
        """One step (or a ``MultiStepData`` window) with an optional target.

        Parameters
        ----------
        x : array, SingleStepData or MultiStepData
            The model's input.
        y_target : array, optional
            ``(*b, n_target)`` for a step (and for a window under ``'end'``),
            ``(K, *b, n_target)`` for a window under ``'per-step'``.
        modulator : scalar, array or mapping, optional
            Three-factor learning: replaces the learning signal (the projected
            target included); see :meth:`ETraceVjpAlgorithm.update`.

        Returns
        -------
        The model's output.

        Examples
        --------
        >>> import brainstate, jax.numpy as jnp
        >>> import braintrace
        >>> net = brainstate.nn.Sequential(braintrace.nn.Linear(3, 4), braintrace.nn.LIF(4, tau=10., dt=1.),
        ...                                braintrace.nn.LeakyRateReadout(4, 2, decay=0.8))
        >>> _ = brainstate.nn.init_all_states(net)
        >>> learner = braintrace.OSTTP(net, [jnp.ones((2, 4))]).compile_graph(jnp.zeros(3))
        >>> learner(jnp.ones(3), jnp.array([1.0, 0.0])).shape
        (2,)
        """
        self.check_compiled()
        multi = isinstance(x, braintrace_data.MultiStepData)
        steps = x.num_steps if multi else 1
        return self.run((x,), signal=self._signal(y_target, multi, steps), modulator=modulator)

    def _signal(self, y_target: Any, multi: bool, steps: int) -> Any:
        if y_target is None:
            if self.target_timing == "per-step":
                raise ValueError(
                    "OSTTP(target_timing='per-step') needs `y_target` at every call: learner(x, y_target). "
                    "Use target_timing='end' to give a target only at the end of a sequence."
                )
            return ()
        y = jnp.asarray(y_target)
        if not jnp.issubdtype(y.dtype, jnp.floating):
            y = y.astype(jnp.result_type(float))
        want = tuple(self.batch_axes) + (self.n_target,)
        if multi and self.target_timing == "per-step":
            want = (steps,) + want
        if tuple(y.shape) != want:
            raise ValueError(
                f"OSTTP: y_target has shape {tuple(y.shape)}, expected {want} "
                f"(target_timing={self.target_timing!r}, {'a window' if multi else 'one step'})."
            )
        if not multi:
            return {"y": y, "on": jnp.ones((), y.dtype)}
        if self.target_timing == "per-step":
            return {"y": y, "on": jnp.ones((steps,), y.dtype)}
        on = jnp.zeros((steps,), y.dtype).at[-1].set(1.0)
        return {"y": jnp.broadcast_to(y, (steps,) + y.shape), "on": on}

    def replaces_signal(self, signal: Any) -> bool:
        """``True``: the hidden layers' signal is the projected target.

        Parameters
        ----------
        signal : pytree
            The call's target (not used).
        """
        return True

    def learning_signal(
        self, delta: Mapping, delta_prev: Mapping, *, out_cts: Any, signal: Any, count: jax.Array
    ) -> tuple[dict, dict]:
        """The true signal for output groups, the projected target (or zero) for the others.

        Parameters
        ----------
        delta : mapping
            ``{group index: (*V, S)}``, ``∂L^t/∂h^t`` of every hidden group (kept for
            output groups).
        delta_prev : mapping
            ``{group index: (*V, S)}``, ``∂L^t/∂h^{t-1}`` of the groups read before they are
            written (zeroed for the groups that get the projected target).
        out_cts : tuple of arrays
            The cotangents of the model's outputs (not read: the target stands for the error).
        signal : dict or tuple
            ``{'y': target, 'on': flag}`` as :meth:`update` builds it (the target of shape
            ``(*b, n_target)``, ``on`` 1 where it applies at this step, else 0), or ``()``
            for a step called without a target (``target_timing='end'``).
        count : jax.Array
            The step's number (not read).

        Returns
        -------
        signal : dict
            Keyed and shaped as ``delta``: the projected target (or zero) for hidden layers.
        signal_prev : dict
            Keyed and shaped as ``delta_prev``: zero for hidden layers.
        """
        assert self.graph is not None  # the learner calls its hooks after compile_graph
        out, prev = dict(delta), dict(delta_prev)
        for gi, m in self.feedback_matrices.items():
            g = self.graph.hidden_groups[gi]
            if isinstance(signal, tuple) and not signal:
                out[gi] = jnp.zeros_like(delta[gi])
            else:
                on = jnp.asarray(signal["on"], delta[gi].dtype)
                out[gi] = on * project_to_group(m, signal["y"], g, delta[gi].dtype)
            if gi in prev:
                prev[gi] = jnp.zeros_like(prev[gi])
        return out, prev
