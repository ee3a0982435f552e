r"""The influence learners' common part: traces of ``P = dh/dθ`` for every parameter leaf.

Exact RTRL and its approximations (SnAp, UORO) follow the influence of the
parameters on the whole hidden vector (every hidden state, batch included,
flattened; see :mod:`braintrace.executor.influence`),

.. math::

    P^t = J^t P^{t-1} + M^t, \qquad
    \nabla_θ L = \sum_t \Big[ λ^t \cdot P^{t-1}
        + \frac{\partial L^t}{\partial θ}\Big|_{h^{t-1}} \Big], \qquad
    λ^t = \frac{\partial L^t}{\partial h^{t-1}},

``λ^t`` the adjoint of the previous hidden state within step ``t`` (every path:
through ``h^t`` and through outputs read from ``h^{t-1}`` before the write).
The executor's driver gives every parameter leaf its instantaneous gradient
and ``λ^t``; a rule here keeps ``P`` (or an estimate of it) and contracts it,
``λ^t · P^{t-1}``. Under ``vjp_method='multi-step'`` the same contraction
credits the adjoint of a window's initial state to the traces before the window.

Unlike the relation-based learners (D_RTRL, ES_D_RTRL, ...), the covered
parameters are *all* the floating parameter leaves whose value reaches a
hidden state, by any path: an ETP primitive, a plain ``x @ W``, a weight
behind another weight. The others receive their instantaneous gradient.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

import brainstate
import jax
import jax.numpy as jnp

from ..compiler import DiagnosticKind
from ..compiler.module_info import path_str
from ..errors import CompilationError, NotSupportedError
from ..executor import InfluenceLayout, StepTraceData, WindowTraceData
from .rule import ETraceVjpAlgorithm
from .keys import TraceKey

__all__ = ["InfluenceVjpAlgorithm", "INFLUENCE", "DEFAULT_MAX_TRACE_SIZE", "RELATION_LEARNER_KINDS"]

#: The trace kind of an influence matrix (or its kept entries).
INFLUENCE = "influence"
#: Default bound on the entries of an influence trace (2**27: 1 GiB in float64).
DEFAULT_MAX_TRACE_SIZE = 2**27
#: Compiler findings that concern only the relation-based learners (not raised as warnings here).
RELATION_LEARNER_KINDS = frozenset({
    DiagnosticKind.RELATION_EXCLUDED_SHAPE_MISMATCH,
    DiagnosticKind.RELATION_EXCLUDED_WEIGHT_TO_WEIGHT,
    DiagnosticKind.RELATION_EXCLUDED_NON_ELEMENTWISE_TAIL,
    DiagnosticKind.RELATION_PARTIAL_PATH,
    DiagnosticKind.HIDDEN_GROUP_NON_ELEMENTWISE,
})


class InfluenceVjpAlgorithm(ETraceVjpAlgorithm):
    r"""Base class of the learners whose traces are the influence ``dh/dθ`` (RTRL, SnAp, UORO).

    A subclass implements :meth:`init_traces`, :meth:`update_traces` (with
    ``data.tangent``, the step's full linearisation), :meth:`contributions`
    (``λ · P`` as a flat gradient of ``θ``), :meth:`window_contributions` and
    :meth:`dense_influence`; sizes are checked at compile time.

    Parameters
    ----------
    model : brainstate.nn.Module
        The model; ``model(x)`` advances one step.
    name : str, optional
        The learner's name.
    vjp_method : {'single-step', 'multi-step'}, default 'single-step'
        ``'multi-step'``: BPTT inside a ``MultiStepData`` window plus the
        traces' credit for the window's initial state.
    max_trace_size : int, optional
        The largest number of trace entries accepted (default
        :data:`DEFAULT_MAX_TRACE_SIZE`); a larger model is refused at compile
        time with its sizes, before any memory is spent.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.GRUCell(2, 3)
    >>> _ = brainstate.nn.init_all_states(cell)
    >>> learner = braintrace.RTRL(cell).compile_graph(jnp.zeros(2))
    >>> isinstance(learner, braintrace.algorithms.InfluenceVjpAlgorithm), learner.influence_traces
    (True, True)
    """

    influence_traces: ClassVar[bool] = True
    traces_in_scan: bool = True
    credits_previous_traces: bool = True

    def __init__(
        self,
        model: brainstate.nn.Module,
        name: str | None = None,
        vjp_method: str = "single-step",
        max_trace_size: int | None = None,
    ) -> None:
        super().__init__(model, name=name, vjp_method=vjp_method)
        if max_trace_size is not None and (isinstance(max_trace_size, bool) or int(max_trace_size) < 1):
            raise ValueError(f"{type(self).__name__}: max_trace_size must be a positive int, got {max_trace_size!r}.")
        self.max_trace_size = DEFAULT_MAX_TRACE_SIZE if max_trace_size is None else int(max_trace_size)
        self.flat: InfluenceLayout | None = None

    # -- compilation ---------------------------------------------------------------
    def compile_graph(self, *example_args: Any, recompile: bool = False) -> "InfluenceVjpAlgorithm":
        """Compile the model's step (see :meth:`ETraceAlgorithm.compile_graph`).

        Parameters
        ----------
        *example_args
            Inputs of one time step.
        recompile : bool, default False
            Trace the step again even if the inputs have the shapes of the last compile.

        Returns
        -------
        self

        Notes
        -----
        The compiler's warnings about relations and per-position blocks
        (:data:`RELATION_LEARNER_KINDS`: a weight "receives its instantaneous
        gradient only", a group's blocks are probed) concern the relation-based
        learners; an influence learner traces every parameter through the full
        Jacobian, so they are not raised here (they stay in ``graph.diagnostics``).
        """
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            super().compile_graph(*example_args, recompile=recompile)
        skip = {r.message for r in (self.graph.diagnostics if self.graph is not None else ())
                if r.kind in RELATION_LEARNER_KINDS}
        for w in caught:
            if str(w.message) not in skip:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return self

    def on_compile(self, graph: Any) -> None:
        super().on_compile(graph)
        assert self.driver is not None
        flat = self.driver.executor.influence_layout
        minfo = graph.module_info
        for s in minfo.hidden_slots:
            dtype = minfo.jaxpr.invars[s.invars[0]].aval.dtype
            if not jnp.issubdtype(dtype, jnp.inexact):
                raise NotSupportedError(
                    f"{type(self).__name__}: the hidden state `{path_str(s.path)}` holds {dtype} values; "
                    "the influence learners differentiate through every hidden state, so each must be "
                    "floating point. Keep integer counters (refractory steps, ...) in a brainstate.ShortTermState."
                )
        self.flat = flat
        self.prepare(flat)
        size = self.trace_size(flat)
        if size > self.max_trace_size:
            raise CompilationError(
                f"{type(self).__name__}: the influence trace of this model has {size:,} entries "
                f"(N = {flat.num_hidden:,} hidden values, batch included, × |θ| = {flat.num_params:,} "
                f"parameter entries reaching them), over max_trace_size={self.max_trace_size:,}. "
                "Pass a larger max_trace_size if the memory is there, or use a learner whose memory does not "
                "grow with N·|θ|: SnAp (n=1), UORO, D_RTRL or ES_D_RTRL."
            )

    def prepare(self, flat: InfluenceLayout) -> None:
        """Per-graph data of a subclass, built at compile time before the size check (default: none).

        Parameters
        ----------
        flat : InfluenceLayout
            The flat orders of ``h`` and ``θ`` of the compiled step.
        """

    def example_tangent(self) -> Any:
        """The step linearised at the compile-time example (zero inputs, the states' current values)."""
        assert self.driver is not None
        ex = self.driver.executor
        args = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), self.example_args())
        return ex.influence_layout.linearize(ex.current_invals(*args))

    def trace_size(self, flat: InfluenceLayout) -> int:
        """Entries of the traces for this layout (default ``N·|θ|``, the dense influence matrix).

        Parameters
        ----------
        flat : InfluenceLayout
            The flat orders of ``h`` and ``θ`` of the compiled step.
        """
        return flat.num_hidden * flat.num_params

    def _flat(self) -> InfluenceLayout:
        if self.flat is None:
            self.check_compiled()
        assert self.flat is not None
        return self.flat


    # -- the rule protocol (subclasses) ----------------------------------------------------
    def dense_influence(self, traces: Mapping[TraceKey, Any]) -> jax.Array:
        """The influence matrix the traces hold (or estimate), dense, ``(|θ|, N)``.

        Parameters
        ----------
        traces : mapping
            ``{TraceKey: value}``, e.g. ``{k: s.value for k, s in learner.etraces.items()}``.
        """
        raise NotImplementedError

    def window_contributions(
        self, before: Any, after: Any, aux: Any, seq: WindowTraceData, signal_seq: Mapping, count: Any
    ) -> Any:
        r"""``Σ_k λ_k · P^{k-1}`` over a window, from the stacked traces ``aux``.

        Parameters
        ----------
        before, after : mapping
            The traces before and after the window.
        aux : mapping
            Every step's traces, stacked on a leading window axis.
        seq : WindowTraceData
            The window's trace data (not used).
        signal_seq : mapping
            ``{group: (K, *V, S)}``: every step's adjoint ``λ_k``.
        count : int array
            Time steps before the window (not used).
        """
        prev = jax.tree.map(lambda b, a: jnp.concatenate([b[None], a[:-1]], axis=0), dict(before), dict(aux))
        lam = jax.vmap(self._flat().ravel_hidden)(signal_seq)

        def one(acc, inp):
            tr, l = inp
            return acc + self.contract(tr, l), None

        zero = jnp.zeros((self._flat().num_params,), self._flat().dtype)
        return jax.lax.scan(one, zero, (prev, lam))[0]

    def contributions(self, traces: Mapping[TraceKey, Any], data: StepTraceData, signal: Mapping, count: Any) -> Any:
        """``λ · P`` with the given (previous step's) traces: the flat gradient of ``θ``.

        Parameters
        ----------
        traces : mapping
            The traces of the step before ``λ``'s.
        data : StepTraceData
            That step's trace data (not used).
        signal : mapping
            ``{group: (*V, S)}``: the adjoint ``λ = ∂L/∂h`` of those traces' hidden state.
        count : int array
            The step of the traces (not used).
        """
        return self.contract(traces, self._flat().ravel_hidden(signal))

    def contract(self, traces: Mapping[TraceKey, Any], lam: jax.Array) -> jax.Array:
        """``λ · P`` for a flat ``λ``; returns ``(|θ|,)``.

        Parameters
        ----------
        traces : mapping
            ``{TraceKey: value}``.
        lam : array
            ``(N,)``, the flat adjoint of the hidden state.
        """
        raise NotImplementedError

    # -- inspection ---------------------------------------------------------------------
    def get_etrace_of(self, weight: Any) -> dict[TraceKey, Any]:
        """The influence of one weight on the hidden vector.

        Parameters
        ----------
        weight : brainstate.ParamState or tuple or str
            The weight's state object or path.

        Returns
        -------
        dict
            ``{TraceKey('influence', (), -1): {leaf name: (*leaf.shape, N)}}``:
            the rows of :meth:`dense_influence` of that weight's leaves.

        Raises
        ------
        ValueError
            If the weight reaches no hidden state.
        """
        flat = self._flat()
        if isinstance(weight, brainstate.State):
            target = next((path_str(tuple(p)) for p, st in self.model.states().items() if st is weight), "<unknown>")
        else:
            target = weight if isinstance(weight, str) else path_str(tuple(weight))
        dense = self.dense_influence({k: st.value for k, st in self.etraces.items()})
        out, start = {}, 0
        for name, shape, n in zip(flat.theta_names, flat.theta_shapes, flat.theta_sizes):
            if name == target or name.startswith(f"{target}."):
                out[name] = jnp.reshape(dense[start: start + n], shape + (flat.num_hidden,))
            start += n
        if not out:
            raise ValueError(
                f"get_etrace_of: `{target}` reaches no hidden state; it has no influence trace and receives its "
                f"instantaneous gradient. Parameters with a trace: {', '.join(flat.theta_names) or 'none'}."
            )
        return {TraceKey(INFLUENCE, (), -1): out}
