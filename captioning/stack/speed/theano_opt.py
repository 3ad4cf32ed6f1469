"""Graph rewrites that make Theano's CPU code faster without changing the math.

``sum0_to_gemv``
    ``x.sum(axis=0)`` of a float32 matrix becomes ``dot(ones, x)``, which
    Theano turns into BLAS sgemv. Theano's own C reduction walks a C-ordered
    matrix column by column; for the output layer's bias gradient (a sum
    over batch*time rows of a batch*time x n_tokens matrix) it took 28 ms
    where sgemv takes under 2 ms on the seminar's sizes. The same for a sum
    over all axes but the last of a 3-d or higher tensor, on the tensor
    seen as a matrix (a view when it is C-contiguous): the attention
    model's bias gradients are such sums, over (time, batch) of the gates'
    (13 x 64 x 2048) and over (batch, regions) of the attention MLP's
    (64 x 49 x 256). The sum is then accumulated in float32 (by BLAS)
    instead of float64: the same value to float32 precision
    (tests/test_speed_equivalence.py, tests/test_theano_opt.py).

``vector_xent``
    Theano's fused softmax + cross-entropy ops (forward and gradient) become
    the versions of :mod:`captioning.stack.speed.xent_ops`: the same outputs, computed
    in loops GCC vectorises (at the seminar's sizes the forward op took
    23 ms per train step, now 12 ms).

``simd_elemwise``
    Theano's generic C loop for an elementwise op on contiguous arrays is
    ``for(int i=0; i<n; i++) out[i] = f(in1[i], in2[i], ...)``. GCC only
    vectorises it after a run-time check that no output overlaps an input;
    for an *in-place* op (adam's updates, the LSTM's gates) the output *is*
    an input, the check fails and the scalar loop runs (and in Theano's
    large generated functions GCC often does not even try). Element ``i``
    only ever reads and writes index ``i`` (or element 0 of a broadcast
    scalar), so the iterations are independent: ``#pragma omp simd``
    (``-fopenmp-simd``: vector instructions, no threads) on the contiguous
    loop and on the innermost strided loop says so and GCC vectorises them
    (adam's update of the output weights 3.8 -> 0.34 ms). Each element
    still gets the same operations in the same order: + - * / sqrt give
    the same result bit for bit; exp, log and tanh call glibc's vector
    versions where :mod:`captioning.stack.speed.fastmath` declared them (within a few
    float32 ulp; the LSTM's forward scan 6.7 -> 3.1 ms per train step).
    (Theano's own ``openmp=True`` relies on the same independence.)

``import captioning.stack`` registers them in Theano's optimizer database under
the names below, unless ``CAPTION_SPEEDUPS=0``; each can be switched off
like any Theano rewrite, e.g.
``THEANO_FLAGS=optimizer_excluding=captioning_sum0_to_gemv``.
"""
import re

import theano
import theano.tensor as T
from theano.gof import Apply
from theano.gof.opt import in2out, local_optimizer
from theano.gof.utils import MethodNotDefined
from theano.scalar import get_scalar_type
from theano.tensor.elemwise import Elemwise
from theano.tensor.nnet.nnet import (CrossentropySoftmax1HotWithBiasDx,
                                     CrossentropySoftmaxArgmax1HotWithBias)

from captioning.stack.speed.xent_ops import (VectorCrossentropySoftmax1HotWithBiasDx,
                       VectorCrossentropySoftmaxArgmax1HotWithBias)

__all__ = ["register", "SimdElemwise", "SUM0_TO_GEMV", "VECTOR_XENT",
           "SIMD_ELEMWISE"]

SUM0_TO_GEMV = "captioning_sum0_to_gemv"
VECTOR_XENT = "captioning_vector_xent"
SIMD_ELEMWISE = "captioning_simd_elemwise"


@local_optimizer([T.Sum])
def local_sum0_to_gemv(node):
    op = node.op
    if not isinstance(op, T.Sum) or type(op) is not T.Sum:
        return False
    (x,) = node.inputs
    out = node.outputs[0]
    leading = tuple(range(x.ndim - 1))   # every axis but the last
    if (x.ndim < 2 or x.dtype != "float32" or out.dtype != "float32"
            or op.axis is None or tuple(sorted(op.axis)) != leading
            or any(x.broadcastable[:-1])):
        return False
    if x.ndim > 2:
        x = x.reshape((T.prod(x.shape[:-1]), x.shape[-1]), ndim=2)
    ones = T.alloc(T.constant(1, dtype="float32"), x.shape[0])
    return [T.dot(ones, x)]


_VECTOR_VERSION = {
    CrossentropySoftmaxArgmax1HotWithBias: VectorCrossentropySoftmaxArgmax1HotWithBias,
    CrossentropySoftmax1HotWithBiasDx: VectorCrossentropySoftmax1HotWithBiasDx,
}


@local_optimizer(list(_VECTOR_VERSION))
def local_vector_xent(node):
    vector_op = _VECTOR_VERSION.get(type(node.op))
    if vector_op is None:
        return False
    return vector_op()(*node.inputs, return_list=True)


class SimdElemwise(Elemwise):
    """:class:`Elemwise` whose innermost loops are marked ``#pragma omp simd``.

    Theano writes one loop for contiguous arrays and nested loops
    (``ITER_0``, ``ITER_1``, ...; the highest index innermost) for strided
    or broadcast ones, such as the LSTM's gate columns.
    """

    _CONTIGUOUS_LOOP = "for(int i=0; i<n; i++){"
    _STRIDED_LOOP = re.compile(r"for ?\(int ITER_(\d+) = 0;")
    _PRAGMA = "#pragma omp simd\n"

    def c_code(self, node, nodename, inames, onames, sub):
        code = super().c_code(node, nodename, inames, onames, sub)
        code = code.replace(self._CONTIGUOUS_LOOP, self._PRAGMA + self._CONTIGUOUS_LOOP)
        depths = [int(m.group(1)) for m in self._STRIDED_LOOP.finditer(code)]
        if depths:
            innermost = str(max(depths))
            code = self._STRIDED_LOOP.sub(
                lambda m: self._PRAGMA + m.group(0) if m.group(1) == innermost
                else m.group(0), code)
        return code

    def c_compile_args(self):
        return super().c_compile_args() + ["-fopenmp-simd"]

    def c_code_cache_version_apply(self, node):
        version = super().c_code_cache_version_apply(node)
        return version + (("omp simd", 2),) if version else version


_FAIL_MARK = "captioning_simd_elemwise_fail_mark"


def _element_code_can_leave_the_loop(node):
    """True when the per-element C code may jump out of the loop (integer
    division checks for zero and ``goto``s Theano's failure label): no
    branch may leave an ``omp simd`` loop, and such a loop would not
    vectorise anyway."""
    scalar_node = Apply(node.op.scalar_op,
                        [get_scalar_type(v.dtype).make_variable() for v in node.inputs],
                        [get_scalar_type(v.dtype).make_variable() for v in node.outputs])
    try:
        code = node.op.scalar_op.c_code(
            scalar_node, "element", ["i%d" % k for k in range(len(node.inputs))],
            ["o%d" % k for k in range(len(node.outputs))], {"fail": _FAIL_MARK})
    except (MethodNotDefined, NotImplementedError):
        return True
    return any(word in code for word in (_FAIL_MARK, "goto", "return", "break"))


@local_optimizer([Elemwise])
def local_simd_elemwise(node):
    op = node.op
    # Exactly Elemwise (not a subclass with its own C code), not already
    # multi-threaded by OpenMP, and with arrays to loop over.
    if type(op) is not Elemwise or op.openmp or node.outputs[0].ndim == 0:
        return False
    if _element_code_can_leave_the_loop(node):
        return False
    new_op = SimdElemwise(op.scalar_op, op.inplace_pattern, name=op.name,
                           nfunc_spec=op.nfunc_spec)
    return new_op(*node.inputs, return_list=True)


def register():
    """Add the rewrites to Theano's optimizer (once)."""
    optdb = theano.compile.optdb
    if SUM0_TO_GEMV not in optdb.__db__:
        # 1.65: after stabilize (1.5), where the cross-entropy fusion and
        # the gradient's sums are in place; before BlasOpt (1.7) turns the
        # dot into sgemv.
        optdb.register(SUM0_TO_GEMV, in2out(local_sum0_to_gemv,
                                            name=SUM0_TO_GEMV),
                       1.65, "fast_run")
    if VECTOR_XENT not in optdb.__db__:
        # 48.7: after specialize (2), where Theano fuses softmax and
        # cross-entropy and builds their gradient; before elemwise fusion.
        optdb.register(VECTOR_XENT, in2out(local_vector_xent, name=VECTOR_XENT),
                       48.7, "fast_run")
    if SIMD_ELEMWISE not in optdb.__db__:
        # 76: after the in-place rewrites (75), which only consider plain
        # Elemwise nodes; applies inside Scan's inner functions too.
        optdb.register(SIMD_ELEMWISE, in2out(local_simd_elemwise,
                                             name=SIMD_ELEMWISE),
                       76, "fast_run")
