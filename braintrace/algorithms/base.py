"""The learner: a module that wraps a model, keeps its eligibility traces and
delivers online gradients through ``jax.custom_vjp``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import brainstate
import jax
import jax.numpy as jnp

from ..compiler import ETraceGraph, HiddenParamOpRelation, compile_etrace_graph
from ..compiler.module_info import path_str
from ..data import MultiStepData, unwrap_step_args
from ..errors import NotCompiledError
from ..executor import ETraceVjpGraphExecutor, StepTraceData, WindowTraceData
from .trace_state import EligibilityTrace

__all__ = ["ETraceAlgorithm", "ETraceVjpAlgorithm"]

_VJP_METHODS = ("single-step", "multi-step")


class ETraceAlgorithm(brainstate.nn.Module):
    """Base class of online learners: wraps a model and owns its traces.

    Parameters
    ----------
    model : brainstate.nn.Module
        The model; ``model(*inputs)`` advances one time step.
    name : str, optional

    Notes
    -----
    Call :meth:`compile_graph` once with inputs shaped like one time step
    before the first call. Calling the learner runs the model's step, updates
    the traces and, under ``brainstate.transform.grad`` or ``jax.grad``, gives
    the parameters their online gradients.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.VanillaRNNCell(2, 3)
    >>> brainstate.nn.init_all_states(cell)  # doctest: +ELLIPSIS
    VanillaRNNCell(...)
    >>> learner = braintrace.D_RTRL(cell)
    >>> isinstance(learner, braintrace.ETraceAlgorithm), learner.graph is None
    (True, True)
    >>> _ = learner.compile_graph(jnp.zeros(2))
    >>> learner(jnp.ones(2)).shape
    (3,)
    """

    def __init__(self, model: brainstate.nn.Module, name: str | None = None) -> None:
        super().__init__(name=name)
        if not isinstance(model, brainstate.nn.Module):
            raise TypeError(f"{type(self).__name__}: `model` must be a brainstate.nn.Module, got {type(model).__name__}.")
        self.model = model
        self.graph: ETraceGraph | None = None
        self.executor: ETraceVjpGraphExecutor | None = None
        self.etraces: dict[str, EligibilityTrace] = {}
        self.step_count = brainstate.ShortTermState(jnp.zeros((), jnp.int32))
        self._arg_spec: Any = None

    # -- compilation -------------------------------------------------------
    def compile_graph(self, *example_args: Any) -> "ETraceAlgorithm":
        """Compile the model's step into an eligibility-trace graph (idempotent, cached).

        Parameters
        ----------
        *example_args
            Inputs of one time step, one per positional argument of the model
            (``SingleStepData`` accepted; of a ``MultiStepData`` argument the
            first step is used).

        Returns
        -------
        self
        """
        example_args = tuple(
            jax.tree.map(lambda x: x[0], a.data) if isinstance(a, MultiStepData) else a
            for a in example_args
        )
        example_args, _ = unwrap_step_args(example_args, type(self).__name__)
        graph = compile_etrace_graph(self.model, *example_args)
        spec = _spec(example_args)
        if graph is self.graph and spec == self._arg_spec:
            return self
        self.graph = graph
        self.executor = ETraceVjpGraphExecutor(graph)
        self._arg_spec = spec
        self._on_compile()
        self.init_etrace_state()
        return self

    def _on_compile(self) -> None:
        """Hook run after a (new) graph is compiled."""

    def _check_compiled(self) -> None:
        if self.graph is None:
            raise NotCompiledError(
                f"{type(self).__name__} was called before compile_graph. Call "
                "`learner.compile_graph(*example_inputs)` once, with inputs shaped like one time step, "
                "before the training loop."
            )

    # -- states ------------------------------------------------------------
    def init_etrace_state(self, *args: Any, **kwargs: Any) -> None:
        """Create the eligibility traces (zeros) for the compiled graph."""
        self._check_compiled()
        executor = self.executor
        assert executor is not None  # set together with the graph
        invals = executor.current_invals(*self._example_args())
        shapes = jax.eval_shape(lambda iv: self.init_traces(executor.trace_data(iv)), invals)
        self.etraces = {
            key: EligibilityTrace(jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), val))
            for key, val in shapes.items()
        }
        self.step_count.value = jnp.zeros((), jnp.int32)

    def _example_args(self) -> tuple:
        treedef, shapes = self._arg_spec
        return jax.tree.unflatten(treedef, [jax.ShapeDtypeStruct(s, d) for s, d in shapes])

    def reset_state(self, batch_size: int | None = None, **kwargs: Any) -> None:
        """Zero the traces and the step counter (the model's states are reset by the model).

        Use ``brainstate.nn.reset_all_states(learner, batch_size)`` to reset
        the model and the traces together; it calls this method.
        """
        for st in self.etraces.values():
            st.value = jax.tree.map(jnp.zeros_like, st.value)
        self.step_count.value = jnp.zeros((), jnp.int32)

    def get_etrace_of(self, weight: Any) -> dict[str, Any]:
        """The trace values of one weight.

        Parameters
        ----------
        weight : brainstate.ParamState or tuple or str
            The weight's state object or path (``('Wz', 'weight')`` or ``'Wz.weight'``).

        Returns
        -------
        dict
            ``{trace key: trace value}`` for every relation of that weight.

        Raises
        ------
        ValueError
            If the weight has no online relation.
        """
        self._check_compiled()
        assert self.graph is not None
        if isinstance(weight, brainstate.State):
            paths = [p for p, s in self.model.states().items() if s is weight]
            target = path_str(tuple(paths[0])) if paths else None
        elif isinstance(weight, str):
            target = weight
        else:
            target = path_str(tuple(weight))
        prefixes = {
            self.trace_key_prefix(r)
            for r in self.graph.hidden_param_op_relations
            if path_str(r.weight_path) == target
        }
        out = {k: st.value for k, st in self.etraces.items() if any(_key_of(k, p) for p in prefixes)}
        if not out:
            online = ", ".join(sorted({path_str(r.weight_path) for r in self.graph.hidden_param_op_relations}))
            raise ValueError(
                f"get_etrace_of: `{target}` has no eligibility trace; it is not learned online "
                f"(see learner.graph.explain(weight_path=...)). Weights learned online: {online or 'none'}."
            )
        return out

    @staticmethod
    def trace_key_prefix(relation: HiddenParamOpRelation) -> str:
        """``'path#index'``: trace keys start with it; a trace shared by several
        relations joins their prefixes with ``'&'``."""
        return f"{path_str(relation.weight_path)}#{relation.index}"

    def show_graph(self) -> None:
        """Print the compiled graph and the compiler's warnings."""
        self._check_compiled()
        assert self.graph is not None
        print(self.graph)
        warn = [str(d) for d in self.graph.diagnostics if d.level.value >= 1]
        if warn:
            print("\n".join(warn))

    # -- algorithm hooks (overridden) ---------------------------------------
    def init_traces(self, data: StepTraceData) -> dict[str, Any]:
        """Zero traces, ``{key: pytree}``, from one step's trace data (shapes only)."""
        raise NotImplementedError

    def update_traces(self, traces: Mapping[str, Any], data: StepTraceData, count: jax.Array) -> dict[str, Any]:
        raise NotImplementedError

    # -- running -------------------------------------------------------------
    def update(self, *args: Any) -> Any:
        """Run one step (or a ``MultiStepData`` window) of the model, updating the traces."""
        raise NotImplementedError

    def _split_args(self, args: tuple) -> tuple[tuple, bool]:
        return unwrap_step_args(args, type(self).__name__)

    def _check_args(self, args: tuple, multi: bool) -> None:
        spec = _spec(jax.tree.map(lambda x: x[0], args) if multi else args)
        if spec != self._arg_spec:
            got = [s for s, _ in spec[1]]
            want = [s for s, _ in self._arg_spec[1]]
            raise ValueError(
                f"{type(self).__name__}: the inputs have shapes {got} per time step, but the learner was "
                f"compiled for {want}. A different batch size or input size needs a new compile: call "
                "`learner.compile_graph(*inputs_of_one_step)` (and reset the model's states with the new "
                "batch size)."
            )


def _window_length(seq) -> int:
    for v in list(seq.D.values()) + list(seq.df.values()) + list(seq.x.values()):
        return int(v.shape[0])
    raise ValueError("empty window")


def _spec(args: Any) -> tuple:
    leaves, treedef = jax.tree.flatten(args)
    return treedef, tuple((tuple(jnp.shape(x)), jnp.result_type(x)) for x in leaves)


class ETraceVjpAlgorithm(ETraceAlgorithm):
    """Base class of the VJP-based learners (D_RTRL, ES_D_RTRL and the SNN rules).

    Subclasses define the traces (:meth:`init_traces`, :meth:`update_traces`)
    and how a learning signal turns them into gradients
    (:meth:`trace_contributions`, :meth:`credit_contributions`). The learning
    signal itself passes through :meth:`_compute_learning_signal`, which
    target-projection algorithms override.

    Parameters
    ----------
    model : brainstate.nn.Module
    name : str, optional
    vjp_method : {'single-step', 'multi-step'}
        ``'single-step'``: every step's loss contributes ``δ^t · ε^t``.
        ``'multi-step'``: a ``MultiStepData`` window is differentiated exactly
        (BPTT inside the window) plus trace credit for what came before.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.VanillaRNNCell(2, 3)
    >>> brainstate.nn.init_all_states(cell)  # doctest: +ELLIPSIS
    VanillaRNNCell(...)
    >>> learner = braintrace.ES_D_RTRL(cell, decay_or_rank=0.9, vjp_method="multi-step")
    >>> isinstance(learner, braintrace.ETraceVjpAlgorithm)
    True
    >>> _ = learner.compile_graph(jnp.zeros(2))
    >>> learner(braintrace.MultiStepData(jnp.ones((4, 2)))).shape
    (4, 3)
    """

    def __init__(
        self, model: brainstate.nn.Module, name: str | None = None, vjp_method: str = "single-step"
    ) -> None:
        super().__init__(model, name=name)
        if vjp_method not in _VJP_METHODS:
            raise ValueError(
                f"{type(self).__name__}: vjp_method must be one of {_VJP_METHODS}, got {vjp_method!r}."
            )
        self.vjp_method = vjp_method
        self._fns: dict[str, Any] = {}

    #: Preferred ``MultiStepData`` window of :func:`braintrace.online_gradients`
    #: (``window='auto'``); ``None``: one step at a time.
    default_window: int | None = None

    def _on_compile(self) -> None:
        self._fns = {}

    def _compute_learning_signal(self, dl_dh: dict[int, jax.Array], **context: Any) -> dict[int, jax.Array]:
        """Map ``{group index: ∂L/∂h}`` to the learning signal used with the traces (identity).

        ``context`` holds ``data`` (the step's :class:`~braintrace.executor.StepTraceData`),
        ``count`` (time steps since reset), ``out_cts`` (cotangents of the model's
        output leaves, i.e. the output error), ``signal`` (what the caller passed
        to :func:`~braintrace.algorithms.vjp.run_learner`, e.g. a target),
        ``traces`` (the traces after this step's update) and ``invals`` (the
        step's flat jaxpr inputs, to re-evaluate the step). The gradient
        contributions use the returned signal; the instantaneous part they
        replace (see :mod:`braintrace.algorithms.vjp`) uses ``dl_dh``.
        """
        return dl_dh

    def trace_contributions(
        self, traces: Mapping[str, Any], data: StepTraceData, delta: dict[int, jax.Array], count: jax.Array
    ) -> dict:
        """``{relation index: {name: gradient w.r.t. that operand}}`` from the traces at step t."""
        raise NotImplementedError

    def credit_contributions(
        self, traces: Mapping[str, Any], operands: dict, lam: dict[int, jax.Array], count: jax.Array
    ) -> dict:
        """Trace credit for a window: ``λ`` (adjoint before the window) contracted with the traces."""
        raise NotImplementedError

    # -- windows ----------------------------------------------------------------
    def window_update(
        self, traces: Mapping[str, Any], seq: WindowTraceData, count: jax.Array
    ) -> tuple[dict[str, Any], Any]:
        """Advance the traces over a window of ``K`` steps: ``(new traces, aux)``.

        ``seq`` is a :class:`~braintrace.executor.WindowTraceData`. The default
        applies :meth:`update_traces` step by step and keeps every step's traces
        as ``aux`` (the fused window path does this inside its forward scan, see
        :attr:`updates_traces_in_scan`); learners with large traces override it
        with an update that reads and writes the traces once per window.
        """
        K = _window_length(seq)
        assert self.graph is not None
        relations = self.graph.hidden_param_op_relations

        def body(tr, k):
            tr = self.update_traces(tr, seq.step(k, relations), count + k)
            return tr, tr

        return jax.lax.scan(body, dict(traces), jnp.arange(K))

    def window_contributions(
        self,
        traces: Mapping[str, Any],
        aux: Any,
        seq: WindowTraceData,
        delta_seq: dict[int, jax.Array],
        count: jax.Array,
    ) -> dict:
        """``Σ_k`` of this window's trace contributions (default: step by step)."""
        K = _window_length(seq)
        assert self.graph is not None
        relations = self.graph.hidden_param_op_relations

        def body(acc, k):
            tr_k = jax.tree.map(lambda a: a[k], aux)
            c = self.trace_contributions(tr_k, seq.step(k, relations), {g: d[k] for g, d in delta_seq.items()}, count + k)
            return (c if acc is None else jax.tree.map(jnp.add, acc, c)), None

        first = body(None, 0)[0]
        if K == 1:
            return first
        acc, _ = jax.lax.scan(lambda a, k: body(a, k), first, jnp.arange(1, K))
        return acc

    @property
    def updates_traces_in_scan(self) -> bool:
        """Whether a window's traces are advanced step by step inside its forward scan.

        True for learners that keep the default :meth:`window_update` (small
        traces: every step's traces are kept for :meth:`window_contributions`);
        a learner with a fused window update runs it once after the scan.
        """
        return type(self).window_update is ETraceVjpAlgorithm.window_update

    @property
    def window_fusion(self) -> bool:
        """Whether a ``MultiStepData`` window is processed as one fused window.

        True when the learner defines its own window rule (:meth:`window_update`
        or :meth:`window_contributions`) and keeps the plain learning signal (a
        learning signal that needs each step's traces is computed step by step).
        """
        cls = type(self)
        own = (
            cls.window_update is not ETraceVjpAlgorithm.window_update
            or cls.window_contributions is not ETraceVjpAlgorithm.window_contributions
        )
        return own and cls._compute_learning_signal is ETraceVjpAlgorithm._compute_learning_signal

    def update(self, *args: Any) -> Any:
        from .vjp import run_learner

        self._check_compiled()
        data, multi = self._split_args(args)
        self._check_args(data, multi)
        return run_learner(self, data, multi)


def _key_of(key: str, prefix: str) -> bool:
    """Whether trace ``key`` belongs to the relation with ``prefix`` (alone or shared with ``'&'``)."""
    return any(
        part.startswith(prefix) and part[len(prefix):len(prefix) + 1] in ("", "-", ":") for part in key.split("&")
    )
