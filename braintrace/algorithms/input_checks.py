"""Checks of a learner's inputs and states, with messages that name what is wrong.

A learner is compiled for inputs and states of given shapes and dtypes. These
checks run in Python when a step is traced, before any work, and turn what
would otherwise be a broadcasting error deep inside JAX (or a silent
recompilation with other shapes) into one error naming the argument or state
and saying what to do.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

import brainstate

from ..compiler.module_info import path_str
from ..data import MultiStepData, unwrap_step_args
from ..errors import CompilationError

__all__ = [
    "spec_of", "state_spec", "check_example_args", "check_call_args", "check_states", "one_step", "weight_path",
]


def spec_of(args: Any) -> tuple:
    """``(treedef, ((shape, dtype), ...))`` of a pytree of arrays.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from braintrace.algorithms.input_checks import spec_of
    >>> spec_of((jnp.zeros((2, 3)),))[1]
    (((2, 3), dtype('float32')),)
    """
    leaves, treedef = jax.tree.flatten(args)
    return treedef, tuple((tuple(jnp.shape(x)), jnp.result_type(x)) for x in leaves)


def state_spec(graph: Any) -> dict:
    """``{state path: (shape, dtype) per leaf}`` of the non-parameter states at compile time."""
    return {
        s.path: tuple((tuple(jnp.shape(v)), jnp.result_type(v)) for v in jax.tree.leaves(s.state.value))
        for s in graph.module_info.slots
        if s.role != "param"
    }


def _names(args: Any) -> list[str]:
    return [f"argument {jax.tree_util.keystr(kp)}" for kp, _ in jax.tree_util.tree_flatten_with_path(args)[0]]


def check_example_args(owner: str, args: tuple) -> None:
    """Refuse example inputs no learner can use (complex values, non-arrays)."""
    for name, leaf in zip(_names(args), jax.tree.leaves(args)):
        try:
            dtype = jnp.result_type(leaf)
        except TypeError as err:
            raise TypeError(f"{owner}.compile_graph: {name} is a {type(leaf).__name__}, not an array.") from err
        if jnp.issubdtype(dtype, jnp.complexfloating):
            raise CompilationError(
                f"{owner}.compile_graph: {name} is complex ({dtype}); the learners work on real values. Split it "
                "into real and imaginary parts (two real inputs), as braintrace.nn.LRUCell does for its state."
            )


def check_call_args(owner: str, data: tuple, multi: bool, arg_spec: tuple) -> None:
    """The call's inputs against the compiled ones: window length, shapes and dtypes per step."""
    leaves = jax.tree.leaves(data)
    if multi:
        lengths = {int(jnp.shape(x)[0]) for x in leaves if jnp.ndim(x) > 0}
        if lengths == {0}:
            raise ValueError(f"{owner}: the MultiStepData window has 0 steps; give it at least one step.")
    treedef, got = spec_of(jax.tree.map(lambda x: x[0], data) if multi else data)
    want_tree, want = arg_spec
    if treedef != want_tree or len(got) != len(want):
        raise ValueError(
            f"{owner}: the inputs have the structure {treedef}, but the learner was compiled for {want_tree}. "
            "Call the learner with inputs shaped like the example given to compile_graph."
        )
    names = _names(data)
    for name, (s, d), (ws, wd) in zip(names, got, want):
        if s != ws:
            raise ValueError(
                f"{owner}: {name} has shape {s} per time step, but the learner was compiled for {ws}. A different "
                "batch size or input size needs a new compile: reset the model's states with the new batch size "
                "(brainstate.nn.init_all_states(model, batch_size=...)) and call "
                "`learner.compile_graph(*inputs_of_one_step)` again."
            )
        if d != wd:
            raise ValueError(
                f"{owner}: {name} has dtype {d}, but the learner was compiled for {wd}. Cast it "
                f"(x.astype(jnp.{jnp.dtype(wd).name})), or compile with inputs of dtype {d} (and a model of that "
                "precision)."
            )


def check_states(owner: str, graph: Any, spec: dict) -> None:
    """The model's states against their shapes and dtypes at compile time."""
    for s in graph.module_info.slots:
        if s.role == "param" or s.path not in spec:
            continue
        got = tuple((tuple(jnp.shape(v)), jnp.result_type(v)) for v in jax.tree.leaves(s.state.value))
        if got != spec[s.path]:
            raise ValueError(
                f"{owner}: the state `{path_str(s.path)}` has (shape, dtype) {got} now, but {spec[s.path]} when "
                "the learner was compiled. A state whose shape or dtype changes (a new batch size, a reset without "
                "`batch_size`, a different precision) needs a new compile: call `learner.compile_graph(...)` "
                "again after initialising the states."
            )


def one_step(example_args: tuple) -> tuple:
    """The example inputs of one step (wrappers unwrapped; a window contributes its first step).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> from braintrace.algorithms.input_checks import one_step
    >>> one_step((braintrace.MultiStepData(jnp.zeros((4, 2))), jnp.ones(3)))[0].shape
    (2,)
    """
    firsts = tuple(jax.tree.map(lambda x: x[0], a.data) if isinstance(a, MultiStepData) else a for a in example_args)
    return unwrap_step_args(firsts)[0]


def weight_path(model: Any, weight: Any) -> str | None:
    """The path (``'a.b'``) of ``weight``: a ``ParamState`` of ``model``, a path tuple or a string.

    Examples
    --------
    >>> from braintrace.algorithms.input_checks import weight_path
    >>> weight_path(None, ("Wz", "weight")), weight_path(None, "Wz.weight")
    ('Wz.weight', 'Wz.weight')
    """
    if isinstance(weight, brainstate.State):
        paths = [p for p, s in model.states().items() if s is weight]
        return path_str(tuple(paths[0])) if paths else None
    if isinstance(weight, str):
        return weight
    return path_str(tuple(weight))
