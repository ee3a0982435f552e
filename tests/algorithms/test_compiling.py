"""braintrace.compile: names (0.2.0 aliases included), classes, options, batch size, errors."""

import numpy as np
import pytest

import brainstate
import braintrace
import jax.numpy as jnp

pytestmark = pytest.mark.filterwarnings("ignore:ETP primitive:UserWarning")


def cell():
    return braintrace.nn.GRUCell(2, 3)


@pytest.mark.parametrize(
    "name,cls,options",
    [
        ("d_rtrl", braintrace.D_RTRL, {}),
        ("D_RTRL", braintrace.D_RTRL, {}),
        ("pp_prop", braintrace.ES_D_RTRL, {"decay_or_rank": 0.9}),
        ("ESD-RTRL", braintrace.ES_D_RTRL, {"decay_or_rank": 0.9}),
        ("es_d_rtrl", braintrace.ES_D_RTRL, {"decay_or_rank": 4}),
        ("E_PROP", braintrace.EProp, {}),
        ("eprop", braintrace.EProp, {}),
        ("ostl_recurrent", braintrace.OSTLRecurrent, {}),
        ("ostl_feedforward", braintrace.OSTLFeedforward, {"decay_or_rank": 0.9}),
        ("ottt", braintrace.OTTT, {"leak": 0.9}),
        ("otpe", braintrace.OTPE, {"leak": 0.9}),
    ],
)
def test_names_and_aliases(name, cls, options):
    model = braintrace.nn.VanillaRNNCell(2, 3)
    learner = braintrace.compile(model, name, jnp.zeros((4, 2)), batch_size=4, **options)
    assert type(learner) is cls and learner.is_compiled and model.h.value.shape == (4, 3)


def test_the_learner_equals_one_built_by_hand():
    xs, ys = jnp.asarray(np.random.RandomState(0).randn(5, 4, 2), jnp.float32), jnp.zeros((5, 4, 3))
    loss = lambda o, y: jnp.sum((o - y) ** 2)  # noqa: E731
    brainstate.random.seed(1)
    a = braintrace.compile(cell(), braintrace.ES_D_RTRL, xs[0], batch_size=4, decay_or_rank=0.9, vjp_method="single-step")
    brainstate.random.seed(1)
    m = cell()
    brainstate.nn.init_all_states(m, 4)
    b = braintrace.ES_D_RTRL(m, decay_or_rank=0.9).compile_graph(xs[0])
    ga, _ = braintrace.online_gradients(a, xs, ys, loss, batch_size=4)
    gb, _ = braintrace.online_gradients(b, xs, ys, loss, batch_size=4)
    for k in ga:
        for n in ga[k]:
            np.testing.assert_array_equal(ga[k][n], gb[k][n])


def test_states_are_initialised_when_missing_and_kept_otherwise():
    m = cell()
    braintrace.compile(m, "d_rtrl", jnp.zeros(2))  # no hidden state yet: initialised unbatched
    assert m.h.value.shape == (3,)
    m.h.value = jnp.ones(3)
    braintrace.compile(m, "d_rtrl", jnp.zeros(2))  # states held: left as they are (0.2.0)
    assert float(m.h.value.sum()) == 3.0


def test_errors():
    m = cell()
    with pytest.raises(ValueError, match=r"unknown learner 'rtlr'; valid names: 'es_d_rtrl', 'd_rtrl'"):
        braintrace.compile(m, "rtlr", jnp.zeros(2))
    with pytest.raises(ValueError, match=r"'bptt' is not an online learner.*bptt_gradients"):
        braintrace.compile(m, "BPTT", jnp.zeros(2))
    with pytest.raises(TypeError, match=r"GRUCell is not a learner"):
        braintrace.compile(m, braintrace.nn.GRUCell, jnp.zeros(2))
    with pytest.raises(TypeError, match=r"must be a learner name or a learner class, got int"):
        braintrace.compile(m, 3, jnp.zeros(2))
    with pytest.raises(ValueError, match=r"at least one example input"):
        braintrace.compile(m, "d_rtrl")
    with pytest.raises(TypeError, match=r"ES_D_RTRL takes no option 'decay'; its options are: decay_or_rank, name"):
        braintrace.compile(m, "es_d_rtrl", jnp.zeros(2), decay=0.9)
    with pytest.raises(TypeError, match=r"ES_D_RTRL needs the option\(s\) decay_or_rank"):
        braintrace.compile(m, "es_d_rtrl", jnp.zeros(2))
    with pytest.raises(TypeError, match=r"OTTT needs the option\(s\) leak, e.g. braintrace.compile\(model, 'ottt'"):
        braintrace.compile(m, "ottt", jnp.zeros(2))
    with pytest.raises(ValueError, match=r"batch_size must be a positive int"):
        braintrace.compile(m, "d_rtrl", jnp.zeros(2), batch_size=0)
