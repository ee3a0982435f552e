"""``benchmarks.hand_es``: ES_D_RTRL written by hand equals braintrace's on the LIF benchmark model.

The hand-written rule is an independent implementation of ES_D_RTRL's formulas
for this one model; the comparison is exact up to float32 rounding, and a rule
with another decay is far off (the check can fail).
"""

import os
import sys

import brainstate
import jax
import jax.numpy as jnp
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.hand_es import _library_grads, hand_es_lif, lif_params, main, max_relative_difference
from benchmarks.methods import build_body
from benchmarks.models import ModelSpec, build_model, make_data

SPEC = ModelSpec("lif", 32, 40, batch=4)
K = 5


@pytest.fixture(scope="module")
def grads():
    xs, ys = make_data(SPEC)
    model = build_model(SPEC)
    params = lif_params(model)
    lib, lib_loss = brainstate.transform.jit(build_body(f"es_d_rtrl_win{K}", model, SPEC))(xs, ys)
    return params, xs, ys, _library_grads(lib), lib_loss


def test_by_hand_equals_braintrace(grads):
    params, xs, ys, lib, lib_loss = grads
    hand, loss = jax.jit(lambda xs, ys: hand_es_lif(params, xs, ys, K))(xs, ys)
    assert max_relative_difference(hand, lib) < 1e-5
    assert float(jnp.abs(loss - lib_loss)) <= 1e-5 * float(jnp.abs(lib_loss))
    # the network spikes (the recurrent weight's x-trace is of the previous spikes)
    # and every gradient is non-trivial
    assert all(float(jnp.max(jnp.abs(g))) > 0 for g in lib.values())


@pytest.mark.parametrize("decay", [0.8, 0.95])
def test_another_decay_is_far_off(grads, decay):
    params, xs, ys, lib, _ = grads
    hand, _ = jax.jit(lambda xs, ys: hand_es_lif(params, xs, ys, K, decay=decay))(xs, ys)
    assert max_relative_difference(hand, lib) > 1e-2


def test_main_prints_three_variants_and_rejects_bad_input():
    text = main(["--size", "8", "--T", "4", "--batch", "2", "--window", "2", "--rounds", "1"])
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| variant")]
    assert [r.split(" | ")[0][2:] for r in rows] == ["forward", "braintrace", "by_hand"]
    assert "max relative difference" in text.splitlines()[0]
    from benchmarks.hand_es import compare

    with pytest.raises(ValueError, match="LIF model only"):
        compare(ModelSpec("gru", 8, 4, batch=2), 2)
    with pytest.raises(ValueError, match="must divide"):
        compare(ModelSpec("lif", 8, 5, batch=2), 2)
