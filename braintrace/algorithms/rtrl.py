r"""RTRL: exact real-time recurrent learning (Williams & Zipser, 1989).

The reference every approximate online learner is measured against, and the
answer to "my recurrence is not element-wise": the full influence matrix of
every parameter on every hidden value, propagated by the full (coupled)
Jacobian of the step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from ..executor import StepTraceData
from .influence_traces import INFLUENCE, InfluenceVjpAlgorithm
from .keys import TraceKey

__all__ = ["RTRL"]

_KEY = TraceKey(INFLUENCE, (), -1)


class RTRL(InfluenceVjpAlgorithm):
    r"""Exact real-time recurrent learning: the full influence matrix, the full Jacobian.

    Notation: ``h`` is every hidden state of the model flattened into one
    vector of ``N`` values (batch axes included), ``θ`` every floating
    parameter leaf whose value reaches a hidden state, by any path (ETP
    primitives, plain ``x @ W``, weights behind other weights), ``|θ|``
    entries in all. The learner keeps the influence matrix

    .. math::

        P^t = \frac{d h^t}{d θ} = J^t P^{t-1} + M^t, \qquad
        J^t = \frac{\partial h^t}{\partial h^{t-1}}, \quad
        M^t = \frac{\partial h^t}{\partial θ}\Big|_{h^{t-1}},

    with ``J`` the *full* Jacobian (not cut at the ETP data inputs, every
    hidden state coupled with every other), and gives the gradient

    .. math::

        \nabla_θ L = \sum_t \Big[ λ^t \cdot P^{t-1}
            + \frac{\partial L^t}{\partial θ}\Big|_{h^{t-1}} \Big], \qquad
        λ^t = \frac{\partial L^t}{\partial h^{t-1}},

    which is the gradient of backpropagation through time, exactly, for any
    model: coupled recurrences, several layers, outputs read from ``h^{t-1}``
    before the write. Each step, ``J P + M`` is pushed forward as one
    forward-mode pass per parameter entry (in chunks), never forming ``J``.
    Parameters that reach no hidden state get their instantaneous gradient.

    Memory ``O(N·|θ|)`` (``O(B·n·|θ|)`` for a batch of ``B`` copies of ``n``
    hidden values), time ``O(|θ|)`` step evaluations per step: for small
    networks (a few hundred hidden values). Over a ``MultiStepData`` window
    every step's matrix is kept (``K`` times the memory).

    Parameters
    ----------
    model : brainstate.nn.Module
        The model; ``model(x)`` advances one step.
    name : str, optional
        The learner's name.
    vjp_method : {'single-step', 'multi-step'}, default 'single-step'
        ``'multi-step'``: BPTT inside a ``MultiStepData`` window plus ``λ · P``
        for the window's initial state (both exact: the result is BPTT's).
    max_trace_size : int, optional
        Refuse, at compile time, a model whose ``N·|θ|`` exceeds this
        (default ``2**27``).

    Raises
    ------
    CompilationError
        The influence matrix would exceed ``max_trace_size`` (the message
        gives ``N`` and ``|θ|``).
    NotSupportedError
        A hidden state holds integer values.

    See Also
    --------
    SnAp : the influence matrix kept on a sparsity pattern.
    UORO : an unbiased rank-one estimate of it, ``O(N + |θ|)`` memory.
    D_RTRL : per-parameter traces with the cut, per-position Jacobian.

    Examples
    --------
    A plain ``jnp`` recurrence, which the relation-based learners cannot trace
    (its weight gets only an instantaneous gradient from them):

    >>> import brainstate, jax, jax.numpy as jnp
    >>> import braintrace
    >>> class Plain(brainstate.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.w = brainstate.ParamState(0.5 * jnp.eye(2))
    ...         self.h = brainstate.HiddenState(jnp.zeros(2))
    ...     def update(self, x):
    ...         self.h.value = jnp.tanh(self.h.value @ self.w.value + x)
    ...         return self.h.value
    >>> model = Plain()
    >>> learner = braintrace.RTRL(model).compile_graph(jnp.zeros(2))
    >>> xs = jnp.ones((3, 2))
    >>> grads = [brainstate.transform.grad(lambda x: learner(x).sum(), model.states(brainstate.ParamState))(x)
    ...          for x in xs]
    >>> online = sum(g[("w",)] for g in grads)
    >>> model.h.value = jnp.zeros(2)
    >>> def bptt(w):
    ...     h, total = jnp.zeros(2), 0.0
    ...     for x in xs:
    ...         h = jnp.tanh(h @ w + x)
    ...         total = total + h.sum()
    ...     return total
    >>> bool(jnp.allclose(online, jax.grad(bptt)(model.w.value), atol=1e-5))
    True

    References
    ----------
    R. J. Williams and D. Zipser, "A learning algorithm for continually running
    fully recurrent neural networks", Neural Computation 1(2), 1989.
    """

    def init_traces(self, data: StepTraceData) -> dict[TraceKey, Any]:
        flat = self._flat()
        return {_KEY: jnp.zeros((flat.num_params, flat.num_hidden), flat.dtype)}

    def update_traces(self, traces: Mapping[TraceKey, Any], data: StepTraceData, count: jax.Array) -> dict:
        return {**traces, _KEY: data.tangent.propagate(traces[_KEY])}

    def contract(self, traces: Mapping[TraceKey, Any], lam: jax.Array) -> jax.Array:
        return traces[_KEY] @ lam.astype(traces[_KEY].dtype)

    def dense_influence(self, traces: Mapping[TraceKey, Any]) -> jax.Array:
        return traces[_KEY]
