"""braintrace 0.2.0 drop-in: linear layers, convolutions, read-out (compat-0.2.0.md §1-§5).

Each test states one fact of the 0.2.0 API (signature, attributes, parameter
dict keys and shapes, one step, the documented errors and where they are
raised) and checks it on braintrace. Where braintrace differs on purpose (the
0.2.0 bugs of compat §10), the test checks the corrected behaviour and says so.
"""

import warnings

import brainstate
import jax.numpy as jnp
import numpy as np
import pytest
import saiunit as u

import braintrace
from braintrace import nn

from .helpers import REQUIRED, Init, assert_signature, param_shapes

init = brainstate.nn.init


# ----------------------------------------------------------------- §1 import surface

NN_ALL_020 = [
    "Conv1d", "Conv2d", "Conv3d", "Linear", "SignedWLinear", "SparseLinear", "LoRA", "LeakyRateReadout",
    "ValinaRNNCell", "GRUCell", "MGUCell", "LSTMCell", "URLSTMCell", "MinimalRNNCell", "MiniGRU", "MiniLSTM",
    "LRUCell",
]


def test_nn_exports_every_020_name_and_the_version_info():
    assert set(NN_ALL_020) <= set(nn.__all__)
    assert all(isinstance(getattr(nn, n), type) for n in NN_ALL_020)
    assert isinstance(braintrace.__version_info__, tuple) and "__version_info__" in braintrace.__all__
    assert braintrace.__version_info__[:3] == tuple(int(p) for p in braintrace.__version__.split(".")[:3])


@pytest.mark.parametrize("name", ["ReLU", "Softmax", "Dropout", "Flatten", "MaxPool2d", "AdaptiveAvgPool1d",
                                  "BatchNorm2d", "GroupNorm"])
def test_forwarded_brainstate_names_warn_and_return_the_brainstate_class(name):
    with pytest.warns(DeprecationWarning, match=f"Use brainstate.nn.{name} directly"):
        cls = getattr(nn, name)
    assert cls is getattr(brainstate.nn, name)


def test_every_forwarded_name_resolves_and_unknown_names_raise():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for name, module in nn.forwarded.FORWARDED.items():
            if module == "brainstate.nn":
                assert getattr(nn, name) is getattr(brainstate.nn, name)
    with pytest.raises(AttributeError):
        nn.NoSuchLayer  # noqa: B018
    # braintrace's own layers of those names are not forwarded
    assert nn.LIF.__module__.startswith("braintrace") and nn.BatchNorm1d.__module__.startswith("braintrace")


def test_forwarded_synapse_models_come_from_brainpy_state():
    bp_state = pytest.importorskip("brainpy.state")
    with pytest.warns(DeprecationWarning, match="brainpy.state.Expon"):
        assert nn.Expon is bp_state.Expon


# ----------------------------------------------------------------- §2 common rules

def test_sizes_are_tuples_and_bad_sizes_raise_assertion_compatible_errors():
    layer = nn.Linear(3, [4])
    assert layer.in_size == (3,) and layer.out_size == (4,)
    for bad in (3.5, "3", None):
        with pytest.raises(AssertionError):
            nn.Linear(bad, 4)
        with pytest.raises(ValueError):  # the same error is a ValueError too
            nn.Linear(bad, 4)


def test_custom_param_type_holds_the_parameters():
    class Frozen(brainstate.ParamState):
        pass

    for layer in (nn.Linear(3, 4, param_type=Frozen), nn.SignedWLinear(3, 4, param_type=Frozen),
                  nn.LoRA(3, 2, 4, param_type=Frozen), nn.Conv1d((6, 2), 3, 3, param_type=Frozen)):
        assert type(layer.weight) is Frozen
    with pytest.raises(TypeError, match="param_type"):
        nn.Linear(3, 4, param_type=dict)


# ----------------------------------------------------------------- §3 linear layers

def test_linear_signature_params_and_shapes():
    assert_signature(nn.Linear, [("in_size", REQUIRED), ("out_size", REQUIRED), ("w_init", Init("KaimingNormal")),
                                 ("b_init", Init("ZeroInit")), ("w_mask", None), ("name", None),
                                 ("param_type", brainstate.ParamState)])
    layer = nn.Linear(128, 64)
    assert param_shapes(layer) == {("weight",): {"weight": (128, 64), "bias": (64,)}}
    assert layer.w_mask is None
    for shape in [(128,), (10, 128), (5, 10, 128)]:
        assert layer(jnp.ones(shape)).shape == shape[:-1] + (64,)
    assert param_shapes(nn.Linear(3, 4, b_init=None)) == {("weight",): {"weight": (3, 4)}}
    mask = jnp.ones((3, 4)).at[0].set(0.0)
    masked = nn.Linear(3, 4, w_mask=mask)
    np.testing.assert_allclose(masked.w_mask, mask)
    p = masked.weight.value
    np.testing.assert_allclose(masked(jnp.ones(3)), jnp.ones(3) @ (p["weight"] * mask) + p["bias"], rtol=1e-6)


def test_linear_tuple_sizes_and_errors():
    layer = nn.Linear((64, 128), (64, 32))
    assert param_shapes(layer) == {("weight",): {"weight": (128, 32), "bias": (32,)}}
    assert layer(jnp.ones((10, 128))).shape == (10, 32)  # leading axes are not checked
    with pytest.raises(AssertionError, match="in_size and out_size must agree"):  # construction
        nn.Linear((64, 128), 32)
    with pytest.raises(TypeError, match="last axis 128"):  # call
        layer(jnp.ones((10, 127)))


def test_signed_w_linear():
    assert_signature(nn.SignedWLinear, [("in_size", REQUIRED), ("out_size", REQUIRED),
                                        ("w_init", Init("KaimingNormal")), ("w_sign", None), ("name", None),
                                        ("param_type", brainstate.ParamState)])
    sign = jnp.array([[1.0], [-1.0], [1.0]])
    layer = nn.SignedWLinear(3, 4, w_sign=sign)
    assert param_shapes(layer) == {("weight",): (3, 4)}  # a bare array, no bias
    np.testing.assert_allclose(layer.w_sign, sign)
    x = jnp.arange(1.0, 4.0)
    np.testing.assert_allclose(layer(x), x @ (jnp.abs(layer.weight.value) * sign), rtol=1e-6)


def test_scaled_ws_linear():
    assert_signature(nn.ScaledWSLinear, [("in_size", REQUIRED), ("out_size", REQUIRED),
                                         ("w_init", Init("KaimingNormal")), ("b_init", Init("ZeroInit")),
                                         ("w_mask", None), ("ws_gain", True), ("eps", 1e-4), ("name", None),
                                         ("param_type", brainstate.ParamState)])
    layer = nn.ScaledWSLinear(3, 4)
    assert param_shapes(layer) == {("weight",): {"weight": (3, 4), "bias": (4,), "gain": (1, 4)}}
    assert layer.eps == 1e-4 and layer(jnp.ones((2, 3))).shape == (2, 4)


def _coo_5x4():
    dense = jnp.zeros((5, 4)).at[0, 1].set(1.0).at[2, 3].set(2.0).at[4, 0].set(3.0)
    return dense, u.sparse.COO.fromdense(dense)


def test_sparse_linear():
    assert_signature(nn.SparseLinear, [("spar_mat", REQUIRED), ("b_init", None), ("in_size", None),
                                       ("name", None), ("param_type", brainstate.ParamState)])
    dense, coo = _coo_5x4()
    layer = nn.SparseLinear(coo)
    assert param_shapes(layer) == {("weight",): {"weight": (3,)}}
    assert layer.spar_mat is coo and layer.out_size == (4,)
    assert param_shapes(nn.SparseLinear(coo, b_init=init.ZeroInit())) == {("weight",): {"weight": (3,), "bias": (4,)}}
    x = jnp.arange(1.0, 6.0)
    np.testing.assert_allclose(layer(x), x @ dense, rtol=1e-6)
    assert layer(jnp.ones((2, 5))).shape == (2, 4)
    with pytest.raises(AssertionError, match="spar_mat"):  # a dense matrix: 0.2.0 asserted
        nn.SparseLinear(dense)
    with pytest.raises(TypeError, match="spar_mat"):  # no .shape: 0.2.0 raised AttributeError
        nn.SparseLinear([[1.0, 0.0]])


def test_lora():
    assert_signature(nn.LoRA, [("in_features", REQUIRED), ("lora_rank", REQUIRED), ("out_features", REQUIRED),
                               ("base_module", None), ("kernel_init", Init("LecunNormal")),
                               ("param_type", brainstate.ParamState), ("in_size", None)],
                     keyword_only=("base_module", "kernel_init", "param_type", "in_size"))
    layer = nn.LoRA(3, 2, 4)
    assert param_shapes(layer) == {("weight",): {"lora_a": (3, 2), "lora_b": (2, 4)}}
    assert (layer.in_features, layer.out_features, layer.base_module) == (3, 4, None)
    assert layer.in_size == (3,) and layer.out_size == (4,)
    assert nn.LoRA(3, 2, 4, in_size=(10, 3)).out_size == (10, 4)
    p = layer.weight.value
    x = jnp.ones((16, 3))
    # 0.2.0's layer(x): x @ lora_a @ lora_b, no 1/rank scale; here through the ETP primitive (learns online)
    np.testing.assert_allclose(layer(x), x @ p["lora_a"] @ p["lora_b"], rtol=1e-5)
    assert layer(jnp.ones(3)).shape == (4,)
    base = nn.Linear(3, 4)
    with_base = nn.LoRA(3, 2, 4, base_module=base)
    np.testing.assert_allclose(with_base(x), x @ with_base.weight.value["lora_a"] @ with_base.weight.value["lora_b"]
                               + base(x), rtol=1e-5)
    with pytest.raises(TypeError):  # base_module is keyword-only
        nn.LoRA(3, 2, 4, base)
    with pytest.raises(TypeError, match="base_module"):  # refused at construction (0.2.0: at the call)
        nn.LoRA(3, 2, 4, base_module=3)


# ----------------------------------------------------------------- §4 convolutions

CONV_SIGNATURE = [("in_size", REQUIRED), ("out_channels", REQUIRED), ("kernel_size", REQUIRED), ("stride", 1),
                  ("padding", "SAME"), ("lhs_dilation", 1), ("rhs_dilation", 1), ("groups", 1),
                  ("w_init", Init("XavierNormal")), ("b_init", None), ("w_mask", None), ("channel_first", False),
                  ("name", None), ("param_type", brainstate.ParamState)]


@pytest.mark.parametrize("cls,in_size,kernel,bias,out_size", [
    (nn.Conv1d, (10, 3), (3, 3, 4), (1, 4), (10, 4)),
    (nn.Conv2d, (28, 28, 3), (3, 3, 3, 4), (1, 1, 4), (28, 28, 4)),
    (nn.Conv3d, (8, 8, 8, 2), (3, 3, 3, 2, 4), (1, 1, 1, 4), (8, 8, 8, 4)),
], ids=["1d", "2d", "3d"])
def test_conv_signature_params_and_shapes(cls, in_size, kernel, bias, out_size):
    assert_signature(cls, CONV_SIGNATURE)
    layer = cls(in_size, 4, 3, b_init=init.ZeroInit())
    assert param_shapes(layer) == {("weight",): {"weight": kernel, "bias": bias}}
    assert layer.kernel_shape == kernel and layer.out_size == out_size
    n = len(in_size) - 1
    assert layer.num_spatial_dims == n and layer.in_channels == in_size[-1] and layer.out_channels == 4
    assert layer.kernel_size == layer.stride == layer.lhs_dilation == layer.rhs_dilation or layer.kernel_size == (3,) * n
    assert layer.stride == (1,) * n and layer.padding == "SAME" and layer.groups == 1
    assert layer.channels_last and not layer.channel_first and layer.w_mask is None
    assert type(layer.w_initializer).__name__ == "XavierNormal" and type(layer.b_initializer).__name__ == "ZeroInit"
    assert layer(jnp.ones(in_size)).shape == out_size
    assert layer(jnp.ones((2,) + in_size)).shape == (2,) + out_size
    assert param_shapes(cls(in_size, 4, 3)) == {("weight",): {"weight": kernel}}  # bias off by default


def test_conv_strides_padding_and_channel_first():
    assert nn.Conv2d((28, 28, 3), 8, 3, stride=2, padding="VALID").out_size == (13, 13, 8)
    assert nn.Conv2d((28, 28, 3), 8, 3, padding=1).padding == ((1, 1), (1, 1))
    cf = nn.Conv2d((3, 28, 28), 8, 3, channel_first=True)
    assert cf.in_channels == 3 and cf.out_size == (8, 28, 28)
    # 0.2.0 failed to build this one (bias (1, 1, C) against NCHW): the bias is stored (C, 1, 1)
    cfb = nn.Conv2d((3, 28, 28), 8, 3, channel_first=True, b_init=init.ZeroInit())
    assert cfb.weight.value["bias"].shape == (8, 1, 1) and cfb(jnp.ones((2, 3, 28, 28))).shape == (2, 8, 28, 28)


def test_conv_errors_and_where_they_are_raised():
    with pytest.raises(AssertionError, match="groups=2"):
        nn.Conv2d((8, 8, 3), 4, 3, groups=2)  # in_channels % groups
    with pytest.raises(AssertionError, match="groups=3"):
        nn.Conv2d((8, 8, 3), 4, 3, groups=3)  # out_channels % groups
    with pytest.raises(AssertionError, match="padding='same'"):
        nn.Conv2d((8, 8, 3), 4, 3, padding="same")  # case-sensitive, as 0.2.0
    with pytest.raises(AssertionError, match="in_size"):
        nn.Conv2d((8, 3), 4, 3)
    with pytest.raises(TypeError, match="in_size"):
        nn.Conv2d(8, 4, 3)
    with pytest.raises(ValueError, match="padding"):
        nn.Conv2d((8, 8, 3), 4, 3, padding=[(1, 1)] * 3)
    with pytest.raises(ValueError, match="padding"):
        nn.Conv2d((8, 8, 3), 4, 3, padding=1.5)
    with pytest.raises(TypeError, match="stride"):
        nn.Conv2d((8, 8, 3), 4, 3, stride=(1, 1, 1))
    layer = nn.Conv2d((8, 8, 3), 4, 3)
    with pytest.raises(ValueError, match="one batch axis"):
        layer(jnp.ones((2, 2, 8, 8, 3)))
    with pytest.raises(ValueError, match=r"trailing axes \(8, 8, 3\)"):
        layer(jnp.ones((2, 8, 8, 4)))


# ----------------------------------------------------------------- §5 read-out

def test_leaky_rate_readout():
    assert_signature(nn.LeakyRateReadout, [("in_size", REQUIRED), ("out_size", REQUIRED), ("tau", 5.0 * u.ms),
                                           ("w_init", Init("KaimingNormal")), ("r_init", Init("ZeroInit")),
                                           ("name", None)])
    with brainstate.environ.context(dt=0.1 * u.ms):
        ro = nn.LeakyRateReadout(256, 10)
        assert ro.in_size == (256,) and ro.out_size == (10,) and ro.tau == 5.0 * u.ms
        np.testing.assert_allclose(ro.decay, 0.980199, rtol=1e-6)
        assert isinstance(ro.W, brainstate.ParamState) and param_shapes(ro) == {("W",): (256, 10)}
        assert not hasattr(ro, "weight") and type(ro.r_init).__name__ == "ZeroInit"
        brainstate.nn.init_all_states(ro, 32)
        assert ro.r.value.shape == (32, 10)
        x = jnp.ones((32, 256))
        r1 = ro(x)
        r2 = ro(x)
    np.testing.assert_allclose(r1, x @ ro.W.value, rtol=1e-5)
    np.testing.assert_allclose(r2, 0.980199 * r1 + x @ ro.W.value, rtol=1e-5)
    np.testing.assert_allclose(ro.r.value, r2)


def test_leaky_rate_readout_sizes_and_unit_errors():
    # 0.2.0 took the *first* entry of each size (W (7, 7) here): braintrace uses the last
    assert param_shapes(nn.LeakyRateReadout((7, 4), (7, 2), decay=0.5)) == {("W",): (4, 2)}
    with pytest.raises(TypeError, match="same unit"):
        nn.LeakyRateReadout(3, 2, tau=5.0 * u.ms, dt=0.1)
    with brainstate.environ.context(dt=0.1 * u.ms), pytest.raises(TypeError, match="same unit"):
        nn.LeakyRateReadout(3, 2, tau=5.0)
