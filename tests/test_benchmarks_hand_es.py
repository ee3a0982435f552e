"""``benchmarks.hand_es``: ES_D_RTRL written by hand equals braintrace's on the LIF and GRU benchmark models.

The hand-written rules are independent implementations of ES_D_RTRL's formulas
for these two models; the comparison is exact up to float32 rounding, and a rule
with another decay is far off (the check can fail).
"""

import os
import sys

import brainstate
import jax
import jax.numpy as jnp
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.hand_es import (
    _library_grads,
    gru_params,
    hand_es_gru,
    hand_es_lif,
    lif_params,
    main,
    max_relative_difference,
)
from benchmarks.methods import build_body
from benchmarks.models import ModelSpec, build_model, make_data

K = 5
RULES = {"lif": (lif_params, hand_es_lif), "gru": (gru_params, hand_es_gru)}


@pytest.fixture(scope="module", params=["lif", "gru"])
def grads(request):
    spec = ModelSpec(request.param, 32 if request.param == "lif" else 16, 40, batch=4)
    xs, ys = make_data(spec)
    model = build_model(spec)
    params_of, rule = RULES[request.param]
    lib, lib_loss = brainstate.transform.jit(build_body(f"es_d_rtrl_win{K}", model, spec))(xs, ys)
    return params_of(model), rule, xs, ys, _library_grads(lib), lib_loss


def test_by_hand_equals_braintrace(grads):
    params, rule, xs, ys, lib, lib_loss = grads
    hand, loss = jax.jit(lambda p, xs, ys: rule(p, xs, ys, K))(params, xs, ys)
    assert max_relative_difference(hand, lib) < 1e-5
    assert float(jnp.abs(loss - lib_loss)) <= 1e-5 * float(jnp.abs(lib_loss))
    # every gradient is non-trivial (the LIF network spikes: its recurrent weight's
    # x-trace is of the previous spikes)
    assert all(float(jnp.max(jnp.abs(g))) > 0 for g in lib.values())


@pytest.mark.parametrize("decay", [0.8, 0.95])
def test_another_decay_is_far_off(grads, decay):
    params, rule, xs, ys, lib, _ = grads
    hand, _ = jax.jit(lambda p, xs, ys: rule(p, xs, ys, K, decay=decay))(params, xs, ys)
    assert max_relative_difference(hand, lib) > 1e-2


def test_main_prints_three_variants_and_rejects_bad_input():
    text = main(["--model", "lif-8", "--T", "4", "--batch", "2", "--window", "2", "--rounds", "1"])
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| variant")]
    assert [r.split(" | ")[0][2:] for r in rows] == ["forward", "braintrace", "by_hand"]
    assert "max relative difference" in text.splitlines()[0]
    from benchmarks.hand_es import compare

    with pytest.raises(SystemExit, match="gru-N or lif-N"):
        main(["--model", "rnn-8"])
    with pytest.raises(ValueError, match="must divide"):
        compare(ModelSpec("lif", 8, 5, batch=2), 2)
