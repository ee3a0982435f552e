"""A hidden state must keep its shape and dtype through a step.

If a step writes a hidden state with another shape than it read (the input
carries a batch axis the state lacks, or a whole sequence was given where one
step is expected) or another dtype (float64 data into a float32 state), the
next step would run a different computation: the compiled graph would not
describe it. :func:`check_state_shapes` refuses such a step at compile time
and says what to fix.
"""

from __future__ import annotations

from ..errors import CompilationError
from .module_info import ModuleInfo, path_str

__all__ = ["check_state_shapes"]


def check_state_shapes(minfo: ModuleInfo) -> None:
    """Raise :class:`~braintrace.CompilationError` if a written state changes shape or dtype.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> from braintrace.compiler.state_shapes import check_state_shapes
    >>> class Leaky(brainstate.nn.Module):                   # its state has no batch axis
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.h = brainstate.HiddenState(jnp.zeros(3))
    ...     def update(self, x):
    ...         self.h.value = 0.9 * self.h.value + x
    ...         return self.h.value
    >>> try:
    ...     check_state_shapes(braintrace.extract_module_info(Leaky(), jnp.zeros((8, 3))))
    ... except braintrace.CompilationError as err:
    ...     print(str(err).split(' and dtype')[0])
    The step writes the state `h` with shape (8, 3)
    """
    jaxpr = minfo.jaxpr
    for slot in minfo.slots:
        if slot.role == "param" or not slot.written:
            continue
        for i, k in zip(slot.invars, slot.outvars):
            old, new = jaxpr.invars[i].aval, jaxpr.outvars[k].aval
            if tuple(old.shape) == tuple(new.shape) and old.dtype == new.dtype:
                continue
            raise CompilationError(
                f"The step writes the state `{path_str(slot.path)}` with shape {tuple(new.shape)} and dtype "
                f"{new.dtype}, but reads it with shape {tuple(old.shape)} and dtype {old.dtype}: the model would "
                "change from one step to the next. Usual causes: the example input of compile_graph is a whole "
                "sequence (give one time step: xs[0]); the input has a batch axis the state lacks (create the "
                "states with it: brainstate.nn.init_all_states(model, batch_size=B), which needs the module to "
                "define init_state(batch_size)); the input's dtype differs from the state's (cast the input)."
            )
