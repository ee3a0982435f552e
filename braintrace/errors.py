"""The exceptions braintrace raises.

Every error derives from :class:`BraintraceError`. The concrete classes also
derive from the builtin a user would catch (``ValueError`` or ``TypeError``), so
``except ValueError`` keeps working. Each class's docstring is its
troubleshooting page: the usual causes and the fix.
"""

from __future__ import annotations

__all__ = [
    "BraintraceError",
    "NotSupportedError",
    "CompilationError",
    "NotCompiledError",
    "CheckpointError",
]


class BraintraceError(Exception):
    """Base class of every exception raised by braintrace.

    Catch it to handle any braintrace failure at once; the concrete classes
    also derive from ``ValueError`` or ``TypeError``.

    Examples
    --------
    >>> import braintrace
    >>> issubclass(braintrace.CompilationError, braintrace.BraintraceError)
    True
    >>> try:
    ...     braintrace.D_RTRL(object())
    ... except TypeError as err:
    ...     print(type(err).__name__)
    TypeError
    """


class NotSupportedError(BraintraceError, ValueError):
    """A model uses a construct that online learning cannot handle.

    Usual causes
    ------------
    * ``update`` writes a ``brainstate.ParamState``. Parameters are read-only
      inside a step; keep running statistics in a ``brainstate.LongTermState``.
    * A ``jax.lax.cond``, ``jax.lax.scan`` or ``jax.lax.while_loop`` inside
      ``update`` touches a weight or a hidden state. The compiler cannot see
      through the branch or loop body. Use ``jax.lax.select`` or a mask
      (``v * (1 - spike) + v_reset * spike``) instead; control flow is fine
      outside ``update`` (for example ``jax.lax.scan`` over time steps).

    Examples
    --------
    >>> import braintrace
    >>> issubclass(braintrace.NotSupportedError, ValueError)
    True
    """


class CompilationError(BraintraceError, ValueError):
    """The eligibility-trace graph of a model could not be built.

    The message names the hidden group, weight or state path concerned and says
    what to change. Typical causes: an algorithm that needs single-state hidden
    groups (``OTTT``, ``OTPE``) given a neuron with two coupled states, or
    example inputs whose shapes do not fit the model.

    Examples
    --------
    >>> import braintrace
    >>> issubclass(braintrace.CompilationError, ValueError)
    True
    """


class NotCompiledError(BraintraceError, RuntimeError):
    """A learner was run before :meth:`compile_graph` was called.

    Call ``learner.compile_graph(*example_args)`` once, with inputs shaped like
    one time step, before the training loop.

    Examples
    --------
    >>> import braintrace
    >>> issubclass(braintrace.NotCompiledError, RuntimeError)
    True
    """


class CheckpointError(BraintraceError, ValueError):
    """A checkpoint cannot be restored into this learner, or cannot be written.

    Usual causes
    ------------
    * The checkpoint was saved from another model or learner: other state
      paths, shapes or dtypes (a different hidden size or batch size), or
      another learner class. The message names the first mismatch; the
      learner is left unchanged. Build the model and learner as they were
      when the checkpoint was saved, compile the learner, then restore.
    * The folder holds no braintrace checkpoint, or one exists where
      ``save`` would write (pass ``overwrite=True``).

    Examples
    --------
    >>> import braintrace
    >>> issubclass(braintrace.CheckpointError, ValueError)
    True
    """
