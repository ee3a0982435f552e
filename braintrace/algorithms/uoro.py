r"""UORO: unbiased online recurrent optimisation (Tallec & Ollivier, 2018)."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import brainstate
import jax
import jax.numpy as jnp

from ..executor import InfluenceLayout, StepTraceData
from .influence_traces import InfluenceVjpAlgorithm
from .keys import TraceKey

__all__ = ["UORO"]

_V = TraceKey("uoro_h", (), -1)
_THETA = TraceKey("uoro_theta", (), -1)
_RNG = TraceKey("rng", (), -1)


def _key_data(seed: int) -> jax.Array:
    return jax.random.key_data(jax.random.key(seed))


class UORO(InfluenceVjpAlgorithm):
    r"""Unbiased online recurrent optimisation: a rank-one, unbiased estimate of the RTRL influence.

    Notation as in :class:`RTRL` (``h``: the ``N`` hidden values, ``θ``: the
    ``|θ|`` parameter entries reaching them, ``P = dh/dθ``, ``J``, ``M``).
    UORO keeps two vectors, ``ṽ`` (``N``) and ``θ̃`` (``|θ|``), with
    ``E[ṽ θ̃^⊤] = P``. Each step draws signs ``ν ∈ \{±1\}^N`` and sets

    .. math::

        ṽ^t = ρ_0\, J^t ṽ^{t-1} + ρ_1\, ν, \qquad
        θ̃^t = \frac{θ̃^{t-1}}{ρ_0} + \frac{ν^⊤ M^t}{ρ_1}, \qquad
        ρ_0 = \sqrt{\frac{\|θ̃^{t-1}\|}{\|J^t ṽ^{t-1}\| + ε}} + ε, \quad
        ρ_1 = \sqrt{\frac{\|ν^⊤ M^t\|}{\|ν\| + ε}} + ε,

    (``J ṽ`` one forward-mode product, ``ν^⊤ M`` one reverse-mode product:
    no Jacobian is formed), and gives

    .. math::

        \nabla_θ L = \sum_t \Big[ (λ^t \cdot ṽ^{t-1})\, θ̃^{t-1}
            + \frac{\partial L^t}{\partial θ}\Big|_{h^{t-1}} \Big], \qquad
        λ^t = \frac{\partial L^t}{\partial h^{t-1}}.

    The ``ρ``'s are even in ``ν`` and the cross terms odd, so
    ``E[ṽ^t θ̃^{t⊤}] = J^t P^{t-1} + M^t = P^t``: the gradient is an unbiased
    estimate of RTRL's (that is, of BPTT's, for fixed parameters), with a
    variance that grows with ``N``. A batched model is one vector ``h`` of
    ``B·n`` values (one ``ν`` for the batch).

    Memory ``O(N + |θ|)``; time a few step evaluations per step.

    Parameters
    ----------
    model : brainstate.nn.Module
        The model; ``model(x)`` advances one step.
    seed : int, default 0
        Seed of the learner's random key (kept in its traces, advanced every
        step; :meth:`reset_state` does not rewind it, :meth:`reseed` does).
    eps : float, default 1e-7
        ``ε`` of the normalisers (``> 0``).
    name : str, optional
        The learner's name.
    vjp_method : {'single-step', 'multi-step'}, default 'single-step'
        ``'multi-step'``: BPTT inside a ``MultiStepData`` window plus
        ``(λ · ṽ) θ̃`` for the window's initial state.
    max_trace_size : int, optional
        Refuse, at compile time, a model with more trace entries (default ``2**27``).

    Raises
    ------
    ValueError
        ``seed`` is not an integer, or ``eps`` is not positive.

    See Also
    --------
    RTRL : the exact influence, ``O(N·|θ|)`` memory.
    SnAp : the influence on a sparsity pattern.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.GRUCell(2, 3)
    >>> _ = brainstate.nn.init_all_states(cell)
    >>> learner = braintrace.UORO(cell, seed=1).compile_graph(jnp.zeros(2))
    >>> learner.trace_size(learner.flat) == learner.flat.num_hidden + learner.flat.num_params + 2
    True
    >>> weights = cell.states(brainstate.ParamState)
    >>> grads = [brainstate.transform.grad(lambda x: learner(x).sum(), weights)(jnp.ones(2)) for _ in range(3)]
    >>> sorted(grads[-1])
    [('Wh', 'weight'), ('Wr', 'weight'), ('Wz', 'weight')]

    References
    ----------
    C. Tallec and Y. Ollivier, "Unbiased online recurrent optimization", ICLR 2018.
    """

    def __init__(
        self,
        model: brainstate.nn.Module,
        seed: int = 0,
        eps: float = 1e-7,
        name: str | None = None,
        vjp_method: str = "single-step",
        max_trace_size: int | None = None,
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise ValueError(f"UORO: seed must be an integer, got {seed!r}.")
        if not isinstance(eps, numbers.Real) or not float(eps) > 0:
            raise ValueError(f"UORO: eps must be a positive number, got {eps!r}.")
        super().__init__(model, name=name, vjp_method=vjp_method, max_trace_size=max_trace_size)
        self.seed: int = int(seed)
        self.eps: float = float(eps)

    # -- states --------------------------------------------------------------------
    def init_etrace_state(self, *args: Any, **kwargs: Any) -> None:
        super().init_etrace_state(*args, **kwargs)
        self.etraces[_RNG].value = _key_data(self.seed)

    def reset_state(self, batch_size: int | None = None, **kwargs: Any) -> None:
        """Zero ``ṽ``, ``θ̃`` and the step counter; the random key goes on (fresh signs each sequence).

        Parameters
        ----------
        batch_size : int, optional
            Not used (the traces keep their shapes).
        **kwargs
            Not used.
        """
        key = self.etraces[_RNG].value if _RNG in self.etraces else None
        super().reset_state(batch_size, **kwargs)
        if key is not None:
            self.etraces[_RNG].value = key

    def reseed(self, seed: int) -> None:
        """Restart the random key from ``seed`` (the traces are left as they are).

        Parameters
        ----------
        seed : int
            The new seed.
        """
        self.check_compiled()
        self.etraces[_RNG].value = _key_data(int(seed))

    # -- the rule ------------------------------------------------------------------
    def trace_size(self, flat: InfluenceLayout) -> int:
        return flat.num_hidden + flat.num_params + int(_key_data(0).size)

    def init_traces(self, data: StepTraceData) -> dict[TraceKey, Any]:
        flat = self._flat()
        return {
            _V: jnp.zeros((flat.num_hidden,), flat.dtype),
            _THETA: jnp.zeros((flat.num_params,), flat.dtype),
            _RNG: jnp.zeros_like(_key_data(0)),
        }

    def update_traces(self, traces: Mapping[TraceKey, Any], data: StepTraceData, count: jax.Array) -> dict:
        flat, eps = self._flat(), self.eps
        key, sub = jax.random.split(jax.random.wrap_key_data(traces[_RNG]))
        nu = jax.random.rademacher(sub, (flat.num_hidden,), dtype=flat.dtype)
        v, theta = traces[_V], traces[_THETA]
        Jv = data.tangent.jvp(v, jnp.zeros_like(theta))
        _, nuM = data.tangent.vjp(nu)
        rho0 = jnp.sqrt(jnp.linalg.norm(theta) / (jnp.linalg.norm(Jv) + eps)) + eps
        rho1 = jnp.sqrt(jnp.linalg.norm(nuM) / (jnp.linalg.norm(nu) + eps)) + eps
        return {
            **traces,
            _V: (rho0 * Jv + rho1 * nu).astype(v.dtype),
            _THETA: (theta / rho0 + nuM / rho1).astype(theta.dtype),
            _RNG: jax.random.key_data(key),
        }

    def contract(self, traces: Mapping[TraceKey, Any], lam: jax.Array) -> jax.Array:
        return jnp.vdot(lam.astype(traces[_V].dtype), traces[_V]) * traces[_THETA]

    def dense_influence(self, traces: Mapping[TraceKey, Any]) -> jax.Array:
        return jnp.outer(traces[_THETA], traces[_V])
