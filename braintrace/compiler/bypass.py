r"""Hidden states read before they are written: the bypass term's static check.

A step that computes its output (or a spike, or any value it returns) from a
hidden state's *old* value ``h^{t-1}``, before writing the new value ``h^t``,
makes the loss at step ``t`` depend on ``h^{t-1}`` along a path that does not
pass through ``h^t``. The single-step online rule then needs a second learning
signal (DESIGN.md §3),

.. math:: δ_{\rm prev}^t = \frac{\partial L^t}{\partial h^{t-1}}\Big|_{h^t\ \mathrm{fixed}},

credited to the trace of the previous step. Without it every weight feeding
``h`` gets a zero gradient when the output reads only ``h^{t-1}`` (the usual
way brainpy-style neurons are written: spike from the old voltage, then reset).

:func:`bypass_paths` finds those states: the old value reaches a model output,
or the new value of a non-hidden state, without passing through a hidden
state's new value. The executor computes ``δ_prev`` only for them.
"""

from __future__ import annotations

from typing import Any

from .diagnostics import CompilationRecord, DiagnosticKind, DiagnosticLevel
from .jaxpr_tools import UseDef, is_literal
from .module_info import ModuleInfo, path_str

__all__ = ["bypass_paths"]

Path = tuple[Any, ...]


def bypass_paths(minfo: ModuleInfo) -> tuple[tuple[Path, ...], tuple[CompilationRecord, ...]]:
    """Hidden states whose old value reaches the step's outputs other than through a new hidden value.

    Parameters
    ----------
    minfo : ModuleInfo
        The traced step.

    Returns
    -------
    paths : tuple of tuple
        Paths of those hidden states, in ``minfo.hidden_slots`` order. A state
        the step never writes is not among them (its old value *is* its new one).
    records : tuple of CompilationRecord
        One ``INFO`` record per state found.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> from braintrace.compiler.bypass import bypass_paths
    >>> class Early(brainstate.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.w = brainstate.ParamState(jnp.ones((2, 2)))
    ...         self.h = brainstate.HiddenState(jnp.zeros(2))
    ...     def update(self, x):
    ...         out = jnp.tanh(self.h.value)                 # read before the write
    ...         self.h.value = 0.9 * self.h.value + braintrace.matmul(x, self.w.value)
    ...         return out
    >>> info = braintrace.extract_module_info(Early(), jnp.zeros(2))
    >>> bypass_paths(info)[0]
    (('h',),)
    """
    jaxpr = minfo.jaxpr
    usedef = UseDef(jaxpr)
    hidden_out = {minfo.hidden_out_var(s) for s in minfo.hidden_slots if not is_literal(minfo.hidden_out_var(s))}
    passthrough = {k for s in minfo.param_slots for k in s.outvars}
    hidden_k = {s.outvars[0] for s in minfo.hidden_slots}
    targets = {
        v for k, v in enumerate(jaxpr.outvars)
        if not is_literal(v) and k not in passthrough and k not in hidden_k and v not in hidden_out
    }
    found, records = [], []
    for slot in minfo.hidden_slots:
        old, new = minfo.hidden_in_var(slot), minfo.hidden_out_var(slot)
        if not slot.written or new is old:
            continue
        if usedef.forward([old], stop=hidden_out) & targets:
            found.append(slot.path)
            records.append(
                CompilationRecord(
                    DiagnosticKind.HIDDEN_READ_BEFORE_WRITE,
                    DiagnosticLevel.INFO,
                    f"The step reads `{path_str(slot.path)}` before writing it, and the old value reaches the "
                    "step's output (e.g. a spike or readout computed from h[t-1]). Online learners add the "
                    "bypass term dL[t]/dh[t-1] · trace[t-1] for it.",
                    hidden_paths=(slot.path,),
                )
            )
    return tuple(found), tuple(records)
