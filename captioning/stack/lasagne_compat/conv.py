"""Conv2DLayer: Lasagne master's ``flip_filters`` and ``num_groups``.

Lasagne 0.1 always computes a true convolution over all input channels.
Master adds ``flip_filters`` (False = cross-correlation, needed for Caffe
weights) and ``num_groups`` (grouped / depthwise convolution). Theano 1.0.5's
``T.nnet.conv2d`` does both natively (``filter_flip``, ``num_groups``,
``border_mode`` with symmetric or asymmetric padding), so the layer hands the
padding to it instead of padding/cropping the input by hand.

The methods of the existing class are replaced in place: Lasagne 0.1 calls
``super(Conv2DLayer, self)`` by module-level name, so a subclass bound to
that name would recurse forever. ``get_output_shape_for`` is 0.1's and is
kept: it already implements the documented output-size formula for every
pad mode. Imported by :func:`captioning.lasagne_compat.apply` once
``import lasagne`` works.
"""
import inspect

import theano.tensor as T
from lasagne import init, nonlinearities
from lasagne.layers import conv
from lasagne.layers.base import Layer
from lasagne.utils import as_tuple

__all__ = ["backport"]

EXTRA_DOC = """
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


def _init_parameters(cls):
    try:
        return inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return {}


def has_master_api(cls):
    """True if ``cls`` (the installed Conv2DLayer) has flip_filters and
    num_groups already (master puts num_groups on its base class)."""
    return ("flip_filters" in _init_parameters(cls)
            and any("num_groups" in _init_parameters(k) for k in cls.__mro__))


def normalize_pad(pad):
    """Return 'full', 'same' or a pair of ints; reject anything else."""
    if isinstance(pad, str):
        if pad == "valid":
            return (0, 0)
        if pad in ("full", "same"):
            return pad
        raise ValueError("Conv2DLayer: invalid pad %r (use an int, a pair of "
                         "ints, 'full', 'same' or 'valid')" % (pad,))
    pad = as_tuple(pad, 2, int)
    if any(p < 0 for p in pad):
        raise ValueError("Conv2DLayer: pad must be >= 0, got %r" % (pad,))
    return pad


def border_mode(pad, filter_size):
    """Translate a Lasagne pad into a ``T.nnet.conv2d`` border_mode."""
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


def _check_groups(num_groups, in_channels, num_filters):
    if int(num_groups) != num_groups or num_groups < 1:
        raise ValueError("Conv2DLayer: num_groups must be a positive "
                         "int, got %r" % (num_groups,))
    if in_channels is None:
        raise ValueError("Conv2DLayer needs a known number of input "
                         "channels to create W")
    if in_channels % num_groups or num_filters % num_groups:
        raise ValueError(
            "Conv2DLayer: num_groups=%d must divide both the number of "
            "input channels (%d) and num_filters (%d)"
            % (num_groups, in_channels, num_filters))
    return int(num_groups)


def conv2d_init(self, incoming, num_filters, filter_size, stride=(1, 1),
                pad=0, untie_biases=False, W=init.GlorotUniform(),
                b=init.Constant(0.), nonlinearity=nonlinearities.rectify,
                flip_filters=True, num_groups=1, convolution=T.nnet.conv2d,
                **kwargs):
    """Becomes ``Conv2DLayer.__init__`` (its docstring is 0.1's)."""
    Layer.__init__(self, incoming, **kwargs)
    self.nonlinearity = (nonlinearities.identity if nonlinearity is None
                         else nonlinearity)
    self.num_filters = int(num_filters)
    self.filter_size = as_tuple(filter_size, 2, int)
    self.stride = as_tuple(stride, 2, int)
    self.pad = normalize_pad(pad)
    self.untie_biases = bool(untie_biases)
    self.flip_filters = bool(flip_filters)
    self.convolution = convolution
    self.num_groups = _check_groups(num_groups, self.input_shape[1],
                                    self.num_filters)

    self.W = self.add_param(W, self.get_W_shape(), name="W")
    if b is None:
        self.b = None
    else:
        # Untied biases: one per output position, like 0.1.
        shape = ((self.num_filters,) + tuple(self.output_shape[2:])
                 if self.untie_biases else (self.num_filters,))
        self.b = self.add_param(b, shape, name="b", regularizable=False)


def get_W_shape(self):
    """Get the shape of the weight tensor `W`.

    Returns
    -------
    tuple of int
        ``(num_filters, num_input_channels // num_groups, filter_rows,
        filter_columns)``.
    """
    return (self.num_filters, self.input_shape[1] // self.num_groups) + \
        tuple(self.filter_size)


def get_output_for(self, input, input_shape=None, **kwargs):
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
        border_mode=border_mode(self.pad, self.filter_size),
        subsample=self.stride, filter_flip=self.flip_filters, **extra)
    if self.b is None:
        activation = conved
    elif self.untie_biases:
        activation = conved + self.b.dimshuffle('x', 0, 1, 2)
    else:
        activation = conved + self.b.dimshuffle('x', 0, 'x', 'x')
    return self.nonlinearity(activation)


def backport():
    """Give lasagne's Conv2DLayer master's `flip_filters` and `num_groups`.

    Does nothing if the installed class already has both, or if it is not
    the Lasagne 0.1 class this patch was written for (then it only lacks
    part of the API and replacing its methods could break it).
    """
    cls = conv.Conv2DLayer
    if has_master_api(cls) or "flip_filters" in _init_parameters(cls):
        return
    conv2d_init.__doc__ = cls.__init__.__doc__
    conv2d_init.__name__ = conv2d_init.__qualname__ = "__init__"
    cls.__init__ = conv2d_init
    cls.get_W_shape = get_W_shape
    cls.get_output_for = get_output_for
    cls._captioning_backport = True
    if cls.__doc__ and EXTRA_DOC not in cls.__doc__:
        cls.__doc__ = cls.__doc__.rstrip() + "\n" + EXTRA_DOC
