"""The direct depthwise op against Lasagne's grouped Conv2DLayer."""
import numpy as np
import pytest

import captioning.stack  # noqa: F401  (Theano flags first)
import lasagne
import theano
import theano.tensor as T
from lasagne.layers import Conv2DLayer, InputLayer

from captioning.cnn.depthwise import DepthwiseConv2DLayer, DepthwiseConv2d
from captioning.cnn.efficientnet import SamePadLayer, relu6


@pytest.mark.parametrize("size, kernel, stride, padding, act", [
    (9, 3, 2, ((0, 1), (0, 1)), True),     # TF SAME, stride 2, odd size
    (8, 3, 2, ((0, 1), (0, 1)), False),
    (8, 5, 1, ((2, 2), (2, 2)), True),
    (7, 5, 2, ((1, 2), (1, 2)), True),
])
def test_matches_grouped_conv_and_its_gradient(size, kernel, stride, padding, act):
    rng = np.random.RandomState(0)
    channels = 6
    inp = InputLayer((None, channels, size, size))
    direct = DepthwiseConv2DLayer(inp, kernel, stride=stride, padding=padding,
                                  relu6=act)
    padded = SamePadLayer(inp, padding)
    grouped = Conv2DLayer(padded, channels, kernel, stride=stride, pad=0,
                          flip_filters=False, num_groups=channels,
                          nonlinearity=relu6 if act else None)
    W = rng.randn(channels, 1, kernel, kernel).astype(np.float32)
    b = rng.randn(channels).astype(np.float32)
    for layer in (direct, grouped):
        layer.W.set_value(W)
        layer.b.set_value(b)
    outs = [lasagne.layers.get_output(layer) for layer in (direct, grouped)]
    grads = [T.grad((o ** 2).sum(), [inp.input_var, layer.W, layer.b])
             for o, layer in zip(outs, (direct, grouped))]
    f = theano.function([inp.input_var], outs + grads[0] + grads[1])
    x = (rng.randn(2, channels, size, size) * 3).astype(np.float32)
    y_direct, y_grouped, *g = f(x)
    assert direct.output_shape[1:] == grouped.output_shape[1:] == y_direct.shape[1:]
    np.testing.assert_allclose(y_direct, y_grouped, rtol=1e-5, atol=1e-5)
    for a, b_ in zip(g[:3], g[3:]):
        np.testing.assert_allclose(a, b_, rtol=1e-4, atol=1e-3)


def test_python_fallback_matches_c():
    rng = np.random.RandomState(1)
    x, W, b = T.tensor4(), T.tensor4(), T.vector()
    y = DepthwiseConv2d(4, 2, ((0, 1), (1, 2)), True)(x, W, b)
    c_fn = theano.function([x, W, b], y)
    py_fn = theano.function([x, W, b], y, mode=theano.compile.Mode(linker="py"))
    args = [rng.randn(2, 4, 7, 6).astype(np.float32),
            rng.randn(4, 1, 3, 3).astype(np.float32),
            rng.randn(4).astype(np.float32)]
    np.testing.assert_allclose(c_fn(*args), py_fn(*args), rtol=1e-5, atol=1e-5)


def test_rejects_wrong_dtype():
    with pytest.raises(TypeError, match="float32"):
        DepthwiseConv2d(1, 1, ((0, 0), (0, 0)), False)(
            T.dtensor4(), T.tensor4(), T.vector())
