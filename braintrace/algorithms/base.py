r"""The learner: a module that wraps a model, compiles its graph, keeps its
eligibility traces and resets them with the model.

:class:`ETraceAlgorithm` is the life cycle every learner shares; the rule
protocol the executor's driver calls is
:class:`~braintrace.algorithms.rule.ETraceVjpAlgorithm`'s.
"""

from __future__ import annotations

from typing import Any

import brainstate
import jax
import jax.numpy as jnp

from ..compiler import ETraceGraph, compile_etrace_graph
from ..compiler.module_info import path_str
from ..errors import CompilationError, NotCompiledError, NotSupportedError
from ..executor import ETraceGraphExecutor, StepTraceData
from .input_checks import check_example_args, one_step, spec_of, state_spec, weight_path
from .keys import TraceKey, keys_of_relations
from .resetting import reset_model, unresettable_states
from .trace_state import EligibilityTrace

__all__ = ["ETraceAlgorithm"]



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

    *What a compiled learner treats as constants.* Like ``jax.jit``,
    compiling traces the model's step once: plain (non-``State``) array
    attributes of the model (``model.gain = ...``), Python numbers and the
    structure of ``update`` are baked into the compiled step. Values held in
    ``brainstate`` states (``ParamState``, ``HiddenState``, ...) are read at
    every call. After changing such a constant, call :meth:`recompile` (or
    ``compile_graph(..., recompile=True)``); a new learner always compiles
    afresh.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.VanillaRNNCell(2, 3)
    >>> brainstate.nn.init_all_states(cell)  # doctest: +ELLIPSIS
    VanillaRNNCell(...)
    >>> learner = braintrace.D_RTRL(cell)
    >>> isinstance(learner, braintrace.ETraceAlgorithm), learner.is_compiled
    (True, False)
    >>> _ = learner.compile_graph(jnp.zeros(2))
    >>> learner(jnp.ones(2)).shape
    (3,)
    """

    def __init__(self, model: brainstate.nn.Module, name: str | None = None) -> None:
        super().__init__(name=name)
        if not isinstance(model, brainstate.nn.Module):
            raise TypeError(
                f"{type(self).__name__}: `model` must be a brainstate.nn.Module, got {type(model).__name__}."
            )
        self.model = model
        self.graph: ETraceGraph | None = None
        self.etraces: dict[TraceKey, EligibilityTrace] = {}
        self.step_count = brainstate.ShortTermState(jnp.zeros((), jnp.int32))
        self._arg_spec: Any = None
        self._state_spec: Any = None
        self._snapshot: dict = {}

    @property
    def is_compiled(self) -> bool:
        """Whether :meth:`compile_graph` has run."""
        return self.graph is not None

    # -- 0.2.0 names -------------------------------------------------------------
    @property
    def running_index(self) -> brainstate.ShortTermState:
        """The time-step counter (0.2.0's name for :attr:`step_count`)."""
        return self.step_count

    @property
    def model4compile(self) -> brainstate.nn.Module:
        """The model (0.2.0's name for :attr:`model`)."""
        return self.model

    @property
    def param_states(self) -> Any:
        """The model's ``ParamState``\\ s, keyed by path."""
        return self.model.states(brainstate.ParamState)

    @property
    def hidden_states(self) -> Any:
        """The model's ``HiddenState``\\ s, keyed by path."""
        return self.model.states(brainstate.HiddenState)

    @property
    def other_states(self) -> Any:
        """The model's other states (neither parameters nor hidden states), keyed by path."""
        return self.model.states().filter(lambda path, st: not isinstance(st, (brainstate.ParamState, brainstate.HiddenState)))

    @property
    def path_to_states(self) -> dict:
        """``{path: state}`` of every state of the model."""
        return dict(self.model.states())

    @property
    def state_id_to_path(self) -> dict:
        """``{id(state): path}`` of every state of the model."""
        return {id(st): path for path, st in self.model.states().items()}

    # -- compilation -------------------------------------------------------
    def compile_graph(self, *example_args: Any, recompile: bool = False) -> "ETraceAlgorithm":
        """Compile the model's step into an eligibility-trace graph.

        Parameters
        ----------
        *example_args
            Inputs of one time step (``SingleStepData`` accepted; a
            ``MultiStepData`` contributes its first step).
        recompile : bool, default False
            Trace the step again even if the inputs have the shapes of the last
            compile (after changing a constant of the model, see the class notes).

        Returns
        -------
        self

        Raises
        ------
        CompilationError
            The example inputs do not fit the model (a whole sequence given
            where one step is expected, a hidden state whose shape the step
            changes, ...), or the learner cannot handle the model.
        """
        args = one_step(example_args)
        check_example_args(type(self).__name__, args)
        spec = spec_of(args)
        if not recompile and self.graph is not None and spec == self._arg_spec:
            return self
        self.graph = compile_etrace_graph(self.model, *args)
        self._arg_spec = spec
        self._state_spec = state_spec(self.graph)
        self._snapshot = {p: st.value for p, st in unresettable_states(self.model).items()}
        try:
            self.on_compile(self.graph)
        except (CompilationError, NotSupportedError):
            self.graph, self._arg_spec = None, None
            raise
        self.init_etrace_state()
        return self

    def recompile(self) -> "ETraceAlgorithm":
        """Trace the model's step again with the inputs of the last compile (picks up changed constants)."""
        self.check_compiled()
        return self.compile_graph(*self.example_args(), recompile=True)

    def on_compile(self, graph: ETraceGraph) -> None:
        """Called once per new graph, before the traces are created (override to check the
        model or build per-graph data; raise :class:`~braintrace.CompilationError` to refuse).

        Parameters
        ----------
        graph : ETraceGraph
            The graph :meth:`compile_graph` has just compiled (also :attr:`graph`).
        """

    def check_compiled(self) -> None:
        """Raise :class:`~braintrace.NotCompiledError` if :meth:`compile_graph` has not run."""
        if self.graph is None:
            raise NotCompiledError(
                f"{type(self).__name__} was called before compile_graph. Call "
                "`learner.compile_graph(*example_inputs)` once, with inputs shaped like one time step, "
                "before the training loop."
            )

    def example_args(self) -> tuple:
        """Abstract inputs of one step (``jax.ShapeDtypeStruct``) of the last compile."""
        self.check_compiled()
        treedef, shapes = self._arg_spec
        return jax.tree.unflatten(treedef, [jax.ShapeDtypeStruct(s, d) for s, d in shapes])

    # -- states ------------------------------------------------------------
    def init_etrace_state(self, *args: Any, **kwargs: Any) -> None:
        """Create the eligibility traces (zeros) for the compiled graph."""
        self.check_compiled()
        shapes = self.trace_shapes()
        self.etraces = {
            key: EligibilityTrace(jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), val))
            for key, val in shapes.items()
        }
        self.step_count.value = jnp.zeros((), jnp.int32)

    def trace_shapes(self) -> dict[TraceKey, Any]:
        """``{key: ShapeDtypeStruct pytree}`` of the traces (abstract evaluation only)."""
        self.check_compiled()
        assert self.graph is not None
        ex = ETraceGraphExecutor(self.graph)
        init = self.traces_initializer()

        def shapes(*args):
            return init(ex.trace_data(ex.current_invals(*args)))

        return jax.eval_shape(shapes, *self.example_args())

    def traces_initializer(self) -> Any:
        """The function ``data -> {key: trace}`` that creates the traces :attr:`etraces` holds
        (:meth:`init_traces`, with the traces the shared options add, see :class:`ETraceVjpAlgorithm`)."""
        return self.init_traces

    def reset_state(self, batch_size: int | None = None, **kwargs: Any) -> None:
        """Zero the traces and the step counter (the model's states are reset by the model).

        Use :meth:`reset` to reset the model and the traces together.
        """
        for st in self.etraces.values():
            st.value = jax.tree.map(jnp.zeros_like, st.value)
        self.step_count.value = jnp.zeros((), jnp.int32)

    def reset(self, batch_size: int | None = None) -> None:
        """Reset the model's states and the traces before a new sequence.

        States whose module defines ``reset_state`` are reset by it (with
        ``batch_size``); states no module resets are restored to their values
        at compile time.

        Parameters
        ----------
        batch_size : int, optional
            The batch size the modules' ``reset_state`` gives the states
            (``None``: unbatched states).
        """
        reset_model(self.model, batch_size, self._snapshot, owner=f"{type(self).__name__}.reset")
        self.reset_state(batch_size)

    def get_etrace_of(self, weight: Any) -> dict[TraceKey, Any]:
        """The trace values of one weight.

        Parameters
        ----------
        weight : brainstate.ParamState or tuple or str
            The weight's state object or path (``('Wz', 'weight')`` or ``'Wz.weight'``).

        Returns
        -------
        dict
            ``{TraceKey: trace value}`` for every trace of that weight's relations
            (shared traces included).

        Raises
        ------
        ValueError
            If the weight has no online relation.
        """
        self.check_compiled()
        assert self.graph is not None
        target = weight_path(self.model, weight)
        rels = [r.index for r in self.graph.hidden_param_op_relations if path_str(r.weight_path) == target]
        keys = keys_of_relations(self.etraces, rels)
        if not keys:
            online = ", ".join(sorted({path_str(r.weight_path) for r in self.graph.hidden_param_op_relations}))
            raise ValueError(
                f"get_etrace_of: `{target}` has no eligibility trace; it is not learned online "
                f"(see learner.graph.explain(weight_path=...)). Weights learned online: {online or 'none'}."
            )
        return {k: self.etraces[k].value for k in keys}

    def show_graph(self) -> None:
        """Print the compiled graph and the compiler's warnings."""
        self.check_compiled()
        print(self.graph)
        warn = [str(d) for d in self.graph.diagnostics if d.level.value >= 1]  # type: ignore[union-attr]
        if warn:
            print("\n".join(warn))

    # -- the rule protocol (see ETraceVjpAlgorithm) -----------------------------------
    def init_traces(self, data: StepTraceData) -> dict[TraceKey, Any]:
        """Zero traces, ``{key: pytree}``, from one step's trace data (shapes only)."""
        raise NotImplementedError

    def update(self, *args: Any) -> Any:
        """Run one step (or a ``MultiStepData`` window) of the model, updating the traces."""
        raise NotImplementedError
