"""A direct depthwise convolution for the CPU, as a Theano op and a Lasagne layer.

Why: Theano's grouped ``CorrMM`` runs one im2col + GEMM per channel and
image; with ``blas.ldflags`` empty each GEMM goes through numpy's C-API, so
a 1152-channel depthwise layer costs ~18,000 numpy calls per batch of 16.
The profile of EfficientNet-Lite0 had those convolutions at over half the
time. Here each channel plane is convolved by a plain C loop, with the
bias, the asymmetric "SAME" padding and ReLU6 done in the same pass (no
padded copy, no extra elementwise passes).

Only the forward pass is hand-written; the gradient is that of the
equivalent ``T.nnet.conv2d(num_groups=C)`` graph, so the layer still trains.
"""
import numpy as np

import captioning.stack  # noqa: F401  (Theano flags and the Lasagne backport first)
import theano
import theano.tensor as T
from theano.gof import Apply, Op

import lasagne
from lasagne.layers import Layer

__all__ = ["DepthwiseConv2d", "DepthwiseConv2DLayer", "depthwise_reference"]


def depthwise_reference(x, W, b, channels, stride, padding, relu6):
    """The same computation with Theano's grouped conv (used for grads)."""
    (top, bottom), (left, right) = padding
    if top or bottom or left or right:
        shape = x.shape
        padded = T.zeros((shape[0], shape[1], shape[2] + top + bottom,
                          shape[3] + left + right), dtype=x.dtype)
        x = T.set_subtensor(padded[:, :, top:top + shape[2],
                                   left:left + shape[3]], x)
    out = T.nnet.conv2d(x, W, subsample=(stride, stride), filter_flip=False,
                        num_groups=channels)
    out = out + b.dimshuffle("x", 0, "x", "x")
    return T.clip(out, 0, 6) if relu6 else out


class DepthwiseConv2d(Op):
    """``y[n, c] = act(b[c] + sum_{i,j} W[c, 0, i, j] * xpad[n, c, s*y+i, s*x+j])``.

    Parameters
    ----------
    channels : int
        C (needed for the gradient graph's ``num_groups``).
    stride : int
    padding : ((top, bottom), (left, right))
        Zero padding, may be asymmetric (TensorFlow SAME).
    relu6 : bool
        Apply min(max(y, 0), 6).

    Inputs are float32: x (N, C, H, W), W (C, 1, k, k), b (C,).
    """

    __props__ = ("channels", "stride", "padding", "relu6")

    def __init__(self, channels, stride, padding, relu6):
        self.channels = int(channels)
        self.stride = int(stride)
        self.padding = tuple(tuple(int(p) for p in pair) for pair in padding)
        self.relu6 = bool(relu6)

    def make_node(self, x, W, b):
        x = T.as_tensor_variable(x)
        W = T.as_tensor_variable(W)
        b = T.as_tensor_variable(b)
        for var, ndim in ((x, 4), (W, 4), (b, 1)):
            if var.ndim != ndim or var.dtype != "float32":
                raise TypeError("DepthwiseConv2d wants float32 x (4d), W (4d), "
                                "b (1d); got %s %dd" % (var.dtype, var.ndim))
        out = T.TensorType("float32", (x.broadcastable[0], False, False, False))()
        return Apply(self, [x, W, b], [out])

    def infer_shape(self, node, shapes):
        (n, c, h, w), (_, _, kh, kw), _ = shapes
        (top, bottom), (left, right) = self.padding
        return [(n, c, (h + top + bottom - kh) // self.stride + 1,
                 (w + left + right - kw) // self.stride + 1)]

    def perform(self, node, inputs, outputs):
        # Python fallback (Theano without a C compiler): shifted slices.
        x, W, b = inputs
        (top, bottom), (left, right) = self.padding
        s, k = self.stride, W.shape[2]
        xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
        ho = (xp.shape[2] - k) // s + 1
        wo = (xp.shape[3] - W.shape[3]) // s + 1
        y = np.broadcast_to(b[None, :, None, None],
                            (x.shape[0], x.shape[1], ho, wo)).astype(np.float32)
        for i in range(k):
            for j in range(W.shape[3]):
                y = y + xp[:, :, i:i + s * ho:s, j:j + s * wo:s] * W[None, :, 0, i, j, None, None]
        if self.relu6:
            y = np.clip(y, 0, 6)
        outputs[0][0] = y.astype(np.float32)

    def grad(self, inputs, output_grads):
        x, W, b = inputs
        ref = depthwise_reference(x, W, b, self.channels, self.stride,
                                  self.padding, self.relu6)
        return theano.grad(None, wrt=[x, W, b],
                           known_grads={ref: output_grads[0]})

    def c_code_cache_version(self):
        return (1,)

    def c_support_code(self):
        return """
        // One channel plane: out (ho x wo) = bias + correlation of the
        // zero-padded input plane with the k x k filter. For each filter tap
        // the rows/columns whose input falls inside the image are computed
        // first, so the inner loop has no bounds checks (vectorisable).
        static void depthwise_plane(const float* in, int h, int w,
                                    const float* filt, int kh, int kw,
                                    float bias, int s, int top, int left,
                                    float* out, int ho, int wo, int relu6)
        {
            for (int i = 0; i < ho * wo; ++i) out[i] = bias;
            for (int ky = 0; ky < kh; ++ky) {
                // input row = oy*s + ky - top must be in [0, h)
                int oy0 = 0, oy1 = ho;
                while (oy0 < ho && oy0 * s + ky - top < 0) ++oy0;
                while (oy1 > oy0 && (oy1 - 1) * s + ky - top >= h) --oy1;
                for (int kx = 0; kx < kw; ++kx) {
                    const float wv = filt[ky * kw + kx];
                    int ox0 = 0, ox1 = wo;
                    while (ox0 < wo && ox0 * s + kx - left < 0) ++ox0;
                    while (ox1 > ox0 && (ox1 - 1) * s + kx - left >= w) --ox1;
                    for (int oy = oy0; oy < oy1; ++oy) {
                        const float* row = in + (oy * s + ky - top) * w + (kx - left);
                        float* dst = out + oy * wo;
                        if (s == 1) {
                            for (int ox = ox0; ox < ox1; ++ox) dst[ox] += wv * row[ox];
                        } else {
                            for (int ox = ox0; ox < ox1; ++ox) dst[ox] += wv * row[ox * s];
                        }
                    }
                }
            }
            if (relu6) {
                for (int i = 0; i < ho * wo; ++i) {
                    float v = out[i];
                    out[i] = v < 0.f ? 0.f : (v > 6.f ? 6.f : v);
                }
            }
        }
        """

    def c_code(self, node, name, inputs, outputs, sub):
        x, W, b = inputs
        (y,) = outputs
        fail = sub["fail"]
        (top, bottom), (left, right) = self.padding
        s, relu6 = self.stride, int(self.relu6)
        return """
        {
        PyArrayObject* xc = PyArray_GETCONTIGUOUS(%(x)s);
        PyArrayObject* wc = PyArray_GETCONTIGUOUS(%(W)s);
        PyArrayObject* bc = PyArray_GETCONTIGUOUS(%(b)s);
        npy_intp n = PyArray_DIMS(xc)[0], c = PyArray_DIMS(xc)[1];
        npy_intp h = PyArray_DIMS(xc)[2], w = PyArray_DIMS(xc)[3];
        npy_intp kh = PyArray_DIMS(wc)[2], kw = PyArray_DIMS(wc)[3];
        npy_intp ho = (h + %(top)d + %(bottom)d - kh) / %(s)d + 1;
        npy_intp wo = (w + %(left)d + %(right)d - kw) / %(s)d + 1;
        int bad = (PyArray_DIMS(wc)[0] != c || PyArray_DIMS(wc)[1] != 1
                   || PyArray_DIMS(bc)[0] != c || ho < 1 || wo < 1);
        if (bad) {
            Py_DECREF(xc); Py_DECREF(wc); Py_DECREF(bc);
            PyErr_SetString(PyExc_ValueError,
                "DepthwiseConv2d: W must be (C, 1, k, k) and b (C,) for x "
                "(N, C, H, W), and the output non-empty");
            %(fail)s
        }
        npy_intp dims[4] = {n, c, ho, wo};
        if (!%(y)s || PyArray_NDIM(%(y)s) != 4
            || !PyArray_IS_C_CONTIGUOUS(%(y)s)
            || PyArray_DIMS(%(y)s)[0] != n || PyArray_DIMS(%(y)s)[1] != c
            || PyArray_DIMS(%(y)s)[2] != ho || PyArray_DIMS(%(y)s)[3] != wo) {
            Py_XDECREF(%(y)s);
            %(y)s = (PyArrayObject*)PyArray_EMPTY(4, dims, NPY_FLOAT32, 0);
            if (!%(y)s) {
                Py_DECREF(xc); Py_DECREF(wc); Py_DECREF(bc);
                %(fail)s
            }
        }
        const float* xd = (const float*)PyArray_DATA(xc);
        const float* wd = (const float*)PyArray_DATA(wc);
        const float* bd = (const float*)PyArray_DATA(bc);
        float* yd = (float*)PyArray_DATA(%(y)s);
        for (npy_intp p = 0; p < n * c; ++p) {
            npy_intp ch = p %% c;
            depthwise_plane(xd + p * h * w, (int)h, (int)w,
                            wd + ch * kh * kw, (int)kh, (int)kw, bd[ch],
                            %(s)d, %(top)d, %(left)d,
                            yd + p * ho * wo, (int)ho, (int)wo, %(relu6)d);
        }
        Py_DECREF(xc); Py_DECREF(wc); Py_DECREF(bc);
        }
        """ % locals()


class DepthwiseConv2DLayer(Layer):
    """Depthwise k x k convolution + bias (+ ReLU6) with explicit padding.

    Parameters ``W`` (C, 1, k, k) and ``b`` (C,), laid out like Lasagne's
    ``Conv2DLayer(num_groups=C, flip_filters=False)``.

    Parameters
    ----------
    incoming : Layer
    filter_size : int
    stride : int
    padding : ((top, bottom), (left, right))
    relu6 : bool
    """

    def __init__(self, incoming, filter_size, stride=1, padding=((0, 0), (0, 0)),
                 relu6=True, W=lasagne.init.GlorotUniform(),
                 b=lasagne.init.Constant(0.), **kwargs):
        super().__init__(incoming, **kwargs)
        channels = self.input_shape[1]
        self.op = DepthwiseConv2d(channels, stride, padding, relu6)
        self.filter_size = filter_size
        self.W = self.add_param(W, (channels, 1, filter_size, filter_size), name="W")
        self.b = self.add_param(b, (channels,), name="b", regularizable=False)

    def get_output_shape_for(self, input_shape):
        (top, bottom), (left, right) = self.op.padding
        k, s = self.filter_size, self.op.stride

        def size(n, before, after):
            return None if n is None else (n + before + after - k) // s + 1
        return (input_shape[0], input_shape[1],
                size(input_shape[2], top, bottom), size(input_shape[3], left, right))

    def get_output_for(self, input, **kwargs):
        return self.op(input, self.W, self.b)
