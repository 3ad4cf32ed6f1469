"""BroadcastLayer / UnbroadcastLayer against a numpy per-timestep loop."""
import captioning.stack  # noqa: F401

import numpy as np
import pytest
import theano
import theano.tensor as T
from lasagne.layers import DenseLayer, InputLayer, get_output
from lasagne.nonlinearities import softmax

from broadcast import BroadcastLayer, UnbroadcastLayer


def numpy_softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_symbolic_shapes_follow_the_seminar():
    decoder = InputLayer((None, None, 200))
    ticks = BroadcastLayer(decoder, (0, 1))
    assert ticks.output_shape == (None, 200)
    dense = DenseLayer(ticks, 10373, nonlinearity=softmax)
    assert UnbroadcastLayer(dense, ticks).output_shape == (None, None, 10373)


def test_known_sizes_are_multiplied():
    ticks = BroadcastLayer(InputLayer((4, 6, 3)), (0, 1))
    assert ticks.output_shape == (24, 3)


def test_dense_per_timestep_matches_numpy_loop():
    rng = np.random.RandomState(0)
    x = rng.randn(3, 5, 4).astype("float32")
    decoder = InputLayer((None, None, 4))
    ticks = BroadcastLayer(decoder, (0, 1))
    dense = DenseLayer(ticks, 6, nonlinearity=softmax,
                       b=rng.randn(6).astype("float32"))
    out = UnbroadcastLayer(dense, ticks)
    f = theano.function([decoder.input_var], get_output(out))
    got = f(x)

    W, b = dense.W.get_value(), dense.b.get_value()
    expected = np.empty((3, 5, 6), "float32")
    for i in range(3):          # batch
        for t in range(5):      # time
            expected[i, t] = numpy_softmax(x[i, t] @ W + b)
    assert got.shape == (3, 5, 6)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("axes", [(1,), (2, 0), (-1,)])
def test_other_axes_round_trip_like_numpy(axes):
    # merge `axes` into axis 0, scale by 2 (an elementwise "layer"), unmerge.
    from lasagne.layers import NonlinearityLayer
    x = np.arange(2 * 3 * 4, dtype="float32").reshape(2, 3, 4)
    l_in = InputLayer((None, None, None))
    b = BroadcastLayer(l_in, axes)
    merged = theano.function([l_in.input_var], get_output(b))(x)
    norm = [a % 3 for a in axes]
    kept = [a for a in range(3) if a not in norm]
    expected = np.transpose(x, norm + kept).reshape((-1,) + tuple(x.shape[a] for a in kept))
    np.testing.assert_array_equal(merged, expected)

    twice = NonlinearityLayer(b, lambda v: v * 2)
    u = UnbroadcastLayer(twice, b)
    back = theano.function([l_in.input_var], get_output(u))(x)
    np.testing.assert_array_equal(back, 2 * x)


@pytest.mark.parametrize("axes", [(3,), (0, 0), (), (0.5,)])
def test_bad_axes_are_refused(axes):
    with pytest.raises(ValueError):
        BroadcastLayer(InputLayer((None, None, 4)), axes)


def test_unbroadcast_needs_a_broadcast_layer():
    with pytest.raises(TypeError):
        UnbroadcastLayer(InputLayer((None, 4)), InputLayer((None, None, 4)))


def test_unbroadcast_before_broadcast_is_a_clear_error():
    ticks = BroadcastLayer(InputLayer((None, None, 4)), (0, 1))
    u = UnbroadcastLayer(InputLayer((None, 4)), ticks)
    with pytest.raises(RuntimeError, match="before its BroadcastLayer"):
        u.get_output_for(T.matrix())
