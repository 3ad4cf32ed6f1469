"""Graph rewrites that make Theano's CPU code faster without changing the math.

``sum0_to_gemv``
    ``x.sum(axis=0)`` of a float32 matrix becomes ``dot(ones, x)``, which
    Theano turns into BLAS sgemv. Theano's own C reduction walks a C-ordered
    matrix column by column; for the output layer's bias gradient (a sum
    over batch*time rows of a batch*time x n_tokens matrix) it took 28 ms
    where sgemv takes under 2 ms on the seminar's sizes. The sum is then
    accumulated in float32 (by BLAS) instead of float64: the same value to
    float32 precision (tests/test_speed_equivalence.py).

Registered in Theano's optimizer database under the name below, so it can
be switched off like any Theano rewrite:
``THEANO_FLAGS=optimizer_excluding=captioning_sum0_to_gemv``.
"""
import theano
import theano.tensor as T
from theano.gof.opt import in2out, local_optimizer

__all__ = ["register", "SUM0_TO_GEMV"]

SUM0_TO_GEMV = "captioning_sum0_to_gemv"


@local_optimizer([T.Sum])
def local_sum0_to_gemv(node):
    op = node.op
    if not isinstance(op, T.Sum) or type(op) is not T.Sum:
        return False
    (x,) = node.inputs
    out = node.outputs[0]
    if (x.ndim != 2 or x.dtype != "float32" or out.dtype != "float32"
            or op.axis is None or tuple(op.axis) != (0,)
            or x.broadcastable[0]):
        return False
    rows = x.shape[0]
    ones = T.alloc(T.constant(1, dtype="float32"), rows)
    return [T.dot(ones, x)]


def register():
    """Add the rewrites to Theano's optimizer (once; before BLAS rewrites)."""
    optdb = theano.compile.optdb
    if SUM0_TO_GEMV not in optdb.__db__:
        # 1.65: after stabilize (1.5), where the cross-entropy fusion and
        # the gradient's sums are in place; before BlasOpt (1.7) turns the
        # dot into sgemv.
        optdb.register(SUM0_TO_GEMV, in2out(local_sum0_to_gemv,
                                            name=SUM0_TO_GEMV),
                       1.65, "fast_run")
