# GoogLeNet (Inception v1) in Lasagne, for the image-captioning seminar.
#
# Paper: C. Szegedy et al., "Going Deeper with Convolutions", 2014,
#        arXiv:1409.4842.
# Model: the BVLC GoogLeNet trained with Caffe (models/bvlc_googlenet in the
#        Caffe model zoo), layer names and hyper-parameters as in its
#        deploy.prototxt; the layout follows the Lasagne Recipes port.
# Weights: the BVLC reference models are released for unrestricted use
#        (BVLC model licence: "unrestricted use"). They are not shipped here:
#        `blvc_googlenet.pkl` (sic, "blvc") comes in the seminar's
#        data.tar.gz (the "caption data seminar" archive the seminar
#        notebook downloads first), unpacked to data/blvc_googlenet.pkl.
#
# The seminar uses it as:
#     lenet = build_model()
#     load_weights(lenet, 'data/blvc_googlenet.pkl')
#     features = lasagne.layers.get_output(lenet['loss3/classifier'])
"""BVLC GoogLeNet for Lasagne: build it, load its weights, preprocess images.

Caffe semantics are kept exactly, so that the Caffe weights give Caffe's
outputs: filters are not flipped (Caffe correlates), the stride-2 max pools
round their output size up (Caffe's ceil mode) and LRN scales ``alpha`` by
the window size ``n``.
"""
import captioning.stack  # noqa: F401  (Theano flags and the Lasagne backport)

import os

import numpy as np

import lasagne
from lasagne.layers import (ConcatLayer, Conv2DLayer, DenseLayer, InputLayer,
                            LocalResponseNormalization2DLayer,
                            NonlinearityLayer, Pool2DLayer)
from lasagne.nonlinearities import softmax

from captioning.io.safe_pickle import (NUMPY_ARRAYS, UnsafePickleError,
                                    importable, safe_loads)

__all__ = ["MEAN_VALUES", "build_inception_module", "build_model",
           "preprocess", "load_weights", "UnsafePickleError", "WEIGHTS_PICKLE"]

# Per-channel ImageNet means the BVLC model was trained with, in Caffe's BGR
# channel order. Shaped (3, 1, 1) so that it broadcasts over a (3, H, W)
# image, as the seminar's `img[0] + MEAN_VALUES` does.
MEAN_VALUES = np.array([104, 117, 123]).reshape((3, 1, 1))

INPUT_SIZE = 224

# Filters per inception module, in the order
# (1x1, 3x3_reduce, 3x3, 5x5_reduce, 5x5, pool_proj) - table 1 of the paper.
INCEPTION_FILTERS = [
    ("inception_3a", (64, 96, 128, 16, 32, 32)),
    ("inception_3b", (128, 128, 192, 32, 96, 64)),
    ("inception_4a", (192, 96, 208, 16, 48, 64)),
    ("inception_4b", (160, 112, 224, 24, 64, 64)),
    ("inception_4c", (128, 128, 256, 24, 64, 64)),
    ("inception_4d", (112, 144, 288, 32, 64, 64)),
    ("inception_4e", (256, 160, 320, 32, 128, 128)),
    ("inception_5a", (256, 160, 320, 32, 128, 128)),
    ("inception_5b", (384, 192, 384, 48, 128, 128)),
]
# Stride-2 max pools between inception stages.
POOL_AFTER = {"inception_3b": "pool3/3x3_s2", "inception_4e": "pool4/3x3_s2"}


def _conv(incoming, num_filters, filter_size, **kwargs):
    # Caffe computes a cross-correlation: its filters must not be flipped.
    return Conv2DLayer(incoming, num_filters, filter_size,
                       flip_filters=False, **kwargs)


def _caffe_max_pool(incoming):
    # Caffe's 3x3/2 max pools round the output size up (ceil mode): with no
    # padding that is exactly Lasagne's ignore_border=False, whose last
    # window is clipped to the input (112 -> 56, not 55).
    return Pool2DLayer(incoming, pool_size=3, stride=2, ignore_border=False,
                       mode="max")


def _caffe_lrn(incoming):
    # Caffe: x / (1 + alpha/n * sum_{n neighbouring channels} x^2)^beta with
    # alpha=1e-4, n=5; Lasagne's layer does not divide alpha by n itself.
    return LocalResponseNormalization2DLayer(incoming, alpha=1e-4 / 5, k=1,
                                             beta=0.75, n=5)


def build_inception_module(name, input_layer, nfilters):
    """Build one inception module.

    Parameters
    ----------
    name : str
        Prefix of the layer names, e.g. ``'inception_3a'``.
    input_layer : lasagne.layers.Layer
    nfilters : sequence of 6 int
        Filters of the branches ``(1x1, 3x3_reduce, 3x3, 5x5_reduce, 5x5,
        pool_proj)``.

    Returns
    -------
    dict
        ``'<name>/<branch>'`` -> layer, with ``'<name>/output'`` the
        concatenation of the 1x1, 3x3, 5x5 and pool_proj branches (Caffe's
        order, which also makes ``get_all_params`` list the branches as 1x1,
        3x3_reduce, 3x3, 5x5_reduce, 5x5, pool_proj).
    """
    n1x1, n3x3r, n3x3, n5x5r, n5x5, npool = nfilters
    net = {}
    net["1x1"] = _conv(input_layer, n1x1, 1)
    net["3x3_reduce"] = _conv(input_layer, n3x3r, 1)
    net["3x3"] = _conv(net["3x3_reduce"], n3x3, 3, pad=1)
    net["5x5_reduce"] = _conv(input_layer, n5x5r, 1)
    net["5x5"] = _conv(net["5x5_reduce"], n5x5, 5, pad=2)
    # 3x3/1 pad 1: ceil and floor agree, the size is kept; padded cells
    # never win the max (as in Caffe).
    net["pool"] = Pool2DLayer(input_layer, pool_size=3, stride=1, pad=1,
                              ignore_border=True, mode="max")
    net["pool_proj"] = _conv(net["pool"], npool, 1)
    net["output"] = ConcatLayer([net["1x1"], net["3x3"], net["5x5"],
                                 net["pool_proj"]])
    return {"%s/%s" % (name, key): layer for key, layer in net.items()}


def build_model():
    """Build BVLC GoogLeNet with uninitialised (random) weights.

    Returns
    -------
    dict
        Caffe layer name -> Lasagne layer: ``'input'`` (shape
        ``(None, 3, 224, 224)``, BGR, mean subtracted: see `preprocess`),
        ``'conv1/7x7_s2'``, ``'pool1/3x3_s2'``, ``'pool1/norm1'``,
        ``'conv2/3x3_reduce'``, ``'conv2/3x3'``, ``'conv2/norm2'``,
        ``'pool2/3x3_s2'``, the inception modules (``'inception_3a/1x1'``
        ... ``'inception_5b/output'``), ``'pool3/3x3_s2'``,
        ``'pool4/3x3_s2'``, ``'pool5/7x7_s1'``, ``'loss3/classifier'``
        (1000 linear class scores) and ``'prob'`` (their softmax).
        ``lasagne.layers.get_all_params(net['prob'])`` has the order of the
        parameter list in ``blvc_googlenet.pkl``.
    """
    net = {}
    net["input"] = InputLayer((None, 3, INPUT_SIZE, INPUT_SIZE))
    net["conv1/7x7_s2"] = _conv(net["input"], 64, 7, stride=2, pad=3)
    net["pool1/3x3_s2"] = _caffe_max_pool(net["conv1/7x7_s2"])
    net["pool1/norm1"] = _caffe_lrn(net["pool1/3x3_s2"])
    net["conv2/3x3_reduce"] = _conv(net["pool1/norm1"], 64, 1)
    net["conv2/3x3"] = _conv(net["conv2/3x3_reduce"], 192, 3, pad=1)
    net["conv2/norm2"] = _caffe_lrn(net["conv2/3x3"])
    net["pool2/3x3_s2"] = _caffe_max_pool(net["conv2/norm2"])

    previous = net["pool2/3x3_s2"]
    for name, nfilters in INCEPTION_FILTERS:
        net.update(build_inception_module(name, previous, nfilters))
        previous = net[name + "/output"]
        if name in POOL_AFTER:
            net[POOL_AFTER[name]] = _caffe_max_pool(previous)
            previous = net[POOL_AFTER[name]]

    # 7x7 average over the 7x7 maps of a 224x224 input (one value per map).
    net["pool5/7x7_s1"] = Pool2DLayer(previous, pool_size=7, stride=1,
                                      ignore_border=True,
                                      mode="average_exc_pad")
    # Caffe's dropout before the classifier only acts in training; the
    # seminar uses this network for features only, so it is left out.
    net["loss3/classifier"] = DenseLayer(net["pool5/7x7_s1"], num_units=1000,
                                         nonlinearity=None)
    net["prob"] = NonlinearityLayer(net["loss3/classifier"], softmax)
    return net


def preprocess(img):
    """Turn an image into the network's input.

    Parameters
    ----------
    img : np.ndarray
        ``(H, W)`` grey, ``(H, W, 1)``, ``(H, W, 3)`` RGB or ``(H, W, 4)``
        RGBA (the alpha channel is dropped, not composited). Integer images
        are taken as 0..255; floating-point images as 0..1, as
        ``plt.imread`` returns PNGs (a float image with values above 1 is
        refused rather than guessed at).

    Returns
    -------
    np.ndarray
        ``(1, 3, 224, 224)`` float32: the image resized (bilinear, Pillow)
        so that its short side is 224, centre-cropped to 224x224, in BGR
        order on the 0..255 scale, minus `MEAN_VALUES`. Images smaller than
        224 are scaled up.
    """
    from PIL import Image  # only needed here

    img = np.asarray(img)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4) or min(img.shape[:2]) < 1:
        raise ValueError("preprocess expects an (H, W), (H, W, 1), (H, W, 3) "
                         "or (H, W, 4) image, got shape %s" % (img.shape,))
    if np.issubdtype(img.dtype, np.floating):
        if img.size and (np.nanmax(img) > 1.0 or np.nanmin(img) < 0.0):
            raise ValueError("float images must be in [0, 1] (as plt.imread "
                             "gives for PNG); pass 0..255 images as uint8")
        img = img * 255.0
    elif img.dtype == bool:
        img = img * 255.0
    img = img.astype(np.float32)
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    img = img[:, :, :3]

    h, w = img.shape[:2]
    scale = INPUT_SIZE / min(h, w)
    new_h = max(INPUT_SIZE, int(round(h * scale)))
    new_w = max(INPUT_SIZE, int(round(w * scale)))
    # Pillow's "F" mode resizes float channels without quantising to uint8
    # and filters (antialiases) when shrinking.
    img = np.stack([np.asarray(Image.fromarray(img[:, :, c], mode="F")
                               .resize((new_w, new_h), Image.BILINEAR))
                    for c in range(3)], axis=2)

    top = (new_h - INPUT_SIZE) // 2
    left = (new_w - INPUT_SIZE) // 2
    img = img[top:top + INPUT_SIZE, left:left + INPUT_SIZE]
    img = img.transpose(2, 0, 1)[::-1]          # HWC RGB -> CHW BGR
    img = img - MEAN_VALUES
    return img[None].astype(np.float32)


# pickle.load would call whatever a file names: the weights pickle is read
# by the package's restricted unpickler, which resolves only the globals that
# numpy arrays and numpy scalars need (lists, dicts, strings and numbers are
# built by pickle opcodes without any global).
WEIGHTS_PICKLE = NUMPY_ARRAYS.plus(
    "numpy arrays and scalars, lists, dicts, strings and numbers",
    importable(("numpy.core.multiarray", "scalar")))


def _read_weights(path):
    if not os.path.exists(path):
        raise FileNotFoundError(
            "%s not found. blvc_googlenet.pkl (BVLC GoogLeNet weights) comes "
            "in the seminar's data.tar.gz (the 'caption data seminar' "
            "archive downloaded in the seminar notebook's first cell); "
            "unpack it so that this path exists." % path)
    with open(path, "rb") as f:
        data = f.read()
    # latin1: the file is a Python 2 pickle; numpy needs its byte strings
    # decoded one byte per character.
    return safe_loads(data, WEIGHTS_PICKLE, encoding="latin1")


def load_weights(model, path="data/blvc_googlenet.pkl"):
    """Load the BVLC weights into a network from `build_model`.

    Parameters
    ----------
    model : dict
        As returned by `build_model`.
    path : str
        The seminar's ``blvc_googlenet.pkl``: a Python 2 pickle of
        ``{'param values': [arrays in get_all_params order],
        'synset words': [class names]}``.

    Returns
    -------
    list of str
        The 1000 class names (``'synset words'``), indexed like ``'prob'``.

    Raises
    ------
    FileNotFoundError
        If `path` does not exist (the message says where to get it).
    UnsafePickleError
        If the pickle names anything but numpy arrays and plain data; nothing
        it names is ever called.
    ValueError
        If the file's layout, parameter count or shapes do not match.
    """
    data = _read_weights(path)
    if not isinstance(data, dict) or "param values" not in data:
        raise ValueError("%s is not a weights pickle: expected a dict with "
                         "'param values'" % path)
    values = data["param values"]
    params = lasagne.layers.get_all_params(model["prob"])
    if len(values) != len(params):
        raise ValueError("%s has %d parameter arrays, the model %d"
                         % (path, len(values), len(params)))
    arrays = []
    for i, (param, value) in enumerate(zip(params, values)):
        current = param.get_value(borrow=True)
        value = np.asarray(value)
        if value.shape != current.shape:
            raise ValueError("%s: parameter %d (%s) has shape %s, the model "
                             "expects %s" % (path, i, param.name, value.shape,
                                             current.shape))
        arrays.append(value.astype(current.dtype))
    # Set only after every check passed, so a bad file changes nothing.
    for param, value in zip(params, arrays):
        param.set_value(value)
    return [str(name) for name in data.get("synset words", [])]
