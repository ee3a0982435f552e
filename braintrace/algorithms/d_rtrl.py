r"""D_RTRL: the parameter-dimension online learner (Zenke & Neftci's diagonal RTRL family).

For every online relation (an ETP primitive ``y = op(x, w)`` whose output
reaches hidden group ``g`` through a position-wise tail) the learner keeps

.. math::

    ε_w^t = D^t ε_w^{t-1} + df^t \otimes \frac{\partial y^t}{\partial w},
    \qquad \bar w \mathrel{+}= δ^t \cdot ε_w^t + δ_{\rm prev}^t \cdot ε_w^{t-1},

where ``D^t`` are the per-position blocks of the cut Jacobian
``∂h^t/∂h^{t-1}``, ``df^t = ∂h^t/∂y^t``, ``δ^t = ∂L^t/∂h^t`` and
``δ_prev^t = ∂L^t/∂h^{t-1}`` (``h^t`` fixed; nonzero only for states read
before they are written). Memory is ``O(B·|w|·S)`` per relation and
independent of the sequence length. The gradient equals BPTT when the cut
transition is element-wise and no hidden state feeds another through a
trainable op (leaky integrators, LIF neurons with feed-forward input weights,
diagonal recurrences).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from ..executor import StepTraceData, WindowTraceData
from .rule import ETraceVjpAlgorithm
from .exact_traces import ExactTraces, full_rule, split_names, window_adjoints, window_propagators
from .keys import TraceKey

__all__ = ["ParamDimVjpAlgorithm", "D_RTRL", "window_propagators", "window_adjoints", "check_trace_dtype"]


def check_trace_dtype(owner: str, trace_dtype: Any) -> Any:
    """``None`` or a floating dtype, else a ``TypeError`` naming ``trace_dtype``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from braintrace.algorithms.d_rtrl import check_trace_dtype
    >>> check_trace_dtype("D_RTRL", jnp.bfloat16)
    dtype(bfloat16)
    >>> try:
    ...     check_trace_dtype("D_RTRL", jnp.int32)
    ... except TypeError as err:
    ...     print(str(err)[:58])
    D_RTRL: trace_dtype must be a floating dtype (e.g. jnp.flo
    """
    if trace_dtype is None:
        return None
    try:
        dtype = jnp.dtype(trace_dtype)
    except TypeError:
        dtype = None
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"{owner}: trace_dtype must be a floating dtype (e.g. jnp.float32, jnp.bfloat16), got {trace_dtype!r}; "
            "an integer or non-numeric dtype cannot hold an eligibility trace."
        )
    return dtype


class ParamDimVjpAlgorithm(ETraceVjpAlgorithm):
    r"""Online learning with parameter-dimension eligibility traces (D_RTRL).

    .. math::

        ε_w^t = D^t ε_w^{t-1} + df^t \otimes \frac{\partial y^t}{\partial w},
        \qquad \nabla_w L \mathrel{+}= δ^t \cdot ε_w^t + δ_{\rm prev}^t \cdot ε_w^{t-1}

    Parameters
    ----------
    model : brainstate.nn.Module
        The model; weights learned online go through ETP primitives.
    name : str, optional
    vjp_method : {'single-step', 'multi-step'}, default 'single-step'
        See :class:`ETraceVjpAlgorithm`.
    fast_solve : bool, default True
        Use each primitive's compact trace rule (einsum kernels). ``False``
        uses the generic full-Jacobian rule: exact, memory-hungry, for checks.
    trace_dtype : dtype, optional
        Storage dtype of the traces (a floating dtype, e.g. ``jnp.bfloat16``);
        Jacobians, learning signals and gradients stay in the model's precision.
    feedback : {'symmetric', 'random'}, default 'symmetric'
        The learning signal of hidden layers: the true ``δ`` or a fixed random
        projection of the output error (see :class:`ETraceVjpAlgorithm`).
    kappa_filter_decay : float, default 0.0
        ``κ`` in ``[0, 1)`` of the filter of the hidden layers' traces
        (see :class:`ETraceVjpAlgorithm`).
    random_feedback_key : int or jax PRNG key, optional
        Seed of the random feedback matrices.

    Raises
    ------
    TypeError
        ``trace_dtype`` is not a floating dtype.
    ValueError
        A bad ``feedback`` or ``kappa_filter_decay``, or ``'multi-step'`` with
        random feedback or ``κ > 0``.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.MGUCell(3, 4)
    >>> brainstate.nn.init_all_states(cell)  # doctest: +ELLIPSIS
    MGUCell(...)
    >>> learner = braintrace.D_RTRL(cell)
    >>> learner.compile_graph(jnp.zeros(3))  # doctest: +ELLIPSIS
    D_RTRL(...)
    >>> weights = cell.states(brainstate.ParamState)
    >>> grads = brainstate.transform.grad(lambda x: learner(x).sum(), weights)(jnp.ones(3))
    >>> sorted(grads)
    [('Wf', 'weight'), ('Wh', 'weight')]
    """

    #: D_RTRL's traces are weight-sized: a window reads and writes them once
    #: (:meth:`window_update`), many times faster than once per step.
    traces_in_scan: bool = False
    default_window: ClassVar[int | None] = 64

    def __init__(
        self,
        model: Any,
        name: str | None = None,
        vjp_method: str = "single-step",
        fast_solve: bool = True,
        trace_dtype: Any = None,
        *,
        feedback: str = "symmetric",
        kappa_filter_decay: float = 0.0,
        random_feedback_key: Any = None,
    ) -> None:
        super().__init__(
            model, name=name, vjp_method=vjp_method, feedback=feedback, kappa_filter_decay=kappa_filter_decay,
            random_feedback_key=random_feedback_key,
        )
        self.fast_solve = bool(fast_solve)
        self.trace_dtype = check_trace_dtype(type(self).__name__, trace_dtype)
        self.exact: ExactTraces | None = None

    def on_compile(self, graph: Any) -> None:
        super().on_compile(graph)
        rule = (lambda r: r.entry.trace_rule) if self.fast_solve else full_rule
        self.exact = ExactTraces(graph, split_names, rule, trace_dtype=self.trace_dtype)

    def _exact(self) -> ExactTraces:
        if self.exact is None:
            self.check_compiled()
        assert self.exact is not None
        return self.exact

    def init_traces(self, data: StepTraceData) -> dict[TraceKey, Any]:
        return self._exact().init(data)

    def update_traces(self, traces: Mapping[TraceKey, Any], data: StepTraceData, count: jax.Array) -> dict:
        return {**traces, **self._exact().update(traces, data)}

    def window_update(self, traces: Mapping[TraceKey, Any], seq: WindowTraceData, count: jax.Array) -> dict:
        r"""``ε_K = Φ_{K,0} ε_0 + Σ_k (Φ_{K,k} df_k) ⊗ ∂y_k/∂w``: one pass over the trace per window."""
        return {**traces, **self._exact().window_update(traces, seq)}

    def contributions(self, traces: Mapping[TraceKey, Any], data: StepTraceData, signal: Mapping, count: jax.Array) -> dict:
        return self._exact().contributions(traces, data.operands, signal)

    def window_contributions(
        self, before: Mapping, after: Mapping, aux: Any, seq: WindowTraceData, signal_seq: Mapping, count: jax.Array
    ) -> dict:
        r"""``Σ_t δ_t · ε_t`` over a window: from every step's traces ``aux`` when they were kept (the κ
        filter), else from the traces before the window, one matrix product per relation."""
        if aux is not None:
            return self._exact().contributions_seq(aux, seq, signal_seq)
        return self._exact().window_contributions(before, seq, signal_seq)


class D_RTRL(ParamDimVjpAlgorithm):
    __doc__ = ParamDimVjpAlgorithm.__doc__
