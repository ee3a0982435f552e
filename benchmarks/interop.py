"""The field's neurons against braintrace's own: ``brainpy.state`` networks and the same networks from ``braintrace.nn``.

Three spiking networks, each built twice with identical dynamics and weights
(input ``braintrace.nn.Linear`` → neuron → read-out, batch ``B``):

- ``lif``: ``brainpy.state.DeltaProj(comm=Linear)`` → ``brainpy.state.LIF``
  (soft reset, ``braintools.surrogate.Sigmoid``), against ``Linear`` →
  ``braintrace.nn.LIF`` (``reset='subtract'``, ``surrogate='sigmoid'``);
- ``alif``: the same with ``brainpy.state.ALIF``, against
  ``braintrace.nn.ALIF`` with ``beta`` rescaled (brainpy's adaptation is
  ``a^t = ρ(a^{t-1} + s^{t-1})``, braintrace's ``ρ a^{t-1} + s^{t-1}``: the
  same dynamics for ``a_brainpy = ρ a_braintrace``);
- ``expon``: ``brainpy.state.AlignPostProj(comm=Linear, syn=Expon, out=CUBA)``
  into a ``brainpy.state.LIF``, against ``Linear`` → :class:`ExpSynapse` (a
  six-line ``brainstate`` module: braintrace.nn has no synapse) → ``braintrace.nn.LIF``.

The read-out is ``braintrace.nn.Linear`` (``readout='linear'``: no state, so
D_RTRL is exact on every network) or ``braintrace.nn.LeakyRateReadout``.
``brainpy.state`` spikes through ``braintools``' custom primitive and
integrates with ``brainstate.nn.exp_euler_step`` (``saiunit``'s ``exprel``
primitive): the compiler must see both as element-wise for the two builds to
compile to the same graph and run at the same speed.

Run ``python -m benchmarks.interop`` (``--help`` for the sizes and methods): a
markdown table with, for each build side by side, braintrace's graph compile
time (median over fresh networks), the jit compile time (tracing, lowering and
XLA) of one whole sequence, and the per-step time (median of the calls), then
the median of the per-round time ratios. The two builds are called
alternately, so a load drifting on a shared machine biases neither.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from collections.abc import Sequence

import brainpy
import brainstate
import braintools
import jax
import jax.numpy as jnp
import numpy as np

import braintrace

from .measure import machine_info
from .methods import build_body
from .models import ModelSpec, make_data

__all__ = ["KINDS", "STACKS", "ExpSynapse", "InteropNet", "build_pair", "graph_compile_s", "time_method", "main"]

KINDS = ("lif", "alif", "expon")
TAU, TAU_A, TAU_SYN, BETA, V_TH = 10.0, 50.0, 5.0, 0.3, 1.0


def _dt() -> float:
    return float(brainstate.environ.get_dt())


class ExpSynapse(brainstate.nn.Module):
    """``g^t = e^{-Δt/τ_s} g^{t-1} + x^t`` (``brainpy.state.Expon`` with its delta input), returns ``g^t``."""

    def __init__(self, size: int, tau: float) -> None:
        super().__init__()
        self.size, self.tau = size, tau

    def init_state(self, batch_size: int | None = None, **kwargs) -> None:
        self.g = brainstate.HiddenState(jnp.zeros((self.size,) if batch_size is None else (batch_size, self.size)))

    def reset_state(self, batch_size: int | None = None, **kwargs) -> None:
        self.g.value = jnp.zeros((self.size,) if batch_size is None else (batch_size, self.size))

    def update(self, x):
        self.g.value = np.exp(-_dt() / self.tau) * self.g.value + x
        return self.g.value


def _readout(kind: str, n: int, n_out: int, w: np.ndarray) -> brainstate.nn.Module:
    if kind == "linear":
        return braintrace.nn.Linear(n, n_out, w_init=w, b_init=None)
    return braintrace.nn.LeakyRateReadout(n, n_out, decay=0.8, w_init=w)


def _brainpy_neuron(kind: str, n: int) -> brainstate.nn.Module:
    common = {
        "R": 1.0, "tau": TAU, "V_th": V_TH, "V_reset": 0.0, "V_rest": 0.0,
        "V_initializer": braintools.init.Constant(0.0), "spk_fun": braintools.surrogate.Sigmoid(alpha=4.0),
        "spk_reset": "soft",
    }
    if kind == "alif":
        return brainpy.state.ALIF(n, tau_a=TAU_A, beta=BETA, a_initializer=braintools.init.Constant(0.0), **common)
    return brainpy.state.LIF(n, **common)


class InteropNet(brainstate.nn.Module):
    """One of the networks of the module docstring.

    Parameters
    ----------
    kind : {'lif', 'alif', 'expon'}
    stack : {'brainpy.state', 'braintrace.nn'}
        Which library the neuron (and synapse) comes from.
    n_in, n, n_out : int
        Input, neuron and output sizes.
    readout : {'linear', 'leaky'}
    seed : int
        Seed of the weights (the same for both stacks).
    surrogate : str or callable
        The spike function of the ``braintrace.nn`` neurons (``brainpy.state``
        ones use ``braintools.surrogate.Sigmoid(4)``, the same function).
    """

    def __init__(
        self, kind: str, stack: str, n_in: int, n: int, n_out: int, readout: str = "linear", seed: int = 0,
        surrogate="sigmoid",
    ):
        super().__init__()
        rng = np.random.RandomState(seed)
        dtype = brainstate.environ.dftype()
        w_in = (rng.standard_normal((n_in, n)) * 2.0 / np.sqrt(n_in)).astype(dtype)
        w_out = (rng.standard_normal((n, n_out)) / np.sqrt(n)).astype(dtype)
        self.kind, self.stack = kind, stack
        self.readout = _readout(readout, n, n_out, w_out)
        if stack == "brainpy.state":
            self.neuron = _brainpy_neuron(kind, n)
            linear = braintrace.nn.Linear(n_in, n, w_init=w_in)
            if kind == "expon":
                self.proj = brainpy.state.AlignPostProj(
                    comm=linear,
                    syn=brainpy.state.Expon.desc(n, tau=TAU_SYN, g_initializer=braintools.init.Constant(0.0)),
                    out=brainpy.state.CUBA.desc(scale=1.0),
                    post=self.neuron,
                )
            else:
                self.proj = brainpy.state.DeltaProj(comm=linear, post=self.neuron)
        elif stack == "braintrace.nn":
            self.inp = braintrace.nn.Linear(n_in, n, w_init=w_in)
            if kind == "alif":
                rho = float(np.exp(-_dt() / TAU_A))
                self.neuron = braintrace.nn.ALIF(
                    n, tau=TAU, tau_a=TAU_A, beta=BETA * rho / V_TH, v_th=V_TH, dt=_dt(), surrogate=surrogate
                )
            else:
                self.neuron = braintrace.nn.LIF(n, tau=TAU, v_th=V_TH, dt=_dt(), surrogate=surrogate)
            self.syn = ExpSynapse(n, TAU_SYN) if kind == "expon" else None
        else:
            raise ValueError(f"stack must be 'brainpy.state' or 'braintrace.nn', got {stack!r}")

    def update(self, x):
        if self.stack == "brainpy.state":
            self.proj(x)
            return self.readout(self.neuron(0.0))
        current = self.inp(x)
        if self.syn is not None:  # exponential Euler of brainpy's LIF: the current enters scaled by 1 - α
            current = (1.0 - np.exp(-_dt() / TAU)) * self.syn(current)
        return self.readout(self.neuron(current))


def build_pair(kind: str, n_in: int, n: int, n_out: int, batch: int | None, readout: str = "linear", seed: int = 0):
    """``{'brainpy.state': net, 'braintrace.nn': net}``, states initialised for ``batch``."""
    nets = {stack: InteropNet(kind, stack, n_in, n, n_out, readout, seed) for stack in ("brainpy.state", "braintrace.nn")}
    for net in nets.values():
        brainstate.nn.init_all_states(net, batch_size=batch)
    return nets


STACKS = ("brainpy.state", "braintrace.nn")


def graph_compile_s(kind: str, spec: ModelSpec, readout: str, rounds: int) -> dict[str, float]:
    """Median seconds of :func:`braintrace.compile_etrace_graph` per build (fresh networks, alternating)."""
    x = jnp.zeros((spec.batch, spec.n_in))
    times: dict[str, list[float]] = {stack: [] for stack in STACKS}
    for seed in range(rounds):
        for stack, net in build_pair(kind, spec.n_in, spec.size, spec.n_out, spec.batch, readout, seed).items():
            t0 = time.perf_counter()
            braintrace.compile_etrace_graph(net, x)
            times[stack].append(time.perf_counter() - t0)
    return {stack: statistics.median(t) for stack, t in times.items()}


def time_method(kind: str, method: str, spec: ModelSpec, readout: str, rounds: int) -> dict:
    """Jit compile seconds and per-step milliseconds of ``method`` for both builds, timed alternately.

    Returns ``{'compile_s', 'step_ms', 'fastest_ms', 'cpu_ms'}`` (each ``{stack: value}``: jit
    compile seconds; per step, the median and the fastest wall time and the median CPU time of
    the process, all threads) and three ratios brainpy.state / braintrace.nn: ``'ratio'`` the
    median over rounds of the wall-time ratio, ``'fastest_ratio'`` that of the fastest calls and
    ``'cpu_ratio'`` that of the median CPU times. On a loaded machine the fastest call and the
    CPU time are the least disturbed by other processes.
    """
    xs, ys = make_data(spec)
    calls, compile_s = {}, {}
    for stack, net in build_pair(kind, spec.n_in, spec.size, spec.n_out, spec.batch, readout).items():
        body = build_body(method, net, spec)
        t0 = time.perf_counter()
        jitted = brainstate.transform.jit(body)
        compiled = jitted.lower(xs, ys).compile()
        compile_s[stack] = time.perf_counter() - t0
        state_vals = jitted.stateful_fun.get_state_trace(xs, ys).get_state_values()
        calls[stack] = functools.partial(compiled, state_vals, xs, ys)
        jax.block_until_ready(calls[stack]())  # warm-up
    times: dict[str, list[float]] = {stack: [] for stack in STACKS}
    cpu: dict[str, list[float]] = {stack: [] for stack in STACKS}
    for _ in range(rounds):
        for stack in STACKS:
            c0, t0 = time.process_time(), time.perf_counter()
            jax.block_until_ready(calls[stack]())
            times[stack].append(time.perf_counter() - t0)
            cpu[stack].append(time.process_time() - c0)
    bp, bt = STACKS
    per_step = {
        "step_ms": {stack: 1e3 * statistics.median(t) / spec.T for stack, t in times.items()},
        "fastest_ms": {stack: 1e3 * min(t) / spec.T for stack, t in times.items()},
        "cpu_ms": {stack: 1e3 * statistics.median(t) / spec.T for stack, t in cpu.items()},
    }
    ratios = {
        "ratio": statistics.median(a / b for a, b in zip(times[bp], times[bt])),
        "fastest_ratio": min(times[bp]) / min(times[bt]),
        "cpu_ratio": statistics.median(cpu[bp]) / statistics.median(cpu[bt]),
    }
    return {"compile_s": compile_s, **per_step, **ratios}


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Time every (network, method) for both builds and print the markdown table."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.interop", description=__doc__.split("\n")[0])
    p.add_argument("--models", default=",".join(KINDS), help="comma-separated subset of " + ", ".join(KINDS))
    p.add_argument("--methods", default="forward,d_rtrl,es_d_rtrl", help="as in benchmarks.run (forward, bptt, d_rtrl, ...)")
    p.add_argument("--size", type=int, default=256, help="neurons")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--T", type=int, default=100)
    p.add_argument("--readout", choices=("linear", "leaky"), default="leaky")
    p.add_argument("--rounds", type=int, default=15, help="alternating timed calls (and graph compiles) per build")
    a = p.parse_args(argv)
    with brainstate.environ.context(dt=1.0):  # not set globally: a caller's environment is left as it was
        return _run(a)


def _run(a: argparse.Namespace) -> list[dict]:
    spec = ModelSpec("lif", a.size, a.T, batch=a.batch)
    info = machine_info()
    print(f"brainpy {brainpy.__version__}, braintools {braintools.__version__}, braintrace {braintrace.__version__}, "
          f"jax {info['jax']} ({info['backend']}); {info['cpu']}, {info['affinity_cpus']} of {info['cpu_count']} CPUs, "
          f"load {os.getloadavg()[0]:.1f}; N={a.size}, B={a.batch}, T={a.T}, {a.readout} read-out; "
          "each pair: brainpy.state / braintrace.nn\n")
    print("| model | method | graph compile ms | jit compile s | step ms, median | step ms, fastest | "
          "step CPU ms, median | ratio: median of rounds / fastest / CPU |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    rows = []
    for kind in a.models.split(","):
        graph = graph_compile_s(kind, spec, a.readout, a.rounds)
        for method in a.methods.split(","):
            row = {"model": kind, "method": method, "graph_s": graph, **time_method(kind, method, spec, a.readout, a.rounds)}
            ms = {key: " / ".join(f"{row[key][stack]:.3f}" for stack in STACKS) for key in ("step_ms", "fastest_ms", "cpu_ms")}
            print(f"| {kind} | {method} | {1e3 * graph[STACKS[0]]:.0f} / {1e3 * graph[STACKS[1]]:.0f} | "
                  f"{row['compile_s'][STACKS[0]]:.2f} / {row['compile_s'][STACKS[1]]:.2f} | {ms['step_ms']} | "
                  f"{ms['fastest_ms']} | {ms['cpu_ms']} | "
                  f"{row['ratio']:.2f} / {row['fastest_ratio']:.2f} / {row['cpu_ratio']:.2f} |", flush=True)
            rows.append(row)
    return rows


if __name__ == "__main__":
    main()
