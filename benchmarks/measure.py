"""Measuring one (config, method): compile time, XLA memory analysis, wall time, peak RSS.

Protocol (``measure``):

1. build the model and the method's stateful body (``setup_s``: includes
   braintrace's graph compilation of the model step);
2. ``brainstate.transform.jit(body).lower(xs, ys)`` (``lower_s``: tracing and
   lowering) and ``.compile()`` (``compile_s``: XLA);
3. ``compiled.memory_analysis()``: temp, argument, output and generated-code
   bytes (argument and output include the states the jitted function threads:
   parameters, hidden states, traces);
4. ``warmup`` calls of the compiled executable (not timed into the result),
   then ``repeats`` timed calls, each ending in ``jax.block_until_ready``; the
   result is the median (the minimum is kept too). If the warm-up call shows
   that ``repeats`` calls would exceed ``time_budget_s``, fewer repeats are run
   (at least one) and the number is recorded. The process's CPU time per call
   (user + system, all threads) is kept as ``cpu_s``: on a shared machine it
   moves less than the wall time when other processes compete for the cores;
5. for ES_D_RTRL methods, as many rounds of a forward-pass call and a method
   call back to back (a fresh forward model of the same spec);
   ``paired_forward_ratio`` is the median of the per-round time ratios, which
   a load drifting between separate measurements does not bias;
6. ``ru_maxrss`` of the process after the calls (a high-water mark of the
   whole process: it is only per-method when each method runs in a fresh
   process, see ``run.py --isolate``), and on accelerators the device's
   ``peak_bytes_in_use``.
"""

from __future__ import annotations

import functools
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import traceback
import warnings

import brainstate
import jax

import braintrace

from .methods import build_body, method_family
from .models import ModelSpec, build_model, make_data

__all__ = ["measure", "peak_rss_mb", "default_mem_budget", "machine_info"]


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``ru_maxrss``)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024.0 * 1024.0) if sys.platform == "darwin" else rss / 1024.0


def _device_peak_mb() -> float | None:
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 - backends without memory stats
        return None
    if not stats or "peak_bytes_in_use" not in stats:
        return None
    return stats["peak_bytes_in_use"] / 2**20


def default_mem_budget() -> float:
    """Bytes a measurement may need before it is compiled only: half the RAM on CPU, 90% of an accelerator."""
    dev = jax.devices()[0]
    if dev.platform != "cpu":
        try:
            limit = (dev.memory_stats() or {}).get("bytes_limit")
        except Exception:  # noqa: BLE001
            limit = None
        if limit:
            return 0.9 * limit
    return 0.5 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _git_info() -> dict:
    """Commit of the braintrace being measured, and whether its package files differ from it."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(braintrace.__file__)))
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, check=False,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "braintrace"], cwd=root, check=False,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"braintrace_commit": head or None, "braintrace_dirty": bool(dirty)} if head else {}


@functools.lru_cache(maxsize=1)
def machine_info() -> dict:
    """The machine and library versions, for the JSON and the docs."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    dev = jax.devices()[0]
    return {
        **_git_info(),
        "backend": dev.platform,
        "device_kind": dev.device_kind,
        "device_count": jax.device_count(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "ram_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "brainstate": brainstate.__version__,
        "braintrace": braintrace.__version__,
    }


def _cpu_s() -> float:
    """User + system CPU seconds of this process (all its threads)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _block(x):
    return jax.block_until_ready(x)


@functools.lru_cache(maxsize=2)
def _forward_executable(spec: ModelSpec, seed: int) -> tuple:
    """The compiled forward pass of ``spec`` (compiled once per process), its states and data, warmed up."""
    xs, ys = make_data(spec, seed)
    model = build_model(spec, seed)
    jitted = brainstate.transform.jit(build_body("forward", model, spec))
    compiled = jitted.lower(xs, ys).compile()
    state_vals = jitted.stateful_fun.get_state_trace(xs, ys).get_state_values()
    _block(compiled(state_vals, xs, ys))
    return compiled, state_vals, xs, ys


def _paired_forward(spec: ModelSpec, run_method, n: int, seed: int) -> dict:
    """``n`` rounds of (forward pass, method), back to back: the per-round time ratios.

    On a shared machine the load drifts between measurements taken minutes
    apart; a ratio of two calls made a few milliseconds apart does not see the
    drift. The forward pass is a fresh model of the same spec.
    """
    compiled, state_vals, xs, ys = _forward_executable(spec, seed)
    ratios, fwd = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        _block(compiled(state_vals, xs, ys))
        t1 = time.perf_counter()
        run_method()
        t2 = time.perf_counter()
        fwd.append(t1 - t0)
        ratios.append((t2 - t1) / (t1 - t0))
    return {"paired_forward_ratio": statistics.median(ratios), "paired_forward_ratios": ratios,
            "paired_forward_s": fwd}


def measure(
    spec: ModelSpec,
    method: str,
    *,
    warmup: int = 1,
    repeats: int = 3,
    time_budget_s: float | None = None,
    mem_budget_bytes: float | None = None,
    memory_only: bool = False,
    seed: int = 0,
    on_compiled=None,
    paired: bool = True,
) -> dict:
    """Measure ``method`` on ``spec``; returns a JSON-serialisable record.

    The record always has ``config``, ``method`` and ``status`` (``'ok'``,
    ``'memory-only'``, ``'skipped'`` or ``'error'``, with ``reason``); the
    numbers present depend on how far the measurement went. ``on_compiled``,
    if given, receives a copy of the record (status ``'running'``) once the
    memory analysis is done, before anything runs. With ``paired`` and an
    ES_D_RTRL method (the one with a target per forward step), the timed calls
    are followed by as many rounds of a forward call and a method call back to
    back, whose median time ratio is ``paired_forward_ratio`` (see
    :func:`_paired_forward`).
    """
    rec: dict = {"config": spec.to_dict(), "name": spec.name, "model": spec.model_name, "method": method}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the compiler's notes about excluded weights
            xs, ys = make_data(spec, seed)
            t0 = time.perf_counter()
            model = build_model(spec, seed)
            body = build_body(method, model, spec)
            rec["setup_s"] = time.perf_counter() - t0

            jitted = brainstate.transform.jit(body)
            t0 = time.perf_counter()
            lowered = jitted.lower(xs, ys)
            rec["lower_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            compiled = lowered.compile()
            rec["compile_s"] = time.perf_counter() - t0
            state_vals = jitted.stateful_fun.get_state_trace(xs, ys).get_state_values()
    except ValueError as err:
        rec.update(status="skipped", reason=str(err))
        return rec
    except Exception as err:  # noqa: BLE001 - recorded, the run goes on
        rec.update(status="error", reason=f"{type(err).__name__}: {err}", traceback=traceback.format_exc(limit=8))
        return rec

    mem = compiled.memory_analysis()
    if mem is not None:
        for field in ("temp", "argument", "output", "alias", "generated_code"):
            value = getattr(mem, f"{field}_size_in_bytes", None)
            if value is not None:
                rec[f"{field}_bytes"] = int(value)
    try:  # XLA counts a loop body once: for a scan over time this is about one step
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        rec["xla_flops_loop_body_once"] = float(cost.get("flops", 0.0))
        rec["xla_bytes_loop_body_once"] = float(cost.get("bytes accessed", 0.0))
    except Exception:  # noqa: BLE001 - not every backend reports costs
        pass
    rec["state_bytes"] = int(sum(getattr(v, "nbytes", 0) for v in jax.tree.leaves(state_vals)))

    if memory_only:
        rec.update(status="memory-only", reason="compiled only (--memory-only)")
        rec["rss_peak_mb"] = peak_rss_mb()
        return rec
    total = sum(rec.get(k, 0) for k in ("temp_bytes", "argument_bytes", "output_bytes"))
    if mem_budget_bytes is not None and total > mem_budget_bytes:
        rec.update(
            status="skipped",
            reason=f"not run: temp+argument+output {total / 2**30:.2f} GiB exceeds the memory budget "
            f"{mem_budget_bytes / 2**30:.2f} GiB (memory numbers are from the compiled executable)",
        )
        rec["rss_peak_mb"] = peak_rss_mb()
        return rec

    if on_compiled is not None:
        on_compiled(dict(rec, status="running", rss_peak_mb=peak_rss_mb()))
    try:
        warm = []
        for _ in range(max(1, warmup)):
            t0 = time.perf_counter()
            out = _block(compiled(state_vals, xs, ys))
            warm.append(time.perf_counter() - t0)
        n = repeats
        if time_budget_s is not None and warm[-1] * repeats > time_budget_s:
            n = max(1, int(time_budget_s // max(warm[-1], 1e-9)))
            rec["repeats_reduced"] = f"{n} of {repeats} repeats (budget {time_budget_s:.0f} s)"
        times, cpu = [], []
        for _ in range(n):
            c0, t0 = _cpu_s(), time.perf_counter()
            out = _block(compiled(state_vals, xs, ys))
            times.append(time.perf_counter() - t0)
            cpu.append(_cpu_s() - c0)
    except Exception as err:  # noqa: BLE001
        rec.update(status="error", reason=f"{type(err).__name__}: {err}", traceback=traceback.format_exc(limit=8))
        return rec

    _, result = out
    loss = result if method == "forward" else result[1]
    rec.update(
        status="ok",
        loadavg_1m=os.getloadavg()[0],
        warmup_s=warm,
        times_s=times,
        time_s=statistics.median(times),
        min_s=min(times),
        cpu_s=statistics.median(cpu),
        time_per_step_s=statistics.median(times) / spec.T,
        loss=float(loss),
        rss_peak_mb=peak_rss_mb(),
    )
    if paired and method_family(method) == "es_d_rtrl":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rec.update(_paired_forward(spec, lambda: _block(compiled(state_vals, xs, ys)), n, seed))
        except Exception as err:  # noqa: BLE001 - the method's own numbers stand
            rec["paired_forward_error"] = f"{type(err).__name__}: {err}"
    dev = _device_peak_mb()
    if dev is not None:
        rec["device_peak_mb"] = dev
    return rec
