"""Backport of the Lasagne master API onto PyPI Lasagne 0.1 + Theano 1.0.5.

Written from Lasagne's documented behaviour (not its code). Each fix is
applied only where the installed Lasagne lacks the feature, so with a newer
Lasagne ``apply()`` changes nothing.
"""
import sys
import types

__all__ = ["apply"]

_applied = False


def _install_downsample_shim():
    """Lasagne 0.1 imports `theano.tensor.signal.downsample`, removed in
    Theano 0.9; provide its `max_pool_2d` on top of `pool.pool_2d`."""
    import theano.tensor.signal
    from theano.tensor.signal import pool

    name = "theano.tensor.signal.downsample"
    if name in sys.modules or hasattr(theano.tensor.signal, "downsample"):
        return

    def max_pool_2d(input, ds, ignore_border=None, st=None, padding=(0, 0),
                    mode="max"):
        return pool.pool_2d(input, ws=ds, ignore_border=ignore_border,
                            stride=st, pad=padding, mode=mode)

    module = types.ModuleType(name, "Shim of the old Theano pooling module.")
    module.max_pool_2d = max_pool_2d
    sys.modules[name] = module
    theano.tensor.signal.downsample = module


def apply():
    """Patch the installed Lasagne in place (idempotent)."""
    global _applied
    if _applied:
        return
    _install_downsample_shim()
    import lasagne  # noqa: F401  (imports now succeed)
    # Each fix below checks the installed Lasagne and does nothing if it
    # already has the feature.
    _fix_lstm()  # [LSTM section: calls]
    # [Conv/pool section: calls]
    _backport_conv2d()
    _applied = True


# ---------------------------------------------------------------- LSTM section


def _fix_lstm():
    """Bring ``LSTMLayer`` up to Lasagne master's documented behaviour.

    Lasagne 0.1's LSTMLayer (a) rejects a Layer as `hid_init`/`cell_init`,
    (b) adds the output-gate peephole *after* the sigmoid, (c) clips
    gradients to zero for ``grad_clipping=0`` and (d) lacks
    `only_return_final`. The class is patched in place rather than
    subclassed: its ``__init__`` calls ``super(LSTMLayer, self)`` through
    the module-level name, so rebinding that name to a subclass would
    recurse forever, while patching keeps ``lasagne.layers.LSTMLayer``,
    ``lasagne.layers.recurrent.LSTMLayer`` and ``import *`` all pointing at
    one (fixed) class. No-op if the installed Lasagne has
    `only_return_final` (added after all four fixes).
    """
    import inspect

    import theano
    import theano.tensor as T
    from lasagne import init, nonlinearities
    from lasagne.layers import Layer
    from lasagne.layers.recurrent import Gate, LSTMLayer
    from lasagne.utils import unroll_scan

    if "only_return_final" in inspect.signature(LSTMLayer.__init__).parameters:
        return
    original_init = LSTMLayer.__init__

    def __init__(self, incoming, num_units,
                 ingate=Gate(),
                 forgetgate=Gate(),
                 cell=Gate(W_cell=None, nonlinearity=nonlinearities.tanh),
                 outgate=Gate(),
                 nonlinearity=nonlinearities.tanh,
                 cell_init=init.Constant(0.),
                 hid_init=init.Constant(0.),
                 backwards=False,
                 learn_init=False,
                 peepholes=True,
                 gradient_steps=-1,
                 grad_clipping=0,
                 unroll_scan=False,
                 precompute_input=True,
                 mask_input=None,
                 only_return_final=False,
                 **kwargs):
        """Lasagne 0.1's constructor, plus master's extensions.

        Parameters
        ----------
        cell_init, hid_init : callable, np.ndarray, theano.shared, \
TensorVariable or Layer
            As in Lasagne 0.1, or a Layer whose output, of shape
            ``(batch, num_units)``, is the initial state; no parameter is
            created for it and `learn_init` does not apply to it.
        grad_clipping : float
            If nonzero, gradient messages are clipped to
            ``[-grad_clipping, grad_clipping]`` in the backward pass;
            0 (or False) means no clipping.
        only_return_final : bool
            If True, return only the last computed hidden state, shape
            ``(batch, num_units)``, instead of all of them.

        Other parameters are those of Lasagne 0.1 (see the class docstring).
        """
        # 0.1 takes a TensorVariable init as-is, without creating a
        # parameter: hand it a placeholder for each Layer init, then feed
        # the Layer in as an extra incoming (after the mask, if any).
        init_layers = {}
        if isinstance(hid_init, Layer):
            init_layers["hid_init"], hid_init = hid_init, T.matrix()
        if isinstance(cell_init, Layer):
            init_layers["cell_init"], cell_init = cell_init, T.matrix()
        original_init(self, incoming, num_units, ingate, forgetgate, cell,
                      outgate, nonlinearity, cell_init, hid_init, backwards,
                      learn_init, peepholes, gradient_steps, grad_clipping,
                      unroll_scan, precompute_input, mask_input, **kwargs)
        self.only_return_final = only_return_final
        self.mask_incoming_index = 1 if mask_input is not None else -1
        self.hid_init_incoming_index = self.cell_init_incoming_index = -1
        for name, layer in sorted(init_layers.items()):
            shape = layer.output_shape
            if len(shape) != 2 or shape[1] not in (None, num_units):
                raise ValueError("%s layer must have output shape (batch, "
                                 "%d), not %r" % (name, num_units, shape))
            setattr(self, name + "_incoming_index", len(self.input_layers))
            setattr(self, name, None)
            self.input_layers.append(layer)
            self.input_shapes.append(shape)

    def get_output_shape_for(self, input_shapes):
        """``(batch, time, num_units)``, or ``(batch, num_units)`` if
        `only_return_final`."""
        batch, time = input_shapes[0][:2]
        if self.only_return_final:
            return batch, self.num_units
        return batch, time, self.num_units

    def get_output_for(self, inputs, **kwargs):
        """Hidden states for the input ``inputs[0]`` (batch, time, ...).

        Parameters
        ----------
        inputs : list of TensorVariable
            The input, then the mask ``(batch, time)`` if `mask_input` was
            given (1 = real step, 0 = padding: the state is carried over),
            then the outputs of the `hid_init` / `cell_init` layers, if any.

        Returns
        -------
        TensorVariable
            ``(batch, time, num_units)`` hidden states in input order (also
            when `backwards`), or only the last computed one,
            ``(batch, num_units)``, if `only_return_final`.
        """
        x = inputs[0]
        if x.ndim > 3:
            x = T.flatten(x, 3)
        x = x.dimshuffle(1, 0, 2)  # scan loops over the first axis: time
        mask = inputs[1] if self.mask_incoming_index > 0 else None
        n = self.num_units

        W_in = T.concatenate([self.W_in_to_ingate, self.W_in_to_forgetgate,
                              self.W_in_to_cell, self.W_in_to_outgate], 1)
        W_hid = T.concatenate([self.W_hid_to_ingate, self.W_hid_to_forgetgate,
                               self.W_hid_to_cell, self.W_hid_to_outgate], 1)
        b = T.concatenate([self.b_ingate, self.b_forgetgate, self.b_cell,
                           self.b_outgate], 0)
        if self.precompute_input:
            x = T.dot(x, W_in) + b  # one big product instead of one per step

        def step(x_t, *args):
            # scan passes: sequences (x_t[, m_t]), states, non_sequences.
            if mask is not None:
                m_t, args = args[0], args[1:]
            c_prev, h_prev, W_hid, W_in, b = args[:5]
            w_ci, w_cf, w_co = args[5:] if self.peepholes else (None,) * 3
            pre = x_t if self.precompute_input else T.dot(x_t, W_in) + b
            pre = pre + T.dot(h_prev, W_hid)
            if self.grad_clipping:  # 0/False: no clipping (0.1 clipped to 0)
                pre = theano.gradient.grad_clip(
                    pre, -self.grad_clipping, self.grad_clipping)
            pre_i, pre_f, pre_c, pre_o = (pre[:, k * n:(k + 1) * n]
                                          for k in range(4))
            if self.peepholes:  # input/forget gates peek at c_{t-1}
                pre_i += c_prev * w_ci
                pre_f += c_prev * w_cf
            c = (self.nonlinearity_forgetgate(pre_f) * c_prev +
                 self.nonlinearity_ingate(pre_i) * self.nonlinearity_cell(pre_c))
            if self.peepholes:  # output gate peeks at the new c_t, *inside*
                pre_o += c * w_co  # its nonlinearity (0.1 added it outside)
            h = self.nonlinearity_outgate(pre_o) * self.nonlinearity(c)
            if mask is not None:  # padded steps keep the previous state
                c = T.switch(m_t, c, c_prev)
                h = T.switch(m_t, h, h_prev)
            return [c, h]

        def initial(name):
            index = getattr(self, name + "_incoming_index")
            if index > 0:
                return inputs[index]
            value = getattr(self, name)
            if isinstance(value, theano.compile.SharedVariable):
                # A (1, num_units) parameter: repeat it over the batch.
                return T.dot(T.ones((x.shape[1], 1)), value)
            return value  # 0.1's (batch, num_units) expression

        sequences = [x] if mask is None else [x, mask.T.dimshuffle(0, 1, 'x')]
        outputs_info = [initial("cell_init"), initial("hid_init")]
        # Weights go in as non_sequences so that scan (strict=True) sees
        # them as inputs of the loop.
        non_seqs = [W_hid, W_in, b]
        if self.peepholes:
            non_seqs += [self.W_cell_to_ingate, self.W_cell_to_forgetgate,
                         self.W_cell_to_outgate]
        if self.unroll_scan:
            cells, hids = unroll_scan(
                step, sequences, outputs_info, non_seqs,
                self.input_shapes[0][1], go_backwards=self.backwards)
        else:
            cells, hids = theano.scan(
                step, sequences, outputs_info=outputs_info,
                non_sequences=non_seqs, go_backwards=self.backwards,
                truncate_gradient=self.gradient_steps, strict=True)[0]

        if self.only_return_final:
            return hids[-1]  # the state after the last processed step
        hids = hids.dimshuffle(1, 0, 2)
        return hids[:, ::-1] if self.backwards else hids  # input order

    LSTMLayer.__init__ = __init__
    LSTMLayer.get_output_shape_for = get_output_shape_for
    LSTMLayer.get_output_for = get_output_for
    if LSTMLayer.__doc__ and _LSTM_EXTRA_DOC not in LSTMLayer.__doc__:
        LSTMLayer.__doc__ = LSTMLayer.__doc__.rstrip() + "\n" + _LSTM_EXTRA_DOC


_LSTM_EXTRA_DOC = """
    Backported from Lasagne master (see ``captioning.lasagne_compat``; the
    full argument list is in ``__init__``'s docstring):

    hid_init, cell_init : Layer, callable, array or shared variable
        A Layer gives the initial state per example, shape
        ``(batch, num_units)`` (the seminar's image code as ``cell_init``);
        it is then not a parameter of this layer.
    peepholes
        The output gate looks at the *new* cell inside its sigmoid:
        ``o_t = sigmoid(... + w_co * c_t)`` (Lasagne 0.1 added it outside).
    grad_clipping : float (default 0)
        Bounds the gradient flowing back through each step's gate inputs;
        0 means no clipping (Lasagne 0.1 clipped to zero).
    only_return_final : bool (default False)
        Return only the last step's hidden state, ``(batch, num_units)``.
"""


# ---------------------------------------------------------------- Conv/pool section
# Conv2DLayer: Lasagne 0.1 always computes a true convolution over all input
# channels. Master adds `flip_filters` (False = cross-correlation, needed for
# Caffe weights) and `num_groups` (grouped / depthwise convolution). Theano
# 1.0.5's `T.nnet.conv2d` does both natively (`filter_flip`, `num_groups`,
# `border_mode` with symmetric or asymmetric padding), so the layer now hands
# padding to it instead of padding/cropping the input by hand.
#
# The methods of the existing class are replaced in place: Lasagne 0.1 calls
# `super(Conv2DLayer, self)` by module-level name, so a subclass bound to that
# name would recurse forever. `get_output_shape_for` is 0.1's and is kept: it
# already implements the documented output-size formula for every pad mode.
#
# Pooling needs no patch: with the downsample shim, Pool2DLayer/MaxPool2DLayer
# give master's documented shapes (ignore_border=False appends one partial
# region, i.e. rounds up like Caffe when pad=0; pad requires
# ignore_border=True, as master documents). tests/test_pool.py checks that.

_CONV2D_EXTRA_DOC = """
    Backported from Lasagne master (see ``captioning.lasagne_compat``):

    flip_filters : bool (default: True)
        Whether to flip the filters before sliding them over the input,
        performing a convolution (this is the default), or not to flip them
        and perform a correlation. Note that for some other convolutional
        layers in Lasagne, flipping incurs an overhead and is disabled by
        default; weights trained with Caffe need ``flip_filters=False``.

    num_groups : int (default: 1)
        The input channels and the filters are split into ``num_groups``
        groups; group ``g`` of filters only sees group ``g`` of the input
        channels. Both the number of input channels and ``num_filters`` must
        be divisible by it. ``W`` then has shape ``(num_filters,
        num_input_channels // num_groups, filter_rows, filter_columns)``.
        ``num_groups == num_input_channels`` is a depthwise convolution.
"""


def _conv2d_has_master_api(cls):
    """True if `cls` (the installed Conv2DLayer) has flip_filters and
    num_groups already (master puts num_groups on its base class)."""
    import inspect

    def params(klass):
        try:
            return inspect.signature(klass.__init__).parameters
        except (TypeError, ValueError):
            return {}

    has_flip = "flip_filters" in params(cls)
    has_groups = any("num_groups" in params(k) for k in cls.__mro__)
    return has_flip and has_groups


def _normalize_conv_pad(pad):
    """Return 'full', 'same' or a pair of ints; reject anything else."""
    if isinstance(pad, str):
        if pad == "valid":
            return (0, 0)
        if pad in ("full", "same"):
            return pad
        raise ValueError("Conv2DLayer: invalid pad %r (use an int, a pair of "
                         "ints, 'full', 'same' or 'valid')" % (pad,))
    from lasagne.utils import as_tuple
    pad = as_tuple(pad, 2, int)
    if any(p < 0 for p in pad):
        raise ValueError("Conv2DLayer: pad must be >= 0, got %r" % (pad,))
    return pad


def _conv2d_border_mode(pad, filter_size):
    """Translate a Lasagne pad into a `T.nnet.conv2d` border_mode."""
    if pad == "full":
        return "full"
    if pad == "same":
        # Half the filter before, the rest after; for odd sizes that is
        # Theano's symmetric 'half'. Even sizes keep Lasagne 0.1's choice
        # (one more before than after) via Theano's asymmetric padding.
        if all(f % 2 == 1 for f in filter_size):
            return "half"
        return tuple((f // 2, (f - 1) // 2) for f in filter_size)
    if pad == (0, 0):
        return "valid"  # also understood by the legacy conv.conv2d
    return tuple(pad)


def _make_conv2d_init():
    """Build the new ``Conv2DLayer.__init__`` (needs lasagne importable, so
    its default objects are created when the patch is applied)."""
    import theano.tensor as T
    from lasagne import init, nonlinearities
    from lasagne.layers.base import Layer
    from lasagne.utils import as_tuple

    def __init__(self, incoming, num_filters, filter_size, stride=(1, 1),
                 pad=0, untie_biases=False, W=init.GlorotUniform(),
                 b=init.Constant(0.), nonlinearity=nonlinearities.rectify,
                 flip_filters=True, num_groups=1, convolution=T.nnet.conv2d,
                 **kwargs):
        Layer.__init__(self, incoming, **kwargs)
        self.nonlinearity = (nonlinearities.identity if nonlinearity is None
                             else nonlinearity)
        self.num_filters = int(num_filters)
        self.filter_size = as_tuple(filter_size, 2, int)
        self.stride = as_tuple(stride, 2, int)
        self.pad = _normalize_conv_pad(pad)
        self.untie_biases = bool(untie_biases)
        self.flip_filters = bool(flip_filters)
        self.convolution = convolution

        if int(num_groups) != num_groups or num_groups < 1:
            raise ValueError("Conv2DLayer: num_groups must be a positive "
                             "int, got %r" % (num_groups,))
        self.num_groups = int(num_groups)
        in_channels = self.input_shape[1]
        if in_channels is None:
            raise ValueError("Conv2DLayer needs a known number of input "
                             "channels to create W")
        if in_channels % self.num_groups or \
                self.num_filters % self.num_groups:
            raise ValueError(
                "Conv2DLayer: num_groups=%d must divide both the number of "
                "input channels (%d) and num_filters (%d)"
                % (self.num_groups, in_channels, self.num_filters))

        self.W = self.add_param(W, self.get_W_shape(), name="W")
        if b is None:
            self.b = None
        else:
            # Untied biases: one per output position, like 0.1.
            shape = ((self.num_filters,) + tuple(self.output_shape[2:])
                     if self.untie_biases else (self.num_filters,))
            self.b = self.add_param(b, shape, name="b", regularizable=False)

    return __init__


def _conv2d_get_W_shape(self):
    """Get the shape of the weight tensor `W`.

    Returns
    -------
    tuple of int
        ``(num_filters, num_input_channels // num_groups, filter_rows,
        filter_columns)``.
    """
    return (self.num_filters, self.input_shape[1] // self.num_groups) + \
        tuple(self.filter_size)


def _conv2d_get_output_for(self, input, input_shape=None, **kwargs):
    # The optional input_shape argument is for when get_output_for is
    # called directly with a different shape than self.input_shape.
    if input_shape is None:
        input_shape = self.input_shape
    extra = {}
    if self.num_groups > 1:
        # Only when needed, so a custom `convolution` without the argument
        # keeps working for ungrouped layers.
        extra["num_groups"] = self.num_groups
    # input_shape goes positionally: it is `input_shape` for T.nnet.conv2d
    # and `image_shape` for the legacy conv.conv2d.
    conved = self.convolution(
        input, self.W, input_shape, filter_shape=self.get_W_shape(),
        border_mode=_conv2d_border_mode(self.pad, self.filter_size),
        subsample=self.stride, filter_flip=self.flip_filters, **extra)
    if self.b is None:
        activation = conved
    elif self.untie_biases:
        activation = conved + self.b.dimshuffle('x', 0, 1, 2)
    else:
        activation = conved + self.b.dimshuffle('x', 0, 'x', 'x')
    return self.nonlinearity(activation)


def _backport_conv2d():
    """Give lasagne's Conv2DLayer master's `flip_filters` and `num_groups`.

    Does nothing if the installed class already has both, or if it is not
    the Lasagne 0.1 class this patch was written for (then it only lacks
    part of the API and replacing its methods could break it).
    """
    import inspect
    from lasagne.layers import conv

    cls = conv.Conv2DLayer
    if _conv2d_has_master_api(cls):
        return
    if "flip_filters" in inspect.signature(cls.__init__).parameters:
        return  # a partial newer API: leave it alone
    new_init = _make_conv2d_init()
    new_init.__doc__ = cls.__init__.__doc__
    cls.__init__ = new_init
    cls.get_W_shape = _conv2d_get_W_shape
    cls.get_output_for = _conv2d_get_output_for
    cls._captioning_backport = True
    if cls.__doc__ and _CONV2D_EXTRA_DOC not in cls.__doc__:
        cls.__doc__ = cls.__doc__.rstrip() + "\n" + _CONV2D_EXTRA_DOC
