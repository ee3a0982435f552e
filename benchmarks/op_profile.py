"""Where a compiled call's time goes: XLA's operations (GPU kernels, CPU thunks) from ``jax.profiler``.

``op_profile(fn, *args)`` runs ``fn(*args)`` once under ``jax.profiler.trace`` and
sums the time of every XLA operation by name: on a GPU the kernels of the device
plane's streams, elsewhere the host events that name an ``hlo_op`` (loops and
conditionals excluded: their time is that of their bodies' operations). It needs no
TensorBoard: the trace is read with ``jax.profiler.ProfileData``. Names are those
of the optimised HLO (``input_scatter_fusion_2``), so compare variants by their
totals and look names up in ``compiled.as_text()``.
"""

from __future__ import annotations

import collections
import glob
import os
import re
import tempfile
from typing import Any, Callable

import jax

__all__ = ["op_profile"]


def _device_lines(plane: Any) -> bool:
    return plane.name.startswith(("/device:GPU", "/device:TPU"))


#: Host events of control flow contain the events of their bodies: not counted twice.
_CONTROL = re.compile(r"(while|cond|conditional|call)(\.|$)")


def _is_op(event: Any) -> bool:
    return any(name == "hlo_op" for name, _ in event.stats) and not _CONTROL.match(event.name)


def op_profile(fn: Callable[..., Any], *args: Any, top: int = 20) -> dict:
    """``{"source", "ops_ms", "ops", "top": [[name, ms, calls], ...]}`` of one call of ``fn(*args)``.

    ``fn`` is called once before (compilation, warm-up) and once traced.
    ``source`` is ``"device"`` (GPU kernels) or ``"host"`` (CPU operations);
    ``ops_ms`` the summed time of all operations (kernels of concurrent streams
    add up), ``ops`` their number, ``top`` the ``top`` largest by time.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> p = op_profile(jax.jit(lambda x: jnp.sin(x) @ x), jnp.ones((64, 64)))
    >>> p["source"], p["ops"] > 0
    ('host', True)
    """
    jax.block_until_ready(fn(*args))
    with tempfile.TemporaryDirectory() as folder:
        with jax.profiler.trace(folder):
            jax.block_until_ready(fn(*args))
        files = glob.glob(os.path.join(folder, "**", "*.xplane.pb"), recursive=True)
        data = jax.profiler.ProfileData.from_file(files[0])
        planes = list(data.planes)
        device = [p for p in planes if _device_lines(p)]
        time_ns: collections.Counter = collections.Counter()
        calls: collections.Counter = collections.Counter()
        for plane in device or planes:
            for line in plane.lines:
                if device and "stream" not in line.name.lower():
                    continue
                for event in line.events:
                    if device or _is_op(event):
                        time_ns[event.name] += event.duration_ns
                        calls[event.name] += 1
    return {
        "source": "device" if device else "host",
        "ops_ms": sum(time_ns.values()) / 1e6,
        "ops": sum(calls.values()),
        "top": [[name, ns / 1e6, calls[name]] for name, ns in time_ns.most_common(top)],
    }
