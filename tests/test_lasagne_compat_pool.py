"""Pool2DLayer / MaxPool2DLayer (via captioning.stack.lasagne_compat.pool's
downsample shim) vs numpy.

The reference states the documented semantics independently of any
output-size formula: windows start at 0, s, 2s, ...; with
``ignore_border=True`` only windows fully inside the (padded) input count,
with ``ignore_border=False`` one more, partial, window is added when the
full ones leave input elements uncovered at the end (Caffe's ceil mode).
"""
import captioning.stack  # noqa: F401  (Theano flags and the backport first)

import numpy as np
import pytest
import theano
import theano.tensor as T

from lasagne.layers import (InputLayer, MaxPool2DLayer, Pool2DLayer,
                            get_output)


def window_starts(length, size, stride, ignore_border):
    starts, start = [], 0
    while start < length:
        if start + size > length:          # partial window
            if not ignore_border:
                starts.append(start)
            break
        starts.append(start)
        if start + size == length:         # reached the end exactly
            break
        start += stride
    return starts


def reference_pool(x, size, stride, pad, ignore_border, mode):
    n, c, h, w = x.shape
    ph, pw = pad
    # NaN marks padding so max ignores it and averages can count it.
    xp = np.pad(x.astype(float), [(0, 0), (0, 0), (ph, ph), (pw, pw)],
                constant_values=np.nan)
    rows = window_starts(h + 2 * ph, size[0], stride[0], ignore_border)
    cols = window_starts(w + 2 * pw, size[1], stride[1], ignore_border)
    out = np.zeros((n, c, len(rows), len(cols)))
    for i, r in enumerate(rows):
        for j, q in enumerate(cols):
            # Windows are clipped to the padded input (partial border ones).
            win = xp[:, :, r:r + size[0], q:q + size[1]]
            win = win.reshape(n, c, -1)
            if mode == "max":
                out[:, :, i, j] = np.nanmax(win, axis=-1)
            elif mode == "average_exc_pad":
                out[:, :, i, j] = np.nanmean(win, axis=-1)
            else:  # average_inc_pad: padding counts as zeros
                out[:, :, i, j] = np.nan_to_num(win).mean(axis=-1)
    return out


CASES = [
    # (input hw, pool, stride, pad, ignore_border)
    ((5, 6), (2, 2), None, (0, 0), True),
    ((5, 6), (2, 2), None, (0, 0), False),
    ((5, 7), (3, 3), (2, 2), (0, 0), False),   # GoogLeNet pool1-4 style
    ((6, 6), (3, 3), (2, 2), (0, 0), False),
    ((5, 4), (3, 2), (1, 3), (0, 0), False),
    ((5, 5), (3, 3), (1, 1), (1, 1), True),    # inception pool branch
    ((6, 5), (3, 3), (2, 2), (1, 1), True),
    ((4, 5), (2, 3), (2, 1), (1, 0), True),
    ((2, 2), (3, 3), (2, 2), (0, 0), False),   # input smaller than window
]


@pytest.mark.parametrize("mode", ["max", "average_inc_pad",
                                  "average_exc_pad"])
@pytest.mark.parametrize("hw,size,stride,pad,ignore_border", CASES)
def test_matches_reference(hw, size, stride, pad, ignore_border, mode):
    x = np.random.RandomState(0).randn(2, 2, *hw).astype("float32")
    layer = Pool2DLayer(InputLayer((None, 2) + hw), size, stride=stride,
                        pad=pad, ignore_border=ignore_border, mode=mode)
    var = T.tensor4("x")
    out = theano.function([var], get_output(layer, var))(x)
    expected = reference_pool(x, size, stride or size, pad, ignore_border,
                              mode)
    assert out.shape == expected.shape
    assert layer.output_shape == (None,) + out.shape[1:]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_maxpool2d_is_max_mode():
    layer = MaxPool2DLayer((None, 1, 5, 5), 3, stride=2, ignore_border=False)
    assert layer.mode == "max"
    assert layer.output_shape == (None, 1, 2, 2)


@pytest.mark.parametrize("length,size,stride,expected", [
    # Caffe: ceil((L - k) / s) + 1 for pad 0, stride <= size.
    (112, 3, 2, 56), (56, 3, 2, 28), (28, 3, 2, 14), (14, 3, 2, 7),
    (7, 2, 2, 4), (8, 2, 2, 4), (10, 3, 3, 4),
])
def test_ignore_border_false_rounds_up_like_caffe(length, size, stride,
                                                  expected):
    layer = Pool2DLayer((None, 1, length, length), size, stride=stride,
                        ignore_border=False)
    assert layer.output_shape == (None, 1, expected, expected)
    assert int(np.ceil((length - size) / stride)) + 1 == expected
