r"""Trace helpers of the SNN online-learning rules.

Three small public pieces, each a ``brainstate.nn.Module`` with one pure
rule that the learners call inside their ``custom_vjp`` (so the rule has a
single definition) and a stateful :meth:`update` for hand-written loops:

* :class:`PresynapticTrace` — :math:`\hat a^t = λ\, \hat a^{t-1} + x^t`
  (OTTT, OTPE);
* :class:`KappaFilter` — :math:`\bar e^t = κ\, \bar e^{t-1} + e^t`
  (e-prop's low-pass filter of the eligibility traces);
* :class:`FixedRandomFeedback` — a frozen matrix :math:`B` of shape
  ``(n_target, n_layer)`` and its projection :math:`y B` (e-prop with random
  feedback, OSTTP).

The module also holds what those learners share about a compiled graph:
which hidden groups are *output groups* and how an output-sized vector is
mapped onto a hidden group's positions and states (:func:`project_to_group`).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import brainstate
import jax
import jax.numpy as jnp

from ..compiler.hidden_groups import cut_data_inputs
from ..compiler.jaxpr_tools import UseDef, eval_eqn, is_literal
from ..compiler.module_info import path_str
from ..errors import CompilationError
from ..primitives.trace_rules import sum_to_shape

__all__ = [
    "PresynapticTrace",
    "KappaFilter",
    "FixedRandomFeedback",
    "output_groups",
    "output_batch_shape",
    "output_error",
    "layer_size",
    "project_to_group",
]


def _check_decay(owner: str, arg: str, value: Any, closed_top: bool) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = 0.0 <= value <= 1.0 if closed_top else 0.0 <= value < 1.0
    if not ok:
        interval = "[0, 1]" if closed_top else "[0, 1)"
        raise ValueError(f"{owner}: `{arg}` must be a real number in {interval}, got {value!r}.")
    return value


class _Leaky(brainstate.nn.Module):
    """``value = decay * value + x`` held in a ``ShortTermState`` (any pytree)."""

    _arg = "decay"

    def __init__(self, init_value: Any, decay: float, name: str | None = None) -> None:
        super().__init__(name=name)
        self._decay = _check_decay(type(self).__name__, self._arg, decay, closed_top=True)
        self._init = jax.tree.map(jnp.asarray, init_value)
        self.trace = brainstate.ShortTermState(self._init)

    @staticmethod
    def rule(prev: Any, x: Any, decay: Any) -> Any:
        """The pure recurrence ``decay * prev + x`` (leaf-wise, in ``prev``'s dtype)."""
        return jax.tree.map(lambda p, v: (decay * p + v).astype(jnp.result_type(p)), prev, x)

    def update(self, x: Any) -> Any:
        """Advance one step with input ``x`` and return the new value."""
        self.trace.value = self.rule(self.trace.value, x, self._decay)
        return self.trace.value

    def reset_state(self, *args: Any, **kwargs: Any) -> None:
        """Back to the initial value (same state object)."""
        self.trace.value = self._init


class PresynapticTrace(_Leaky):
    r"""Presynaptic trace, a leaky sum of the inputs of a synapse.

    .. math:: \hat a^t = λ\, \hat a^{t-1} + x^t

    This is the trace OTTT keeps instead of the eligibility trace (Xiao et
    al., 2022); for a neuron whose membrane decays by exactly ``λ`` per step
    and integrates ``x W`` without a gain, :math:`\hat a^t \otimes 1` *is* the
    eligibility trace of ``W``. The learners call :meth:`rule` inside their
    step; the module form is for hand-written loops.

    Parameters
    ----------
    init_value : array or pytree
        Initial trace, shaped like the input ``x`` (batch axes included).
    leak : float
        ``λ`` in ``[0, 1]``.
    name : str, optional

    Attributes
    ----------
    trace : brainstate.ShortTermState
        :math:`\hat a`; ``reset_state`` puts ``init_value`` back.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> tr = braintrace.PresynapticTrace(jnp.zeros(2), leak=0.5)
    >>> _ = tr.update(jnp.array([1.0, 0.0]))
    >>> tr.update(jnp.array([0.0, 1.0])).tolist()
    [0.5, 1.0]

    References
    ----------
    .. [1] Xiao, M., Meng, Q., Zhang, Z., He, D., & Lin, Z. (2022). Online
       training through time for spiking neural networks. NeurIPS 35.
    """

    _arg = "leak"

    def __init__(self, init_value: Any, leak: float, name: str | None = None) -> None:
        super().__init__(init_value, leak, name=name)

    @property
    def leak(self) -> float:
        return self._decay


class KappaFilter(_Leaky):
    r"""e-prop's low-pass filter of eligibility traces.

    .. math:: \bar e^t = κ\, \bar e^{t-1} + e^t

    With ``κ`` the decay of a leaky readout, :math:`\sum_t δ^t \cdot \bar e^t`
    credits a hidden neuron for the readout's memory of its past activity
    (Bellec et al., 2020, eq. 11). :class:`~braintrace.EProp` applies
    :meth:`rule` to its traces in the forward pass.

    Parameters
    ----------
    init_value : array or pytree
        Initial filtered value.
    kappa : float
        ``κ`` in ``[0, 1]``.
    name : str, optional

    Attributes
    ----------
    trace : brainstate.ShortTermState
        :math:`\bar e`.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> f = braintrace.KappaFilter(jnp.zeros(()), kappa=0.9)
    >>> [round(float(f.update(1.0)), 3) for _ in range(3)]
    [1.0, 1.9, 2.71]

    References
    ----------
    .. [1] Bellec, G., Scherr, F., Subramoney, A., Hajek, E., Salaj, D.,
       Legenstein, R., & Maass, W. (2020). A solution to the learning dilemma
       for recurrent networks of spiking neurons. Nature Communications, 11, 3625.
    """

    _arg = "kappa"

    def __init__(self, init_value: Any, kappa: float, name: str | None = None) -> None:
        super().__init__(init_value, kappa, name=name)

    @property
    def kappa(self) -> float:
        return self._decay


def _as_key(key: Any) -> jax.Array:
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

    Attributes
    ----------
    matrix : jax.Array
        ``B``, shape ``(n_target, n_layer)``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> fb = braintrace.FixedRandomFeedback(2, 3, key=0)
    >>> fb.matrix.shape, fb.project(jnp.ones((4, 2))).shape
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
        self.matrix: jax.Array = self.init_scale * jax.random.normal(_as_key(key), (self.n_target, self.n_layer), dtype)

    def project(self, y: Any) -> jax.Array:
        """``y B``: ``y`` of shape ``(..., n_target)`` to ``(..., n_layer)``."""
        y = jnp.asarray(y)
        if y.ndim == 0 or y.shape[-1] != self.n_target:
            raise ValueError(
                f"FixedRandomFeedback.project: the last axis of `y` must have size n_target={self.n_target}, "
                f"got shape {y.shape}."
            )
        dtype = jnp.result_type(y) if jnp.issubdtype(jnp.result_type(y), jnp.floating) else self.matrix.dtype
        return y.astype(dtype) @ self.matrix.astype(dtype)


# -- what the signal-replacing learners share about a compiled graph ----------------


def output_groups(graph) -> frozenset[int]:
    """Indices of the *output groups*: hidden groups whose new value reaches a
    model output without passing through the data input of an ETP primitive
    (a leaky readout is one; a spiking layer read out through a trainable
    weight is not)."""
    minfo = graph.module_info
    jaxpr = minfo.jaxpr
    usedef = UseDef(jaxpr)
    through = cut_data_inputs(minfo)
    outs = {v for v in jaxpr.outvars[: minfo.num_out_leaves] if not is_literal(v)}
    slots = {s.path: s for s in minfo.hidden_slots}
    found = set()
    for g in graph.hidden_groups:
        sources = [minfo.hidden_out_var(slots[p]) for p in g.hidden_paths]
        if usedef.forward(sources, through=through) & outs:
            found.add(g.index)
    return frozenset(found)


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
            f"{owner}: hidden group ({_paths(group)}) has per-position shape {group.varshape}, whose leading "
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


def _paths(group) -> str:
    return ", ".join("`" + path_str(p) + "`" for p in group.hidden_paths)


def _abort_compile(learner, message: str) -> None:
    """Forget the half-installed graph and raise ``CompilationError``."""
    learner.graph = None
    learner.executor = None
    learner._arg_spec = None
    raise CompilationError(message)


def _names(relation) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(diagonal names, x-dependent names)`` of a relation."""
    entry = relation.entry
    diag = tuple(n for n in relation.trainable_names if n in entry.diagonal_names)
    fact = tuple(n for n in relation.trainable_names if n not in entry.diagonal_names)
    return diag, fact


def _eqn(learner, relation):
    return learner.graph.module_info.jaxpr.eqns[relation.eqn_index]


def _check_presynaptic(learner, owner: str, why: str) -> None:
    """Refuse single-state-only rules on groups with ``S > 1`` and x-free weights."""
    for r in learner.graph.hidden_param_op_relations:
        for gi in r.hidden_groups:
            g = learner.graph.hidden_groups[gi]
            if g.num_state > 1:
                _abort_compile(
                    learner,
                    f"{owner}: `{path_str(r.weight_path)}` reaches the hidden group ({_paths(g)}) with "
                    f"num_state={g.num_state}. {why} The {g.num_state} coupled states of this group have "
                    f"{g.num_state}×{g.num_state} Jacobian blocks that a scalar `leak` cannot represent. "
                    "Use D_RTRL (exact per-position blocks) or ES_D_RTRL for this model.",
                )
        _, fact = _names(r)
        if fact and r.entry.x_invar_index is None:
            _abort_compile(
                learner,
                f"{owner}: ETP primitive {r.entry.name} (weight `{path_str(r.weight_path)}`) has trainable "
                f"inputs {fact} that depend on no data input, so there is no presynaptic trace to keep. "
                "Use D_RTRL for this primitive, or register it with `x_invar_index`.",
            )
        if fact and not r.entry.x_linear:
            _abort_compile(
                learner,
                f"{owner}: ETP primitive {r.entry.name} (weight `{path_str(r.weight_path)}`) takes a data input "
                "that is not a vector it is linear in (e.g. the indices of braintrace.embedding): a trace of past "
                "inputs cannot stand in for it. Use D_RTRL or ES_D_RTRL, which keep this weight's exact trace.",
            )


def _shared_output_key(learner, relation, gi: int, member) -> str:
    """Key of the output trace ``f`` of ``relation`` for group ``gi``, one per class of summed outputs.

    Relations whose outputs are summed before any other use have equal ``df``
    (``graph.output_classes``); those of one class for which ``member(r)``
    holds share one trace, named after all of them (``'a#0&b#1->g0:f'``).
    """
    relations = learner.graph.hidden_param_op_relations
    classes = learner.graph.output_classes or tuple(range(len(relations)))  # a graph built without the analysis
    members = [
        m for m in relations if classes[m.index] == classes[relation.index] and member(m)
    ]
    return "&".join(learner.trace_key_prefix(m) for m in members) + f"->g{gi}:f"


def _dy(learner, relation, df: dict, signal: dict, scale: dict | None = None) -> jax.Array:
    """``Σ_g sum_to_shape(Σ_s scale ⊙ df ⊙ signal, y.shape)`` for one relation."""
    y_shape = tuple(_eqn(learner, relation).outvars[relation.entry.y_outvar_index].aval.shape)
    terms = []
    for gi in relation.hidden_groups:
        f = df[(relation.index, gi)] if scale is None else scale[gi]
        terms.append(sum_to_shape(jnp.sum(f.astype(signal[gi].dtype) * signal[gi], axis=-1), y_shape))
    return sum(terms[1:], terms[0])


def _add(acc: dict, parts: dict) -> None:
    """``acc[n] += parts[n]`` (in place; a missing entry starts at ``parts[n]``)."""
    for n, v in parts.items():
        acc[n] = v if n not in acc else acc[n] + v


def _with_x(relation, operands, x) -> tuple:
    ops = list(operands)
    i = relation.entry.x_invar_index
    ops[i] = x.astype(jnp.result_type(operands[i]))
    return tuple(ops)


def _diag_to_param(entry, operands, params, name: str, g: jax.Array) -> jax.Array:
    """Map a hidden-shaped sum back to a diagonal (broadcast) trainable input."""
    to_param = getattr(entry.trace_rule, "diagonal_to_param", None)
    if to_param is not None:
        return to_param(entry, operands, params, name, g)
    index = entry.trainable_invars(params, len(operands))
    return sum_to_shape(g, jnp.shape(operands[index[name]]))
