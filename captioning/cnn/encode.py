"""Image files -> codes: the one way photos become CNN codes.

An :class:`Encoder` names what makes a code: the CNN, the feature kind and
the preprocessing; it holds the compiled CNN function (compiled once per
process and weights file, see :meth:`Encoder.batch_codes`). The kinds
(EfficientNet-Lite0 and -Lite2; GoogLeNet gives logits only):

* ``"logits"``: the 1000 ImageNet class scores, float32;
* ``"pooled"``: the 1280 values of the global average pool before the
  classifier (logits = pooled @ W + b), float32;
* ``"spatial"``: the last feature map, 7 x 7 x 1280 at 224 px, as (49, 1280):
  one 1280-vector per region, regions in row-major order of the 7 x 7 grid
  (region r is row r // 7 from the top, column r % 7 from the left); pooled
  is their mean. float16 (the map is ReLU6 output in [0, 6], so float16 keeps
  it to 2**-11 relative; 125,440 bytes a photo). Lite2 (260 px): 9 x 9 = 81
  regions, same order. At another ``image_size`` (the side of the square
  the CNN sees) the map is that size / 32, rounded up: 14 x 14 at 448 px;
  ``grid`` averages it to fewer regions (448 px, grid 7: 7 x 7, each the
  mean of 2 x 2 cells: the finer features at the cost of a 7 x 7 grid).

One CNN pass gives the asked kind and the kinds computed after it (spatial
-> pooled -> logits), and :func:`encode` stores each in its own cache: the
pass that fills the spatial cache fills the pooled and logits caches too, so
no photo goes through the CNN twice for them (values as the CNN computes
them, not re-derived from the float16 map).

:func:`encode` turns image paths into codes through the code cache
(:mod:`captioning.cnn.codes_cache`), adding a shard every :data:`CHUNK`
photos, so an interrupted run resumes where it stopped. Every caller goes through here:
``caption extract``, ``caption data`` (Flickr8k and the generated world),
``caption train``, ``caption evaluate``, ``caption describe`` and the
notebook (``Encoder.for_dataset(dataset)``).

Unreadable or missing images are never fatal here: :func:`encode` returns
them as ``(path, reason)`` pairs and the caller decides (``caption data``
refuses them unless told to skip them, the other commands report and go on).

A model directory records :meth:`Encoder.record`; :func:`encoder_for_model`
gives the encoder a model needs and refuses one that would feed it other
codes.

Anything with the attributes and methods used here (``cnn``,
``feature_kind``, ``preprocessing``, ``code_size``, ``code_shape``,
``code_dtype``, ``cache_name``, ``record()``, ``load(path)``,
``batch_codes(inputs)``) can stand in for an Encoder; the tests pass such
fakes as the ``encoder`` argument.
"""
import functools
import hashlib
import importlib
import importlib.util
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from captioning.cnn import codes_cache
from captioning.cnn.images import ImageError, load_rgb
from captioning.errors import CaptionError

__all__ = ["CNNS", "DEFAULT_CNN", "FEATURE_KINDS", "CHUNK", "CALL_PIXELS", "Encoder",
           "EncoderError", "cnn_mode", "encode", "encoder_for_model"]

DEFAULT_CNN = "efficientnet_lite0"
CNNS = ("efficientnet_lite0", "efficientnet_lite2", "googlenet")
# The EfficientNet-Lite CNNs -> captioning.cnn.efficientnet's variant.
EFFICIENTNETS = {"efficientnet_lite0": "lite0", "efficientnet_lite2": "lite2"}
FEATURE_KINDS = ("logits", "pooled", "spatial")
# Each CNN's input size (the side of the square it sees) unless told
# otherwise: the size its ImageNet weights were trained at.
INPUT_SIZES = {"efficientnet_lite0": 224, "efficientnet_lite2": 260,
               "googlenet": 224}
# The input sizes an EfficientNet may be asked for (``image_size``): the
# regions are size / 32 on a side, rounded up.
IMAGE_SIZES = range(32, 1025)
# What each CNN's ``preprocess`` does to a uint8 RGB image (%d: the input
# size); a model trained on codes made one way must not be fed codes made
# another way.
PREPROCESSING = {
    "efficientnet_lite0": "rgb-short%d-bilinear-centrecrop-minus127-div128",
    "efficientnet_lite2": "rgb-short%d-bilinear-centrecrop-minus127-div128",
    "googlenet": "bgr-short%d-bilinear-centrecrop-minus-bvlc-mean",
}
# The output layer of each CNN that gives the feature kind.
LAYERS = {("efficientnet_lite0", "logits"): "logits",
          ("efficientnet_lite0", "pooled"): "pool",
          ("efficientnet_lite0", "spatial"): "regions",
          ("efficientnet_lite2", "logits"): "logits",
          ("efficientnet_lite2", "pooled"): "pool",
          ("efficientnet_lite2", "spatial"): "regions",
          ("googlenet", "logits"): "loss3/classifier"}
# One photo's code per kind; spatial: (grid * grid, 1280), see map_side.
CODE_SHAPES = {"logits": (1000,), "pooled": (1280,)}
CODE_DTYPES = {"logits": np.float32, "pooled": np.float32,
               "spatial": np.float16}
# The order in which one CNN pass computes the kinds: a pass for a kind
# also gives every kind after it.
PASS_ORDER = ("spatial", "pooled", "logits")
GOOGLENET_WEIGHTS = "data/blvc_googlenet.pkl"
REPO_ROOT = Path(__file__).resolve().parents[2]
# Photos a cache shard holds: encoded between two writes (~10 s of CNN work).
CHUNK = 256

# (cnn, feature kind, image size, grid, weights realpath) -> compiled function:
# one per process.
_COMPILED = {}
# Pixels of one CNN call: 32 photos at 224 px, 8 at 448. The compiled CNN
# keeps its intermediate tensors from call to call (~29 MB a photo at 224
# px, 117 MB at 448), so this bounds what it holds (~1 GB).
CALL_PIXELS = 32 * 224 * 224


class EncoderError(CaptionError, ValueError):
    """An encoder that cannot be built or does not fit; the message says
    what to do."""


def _import_pretrained_lenet():
    """The seminar's ``pretrained_lenet`` module (repo root), or None."""
    try:
        return importlib.import_module("pretrained_lenet")
    except ModuleNotFoundError as error:
        if error.name != "pretrained_lenet":
            raise
    # Not on sys.path (e.g. run from another directory): the repo copy.
    path = REPO_ROOT / "pretrained_lenet.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("pretrained_lenet", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["pretrained_lenet"] = module
    return module


def map_side(image_size):
    """Cells on a side of an EfficientNet's last map at ``image_size`` px:
    the size / 32 (the map's stride), rounded up (7 at Lite0's 224 px, 9 at
    Lite2's 260, 14 at 448)."""
    return -(-image_size // 32)


def _cnn_module(cnn, image_size=None, grid=None):
    """``build_model()``, ``load_weights(model, path)``, ``preprocess(rgb)``
    of a CNN (and ``default_weights_path()`` for the EfficientNets), at
    ``image_size`` px (default: the CNN's own), its regions on a ``grid``
    (default: the map's own)."""
    if cnn in EFFICIENTNETS:
        from captioning.cnn import efficientnet as E
        variant = EFFICIENTNETS[cnn]
        size = image_size or INPUT_SIZES[cnn]
        return SimpleNamespace(
            build_model=functools.partial(E.build_model, input_size=size,
                                          variant=variant, grid=grid),
            load_weights=functools.partial(E.load_weights, variant=variant),
            preprocess=functools.partial(E.preprocess, size=size),
            centre_crop=functools.partial(E.centre_crop, size=size),
            default_weights_path=functools.partial(E.default_weights_path,
                                                   variant))
    lenet = _import_pretrained_lenet()
    if lenet is None:
        raise EncoderError("--cnn googlenet is unavailable: pretrained_lenet.py "
                           "(the seminar's GoogLeNet module) is not in %s"
                           % REPO_ROOT)
    return lenet


def cnn_mode():
    """The Theano mode the CNN is compiled in.

    Speed: ``allow_gc=False``, so the intermediate tensors are kept for the
    next call instead of freed and allocated again (fresh pages, which the
    kernel zeroes on first touch): 1.2x the photos/s at 224 and at 448 px
    (``make bench-cnn``), the same computation; :data:`CALL_PIXELS` bounds
    what is kept. ``CAPTION_SPEEDUPS=0``: Theano's default mode.
    """
    import theano
    from captioning.stack.theano_setup import SPEEDUPS
    mode = theano.compile.get_default_mode()
    return mode.clone(link_kwargs=dict(allow_gc=False)) if SPEEDUPS else mode


def images_per_call(image_size):
    """Photos of ``image_size`` px the CNN gets at once (:data:`CALL_PIXELS`)."""
    return max(1, CALL_PIXELS // image_size ** 2)


def _in_calls(fn, inputs, step):
    """The outputs (a list of arrays) of ``fn`` over ``inputs``, ``step``
    rows at a time, concatenated."""
    if len(inputs) <= step:
        return fn(inputs)
    parts = [fn(inputs[i:i + step]) for i in range(0, len(inputs), step)]
    return [np.concatenate(outs) for outs in zip(*parts)]


def _whole(value):
    """An int that is not a bool (True would pass as 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


class Encoder:
    """A CNN, the feature kind taken from it and its preprocessing.

    Parameters
    ----------
    cnn : {'efficientnet_lite0', 'efficientnet_lite2', 'googlenet'}
    feature_kind : {'logits', 'pooled', 'spatial'}
        See the module notes; GoogLeNet: 'logits' only.
    weights : str or Path, optional
        Weights file; default: the packaged EfficientNet-Lite ``.pth``, or
        ``data/blvc_googlenet.pkl`` (working directory, then the repository)
        for GoogLeNet.
    image_size : int, optional
        The side of the square an EfficientNet sees, in pixels (32-1024):
        the photo's short side is resized to it. Default: the size its
        weights were trained at (224 for Lite0, 260 for Lite2). A larger
        size gives a finer region grid (448: 14 x 14). GoogLeNet: 224 only.
    grid : int, optional
        Spatial codes only: regions on a side, the map averaged over blocks
        of cells (the grid must divide the map's side: 448 px and grid 7
        give 7 x 7 regions, each the mean of 2 x 2 cells). Default: the
        map's own cells.

    Attributes
    ----------
    code_shape : tuple
        One photo's code: (1000,), (1280,) or (49, 1280) (Lite2: (81, 1280);
        a grid of map_side(image_size) or ``grid`` regions on a side).
    code_size : int
        The length of one feature vector (one region's for 'spatial'):
        ``code_shape[-1]``.
    code_dtype : numpy dtype
        float16 for 'spatial', else float32.

    Raises
    ------
    EncoderError
        Unknown CNN or feature kind, or a kind the CNN does not give; an
        image size for GoogLeNet or outside 32-1024; a grid for codes that
        are not spatial, or one that does not divide the map's side.
    """

    def __init__(self, cnn=DEFAULT_CNN, feature_kind="logits", weights=None,
                 image_size=None, grid=None):
        if cnn not in CNNS:
            raise EncoderError("unknown CNN %r; choose from %s"
                               % (cnn, ", ".join(CNNS)))
        if feature_kind not in FEATURE_KINDS:
            raise EncoderError("unknown feature kind %r; choose from %s"
                               % (feature_kind, ", ".join(FEATURE_KINDS)))
        if (cnn, feature_kind) not in LAYERS:
            raise EncoderError("%s gives no %s codes; its kinds: %s" % (
                cnn, feature_kind, ", ".join(k for c, k in LAYERS if c == cnn)))
        if image_size is not None and image_size != INPUT_SIZES[cnn]:
            if cnn not in EFFICIENTNETS:
                raise EncoderError("%s sees %d-px photos only; an image size "
                                   "is for the EfficientNets" % (cnn, INPUT_SIZES[cnn]))
            if not _whole(image_size) or image_size not in IMAGE_SIZES:
                raise EncoderError("image size %r: give a whole number of "
                                   "pixels from %d to %d" % (
                                       image_size, IMAGE_SIZES[0], IMAGE_SIZES[-1]))
        self.cnn, self.feature_kind = cnn, feature_kind
        self.weights = None if weights is None else os.fspath(weights)
        self.image_size = image_size or INPUT_SIZES[cnn]
        self.preprocessing = PREPROCESSING[cnn] % self.image_size
        self.grid = None
        if feature_kind == "spatial":
            side = map_side(self.image_size)
            self.grid = side if grid is None else grid
            if not _whole(self.grid) or self.grid < 1 or side % self.grid:
                raise EncoderError(
                    "a grid of %r regions on a side: at %d px the map is "
                    "%d x %d, and the grid must divide %d (%s)" % (
                        grid, self.image_size, side, side, side, ", ".join(
                            str(g) for g in range(1, side + 1) if side % g == 0)))
        elif grid is not None:
            raise EncoderError("a region grid is for spatial codes, not %s"
                               % feature_kind)
        self.code_shape = ((self.grid * self.grid, 1280) if self.grid
                           else CODE_SHAPES[feature_kind])
        self.code_size = self.code_shape[-1]
        self.code_dtype = np.dtype(CODE_DTYPES[feature_kind])

    def __repr__(self):
        return "Encoder(%r, %r%s%s%s)" % (
            self.cnn, self.feature_kind,
            "" if self.weights is None else ", weights=%r" % self.weights,
            "" if self.own_size else ", image_size=%d" % self.image_size,
            "" if self.own_grid else ", grid=%d" % self.grid)

    @property
    def own_grid(self):
        """True unless spatial codes average the map to a coarser grid."""
        return self.grid is None or self.grid == map_side(self.image_size)

    @property
    def own_size(self):
        """True when the CNN sees photos at the size its weights know."""
        return self.image_size == INPUT_SIZES[self.cnn]

    # ------------------------------------------------------------ records
    def record(self):
        """What a model trained on these codes must be fed: a JSON-able dict
        (``code_shape`` only for codes of more than one axis,
        ``image_size`` and ``grid`` only when not the CNN's own, so the
        records of earlier models are those of before)."""
        record = {"cnn": self.cnn, "feature_kind": self.feature_kind,
                  "preprocessing": self.preprocessing,
                  "code_size": self.code_size}
        if len(self.code_shape) > 1:
            record["code_shape"] = list(self.code_shape)
        if not self.own_size:
            record["image_size"] = self.image_size
        if not self.own_grid:
            record["grid"] = self.grid
        return record

    @classmethod
    def from_record(cls, record):
        """The encoder that :meth:`record` described (default weights).

        Raises
        ------
        EncoderError
            If this version cannot make such codes.
        """
        if not isinstance(record, dict) or "cnn" not in record:
            raise EncoderError("not an encoder record: %r" % (record,))
        encoder = cls(record["cnn"], record.get("feature_kind", "logits"),
                      image_size=record.get("image_size"),
                      grid=record.get("grid"))
        if encoder.record() != record:
            raise EncoderError("codes %s cannot be made here: this version "
                               "makes %s" % (_describe(record),
                                             _describe(encoder.record())))
        return encoder

    @classmethod
    def for_dataset(cls, dataset):
        """The encoder that made a dataset's codes (``dataset.json``'s
        record; the seminar's COCO bundle: GoogLeNet)."""
        return cls.for_meta(getattr(dataset, "meta", None) or {},
                            dataset.source)

    @classmethod
    def for_meta(cls, meta, source):
        """:meth:`for_dataset` from a data directory's ``dataset.json``
        (``meta``) and its source name."""
        if "encoder" in meta:
            return cls.from_record(meta["encoder"])
        if meta.get("cnn") in CNNS:
            return cls(meta["cnn"])
        return cls("googlenet" if source == "seminar" else DEFAULT_CNN)

    # ------------------------------------------------------------ the CNN
    def for_kind(self, feature_kind):
        """The same CNN and weights, another feature kind."""
        return type(self)(self.cnn, feature_kind, self.weights, self.image_size,
                          self.grid if feature_kind == "spatial" else None)

    @property
    def pass_kinds(self):
        """The kinds one CNN pass for this kind gives, this one first."""
        after = PASS_ORDER[PASS_ORDER.index(self.feature_kind):]
        return tuple(k for k in after if (self.cnn, k) in LAYERS)

    @property
    def cache_name(self):
        """Name of these codes' folder in the cache directory: one per CNN,
        feature kind, (non-default) image size and grid and (non-default)
        weights file (the one-file cache of earlier versions was this name +
        ``.npz``)."""
        name = "codes-%s" % self.cnn
        if self.feature_kind != "logits":
            name += "-" + self.feature_kind
        if not self.own_size:
            name += "-%dpx" % self.image_size
        if not self.own_grid:
            name += "-grid%d" % self.grid
        if self.weights is not None:
            digest = hashlib.sha1(os.path.realpath(self.weights).encode())
            name += "-weights-" + digest.hexdigest()[:12]
        return name

    def preprocess(self, rgb):
        """uint8 RGB (H, W, 3) -> the CNN's input batch of one."""
        return _cnn_module(self.cnn, self.image_size, self.grid).preprocess(rgb)

    def load(self, path):
        """One image file -> the CNN's input batch of one (ImageError or
        ValueError if it cannot be read)."""
        return self.preprocess(load_rgb(path))

    def seen(self, path):
        """The photo as the CNN sees it, uint8 (size, size, 3): the region grid
        of the spatial features lies over this square (for attention maps)."""
        module = _cnn_module(self.cnn, self.image_size, self.grid)
        if not hasattr(module, "centre_crop"):
            raise EncoderError("%s gives no spatial map" % self.cnn)
        return module.centre_crop(load_rgb(path))

    def weights_path(self):
        """The weights file, checked; EncoderError says where to get it."""
        if self.cnn in EFFICIENTNETS:
            try:
                path = (_cnn_module(self.cnn).default_weights_path()
                        if self.weights is None else self.weights)
            except FileNotFoundError as error:
                raise EncoderError(str(error)) from None
            if not os.path.isfile(path):
                raise EncoderError("%s weights not found: %s"
                                   % (self.cnn, path))
            return os.path.realpath(path)
        candidates = ([Path(self.weights)] if self.weights is not None else
                      [Path(GOOGLENET_WEIGHTS), REPO_ROOT / GOOGLENET_WEIGHTS])
        for path in candidates:
            if path.is_file():
                return os.path.realpath(path)
        raise EncoderError(
            "GoogLeNet weights not found (looked for %s). They are "
            "blvc_googlenet.pkl in the seminar's data.tar.gz: run `caption "
            "data seminar` to download and unpack it into data/, or pass "
            "--weights PATH." % " and ".join(str(p) for p in candidates))

    def _compiled(self):
        """(function of all :attr:`pass_kinds`, function of this kind only):
        built, loaded and compiled on first use, once per process and
        weights."""
        module = _cnn_module(self.cnn, self.image_size, self.grid)
        key = (self.cnn, self.feature_kind, self.image_size, self.grid,
               self.weights_path())
        if key not in _COMPILED:
            import lasagne
            import theano
            model = module.build_model()
            module.load_weights(model, key[-1])
            layers = [model[LAYERS[self.cnn, kind]] for kind in self.pass_kinds]
            outs = lasagne.layers.get_output(layers, deterministic=True)
            every = theano.function([model["input"].input_var], outs,
                                    allow_input_downcast=True, mode=cnn_mode())
            size = self.image_size

            def every_kind(inputs):
                return _in_calls(every, inputs, images_per_call(size))
            _COMPILED[key] = (every_kind, lambda inputs: every_kind(inputs)[0])
        return _COMPILED[key]

    @property
    def images_per_call(self):
        """Photos the CNN gets at once (:func:`images_per_call`)."""
        return images_per_call(self.image_size)

    def batch_codes(self, inputs):
        """``inputs (N, 3, 224, 224) float32 -> {kind: (N,) + code shape}``
        for every kind of :attr:`pass_kinds` (float32, as the CNN gives
        them; :func:`encode` stores each in its kind's dtype)."""
        return dict(zip(self.pass_kinds, self._compiled()[0](inputs)))

    @property
    def batch_function(self):
        """``f(inputs (N, 3, 224, 224) float32) -> (N,) + code_shape``
        float32: this kind only (what benchmarks and tests call)."""
        return self._compiled()[1]


def _describe(record):
    shape = record.get("code_shape") or [record.get("code_size")]
    return "%s %s (preprocessing %s, %s values)" % (
        record.get("cnn"), record.get("feature_kind"),
        record.get("preprocessing"), " x ".join(map(str, shape)))


# ------------------------------------------------------------------ encode

def _load_batch(encoder, paths):
    """Read and preprocess ``paths``: (inputs, ok positions, {position: reason})."""
    inputs, ok, failures = [], [], {}
    for i, path in enumerate(paths):
        try:
            inputs.append(encoder.load(path))
            ok.append(i)
        except ImageError as error:
            failures[i] = error.reason
        except (ValueError, OSError) as error:  # e.g. preprocess refusing it
            failures[i] = str(error)
    return inputs, ok, failures


def _encoded_batches(encoder, paths, batch_size):
    """Yield ``(start, ok positions, {kind: codes}, failures)`` per batch of
    paths (no kinds when no image of the batch could be read).

    The next batch's files are read in a thread while the CNN runs (Pillow
    decodes without holding the GIL), so I/O and compute overlap.
    """
    starts = list(range(0, len(paths), batch_size))
    if not starts:
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(_load_batch, encoder, paths[:batch_size])
        for k, start in enumerate(starts):
            inputs, ok, failures = pending.result()
            if k + 1 < len(starts):
                pending = pool.submit(_load_batch, encoder,
                                      paths[starts[k + 1]:starts[k + 1] + batch_size])
            codes = {}
            if inputs:
                codes = encoder.batch_codes(np.concatenate(inputs))
                shape = np.shape(codes.get(encoder.feature_kind))
                if shape != (len(ok),) + tuple(encoder.code_shape):
                    raise EncoderError("%r gave codes of shape %s for %d images"
                                       % (encoder, shape, len(ok)))
            yield start, ok, codes, failures


def _progress_bar(progress, total, desc):
    if not progress or not total:
        return None
    from tqdm import tqdm
    return tqdm(total=total, unit="img", desc=desc, dynamic_ncols=True)


def encode(image_paths, encoder=None, cache=True, progress=True, batch_size=32):
    """Codes of image files, encoding only those not in the cache.

    Parameters
    ----------
    image_paths : sequence of str or Path
    encoder : Encoder, optional
        Default: ``Encoder()`` (EfficientNet-Lite0 logits).
    cache : bool
        Read and extend the code cache (a shard every :data:`CHUNK` photos,
        so an interrupted call resumes), and the caches of the other kinds
        the same CNN pass gives (see the module notes). False encodes
        everything and writes nothing (for photos seen once, such as
        ``caption describe``'s).
    progress : bool
        Show a progress bar (on stderr) while encoding.
    batch_size : int
        Images read per batch (the next batch is read while the CNN runs);
        the CNN takes them :attr:`Encoder.images_per_call` at a time.

    Returns
    -------
    codes : ndarray (n_kept,) + encoder.code_shape, encoder.code_dtype
        float32, or float16 for spatial codes (7,000 photos: 878 MB).
    kept : list of int
        Indices into ``image_paths`` of the rows of ``codes``, in order.
    failures : list of (str, str)
        ``(path, reason)`` of every image that is missing or could not be
        read, in input order (never cached, so a fixed file is retried).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1, got %d" % batch_size)
    encoder = Encoder() if encoder is None else encoder
    paths = [os.fspath(p) for p in image_paths]
    failures, keys = {}, {}
    folder = codes_cache.cache_dir() if cache else None
    if cache:
        for i, path in enumerate(paths):
            try:
                keys[i] = codes_cache.file_key(path)
            except FileNotFoundError:
                failures[i] = "no such file"
            except OSError as error:
                failures[i] = error.strerror or str(error)
    else:
        keys = {i: i for i in range(len(paths))}
    store = _open_cache(folder, encoder)
    others = {}  # the other kinds' caches, opened when a pass gives them
    todo = [i for i, key in keys.items() if key not in store]

    if progress and todo and cache:
        print("encoding %d of %d photos with %s %s (cached in %s)"
              % (len(todo), len(paths), encoder.cnn, encoder.feature_kind,
                 store.path), file=sys.stderr)
    bar = _progress_bar(progress, len(todo), encoder.cnn)
    try:
        for begin in range(0, len(todo), CHUNK):
            chunk = todo[begin:begin + CHUNK]
            done = {}  # kind -> (keys, [codes per batch])
            batches = _encoded_batches(encoder, [paths[i] for i in chunk],
                                       batch_size)
            for start, ok, codes, failed in batches:
                for kind, values in codes.items():
                    got = done.setdefault(kind, ([], []))
                    got[0].extend(keys[chunk[start + j]] for j in ok)
                    got[1].append(values)
                for j, reason in failed.items():
                    failures[chunk[start + j]] = reason
                if bar is not None:
                    bar.update(len(ok) + len(failed))
            for kind, (done_keys, parts) in done.items():
                if kind == encoder.feature_kind:
                    store.add(done_keys, np.concatenate(parts))
                elif cache:
                    if kind not in others:
                        others[kind] = _open_cache(folder, encoder.for_kind(kind))
                    new = [n for n, key in enumerate(done_keys)
                           if key not in others[kind]]
                    others[kind].add([done_keys[n] for n in new],
                                     np.concatenate(parts)[new])
    finally:
        if bar is not None:
            bar.close()

    kept = [i for i in range(len(paths)) if i in keys and keys[i] in store]
    codes = np.empty((len(kept),) + tuple(encoder.code_shape),
                     encoder.code_dtype)
    for row, i in enumerate(kept):
        codes[row] = store[keys[i]]
    return codes, kept, [(paths[i], failures[i]) for i in sorted(failures)]


def _open_cache(folder, encoder):
    """The encoder's code cache in ``folder`` (None: in memory only)."""
    return codes_cache.CodeCache(
        None if folder is None else folder / encoder.cache_name,
        encoder.code_shape, encoder.code_dtype)


# ------------------------------------------------------------------ models

def encoder_for_model(record, code_size, cnn=None, given=None):
    """The encoder whose codes a model was trained on.

    Parameters
    ----------
    record : dict or None
        The model's encoder record (``model.json``); None for a model made
        before models recorded it: EfficientNet-Lite0 logits, the only codes
        ``caption train`` made then.
    code_size : int
        The size of code the model takes (``cnn_feature_size``).
    cnn : str, optional
        A CNN the user asked for (``--cnn``); it must be the model's.
    given : Encoder, optional
        Use this encoder (its record must be the model's).

    Returns
    -------
    encoder, note
        ``note`` is a sentence to show the user when the record was
        assumed, else None.

    Raises
    ------
    EncoderError
        When the codes would not be those the model was trained on.
    """
    note = None
    if record is None:
        record = Encoder().record()
        note = ("the model records no encoder (made before models did); "
                "assuming %s %s, the only codes `caption train` made "
                "then" % (record["cnn"], record["feature_kind"]))
    if cnn is not None and cnn != record.get("cnn"):
        raise EncoderError("the model was trained on %s codes; --cnn %s would "
                           "feed it other codes (leave --cnn out, or use a "
                           "model trained on %s codes)"
                           % (record.get("cnn"), cnn, cnn))
    if given is None:
        try:
            given = Encoder.from_record(record)
        except EncoderError as error:
            raise EncoderError("the model was trained on %s, which this "
                               "version cannot make (%s)"
                               % (_describe(record), error)) from None
    encoder = given
    if encoder.record() != record:
        raise EncoderError("the model was trained on %s, not %s"
                           % (_describe(record), _describe(encoder.record())))
    if encoder.code_size != code_size:
        raise EncoderError("the model takes codes of %d values but its "
                           "encoder record says %s"
                           % (code_size, _describe(record)))
    return encoder, note
