"""Where an ES_D_RTRL step's time goes: the forward pass, the traces, the gradient.

For one model, times in rounds (each round calls every variant once, so a load
drifting over the run touches them alike) and prints, per step, the fastest
and the median call of:

- ``forward``: inference (the benchmark's forward pass);
- ``traces``: ES_D_RTRL fed ``K``-step ``MultiStepData`` windows with no
  gradient asked: the model and the trace updates, one scan per window;
- ``gradient``: ``es_d_rtrl_winK`` of :mod:`benchmarks.methods`, the online
  gradient.

``traces - forward`` is what advancing the traces costs, ``gradient - traces``
what the gradient adds (the per-step values the backward pass needs, kept in
the scan, and the window's backward operations)::

    python -m benchmarks.decompose --model lif-256 --T 1000 --window 10
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import brainstate
import jax
import jax.numpy as jnp

import braintrace

from .methods import _learner, build_body, split_windows
from .models import ModelSpec, build_model, make_data, mse_loss

__all__ = ["decompose", "format_decomposition", "main", "rounds_table", "spec_from_name", "time_in_rounds"]


def _traces_body(spec: ModelSpec, K: int) -> Callable:
    model = build_model(spec)
    learner = _learner("es_d_rtrl", model, spec, "single-step")  # the learner of `es_d_rtrl_winK`

    def body(xs, ys):
        brainstate.nn.reset_all_states(model, batch_size=spec.batch)
        learner.reset_state(spec.batch)
        xw, yw = split_windows(xs, ys, K)

        def step(total, xy):
            outs = learner(braintrace.MultiStepData(xy[0]))
            return total + jnp.sum(jax.vmap(mse_loss)(outs, xy[1])), None

        return brainstate.transform.scan(step, jnp.zeros((), jnp.float32), (xw, yw))[0]

    return body


def decompose(spec: ModelSpec, K: int, rounds: int = 7) -> dict[str, dict[str, float]]:
    """``{variant: {'min_us': ..., 'median_us': ...}}`` per step, for ``forward``, ``traces``, ``gradient``.

    Raises ``ValueError`` if ``K`` does not divide ``spec.T``.
    """
    if K < 1 or spec.T % K:
        raise ValueError(f"window K={K} must divide T={spec.T}")
    xs, ys = make_data(spec)
    bodies = {
        "forward": build_body("forward", build_model(spec), spec),
        "traces": _traces_body(spec, K),
        "gradient": build_body(f"es_d_rtrl_win{K}", build_model(spec), spec),
    }
    fns = {name: brainstate.transform.jit(body) for name, body in bodies.items()}
    for f in fns.values():  # compile
        jax.block_until_ready(f(xs, ys))
    return time_in_rounds(fns, (xs, ys), spec.T, rounds)


def time_in_rounds(fns: dict[str, Callable], args: tuple, T: int, rounds: int) -> dict[str, dict[str, float]]:
    """``{name: {'min_us', 'median_us'}}`` per step of ``T`` for compiled ``fns(*args)``.

    One warm-up call each, then ``rounds`` rounds, each calling every function
    once (a load drifting over the run touches them alike).
    """
    for f in fns.values():
        jax.block_until_ready(f(*args))
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, f in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(f(*args))
            times[name].append(time.perf_counter() - t0)
    return {
        name: {"min_us": min(ts) / T * 1e6, "median_us": statistics.median(ts) / T * 1e6}
        for name, ts in times.items()
    }


def rounds_table(title: str, result: dict[str, dict[str, float]]) -> str:
    """A markdown table of :func:`time_in_rounds`' times and their multiples of ``result['forward']``."""
    fwd = result["forward"]
    lines = [
        title,
        "",
        "| variant | fastest µs/step | median µs/step | × forward (fastest) | × forward (median) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in result.items():
        lines.append(
            f"| {name} | {r['min_us']:.4g} | {r['median_us']:.4g} | {r['min_us'] / fwd['min_us']:.3g} "
            f"| {r['median_us'] / fwd['median_us']:.3g} |"
        )
    return "\n".join(lines)


def format_decomposition(spec: ModelSpec, K: int, result: dict[str, dict[str, float]]) -> str:
    """A markdown table: per-step times and their multiples of the forward step."""
    return rounds_table(f"{spec.name}, {K}-step windows", result)


def spec_from_name(model: str, T: int, batch: int) -> ModelSpec:
    """``'gru-64'`` / ``'lif-256'`` as a :class:`ModelSpec`; ``SystemExit`` with the accepted form otherwise."""
    kind, _, size = model.partition("-")
    if kind not in ("gru", "lif") or not size.isdigit():
        raise SystemExit(f"--model takes gru-N or lif-N (e.g. lif-256), got {model!r}")
    return ModelSpec(kind, int(size), T, batch=batch)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lif-256", help="gru-N or lif-N (default lif-256)")
    parser.add_argument("--T", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    spec = spec_from_name(args.model, args.T, args.batch)
    text = format_decomposition(spec, args.window, decompose(spec, args.window, args.rounds))
    print(text, flush=True)
    return text


if __name__ == "__main__":
    main()
