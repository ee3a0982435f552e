"""Conv1d, Conv2d, Conv3d against jax.lax.conv_general_dilated and brainstate."""

import brainstate
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from braintrace.nn import Conv1d, Conv2d, Conv3d

from .helpers import assert_close, etp_counts, forbidden_prims, randomize

RNG = np.random.default_rng(0)


def _ref(x, w, b, stride, padding, dn, groups=1, rhs_dilation=None):
    y = jax.lax.conv_general_dilated(
        x, w, stride, padding, rhs_dilation=rhs_dilation, dimension_numbers=dn, feature_group_count=groups
    )
    if b is not None:
        cshape = [1] * y.ndim
        cshape[1 if dn[0][1] == "C" else -1] = b.size
        y = y + b.reshape(cshape)
    return y


CASES = [
    (Conv1d, (10, 2), (3, 10, 2), 1),
    (Conv2d, (6, 6, 2), (3, 6, 6, 2), 2),
    (Conv3d, (4, 4, 4, 2), (2, 4, 4, 4, 2), 3),
]


@pytest.mark.parametrize("cls,in_size,xshape,n", CASES, ids=["1d", "2d", "3d"])
def test_conv_matches_lax_channel_last(cls, in_size, xshape, n):
    layer = cls(in_size, 4, kernel_size=3, stride=1, padding="SAME", b_init=brainstate.nn.init.ZeroInit())
    randomize(layer)
    p = layer.weight.value
    assert p["weight"].shape == (3,) * n + (2, 4) and p["bias"].shape == (1,) * n + (4,)  # 0.2.0's bias shape
    x = jnp.asarray(RNG.normal(size=xshape), jnp.float32)
    sp = ("W", "HW", "DHW")[n - 1]
    dn = ("N" + sp + "C", sp + "IO", "N" + sp + "C")
    want = _ref(x, p["weight"], p["bias"], (1,) * n, "SAME", dn)
    assert_close(layer(x), want, rtol=1e-4, atol=1e-4)
    assert layer(x).shape[1:] == layer.out_size
    # unbatched
    assert_close(layer(x[0]), want[0], rtol=1e-4, atol=1e-4)
    assert etp_counts(layer, x) == {"etp_conv_batched": 1}
    assert etp_counts(layer, x[0]) == {"etp_conv": 1}
    assert not forbidden_prims(layer, x)


def test_conv2d_matches_brainstate_nhwc_and_nchw():
    x = jnp.asarray(RNG.normal(size=(2, 7, 7, 3)), jnp.float32)
    for channel_first in (False, True):
        in_size = (3, 7, 7) if channel_first else (7, 7, 3)
        xin = jnp.transpose(x, (0, 3, 1, 2)) if channel_first else x
        layer = Conv2d(in_size, 4, kernel_size=(3, 2), stride=2, padding="VALID",
                       b_init=brainstate.nn.init.ZeroInit(), channel_first=channel_first)
        randomize(layer, seed=5)
        p = layer.weight.value
        ref = brainstate.nn.Conv2d(in_size, 4, kernel_size=(3, 2), stride=2, padding="VALID",
                                   b_init=brainstate.nn.init.ZeroInit(), channel_first=channel_first)
        bshape = (1, 4, 1, 1) if channel_first else (1, 1, 4)
        assert p["bias"].shape == ((4, 1, 1) if channel_first else (1, 1, 4))
        ref.weight.value = dict(weight=p["weight"], bias=p["bias"].reshape(bshape))
        y = layer(xin)
        assert_close(y, ref(xin), rtol=1e-4, atol=1e-4)
        assert y.shape[1:] == layer.out_size == ref.out_size
        if channel_first:
            y_nchw = y
        else:
            y_nhwc = y
    # same kernel, either layout: NCHW output is the transposed NHWC output
    assert_close(y_nchw, jnp.transpose(y_nhwc, (0, 3, 1, 2)), rtol=1e-4, atol=1e-4)
    assert y_nhwc.shape == (2, 3, 3, 4) and y_nchw.shape == (2, 4, 3, 3)


def test_conv2d_groups_dilation_and_int_padding():
    layer = Conv2d((8, 8, 4), 6, kernel_size=3, groups=2, rhs_dilation=2, padding=(1, 2))
    randomize(layer)
    x = jnp.asarray(RNG.normal(size=(2, 8, 8, 4)), jnp.float32)
    p = layer.weight.value
    assert p["weight"].shape == (3, 3, 2, 6)
    want = _ref(x, p["weight"], None, (1, 1), ((1, 1), (2, 2)), ("NHWC", "HWIO", "NHWC"), groups=2,
                rhs_dilation=(2, 2))
    assert_close(layer(x), want, rtol=1e-4, atol=1e-4)


def test_conv_bad_input_and_config():
    layer = Conv2d((8, 8, 3), 4, kernel_size=3, name="c1")
    with pytest.raises(ValueError) as err:
        layer(jnp.ones((2, 8, 8, 5)))
    msg = str(err.value)
    assert msg.startswith("Conv2d(name='c1', in_size=(8, 8, 3), out_channels=4)")
    assert "trailing axes (8, 8, 3), got shape (2, 8, 8, 5)" in msg
    with pytest.raises(ValueError, match="one batch axis"):
        layer(jnp.ones((2, 2, 8, 8, 3)))
    with pytest.raises(ValueError, match="must have 3 entries"):
        Conv2d((8, 3), 4, kernel_size=3)
    with pytest.raises(ValueError, match="groups=2 must be a positive int dividing in_channels=3"):
        Conv2d((8, 8, 3), 4, kernel_size=3, groups=2)
