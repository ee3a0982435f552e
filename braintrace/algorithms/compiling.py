"""One call from a model to a compiled learner: :func:`compile`.

Resolves the learner by name through :mod:`braintrace.algorithms.catalog`
(or takes a learner class), checks the options against the learner's
constructor, initialises the model's states for the batch size and compiles
the model's step.
"""

from __future__ import annotations

import inspect
from typing import Any

import brainstate

from .base import ETraceAlgorithm
from .catalog import LEARNERS, learner_class, learner_names

__all__ = ["compile"]


def compile(  # noqa: A001 - the 0.2.0 name, served as braintrace.compile
    model: brainstate.nn.Module,
    algorithm: str | type,
    *example_inputs: Any,
    batch_size: int | None = None,
    **options: Any,
) -> ETraceAlgorithm:
    """Build a learner for ``model`` and compile it: ``algorithm(model, **options).compile_graph(*example_inputs)``.

    Parameters
    ----------
    model : brainstate.nn.Module
        The model; ``model(*inputs)`` advances one time step.
    algorithm : str or type
        A learner name, case-insensitive, ``-`` and ``_`` alike: ``'d_rtrl'``,
        ``'es_d_rtrl'`` (also ``'pp_prop'``, ``'esd_rtrl'``), ``'eprop'``
        (``'e_prop'``), ``'ostl'`` (``'ostl_recurrent'``), ``'ostl_ff'``
        (``'ostl_feedforward'``), ``'ottt'``, ``'otpe'``, ``'osttp'``; or a
        subclass of :class:`~braintrace.ETraceAlgorithm`.
    *example_inputs
        Inputs of one time step (at least one), as for ``compile_graph``.
    batch_size : int, optional
        Initialise the model's states for this batch size first
        (``brainstate.nn.init_all_states(model, batch_size)``). ``None``: the
        states are used as they are, or initialised unbatched if the model
        holds no hidden state yet.
    **options
        The learner's options (``decay_or_rank``, ``vjp_method``, ``leak``,
        ...), checked against its constructor.

    Returns
    -------
    ETraceAlgorithm
        The compiled learner.

    Raises
    ------
    ValueError
        An unknown learner name (the message lists the valid ones), ``'bptt'``
        (not an online learner), no example input, or a bad ``batch_size``.
    TypeError
        ``algorithm`` is neither a name nor a learner class, or an option the
        learner does not take (the message lists those it takes), or a
        required option is missing.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.GRUCell(2, 3)
    >>> learner = braintrace.compile(cell, "ES_D_RTRL", jnp.zeros((4, 2)), batch_size=4, decay_or_rank=0.9)
    >>> type(learner).__name__, learner.is_compiled, cell.h.value.shape
    ('ES_D_RTRL', True, (4, 3))
    >>> braintrace.compile(cell, "es_d_rtrl", jnp.zeros((4, 2)), decay=0.9)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    TypeError: compile: ES_D_RTRL takes no option 'decay'; its options are: decay_or_rank, name, vjp_method, ...
    """
    cls = _learner_class(algorithm)
    if not example_inputs:
        raise ValueError(
            f"compile: give at least one example input of one time step, e.g. "
            f"braintrace.compile(model, {_label(algorithm)}, jnp.zeros((batch, n_in)))."
        )
    _check_options(cls, options)
    if batch_size is not None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"compile: batch_size must be a positive int or None, got {batch_size!r}.")
        brainstate.nn.init_all_states(model, batch_size=batch_size)
    elif isinstance(model, brainstate.nn.Module) and not model.states(brainstate.HiddenState):
        brainstate.nn.init_all_states(model)
    learner = cls(model, **options)
    learner.compile_graph(*example_inputs)
    return learner


def _label(algorithm: Any) -> str:
    return repr(algorithm) if isinstance(algorithm, str) else getattr(algorithm, "__name__", repr(algorithm))


def _learner_class(algorithm: Any) -> type:
    if isinstance(algorithm, str):
        if algorithm.strip().lower() == "bptt":
            raise ValueError(
                "compile: 'bptt' is not an online learner; differentiate the model itself with "
                "braintrace.bptt_gradients(model, inputs, targets, loss_fn)."
            )
        return learner_class(algorithm)
    if isinstance(algorithm, type):
        if issubclass(algorithm, ETraceAlgorithm):
            return algorithm
        raise TypeError(
            f"compile: {algorithm.__name__} is not a learner (a subclass of braintrace.ETraceAlgorithm); give "
            f"one, or a name: {', '.join(learner_names())}."
        )
    raise TypeError(
        f"compile: `algorithm` must be a learner name or a learner class, got {type(algorithm).__name__}: "
        f"{algorithm!r}."
    )


def _check_options(cls: type, options: dict) -> None:
    init = getattr(cls, "__init__")  # noqa: B009 - the signature of cls itself is hidden by brainstate's metaclass
    params = list(inspect.signature(init).parameters.values())[2:]  # after `self`, `model`
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for key in options:
        if key not in names:
            raise TypeError(f"compile: {cls.__name__} takes no option {key!r}; its options are: {', '.join(names)}.")
    missing = [p.name for p in params if p.default is p.empty and p.kind is not p.VAR_POSITIONAL
               and p.name not in options]
    if missing:
        name = next((spec.name for spec in LEARNERS if spec.cls is cls), cls.__name__)
        raise TypeError(
            f"compile: {cls.__name__} needs the option(s) {', '.join(missing)}, e.g. "
            f"braintrace.compile(model, '{name}', x, {missing[0]}=...)."
        )
