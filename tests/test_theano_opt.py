"""captioning.stack.speed.theano_opt's SIMD elementwise loops compute what numpy computes.

The rewrite only adds ``#pragma omp simd`` to Theano's contiguous loop, so
every result must equal the same float32 arithmetic done by numpy, bit for
bit where the operations are correctly rounded (+, *, /, sqrt), and equal
Theano's own loops (the rewrite excluded) otherwise.
"""
import numpy as np
import pytest

import captioning.stack  # noqa: F401  (Theano flags first)
import theano
import theano.tensor as T
from captioning.stack.speed.theano_opt import SIMD_ELEMWISE, SimdElemwise
from theano.tensor.elemwise import Elemwise

PLAIN = theano.compile.get_default_mode().excluding(SIMD_ELEMWISE)


def elemwise_ops(fn):
    return [n.op for n in fn.maker.fgraph.toposort() if isinstance(n.op, Elemwise)]


def adam_like(shape, rng):
    p, m, v = (rng.rand(*shape).astype("float32") for _ in range(3))
    return p, m, v


@pytest.mark.parametrize("shape", [(1,), (7,), (200, 1037), (3, 5, 17)])
def test_in_place_update_equals_numpy_bit_for_bit(shape):
    # adam's parameter update: in place on p, scalars broadcast, sqrt, /
    rng = np.random.RandomState(0)
    p0, m0, v0 = adam_like(shape, rng)
    p, m, v = (theano.shared(x.copy()) for x in (p0, m0, v0))
    lr = theano.shared(np.float32(1e-3))
    fn = theano.function([], [], updates=[(p, p - lr * m / (np.float32(1e-8) + T.sqrt(v)))])
    ops = elemwise_ops(fn)
    assert any(isinstance(op, SimdElemwise) and op.inplace_pattern for op in ops), ops
    fn()
    expected = p0 - np.float32(1e-3) * m0 / (np.float32(1e-8) + np.sqrt(v0))
    assert expected.dtype == np.float32
    np.testing.assert_array_equal(p.get_value(), expected)


def both(inputs, output):
    """The function compiled with and without the rewrite."""
    return (theano.function(inputs, output),
            theano.function(inputs, output, mode=PLAIN))


def test_strided_and_broadcast_inputs():
    # GCC contracts a*b+c into one fused multiply-add in Theano's loops
    # (with or without the rewrite), numpy rounds twice: equal to Theano's
    # own loops bit for bit, to numpy within float32 rounding.
    rng = np.random.RandomState(1)
    x = T.matrix()
    b = T.vector()
    a = rng.randn(40, 30).astype("float32")
    bias = rng.randn(40).astype("float32")
    # x.T is not contiguous; b broadcasts along rows
    fast, plain = both([x, b], T.sqrt(abs(x.T)) * b + 1)
    np.testing.assert_array_equal(fast(a, bias), plain(a, bias))
    np.testing.assert_allclose(fast(a, bias), np.sqrt(abs(a.T)) * bias + 1, rtol=1e-6, atol=1e-6)
    # a sliced (non-contiguous) input, as the LSTM's gate columns are
    fast, plain = both([x], x[:, 5:25] / (1 + x[:, 5:25] ** 2))
    s = a[:, 5:25]
    np.testing.assert_array_equal(fast(a), plain(a))
    np.testing.assert_allclose(fast(a), s / (1 + s ** 2), rtol=1e-6)


def test_transcendental_ops_equal_theanos_own_loops():
    rng = np.random.RandomState(2)
    x = T.matrix()
    z = rng.randn(64, 300).astype("float32") * 4
    expr = T.nnet.sigmoid(x) * T.tanh(x) + T.exp(-x ** 2) + T.switch(x > 0, x, 0)
    fast, plain = both([x], expr)
    assert any(isinstance(op, SimdElemwise) for op in elemwise_ops(fast))
    assert not any(isinstance(op, SimdElemwise) for op in elemwise_ops(plain))
    np.testing.assert_array_equal(fast(z), plain(z))
    ref = (1 / (1 + np.exp(-z.astype("f8")))) * np.tanh(z) + np.exp(-z.astype("f8") ** 2) \
        + np.maximum(z, 0)
    np.testing.assert_allclose(fast(z), ref, rtol=1e-5, atol=1e-6)


def test_integer_and_boolean_loops():
    words = T.imatrix()
    fn = theano.function([words], [T.neq(words, -1), T.maximum(words, 0) * 3])
    w = np.array([[1, 5, -1, -1], [1, -1, 7, 2]], "int32")
    mask, ids = fn(w)
    np.testing.assert_array_equal(mask, w != -1)
    np.testing.assert_array_equal(ids, np.maximum(w, 0) * 3)


def generated_code(fn):
    (node,) = [n for n in fn.maker.fgraph.toposort() if isinstance(n.op, SimdElemwise)]
    inames = ["i%d" % k for k in range(len(node.inputs))]
    onames = ["o%d" % k for k in range(len(node.outputs))]
    return node.op.c_code(node, "n", inames, onames, {"fail": "", "params": ""}), node.op


def test_the_pragma_lands_on_theanos_loops():
    # If a Theano version renames its loops, the rewrite would silently do
    # nothing: the generated C code must hold the pragma before them.
    x, y = T.vector(), T.vector()
    fn = theano.function([x, y], x * y + 1)
    code, op = generated_code(fn)
    assert "#pragma omp simd\n" + SimdElemwise._CONTIGUOUS_LOOP in code
    assert "-fopenmp-simd" in op.c_compile_args()
    a = np.arange(9, dtype="float32")
    np.testing.assert_array_equal(fn(a, a[::-1].copy()), a * a[::-1] + 1)
    # strided (a column slice, as the LSTM's gates): the innermost loop only
    m = T.matrix()
    fn = theano.function([m], T.tanh(m[:, 2:7]) * 2)
    code, _ = generated_code(fn)
    assert "#pragma omp simd\nfor(int ITER_1 = 0;" in code, code
    assert "#pragma omp simd\nfor(int ITER_0" not in code
    z = np.random.RandomState(4).randn(6, 9).astype("float32")
    np.testing.assert_allclose(fn(z), np.tanh(z[:, 2:7].astype("f8")) * 2, rtol=1e-6)


def test_rewrite_applies_inside_scan():
    x = T.matrix()
    h0 = T.vector()

    def tick(row, h):
        return T.tanh(row + h) * np.float32(0.5)

    out, _ = theano.scan(tick, sequences=x, outputs_info=h0)
    fn = theano.function([x, h0], out)
    (scan_node,) = [n for n in fn.maker.fgraph.toposort()
                    if type(n.op).__name__ == "Scan"]
    inner = scan_node.op.fn.maker.fgraph.toposort()
    assert any(isinstance(n.op, SimdElemwise) for n in inner), inner
    rng = np.random.RandomState(3)
    seq = rng.randn(6, 50).astype("float32")
    h = np.zeros(50, "float32")
    expected = []
    for row in seq.astype("f8"):
        h = np.tanh(row + h) * 0.5
        expected.append(h)
    np.testing.assert_allclose(fn(seq, np.zeros(50, "float32")), expected, rtol=1e-6, atol=1e-7)


def test_loops_that_can_fail_are_left_to_theano():
    # Integer division checks for zero and jumps to Theano's failure label:
    # no branch may leave an `omp simd` loop, so the op stays plain (this
    # compiled to an error when it was rewritten: EfficientNet's pooling
    # shapes have such a node).
    x, y = T.lmatrix(), T.lmatrix()
    fn = theano.function([x, y], x // y + 1)
    ops = elemwise_ops(fn)
    assert ops and not any(isinstance(op, SimdElemwise) for op in ops), ops
    a = np.arange(1, 13, dtype="int64").reshape(3, 4)
    np.testing.assert_array_equal(fn(a * 7, a), np.full((3, 4), 8))
    with pytest.raises(ZeroDivisionError):
        fn(a, a * 0)
    # a broadcast scalar shape computation, as in EfficientNet's graph
    n = T.lscalar()
    fn = theano.function([n], T.cast((62720 * n) // T.maximum(1280 * n, 1), "float32"))
    assert fn(3) == 49.0


# ------------------------------------------------------------ sum0_to_gemv
@pytest.mark.parametrize("shape, axes, transpose", [
    ((37, 53), (0,), False),              # the output layer's bias gradient
    ((13, 64, 300), (0, 1), False),       # the attention model's gates' bias gradient
    ((5, 3, 4, 70), (0, 1, 2), False),
    ((64, 20, 9), (1, 0), False),         # axes in any order
    ((40, 30, 7), (0, 1), True),          # a strided view: copied, then sgemv
])
def test_sums_over_leading_axes_become_gemv(shape, axes, transpose):
    x = T.TensorType("float32", (False,) * len(shape))()
    source = x.dimshuffle(1, 0, 2) if transpose else x
    fn = theano.function([x], source.sum(axis=axes))
    ops = [type(n.op).__name__ for n in fn.maker.fgraph.toposort()]
    assert "Sum" not in ops and any("Gemv" in op for op in ops), ops
    value = np.random.RandomState(4).randn(*shape).astype("float32")
    arranged = value.transpose(1, 0, 2) if transpose else value
    expected = arranged.astype("f8").sum(axis=axes)
    # float32 accumulation (BLAS) against float64: float32 precision
    np.testing.assert_allclose(fn(value), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape, axes", [((13, 64, 30), (1, 2)), ((13, 64, 30), (0, 2)),
                                         ((13, 64, 30), (0,)), ((13, 64, 30), None)])
def test_other_sums_are_left_to_theano(shape, axes):
    x = T.tensor3()
    fn = theano.function([x], x.sum(axis=axes))
    ops = [type(n.op).__name__ for n in fn.maker.fgraph.toposort()]
    assert "Sum" in ops and not any("Gemv" in op for op in ops), ops
    value = np.random.RandomState(5).randn(*shape).astype("float32")
    np.testing.assert_allclose(fn(value), value.astype("f8").sum(axis=axes),
                               rtol=1e-5, atol=1e-4)
