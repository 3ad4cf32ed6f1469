"""Conv2DLayer with captioning.stack.lasagne_compat.conv (flip_filters, num_groups,
pad modes) vs scipy.

Each case compiles one small Theano function, so shapes are tiny.
"""
import captioning.stack  # noqa: F401  (Theano flags and the backport first)

import numpy as np
import pytest
import theano
import theano.tensor as T
from scipy.signal import convolve2d, correlate2d

import lasagne
from lasagne.layers import Conv2DLayer, InputLayer, get_output

from captioning.stack.lasagne_compat import conv as conv_backport


def reference_conv(x, W, b, stride, pad, flip, groups, untie=False):
    """Grouped 2D convolution (flip) or correlation of x (N,C,H,W) with
    scipy, padding by hand and striding by slicing the valid result."""
    fh, fw = W.shape[2:]
    if pad == "full":
        pads = [(fh - 1, fh - 1), (fw - 1, fw - 1)]
    elif pad == "same":
        pads = [(fh // 2, (fh - 1) // 2), (fw // 2, (fw - 1) // 2)]
    elif pad == "valid":
        pads = [(0, 0), (0, 0)]
    else:
        ph, pw = (pad, pad) if np.isscalar(pad) else pad
        pads = [(ph, ph), (pw, pw)]
    xp = np.pad(x, [(0, 0), (0, 0)] + pads)
    op = convolve2d if flip else correlate2d
    n_filters, c_per_group = W.shape[:2]
    f_per_group = n_filters // groups
    out = []
    for image in xp:
        maps = []
        for f in range(n_filters):
            g = f // f_per_group
            acc = sum(op(image[g * c_per_group + c], W[f, c], mode="valid")
                      for c in range(c_per_group))
            maps.append(acc[::stride[0], ::stride[1]])
        out.append(maps)
    out = np.array(out)
    if b is not None:
        out = out + (b[None] if untie else b[None, :, None, None])
    return out


def run_layer(layer, x):
    var = T.tensor4("x")
    fn = theano.function([var], get_output(layer, var))
    return fn(x.astype(theano.config.floatX))


CASES = [
    # (in_ch, n_filters, filter, stride, pad, groups)
    (2, 3, (3, 2), (1, 1), 0, 1),
    (2, 3, (3, 3), (1, 1), 1, 1),
    (2, 2, (3, 2), (1, 1), (2, 1), 1),
    (2, 2, (3, 3), (1, 1), "same", 1),
    (2, 2, (2, 3), (1, 1), "same", 1),      # even size: asymmetric
    (2, 2, (3, 2), (1, 1), "full", 1),
    (2, 2, (3, 3), (2, 1), "valid", 1),
    (2, 2, (3, 3), (2, 3), 1, 1),
    (2, 2, (3, 3), (2, 2), "same", 1),
    (2, 2, (3, 2), (3, 2), "full", 1),
    (4, 6, (3, 3), (1, 1), 1, 2),           # grouped
    (3, 3, (3, 3), (2, 2), "same", 3),      # depthwise
    (3, 6, (2, 2), (1, 1), "valid", 3),     # depthwise, multiplier 2
]


@pytest.mark.parametrize("flip", [True, False])
@pytest.mark.parametrize("in_ch,n_filters,fsize,stride,pad,groups", CASES)
def test_matches_scipy(in_ch, n_filters, fsize, stride, pad, groups, flip):
    rng = np.random.RandomState(0)
    x = rng.randn(2, in_ch, 6, 7).astype("float32")
    layer = Conv2DLayer(InputLayer((None, in_ch, 6, 7)), n_filters, fsize,
                        stride=stride, pad=pad, num_groups=groups,
                        flip_filters=flip, nonlinearity=None,
                        b=rng.randn(n_filters).astype("float32"))
    assert layer.W.get_value().shape == (n_filters, in_ch // groups) + fsize
    out = run_layer(layer, x)
    expected = reference_conv(x, layer.W.get_value(), layer.b.get_value(),
                              stride, pad, flip, groups)
    assert out.shape == expected.shape
    assert layer.output_shape[1:] == out.shape[1:]
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_untied_biases_and_default_is_true_convolution():
    rng = np.random.RandomState(1)
    x = rng.randn(1, 2, 5, 5).astype("float32")
    layer = Conv2DLayer(InputLayer((None, 2, 5, 5)), 3, 3, stride=2, pad=1,
                        untie_biases=True, nonlinearity=None)
    assert layer.flip_filters is True and layer.num_groups == 1
    assert layer.b.get_value().shape == (3, 3, 3)
    layer.b.set_value(rng.randn(3, 3, 3).astype("float32"))
    expected = reference_conv(x, layer.W.get_value(), layer.b.get_value(),
                              (2, 2), 1, True, 1, untie=True)
    np.testing.assert_allclose(run_layer(layer, x), expected, atol=1e-4)


def test_no_bias_and_default_relu():
    rng = np.random.RandomState(2)
    x = rng.randn(1, 1, 4, 4).astype("float32")
    layer = Conv2DLayer(InputLayer((None, 1, 4, 4)), 2, 2, b=None, flip_filters=False)
    assert layer.b is None
    assert layer.get_params() == [layer.W]
    expected = np.maximum(reference_conv(x, layer.W.get_value(), None,
                                         (1, 1), 0, False, 1), 0)
    np.testing.assert_allclose(run_layer(layer, x), expected, atol=1e-5)


def test_given_W_is_used_and_checked():
    W = np.arange(2 * 1 * 2 * 2, dtype="float32").reshape(2, 1, 2, 2)
    layer = Conv2DLayer((None, 2, 4, 4), 2, 2, W=W, num_groups=2)
    np.testing.assert_array_equal(layer.W.get_value(), W)
    with pytest.raises(Exception):
        Conv2DLayer((None, 2, 4, 4), 2, 2, W=W)   # needs (2, 2, 2, 2)


@pytest.mark.parametrize("kwargs", [
    dict(num_groups=3),          # 4 input channels
    dict(num_filters=3, num_groups=2),
    dict(num_groups=0),
    dict(pad="half"),
    dict(pad=-1),
])
def test_invalid_arguments(kwargs):
    args = dict(num_filters=4, filter_size=3)
    args.update(kwargs)
    with pytest.raises(ValueError):
        Conv2DLayer((None, 4, 5, 5), **args)


def test_output_shape_formula():
    """conv_output_length as documented, incl. ceil for strided same/full."""
    shape = (None, 1, 7, 8)
    assert Conv2DLayer(shape, 1, 3, pad="same", stride=2).output_shape \
        == (None, 1, 4, 4)
    assert Conv2DLayer(shape, 1, 3, pad="full", stride=3).output_shape \
        == (None, 1, 3, 4)
    assert Conv2DLayer(shape, 1, (3, 2), pad=(1, 0)).output_shape \
        == (None, 1, 7, 7)


def test_patched_in_place_everywhere():
    namespace = {}
    exec("from lasagne.layers import *", namespace)
    assert namespace["Conv2DLayer"] is lasagne.layers.conv.Conv2DLayer
    assert lasagne.layers.Conv2DLayer is lasagne.layers.conv.Conv2DLayer
    # Applying again changes nothing (the class now has the master API).
    init = Conv2DLayer.__init__
    conv_backport.backport()
    assert Conv2DLayer.__init__ is init
