"""captioning.stack.speed.xent_ops computes what Theano's fused softmax/cross-entropy does.

References: a float64 numpy softmax / cross-entropy / gradient, and Theano's
own ops (the rewrite switched off by name). Inputs cover the seminar's
layout (contiguous rows) and strided views, a scalar output gradient, ties
in the argmax and bad targets.
"""
import numpy as np
import pytest
import theano
import theano.tensor as T
from theano.tensor.nnet import categorical_crossentropy, softmax
from theano.tensor.nnet.nnet import (CrossentropySoftmax1HotWithBiasDx,
                                     CrossentropySoftmaxArgmax1HotWithBias,
                                     crossentropy_softmax_argmax_1hot_with_bias)

from captioning.stack.speed.theano_opt import VECTOR_XENT
from captioning.stack.speed.xent_ops import (VectorCrossentropySoftmax1HotWithBiasDx,
                                 VectorCrossentropySoftmaxArgmax1HotWithBias)

WITHOUT = theano.compile.get_default_mode().excluding(VECTOR_XENT)


def numpy_reference(x, b, y, weights):
    """nll, softmax, argmax and d(sum(weights * nll))/dx in float64."""
    z = x.astype(np.float64) + b
    shifted = z - z.max(axis=1, keepdims=True)
    sm = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    nll = -np.log(sm[rows, y])
    grad = sm * weights[:, None]
    grad[rows, y] -= weights
    return nll, sm, z.argmax(axis=1), grad


def loss_graph():
    x, b, y, w = T.matrix("x"), T.vector("b"), T.ivector("y"), T.vector("w")
    nll, sm, am = crossentropy_softmax_argmax_1hot_with_bias(x, b, y)
    grad = theano.grad((w * nll).sum(), x)
    return [x, b, y, w], [nll, sm, am, grad]


def op_types(fn):
    return {type(node.op) for node in fn.maker.fgraph.toposort()}


@pytest.fixture(scope="module")
def functions():
    inputs, outputs = loss_graph()
    fast = theano.function(inputs, outputs)
    theirs = theano.function(inputs, outputs, mode=WITHOUT)
    return fast, theirs


def test_the_rewrite_swaps_both_ops(functions):
    fast, theirs = functions
    assert {VectorCrossentropySoftmaxArgmax1HotWithBias,
            VectorCrossentropySoftmax1HotWithBiasDx} <= op_types(fast)
    assert not {CrossentropySoftmaxArgmax1HotWithBias,
                CrossentropySoftmax1HotWithBiasDx} & op_types(fast)
    assert CrossentropySoftmaxArgmax1HotWithBias in op_types(theirs)


def random_case(rng, rows, cols, scale=3.0):
    x = (scale * rng.randn(rows, cols)).astype("float32")
    b = rng.randn(cols).astype("float32")
    y = rng.randint(0, cols, size=rows).astype("int32")
    w = rng.rand(rows).astype("float32")
    return x, b, y, w


@pytest.mark.parametrize("rows,cols", [(1, 1), (3, 7), (40, 1037), (7, 20000)])
def test_matches_numpy_and_theano(functions, rows, cols):
    fast, theirs = functions
    x, b, y, w = random_case(np.random.RandomState(rows * cols), rows, cols)
    nll, sm, am, grad = fast(x, b, y, w)
    ref_nll, ref_sm, ref_am, ref_grad = numpy_reference(x, b, y, w)
    np.testing.assert_allclose(nll, ref_nll, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sm, ref_sm, rtol=1e-5, atol=1e-9)
    np.testing.assert_array_equal(am, ref_am)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=1e-9)
    for mine, other in zip(fast(x, b, y, w), theirs(x, b, y, w)):
        np.testing.assert_allclose(mine, other, rtol=2e-6, atol=1e-9)


def test_strided_inputs(functions):
    fast, _ = functions
    rng = np.random.RandomState(1)
    big_x = rng.randn(30, 24).astype("float32")
    big_b = rng.randn(60).astype("float32")
    x, b = big_x.T[::2], big_b[::2]          # (12, 30): rows and columns strided
    y = rng.randint(0, 30, size=x.shape[0]).astype("int32")
    w = rng.rand(x.shape[0]).astype("float32")[::-1]
    nll, sm, am, grad = fast(x, b, y, w)
    ref_nll, ref_sm, ref_am, ref_grad = numpy_reference(x, b, y, w)
    np.testing.assert_allclose(nll, ref_nll, rtol=1e-5)
    np.testing.assert_allclose(sm, ref_sm, rtol=1e-5, atol=1e-9)
    np.testing.assert_array_equal(am, ref_am)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=1e-9)


def test_ties_give_the_first_maximum(functions):
    fast, theirs = functions
    x = np.array([[1, 5, 5, 2], [7, 7, 7, 7], [0, 0, 3, 3]], dtype="float32")
    b = np.zeros(4, "float32")
    args = (x, b, np.zeros(3, "int32"), np.ones(3, "float32"))
    np.testing.assert_array_equal(fast(*args)[2], [1, 0, 2])
    np.testing.assert_array_equal(theirs(*args)[2], [1, 0, 2])


def test_mean_loss_graph_uses_the_new_ops_and_its_gradient_is_right():
    # the seminar's pattern: mean cross-entropy of a softmax, scalar gradient
    x, b, y = T.matrix("x"), T.vector("b"), T.ivector("y")
    loss = categorical_crossentropy(softmax(x + b), y).mean()
    fn = theano.function([x, b, y], [loss, theano.grad(loss, x)])
    assert VectorCrossentropySoftmax1HotWithBiasDx in op_types(fn)
    xv, bv, yv, _ = random_case(np.random.RandomState(5), 12, 300)
    got_loss, got_grad = fn(xv, bv, yv)
    nll, _, _, grad = numpy_reference(xv, bv, yv, np.full(12, 1 / 12.0))
    np.testing.assert_allclose(got_loss, nll.mean(), rtol=1e-6)
    np.testing.assert_allclose(got_grad, grad, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("bad", [-1, 5])
def test_target_out_of_range_is_an_error(functions, bad):
    fast, _ = functions
    x, b, y, w = random_case(np.random.RandomState(2), 3, 5)
    y[1] = bad
    with pytest.raises(ValueError, match="target index %d of row 1 is out of range" % bad):
        fast(x, b, y, w)


def test_shape_mismatch_is_an_error(functions):
    fast, _ = functions
    x, b, y, w = random_case(np.random.RandomState(3), 3, 5)
    with pytest.raises(ValueError, match="do not match"):
        fast(x, b[:4], y, w)
