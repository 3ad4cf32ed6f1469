"""The output layer's softmax + cross-entropy, in loops the compiler vectorises.

Theano fuses the seminar's ``softmax`` + ``categorical_crossentropy`` into
``CrossentropySoftmaxArgmax1HotWithBias`` (forward: softmax rows, their
negative log-likelihood at the target word, their argmax) and
``CrossentropySoftmax1HotWithBiasDx`` (gradient). Their C code indexes every
element through a run-time stride and keeps a running argmax and a double
sum in the same loops, so GCC leaves them scalar: at the seminar's sizes
(800 rows x 10,373 words) they took 37 ms of a 140 ms train step.

The subclasses below compute the same outputs. Rows whose elements are
contiguous (always, in the seminar's graph) go through simple loops marked
``#pragma omp simd`` (``-fopenmp-simd``: vector instructions, no threads);
other layouts take a plain strided loop. Per row, with ``z = x + b``::

    max_z = max_j z_j                  argmax = first j where z_j == max_z
    sm_j  = exp(z_j - max_z) / sum     sum = sum_j exp(z_j - max_z) (double)
    nll   = log(sum) - (z_y - max_z)   (= -log sm_y)
    dx_j  = dnll * (sm_j - [j == y])

The exponentials go through Theano's vectorised ``exp`` when ``lib.amdlibm``
is on (``captioning.stack.speed.fastmath``). Target indices are checked first (an
out-of-range index is a ValueError, as in Theano). ``captioning.stack.speed.theano_opt``
swaps these in for Theano's ops after the fusion.
"""
import theano
from theano.gof.utils import MethodNotDefined
from theano.tensor.nnet.nnet import (CrossentropySoftmax1HotWithBiasDx,
                                     CrossentropySoftmaxArgmax1HotWithBias)

__all__ = ["VectorCrossentropySoftmaxArgmax1HotWithBias",
           "VectorCrossentropySoftmax1HotWithBiasDx"]


def _exp_in_place(dtype, n, array):
    """C statement: exp of ``n`` contiguous values, vectorised if Theano can."""
    try:
        return theano.scalar.exp.c_code_contiguous_raw(dtype, n, array, array) + ";"
    except MethodNotDefined:
        return "for (npy_intp j = 0; j < %s; ++j) %s[j] = exp(%s[j]);" % (n, array, array)


_CHECK_TARGETS = """
for (npy_intp i = 0; i < PyArray_DIMS(%(y_idx)s)[0]; ++i) {
    const %(y_type)s y_i = *(%(y_type)s*)PyArray_GETPTR1(%(y_idx)s, i);
    if (y_i < 0 || y_i >= PyArray_DIMS(%(cols_of)s)[1]) {
        PyErr_Format(PyExc_ValueError, "target index %%ld of row %%ld is out of range [0, %%ld)",
                     (long)y_i, (long)i, (long)PyArray_DIMS(%(cols_of)s)[1]);
        %(fail)s;
    }
}
"""


def _c_contiguous_output(out, ndim, dims, dtype_of, fail):
    """C: (re)allocate ``out`` unless it is a C-contiguous array of that shape."""
    return """
if (NULL == %(out)s || PyArray_NDIM(%(out)s) != %(ndim)d
    || !PyArray_IS_C_CONTIGUOUS(%(out)s)
    || PyArray_TYPE(%(out)s) != PyArray_TYPE(%(dtype_of)s)
    || !PyArray_CompareLists(PyArray_DIMS(%(out)s), %(dims)s, %(ndim)d)) {
    Py_XDECREF(%(out)s);
    %(out)s = (PyArrayObject*)PyArray_SimpleNew(%(ndim)d, %(dims)s, PyArray_TYPE(%(dtype_of)s));
    if (!%(out)s) { %(fail)s; }
}
""" % locals()


class VectorCrossentropySoftmaxArgmax1HotWithBias(CrossentropySoftmaxArgmax1HotWithBias):
    """``CrossentropySoftmaxArgmax1HotWithBias`` in vectorisable loops."""

    def c_compile_args(self):
        return ["-fopenmp-simd"]

    def c_code_cache_version(self):
        return (2, bool(theano.config.lib.amdlibm))

    def c_code(self, node, name, inputs, outputs, sub):
        x, b, y_idx = inputs
        nll, sm, am = outputs
        fail = sub["fail"]
        y_type = node.inputs[2].type.dtype_specs()[1]
        dtype = node.outputs[1].type.dtype_specs()[1]
        exp_row = _exp_in_place(node.outputs[1].type.dtype, "n_cols", "sm_i")
        check = _CHECK_TARGETS % dict(y_idx=y_idx, cols_of=x, y_type=y_type, fail=fail)
        alloc = (_c_contiguous_output(sm, 2, "PyArray_DIMS(%s)" % x, x, fail)
                 + _c_contiguous_output(nll, 1, "PyArray_DIMS(%s)" % y_idx, x, fail)
                 + _c_contiguous_output(am, 1, "PyArray_DIMS(%s)" % y_idx, y_idx, fail))
        return """
if (PyArray_NDIM(%(x)s) != 2 || PyArray_NDIM(%(b)s) != 1 || PyArray_NDIM(%(y_idx)s) != 1) {
    PyErr_SetString(PyExc_ValueError, "x must be a matrix, b and y_idx vectors");
    %(fail)s;
}
if (PyArray_DIMS(%(x)s)[1] != PyArray_DIMS(%(b)s)[0]
    || PyArray_DIMS(%(x)s)[0] != PyArray_DIMS(%(y_idx)s)[0]) {
    PyErr_Format(PyExc_ValueError, "shapes x (%%ld, %%ld), b (%%ld), y_idx (%%ld) do not match",
                 (long)PyArray_DIMS(%(x)s)[0], (long)PyArray_DIMS(%(x)s)[1],
                 (long)PyArray_DIMS(%(b)s)[0], (long)PyArray_DIMS(%(y_idx)s)[0]);
    %(fail)s;
}
%(check)s
%(alloc)s
{
    const npy_intp n_rows = PyArray_DIMS(%(x)s)[0];
    const npy_intp n_cols = PyArray_DIMS(%(x)s)[1];
    const bool contiguous = PyArray_STRIDES(%(x)s)[1] == sizeof(dtype_%(x)s)
                            && PyArray_STRIDES(%(b)s)[0] == sizeof(dtype_%(b)s);
    const dtype_%(b)s* __restrict__ b_c = (const dtype_%(b)s*)PyArray_DATA(%(b)s);
    for (npy_intp i = 0; i < n_rows; ++i) {
        %(dtype)s* __restrict__ sm_i = (%(dtype)s*)PyArray_GETPTR1(%(sm)s, i);
        /* sm_i <- z = x_i + b, and its maximum */
        %(dtype)s max_z = -INFINITY;
        if (contiguous) {
            const dtype_%(x)s* __restrict__ x_c = (const dtype_%(x)s*)PyArray_GETPTR1(%(x)s, i);
            #pragma omp simd reduction(max:max_z)
            for (npy_intp j = 0; j < n_cols; ++j) {
                const %(dtype)s z = x_c[j] + b_c[j];
                sm_i[j] = z;
                max_z = z > max_z ? z : max_z;
            }
        } else {
            for (npy_intp j = 0; j < n_cols; ++j) {
                const %(dtype)s z = *(dtype_%(x)s*)PyArray_GETPTR2(%(x)s, i, j)
                                    + *(dtype_%(b)s*)PyArray_GETPTR1(%(b)s, j);
                sm_i[j] = z;
                max_z = z > max_z ? z : max_z;
            }
        }
        npy_intp max_j = 0;
        while (max_j < n_cols && !(sm_i[max_j] == max_z)) ++max_j;
        if (max_j == n_cols) max_j = 0;              /* a row of NaN */

        const %(y_type)s y_i = *(%(y_type)s*)PyArray_GETPTR1(%(y_idx)s, i);
        const double shifted_target = (double)sm_i[y_i] - max_z;
        #pragma omp simd
        for (npy_intp j = 0; j < n_cols; ++j) sm_i[j] -= max_z;
        %(exp_row)s
        double sum = 0.0;
        #pragma omp simd reduction(+:sum)
        for (npy_intp j = 0; j < n_cols; ++j) sum += sm_i[j];
        const double inv_sum = 1.0 / sum;
        #pragma omp simd
        for (npy_intp j = 0; j < n_cols; ++j) sm_i[j] = sm_i[j] * inv_sum;
        *(dtype_%(nll)s*)PyArray_GETPTR1(%(nll)s, i) = log(sum) - shifted_target;
        *(%(y_type)s*)PyArray_GETPTR1(%(am)s, i) = max_j;
    }
}
""" % locals()


class VectorCrossentropySoftmax1HotWithBiasDx(CrossentropySoftmax1HotWithBiasDx):
    """``CrossentropySoftmax1HotWithBiasDx`` in vectorisable loops."""

    def c_compile_args(self):
        return ["-fopenmp-simd"]

    def c_code_cache_version(self):
        return (1,)

    def c_code(self, node, name, inputs, outputs, sub):
        dnll, sm, y_idx = inputs
        dx, = outputs
        fail = sub["fail"]
        y_type = node.inputs[2].type.dtype_specs()[1]
        dtype = node.outputs[0].type.dtype_specs()[1]
        check = _CHECK_TARGETS % dict(y_idx=y_idx, cols_of=sm, y_type=y_type, fail=fail)
        alloc = _c_contiguous_output(dx, 2, "PyArray_DIMS(%s)" % sm, sm, fail)
        return """
if (PyArray_NDIM(%(dnll)s) > 1 || PyArray_NDIM(%(sm)s) != 2 || PyArray_NDIM(%(y_idx)s) != 1) {
    PyErr_SetString(PyExc_ValueError, "dnll must be a scalar or a vector, sm a matrix, y_idx a vector");
    %(fail)s;
}
{  /* a scope: the gotos of %(fail)s must not cross initialisations */
/* dnll: one value per row, or one value (scalar or length 1) for all rows */
const npy_intp dnll_len = PyArray_NDIM(%(dnll)s) ? PyArray_DIMS(%(dnll)s)[0] : 1;
if ((dnll_len != 1 && dnll_len != PyArray_DIMS(%(sm)s)[0])
    || PyArray_DIMS(%(y_idx)s)[0] != PyArray_DIMS(%(sm)s)[0]) {
    PyErr_Format(PyExc_ValueError, "shapes dnll (%%ld), sm (%%ld, %%ld), y_idx (%%ld) do not match",
                 (long)dnll_len, (long)PyArray_DIMS(%(sm)s)[0], (long)PyArray_DIMS(%(sm)s)[1],
                 (long)PyArray_DIMS(%(y_idx)s)[0]);
    %(fail)s;
}
%(check)s
%(alloc)s
{
    const npy_intp n_rows = PyArray_DIMS(%(sm)s)[0];
    const npy_intp n_cols = PyArray_DIMS(%(sm)s)[1];
    const npy_intp s_dnll = (dnll_len == 1) ? 0 : PyArray_STRIDES(%(dnll)s)[0];
    const bool contiguous = PyArray_STRIDES(%(sm)s)[1] == sizeof(dtype_%(sm)s);
    for (npy_intp i = 0; i < n_rows; ++i) {
        const %(dtype)s d = *(const dtype_%(dnll)s*)(PyArray_BYTES(%(dnll)s) + s_dnll * i);
        %(dtype)s* __restrict__ dx_i = (%(dtype)s*)PyArray_GETPTR1(%(dx)s, i);
        if (contiguous) {
            const dtype_%(sm)s* __restrict__ sm_c = (const dtype_%(sm)s*)PyArray_GETPTR1(%(sm)s, i);
            #pragma omp simd
            for (npy_intp j = 0; j < n_cols; ++j) dx_i[j] = d * sm_c[j];
        } else {
            for (npy_intp j = 0; j < n_cols; ++j)
                dx_i[j] = d * *(const dtype_%(sm)s*)PyArray_GETPTR2(%(sm)s, i, j);
        }
        dx_i[*(const %(y_type)s*)PyArray_GETPTR1(%(y_idx)s, i)] -= d;
    }
}
}
""" % locals()
