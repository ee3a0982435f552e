r"""Trace helpers of the SNN online-learning rules.

Three small public pieces, as in braintrace 0.2.0. Two are
``brainstate.ShortTermState`` objects with a stateful ``update`` for hand-written
loops; the learners use the pure rules (:func:`leaky_sum`) inside their
``custom_vjp``:

* :class:`PresynapticTrace` — :math:`\hat a^t = λ\, \hat a^{t-1} + x^t`
  (OTTT, OTPE; :func:`leaky_sum` is also the learners' κ filter of their
  eligibility traces, e-prop's :math:`\bar e^t = κ\, \bar e^{t-1} + e^t`);
* :class:`KappaFilter` — the convex low-pass filter
  :math:`\bar v^t = (1 - κ)\, x^t + κ\, \bar v^{t-1}`;
* :class:`FixedRandomFeedback` — a frozen matrix :math:`B` of shape
  ``(n_target, n_layer)`` and its projection :math:`y B` (e-prop with random
  feedback, OSTTP).

The module also holds what the signal-replacing learners (random feedback,
available on every learner, and OSTTP) share: which hidden groups are hidden
layers (:func:`hidden_layer_groups`), how an output-sized vector is mapped
onto a hidden group's positions and states (:func:`project_to_group`), and
the random-feedback learning signal itself (:func:`random_feedback_matrices`,
:func:`random_feedback_signal`).
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Mapping
from typing import Any

import brainstate
import jax
import jax.numpy as jnp

from ..compiler.module_info import path_str
from ..compiler.outputs import output_groups
from ..errors import CompilationError

__all__ = [
    "FixedRandomFeedback",
    "KappaFilter",
    "PresynapticTrace",
    "as_key",
    "check_decay",
    "group_label",
    "hidden_layer_groups",
    "layer_size",
    "leaky_sum",
    "output_batch_shape",
    "output_error",
    "project_to_group",
    "random_feedback_matrices",
    "random_feedback_signal",
]


def check_decay(owner: str, arg: str, value: Any, closed_top: bool, open_bottom: bool = False) -> float:
    """``value`` as a float in ``[0, 1]`` (``closed_top``) or ``[0, 1)``; ``(0, …`` with ``open_bottom``.

    Raises a ``ValueError`` naming ``owner``, ``arg`` and the interval otherwise.
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = (0.0 < value if open_bottom else 0.0 <= value) and (value <= 1.0 if closed_top else value < 1.0)
    if not ok:
        interval = ("(" if open_bottom else "[") + "0, 1" + ("]" if closed_top else ")")
        raise ValueError(f"{owner}: `{arg}` must be a real number in {interval}, got {value!r}.")
    return value


def leaky_sum(prev: Any, x: Any, decay: Any) -> Any:
    """The pure recurrence ``decay * prev + x`` (leaf-wise, in ``prev``'s dtype).

    The presynaptic trace of OTTT and OTPE, and the κ filter the learners apply
    to their eligibility traces (Bellec et al., 2020, eq. 11).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from braintrace.algorithms.feedback import leaky_sum
    >>> leaky_sum(jnp.ones(2), jnp.ones(2), 0.5).tolist()
    [1.5, 1.5]
    """
    return jax.tree.map(lambda p, v: (decay * p + v).astype(jnp.result_type(p)), prev, x)


def _zeros_like_init(shapes: Any, batch_size: int | None) -> Any:
    """Zeros shaped like the initial value, the first axis replaced by ``batch_size`` (added to a 0-d leaf)."""
    if batch_size is not None and (
        not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool) or batch_size < 1
    ):
        raise ValueError(f"reset_state: `batch_size` must be a positive int or None, got {batch_size!r}.")

    def zeros(leaf: jax.ShapeDtypeStruct) -> jax.Array:
        shape = tuple(leaf.shape)
        if batch_size is not None:
            shape = (int(batch_size),) + shape[1:]
        return jnp.zeros(shape, leaf.dtype)

    return jax.tree.map(zeros, shapes)


class _TraceState(brainstate.ShortTermState):
    """A ``ShortTermState`` advanced by :meth:`update` and zeroed by :meth:`reset_state`."""

    _arg: str = "decay"

    def __init__(self, init_value: Any, rate: Any, name: str | None = None, **metadata: Any) -> None:
        value = jax.tree.map(jnp.asarray, init_value)
        shapes = jax.tree.map(lambda v: jax.ShapeDtypeStruct(v.shape, v.dtype), value)
        metadata[self._arg] = rate
        super().__init__(value, name=name, _init_shapes=shapes, **metadata)

    @property
    def trace(self) -> _TraceState:
        """The state itself (the helper was a module holding a ``trace`` state before 0.2.0 compatibility)."""
        return self

    def reset_state(self, batch_size: int | None = None, **kwargs: Any) -> None:
        """Zeros of the initial shape; with ``batch_size`` the first axis becomes ``batch_size``.

        Parameters
        ----------
        batch_size : int, optional
            Size of the leading (batch) axis: an initial value of shape
            ``(n, *rest)`` becomes ``(batch_size, *rest)``, a 0-d one
            ``(batch_size,)``. ``None`` keeps the initial shape.
        **kwargs
            Ignored (accepted as by ``brainstate.nn.Module.reset_state``).
        """
        self.value = _zeros_like_init(vars(self)["_init_shapes"], batch_size)


class PresynapticTrace(_TraceState):
    r"""Presynaptic trace, a leaky sum of the inputs of a synapse.

    .. math:: \hat a^t = λ\, \hat a^{t-1} + x^t

    This is the trace OTTT keeps instead of the eligibility trace (Xiao et
    al., 2022); for a neuron whose membrane decays by exactly ``λ`` per step
    and integrates ``x W`` without a gain, :math:`\hat a^t \otimes 1` *is* the
    eligibility trace of ``W``. It is a ``brainstate.ShortTermState`` (its
    ``value`` is :math:`\hat a`); the learners call :meth:`rule` inside their
    step, the state form is for hand-written loops.

    Parameters
    ----------
    init_value : array or pytree
        Initial trace, shaped like the input ``x`` (batch axes included).
    leak : float
        ``λ`` in the open interval ``(0, 1)``; ``ValueError`` otherwise.
    name : str, optional
        Name of the state.

    Attributes
    ----------
    leak : float
        ``λ``.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> tr = braintrace.PresynapticTrace(jnp.zeros(2), leak=0.5)
    >>> isinstance(tr, brainstate.ShortTermState)
    True
    >>> _ = tr.update(jnp.array([1.0, 0.0]))
    >>> tr.update(jnp.array([0.0, 1.0])).tolist()
    [0.5, 1.0]
    >>> tr.reset_state(batch_size=3)
    >>> tr.value.shape
    (3,)

    References
    ----------
    .. [1] Xiao, M., Meng, Q., Zhang, Z., He, D., & Lin, Z. (2022). Online
       training through time for spiking neural networks. NeurIPS 35.
    """

    _arg = "leak"
    leak: float
    rule = staticmethod(leaky_sum)

    def __init__(self, init_value: Any, leak: float, name: str | None = None) -> None:
        leak = check_decay("PresynapticTrace", "leak", leak, closed_top=False, open_bottom=True)
        super().__init__(init_value, leak, name=name)

    def update(self, x: Any) -> Any:
        """Advance one step, ``v = leak * v + x``, and return the new value.

        Parameters
        ----------
        x : array or pytree
            The input of the step, shaped like the trace.
        """
        self.value = leaky_sum(self.value, x, self.leak)
        return self.value


class KappaFilter(_TraceState):
    r"""A low-pass filter: the convex average of the input and the filtered value.

    .. math:: \bar v^t = (1 - κ)\, x^t + κ\, \bar v^{t-1}

    It is a ``brainstate.ShortTermState`` (its ``value`` is :math:`\bar v`).
    The learners' ``kappa_filter_decay`` (:class:`~braintrace.EProp`) filters
    their eligibility traces with the leaky sum :math:`κ\, \bar e + e`
    instead (Bellec et al., 2020, eq. 11), which is :math:`1/(1-κ)` times
    this average.

    Parameters
    ----------
    init_value : array or pytree
        Initial filtered value.
    kappa : float
        ``κ`` in ``[0, 1)``; ``ValueError`` otherwise.
    name : str, optional
        Name of the state.

    Attributes
    ----------
    kappa : float
        ``κ``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> f = braintrace.KappaFilter(jnp.zeros(()), kappa=0.5)
    >>> [float(f.update(2.0)) for _ in range(3)]
    [1.0, 1.5, 1.75]

    References
    ----------
    .. [1] Bellec, G., Scherr, F., Subramoney, A., Hajek, E., Salaj, D.,
       Legenstein, R., & Maass, W. (2020). A solution to the learning dilemma
       for recurrent networks of spiking neurons. Nature Communications, 11, 3625.
    """

    _arg = "kappa"
    kappa: float

    def __init__(self, init_value: Any, kappa: float, name: str | None = None) -> None:
        kappa = check_decay("KappaFilter", "kappa", kappa, closed_top=False)
        super().__init__(init_value, kappa, name=name)

    @staticmethod
    def rule(prev: Any, x: Any, kappa: Any) -> Any:
        """The pure filter ``(1 - kappa) * x + kappa * prev`` (leaf-wise, in ``prev``'s dtype).

        Parameters
        ----------
        prev : array or pytree
            The filtered value of the previous step.
        x : array or pytree
            The input of the step, shaped like ``prev``.
        kappa : float
            ``κ``.
        """
        return jax.tree.map(lambda p, v: ((1 - kappa) * v + kappa * p).astype(jnp.result_type(p)), prev, x)

    def update(self, x: Any) -> Any:
        """Advance one step, ``v = (1 - kappa) * x + kappa * v``, and return the new value.

        Parameters
        ----------
        x : array or pytree
            The input of the step, shaped like the filtered value.
        """
        self.value = self.rule(self.value, x, self.kappa)
        return self.value


def as_key(key: Any) -> jax.Array:
    if isinstance(key, numbers.Integral) and not isinstance(key, bool):
        return jax.random.PRNGKey(int(key))
    if key is None:
        return brainstate.random.split_key()
    return key


class FixedRandomFeedback(brainstate.nn.Module):
    r"""A frozen random feedback matrix.

    .. math:: B_{jk} \sim \mathcal N(0, s^2), \qquad \mathrm{project}(y) = y B

    ``B`` has shape ``(n_target, n_layer)``. It is a plain array attribute,
    not a ``State``: it never appears in ``model.states()`` and never receives
    a gradient. Used by :class:`~braintrace.EProp` (``feedback='random'``,
    projecting the output error) and :class:`~braintrace.OSTTP` (projecting
    the target).

    Parameters
    ----------
    n_target : int
        Size of the projected vector (outputs or targets).
    n_layer : int
        Size of the layer it is projected onto.
    key : int or jax PRNG key, optional
        Seed or key; ``None`` draws one from ``brainstate.random``.
    init_scale : float, default 0.1
        Standard deviation ``s`` of the entries.
    dtype : dtype, optional
        Default ``brainstate.environ.dftype()``.
    name : str, optional
        The module's name.

    Attributes
    ----------
    B : jax.Array
        The matrix, shape ``(n_target, n_layer)``; ``matrix`` is the same array.
    n_target, n_layer : int
        Its sizes.
    init_scale : float
        ``s``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> fb = braintrace.FixedRandomFeedback(2, 3, key=0)
    >>> fb.B.shape, fb.project(jnp.ones((4, 2))).shape
    ((2, 3), (4, 3))

    References
    ----------
    .. [1] Nøkland, A. (2016). Direct feedback alignment provides learning in
       deep neural networks. NeurIPS 29.
    .. [2] Frenkel, C., Lefebvre, M., & Bol, D. (2021). Learning without
       feedback: fixed random learning signals allow for feedforward training
       of deep neural networks. Frontiers in Neuroscience, 15, 629892.
    """

    def __init__(
        self,
        n_target: int,
        n_layer: int,
        key: Any = None,
        init_scale: float = 0.1,
        dtype: Any = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        for arg, val in (("n_target", n_target), ("n_layer", n_layer)):
            if not isinstance(val, numbers.Integral) or isinstance(val, bool) or val < 1:
                raise ValueError(f"FixedRandomFeedback: `{arg}` must be a positive int, got {val!r}.")
        if not isinstance(init_scale, numbers.Real) or not init_scale > 0:
            raise ValueError(f"FixedRandomFeedback: `init_scale` must be a positive number, got {init_scale!r}.")
        self.n_target: int = int(n_target)
        self.n_layer: int = int(n_layer)
        self.init_scale: float = float(init_scale)
        dtype = brainstate.environ.dftype() if dtype is None else dtype
        self.B: jax.Array = self.init_scale * jax.random.normal(as_key(key), (self.n_target, self.n_layer), dtype)

    @property
    def matrix(self) -> jax.Array:
        """``B`` (the name before 0.2.0 compatibility)."""
        return self.B

    def project(self, y: Any) -> jax.Array:
        """``y B``: ``y`` of shape ``(..., n_target)`` to ``(..., n_layer)``.

        Parameters
        ----------
        y : array_like
            The vector(s) to project (an output error or a target), shape
            ``(..., n_target)``; a non-floating ``y`` is cast to the matrix's dtype.
        """
        y = jnp.asarray(y)
        if y.ndim == 0 or y.shape[-1] != self.n_target:
            raise ValueError(
                f"FixedRandomFeedback.project: the last axis of `y` must have size n_target={self.n_target}, "
                f"got shape {y.shape}."
            )
        dtype = jnp.result_type(y) if jnp.issubdtype(jnp.result_type(y), jnp.floating) else self.B.dtype
        return y.astype(dtype) @ self.B.astype(dtype)


def output_batch_shape(graph, owner: str) -> tuple[tuple[int, ...], int]:
    """``(b, n_out)``: the outputs' shared batch axes and their total feature size.

    Every output leaf is read as ``(*b, n_k)`` (a 0-d leaf as ``n_k = 1``);
    ``n_out = Σ_k n_k``.
    """
    minfo = graph.module_info
    shapes = [tuple(v.aval.shape) for v in minfo.jaxpr.outvars[: minfo.num_out_leaves]]
    batches = {s[:-1] for s in shapes}
    if len(batches) != 1:
        raise CompilationError(
            f"{owner}: the model's output leaves have shapes {shapes}; their leading (batch) axes must agree "
            "so that the output error can be projected onto the hidden layers. Return one array of shape "
            "(*batch, n_out), or leaves sharing their batch axes."
        )
    return batches.pop(), sum(s[-1] if s else 1 for s in shapes)


def output_error(out_cts: Any, batch: tuple[int, ...]) -> jax.Array:
    """The output cotangents ``∂L^t/∂o^t`` concatenated to shape ``(*b, n_out)``."""
    leaves = [jnp.reshape(c, tuple(batch) + (-1,)) for c in jax.tree.leaves(out_cts)]
    return leaves[0] if len(leaves) == 1 else jnp.concatenate(leaves, axis=-1)


def layer_size(group, batch: tuple[int, ...], owner: str) -> int:
    """``prod(V[len(b):]) · S``: the group's positions and states per batch element."""
    nb = len(batch)
    if tuple(group.varshape[:nb]) != tuple(batch):
        raise CompilationError(
            f"{owner}: hidden group ({group_label(group)}) has per-position shape {group.varshape}, whose leading "
            f"axes do not match the batch axes {tuple(batch)} of the model's outputs; the feedback projection "
            "maps each batch element's output onto the same batch element's neurons. Give the hidden "
            "states and the outputs the same leading batch axes."
        )
    return int(math.prod(group.varshape[nb:])) * int(group.num_state)


def project_to_group(matrix: jax.Array, y: jax.Array, group, dtype: Any) -> jax.Array:
    r"""``reshape(y B, (*V, S))``: column ``j`` of ``B`` is the C-order flat index
    of (position, state) over ``V[len(b):] + (S,)``."""
    proj = y.astype(dtype) @ matrix.astype(dtype)
    return proj.reshape(tuple(group.varshape) + (group.num_state,))


def group_label(group) -> str:
    """The group's member paths, for messages (```h`, `c```)."""
    return ", ".join("`" + path_str(p) + "`" for p in group.hidden_paths)


def hidden_layer_groups(graph) -> tuple[int, ...]:
    """The hidden groups learned online that are not output groups, in graph order.

    These are the groups whose learning signal random feedback (and OSTTP's
    target projection) replaces, and whose traces the κ filter acts on; an
    output group (:func:`~braintrace.compiler.outputs.output_groups`) keeps
    its true signal and its own traces.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> from braintrace.algorithms.feedback import hidden_layer_groups
    >>> net = brainstate.nn.Sequential(braintrace.nn.Linear(3, 4), braintrace.nn.LIF(4, tau=10., dt=1.),
    ...                                braintrace.nn.LeakyRateReadout(4, 2, decay=0.8))
    >>> _ = brainstate.nn.init_all_states(net)
    >>> graph = braintrace.compile_etrace_graph(net, jnp.zeros(3))
    >>> [graph.hidden_groups[gi].hidden_paths for gi in hidden_layer_groups(graph)]
    [(('layers', 1, 'v'),)]
    """
    outputs = output_groups(graph)
    online = sorted({gi for r in graph.hidden_param_op_relations for gi in r.hidden_groups})
    return tuple(gi for gi in online if gi not in outputs)


def random_feedback_matrices(graph, key: Any, owner: str) -> tuple[tuple[int, ...], dict[int, FixedRandomFeedback]]:
    """``(b, {group: B_g})``: the outputs' batch axes and one frozen matrix per hidden layer group.

    ``B_g`` has shape ``(n_out, prod(V_g[len(b):])·S_g)``, entries
    ``N(0, 0.1²)`` drawn from ``key`` (split once per group). Warns
    when no group receives random feedback (every group learned online is an
    output group) and when a group's old value is returned (its bypass term
    is then not added, see :func:`random_feedback_signal`).

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> from braintrace.algorithms.feedback import random_feedback_matrices
    >>> net = brainstate.nn.Sequential(braintrace.nn.Linear(3, 4), braintrace.nn.LIF(4, tau=10., dt=1.),
    ...                                braintrace.nn.LeakyRateReadout(4, 2, decay=0.8))
    >>> _ = brainstate.nn.init_all_states(net)
    >>> graph = braintrace.compile_etrace_graph(net, jnp.zeros(3))
    >>> batch, mats = random_feedback_matrices(graph, 0, "D_RTRL")
    >>> batch, [m.B.shape for m in mats.values()]
    ((), [(2, 4)])
    """
    groups = hidden_layer_groups(graph)
    if not groups:
        warnings.warn(
            f"{owner}(feedback='random'): every hidden group learned online reaches a model output directly "
            "(an output group, e.g. a state read out by a plain JAX product or a leaky readout), and output groups "
            "keep their true learning signal: no group receives random feedback, the gradient is the "
            "symmetric one. Read the hidden states out through an ETP primitive (braintrace.matmul, "
            "braintrace.nn.Linear) for the random feedback to apply.",
            UserWarning,
            stacklevel=4,
        )
        return (), {}
    batch, n_out = output_batch_shape(graph, owner)
    sizes = [layer_size(graph.hidden_groups[gi], batch, owner) for gi in groups]
    keys = jax.random.split(as_key(key), len(groups))
    mats = {gi: FixedRandomFeedback(n_out, n, k) for gi, n, k in zip(groups, sizes, keys)}
    replaced = [p for gi in mats for p in graph.hidden_groups[gi].hidden_paths if p in graph.bypass_paths]
    if replaced:
        warnings.warn(
            f"{owner}(feedback='random'): the model returns the old value of "
            f"{', '.join('`' + path_str(p) + '`' for p in replaced)} (read before the write); the random "
            "learning signal of those neurons is credited to their current trace, and the bypass term "
            "dL[t]/dh[t-1] · trace[t-1] is not added for them.",
            UserWarning,
            stacklevel=4,
        )
    return batch, mats


def random_feedback_signal(
    graph, matrices: Mapping[int, FixedRandomFeedback], batch: tuple[int, ...], delta: Mapping, delta_prev: Mapping,
    out_cts: Any,
) -> tuple[dict, dict]:
    """``(signal, signal_prev)`` with ``reshape(e^t B_g)`` for every group of ``matrices``.

    ``e^t`` is the output error (:func:`output_error`); the other groups keep
    ``delta``. The random signal stands in for the whole error of the step:
    the bypass signal ``delta_prev`` of those groups is set to zero.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> from braintrace.algorithms.feedback import random_feedback_matrices, random_feedback_signal
    >>> net = brainstate.nn.Sequential(braintrace.nn.Linear(3, 4), braintrace.nn.LIF(4, tau=10., dt=1.),
    ...                                braintrace.nn.LeakyRateReadout(4, 2, decay=0.8))
    >>> _ = brainstate.nn.init_all_states(net)
    >>> graph = braintrace.compile_etrace_graph(net, jnp.zeros(3))
    >>> batch, mats = random_feedback_matrices(graph, 0, "D_RTRL")
    >>> delta = {g.index: jnp.zeros(g.varshape + (g.num_state,)) for g in graph.hidden_groups}
    >>> sig, _ = random_feedback_signal(graph, mats, batch, delta, {}, (jnp.ones(2),))
    >>> [tuple(v.shape) for v in sig.values()]
    [(4, 1), (2, 1)]
    """
    out, prev = dict(delta), dict(delta_prev)
    err = output_error(out_cts, batch)
    for gi, fb in matrices.items():
        out[gi] = project_to_group(fb.B, err, graph.hidden_groups[gi], delta[gi].dtype)
        if gi in prev:
            prev[gi] = jnp.zeros_like(prev[gi])
    return out, prev
