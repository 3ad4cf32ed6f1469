"""The seminar's data formats: load, validate, save, split.

A data directory (``data/`` by default) holds, for N images:

``image_codes.npy``
    N x 1000 float32, one CNN code per image (the seminar's format).
``caption_tokens.pcl`` *or* ``caption_tokens.json``
    A list of N lists of captions; each caption is one string of tokens
    separated by single spaces (no ``#START#``/``#END#``), normalised by
    :func:`captioning.text.normalise_caption` when loaded. The original
    bundle ships the Python 2 pickle, which is read through a restricted
    unpickler (:mod:`captioning.io.safe_pickle`); new data is written as JSON.
``image_names.txt``
    N lines, the image file name (or id) of each row.
``split.json``
    ``{"seed": ..., "split": [N x "train"|"val"|"test"], ...}``: the split
    by image (never by caption).
``dataset.json``
    Where the data came from (``source``: ``seminar``, ``flickr8k`` or
    ``synthetic``; older directories say ``coco-seminar`` for the seminar's
    bundle, read as ``seminar``), the CNN, counts, the caption normaliser
    (``normaliser``: Flickr8k data saved under another one is refused, since
    its captions lost what today's tokens keep). Written last, so an
    interrupted write never leaves a directory that looks complete.

The original bundle (``image_codes.npy`` + ``caption_tokens.pcl`` only) also
loads: names become ``coco_000000``... and the split is the seeded one of
:func:`seminar_split` (``caption data seminar`` records both in files).

Use :func:`load_dataset` for a given directory and
:func:`captioning.datasets.find.find_data` to pick the best available source.
"""
import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from captioning.errors import CaptionError
from captioning.io.files import atomic_write
from captioning.io.safe_pickle import (NUMPY_ARRAYS, UnsafePickleError, fix_py2_text,
                          safe_load)
from captioning.text import NORMALISER, normalise_caption

__all__ = [
    "DataError", "Dataset", "load_dataset", "save_dataset", "validate",
    "make_split", "seminar_split", "refuse_unreadable", "resolve_data_dir",
    "has_dataset", "read_meta", "stale_captions", "SOURCES", "COMMANDS",
    "save_split", "check_target", "source_name",
]

CODES_FILE = "image_codes.npy"
CAPTIONS_PCL = "caption_tokens.pcl"
CAPTIONS_JSON = "caption_tokens.json"
NAMES_FILE = "image_names.txt"
SPLIT_FILE = "split.json"
META_FILE = "dataset.json"

CODE_SIZE = 1000
SPLITS = ("train", "val", "test")
# The names of the data sources, the same as `caption data SOURCE`.
SOURCES = ("seminar", "flickr8k", "synthetic")
# Names written by earlier versions in dataset.json -> today's names.
OLD_SOURCE_NAMES = {"coco-seminar": "seminar"}
# the command that makes each source's files
COMMANDS = {"seminar": "caption data seminar",
            "flickr8k": "caption data flickr8k",
            "synthetic": "caption data synthetic"}
MAKE_HINT = ("run `caption data seminar` (the seminar's COCO bundle, 500 MB "
             "download), `caption data flickr8k` (needs the Flickr8k images) "
             "or `caption data synthetic` (offline, generated)")

# The seminar's COCO bundle has no split: hold out this many val images.
SEMINAR_VAL_IMAGES = 5000
SEMINAR_SPLIT_SEED = 0

# Where a Flickr8k directory keeps its photos (the names it ships under).
FLICKR8K_IMAGE_DIRS = ("images", "Flicker8k_Dataset", "Flickr8k_Dataset")

REPO_ROOT = Path(__file__).resolve().parents[2]


class DataError(CaptionError, ValueError):
    """Data missing or inconsistent; the message says what to do next."""


@dataclass
class Dataset:
    """Image codes and captions in the seminar's formats.

    Attributes
    ----------
    codes : np.ndarray
        N x 1000 float32 image codes.
    captions : list of list of str
        For each image, its captions: space-separated lowercase words.
    names : list of str
        Image file name or id of each row.
    split : np.ndarray
        N strings, ``'train'``, ``'val'`` or ``'test'``.
    source : str
        ``'seminar'``, ``'flickr8k'`` or ``'synthetic'``.
    meta : dict
        Everything else recorded in ``dataset.json``.
    """
    codes: np.ndarray
    captions: list
    names: list
    split: np.ndarray
    source: str
    meta: dict = field(default_factory=dict)

    def __len__(self):
        return len(self.names)

    def subset(self, which):
        """Return the rows of split ``which`` (``'train'``, ``'val'``, ...)."""
        idx = np.flatnonzero(self.split == which)
        return Dataset(self.codes[idx], [self.captions[i] for i in idx],
                       [self.names[i] for i in idx], self.split[idx],
                       self.source, dict(self.meta))


# ------------------------------------------------------------------ splits

def make_split(n, seed=0, n_val=0, n_test=0):
    """Assign N images to train/val/test, deterministically from ``seed``.

    Parameters
    ----------
    n : int
        Number of images (the split is by image, never by caption).
    seed : int
    n_val, n_test : int or float
        Count of val/test images, or a fraction of ``n`` when below 1.

    Returns
    -------
    np.ndarray
        ``n`` strings ``'train'``, ``'val'`` or ``'test'``.
    """
    def count(k):
        k = int(round(k * n)) if 0 < k < 1 else int(k)
        return k

    n_val, n_test = count(n_val), count(n_test)
    if n_val + n_test > n:
        raise DataError("cannot hold out %d val + %d test images from %d"
                        % (n_val, n_test, n))
    order = np.random.RandomState(seed).permutation(n)
    split = np.full(n, "train", dtype="<U5")
    split[order[:n_val]] = "val"
    split[order[n_val:n_val + n_test]] = "test"
    return split


def seminar_split(n):
    """The seeded split of the COCO bundle: 5000 val images, rest train."""
    return make_split(n, seed=SEMINAR_SPLIT_SEED,
                      n_val=min(SEMINAR_VAL_IMAGES, n // 5))


# ------------------------------------------------------------------ checks

def _examples(items, k=3):
    items = list(items)
    shown = ", ".join(str(x) for x in items[:k])
    return shown + (", ..." if len(items) > k else "")


def validate(codes, captions, names, split):
    """Check that the four parts describe the same images, consistently.

    Raises
    ------
    DataError
        Listing every problem found with counts and a few examples:
        count mismatches, non-finite codes, images without captions,
        empty or non-string captions, duplicate names, unknown split labels.
    """
    problems = []
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] != CODE_SIZE:
        problems.append("image codes have shape %s, expected (N, %d)"
                        % (codes.shape, CODE_SIZE))
    counts = {"image codes": len(codes), "caption lists": len(captions),
              "names": len(names), "split labels": len(split)}
    if len(set(counts.values())) > 1:
        problems.append("counts differ: " + ", ".join(
            "%d %s" % (v, k) for k, v in counts.items()))
    if codes.ndim == 2 and codes.size:
        bad = np.flatnonzero(~np.isfinite(codes).all(axis=1))
        if len(bad):
            problems.append("%d images have NaN/inf codes (rows %s)"
                            % (len(bad), _examples(bad)))
    no_caps, empty, not_str = [], [], []
    for i, caps in enumerate(captions):
        if not isinstance(caps, (list, tuple)) or not caps:
            no_caps.append(i)
            continue
        for j, c in enumerate(caps):
            if not isinstance(c, str):
                not_str.append("%d/%d (%s)" % (i, j, type(c).__name__))
            elif not c.strip():
                empty.append("%d/%d" % (i, j))
    if no_caps:
        problems.append("%d images have no captions (rows %s)"
                        % (len(no_caps), _examples(no_caps)))
    if empty:
        problems.append("%d captions are empty (image/caption %s)"
                        % (len(empty), _examples(empty)))
    if not_str:
        problems.append("%d captions are not text (image/caption %s)"
                        % (len(not_str), _examples(not_str)))
    seen, dups = set(), []
    for name in names:
        (dups.append(name) if name in seen else seen.add(name))
    if dups:
        problems.append("%d duplicate image names (%s)"
                        % (len(dups), _examples(dups)))
    labels = set(np.asarray(split).tolist()) - set(SPLITS)
    if labels:
        problems.append("unknown split labels %s (allowed: %s)"
                        % (sorted(labels), ", ".join(SPLITS)))
    if problems:
        raise DataError("invalid data: " + "; ".join(problems))


# ------------------------------------------------------------------ paths

def resolve_data_dir(data_dir="data"):
    """A relative ``data_dir`` is looked up in the working directory, then
    in the repository root (so notebooks in ``notebooks/`` find ``data/``)."""
    path = Path(data_dir)
    if path.is_absolute() or path.exists():
        return path
    candidate = REPO_ROOT / path
    return candidate if candidate.exists() else path


def source_name(name):
    """Today's name of a source (``'coco-seminar'``, written by earlier
    versions, is ``'seminar'``); other names are returned unchanged."""
    return OLD_SOURCE_NAMES.get(name, name)


def has_dataset(data_dir):
    """Return the source of the dataset in ``data_dir``, or None."""
    d = Path(data_dir)
    if not (d / CODES_FILE).exists():
        return None
    if (d / META_FILE).exists():
        try:
            return source_name(
                json.loads((d / META_FILE).read_text("utf-8"))["source"])
        except (ValueError, KeyError):
            return None
    if (d / CAPTIONS_PCL).exists():
        return "seminar"
    return None


# ------------------------------------------------------------------ load

def _missing(path, what):
    return DataError("%s not found (%s). To make it, %s." % (path, what,
                                                            MAKE_HINT))


def _load_captions_json(path):
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError("%s is not UTF-8 (byte %d); rerun the command that "
                        "made it" % (path, error.start)) from None
    return json.loads(text)


def _load_captions_pcl(path):
    try:
        obj = safe_load(path, NUMPY_ARRAYS)
    except UnsafePickleError as error:
        raise DataError("%s: %s" % (path, error)) from None
    if isinstance(obj, np.ndarray):         # tolerate array containers
        obj = obj.tolist()
    if isinstance(obj, (list, tuple)):
        obj = [c.tolist() if isinstance(c, np.ndarray) else c for c in obj]
    bad_bytes = []
    out = []
    for i, caps in enumerate(obj if isinstance(obj, (list, tuple)) else []):
        row = []
        for j, c in enumerate(caps if isinstance(caps, (list, tuple)) else []):
            if isinstance(c, bytes):
                try:
                    c = c.decode("utf-8")
                except UnicodeDecodeError:
                    bad_bytes.append("%d/%d" % (i, j))
            elif isinstance(c, str):
                c = fix_py2_text(c)
            row.append(c)
        out.append(row if isinstance(caps, (list, tuple)) else caps)
    if not isinstance(obj, (list, tuple)):
        raise DataError("%s holds a %s, expected a list of caption lists"
                        % (path, type(obj).__name__))
    if bad_bytes:
        raise DataError("%s: %d captions are not UTF-8 (image/caption %s)"
                        % (path, len(bad_bytes), _examples(bad_bytes)))
    return out


def _normalise(captions):
    """Normalise every caption; non-strings are left for :func:`validate`."""
    return [[normalise_caption(c) if isinstance(c, str) else c for c in caps]
            if isinstance(caps, (list, tuple)) else caps for caps in captions]


def load_dataset(data_dir="data"):
    """Load a data directory in the seminar's formats (see module docs).

    Parameters
    ----------
    data_dir : str or Path
        Relative paths are tried in the working directory, then the repo.

    Returns
    -------
    Dataset

    Raises
    ------
    DataError
        If files are missing (naming the command that makes them),
        incomplete or inconsistent (with counts and examples).
    """
    d = resolve_data_dir(data_dir)
    codes_path = d / CODES_FILE
    if not codes_path.exists():
        raise _missing(codes_path, "the image codes")
    meta = read_meta(d)
    if not meta and (d / CAPTIONS_JSON).exists():
        raise DataError("%s has %s but no %s: an interrupted write; rerun "
                        "the `caption data ...` command that made it"
                        % (d, CAPTIONS_JSON, META_FILE))
    source = source_name(meta.get("source", "seminar"))
    if source not in SOURCES:
        raise DataError("%s: unknown source %r" % (d / META_FILE, source))
    if stale_captions(source, meta):
        raise DataError(
            "%s holds Flickr8k captions tokenised by an older version (they "
            "lost the 's and hyphens that `caption train` and the metrics "
            "keep); rebuild them with `caption data flickr8k --flickr8k %s "
            "--out %s` (the photo codes come from the cache)"
            % (d, meta.get("flickr8k_dir", "DIR"), d))

    captions_path = d / meta.get("captions_file", CAPTIONS_PCL)
    if not captions_path.exists():
        raise _missing(captions_path, "the captions")
    if captions_path.suffix == ".json":
        captions = _load_captions_json(captions_path)
    else:
        captions = _load_captions_pcl(captions_path)
    captions = _normalise(captions)

    codes = np.load(codes_path, allow_pickle=False)
    if codes.dtype != np.float32:
        codes = codes.astype(np.float32)
    n = len(codes)

    if (d / NAMES_FILE).exists():
        names = (d / NAMES_FILE).read_text("utf-8").splitlines()
    elif source == "seminar":
        names = ["coco_%06d" % i for i in range(n)]
    else:
        raise _missing(d / NAMES_FILE, "the image names")

    if (d / SPLIT_FILE).exists():
        split = np.array(json.loads((d / SPLIT_FILE).read_text("utf-8"))
                         ["split"], dtype="<U5")
    elif source == "seminar":
        split = seminar_split(n)
    else:
        raise _missing(d / SPLIT_FILE, "the train/val split")

    validate(codes, captions, names, split)
    meta["source"] = source
    meta["image_dir"] = _image_folder(d, meta)
    return Dataset(codes, captions, names, split, source, meta)


def read_meta(d):
    """``dataset.json`` of data directory ``d``, or {} when it has none."""
    path = Path(d) / META_FILE
    return json.loads(path.read_text("utf-8")) if path.exists() else {}


def stale_captions(source, meta):
    """True for Flickr8k data saved under another caption normaliser.

    Only Flickr8k's saved captions can be stale: the seminar's pickle is
    normalised again on every load, and the generated captions are plain
    words, the same under every normaliser so far.
    """
    return source == "flickr8k" and meta.get("normaliser") != NORMALISER


def _image_folder(data_dir, meta):
    """Where the photos behind the codes are, as a str, or None (the COCO
    bundle ships codes only; Flickr8k photos stay in their own folder)."""
    if meta.get("images_dir"):
        folder = Path(data_dir) / meta["images_dir"]
    elif meta.get("flickr8k_dir"):
        folder = image_folder(meta["flickr8k_dir"])
    else:
        folder = None
    return str(folder) if folder is not None and folder.is_dir() else None


def image_folder(folder):
    """The folder of a Flickr8k directory that holds the photos, or None."""
    for name in FLICKR8K_IMAGE_DIRS:
        if (Path(folder) / name).is_dir():
            return Path(folder) / name
    return None


# ------------------------------------------------------------------ save

def check_target(out_dir, source, force=False):
    """Refuse to overwrite another source's data unless ``force``.

    Returns
    -------
    str or None
        The source currently in ``out_dir``.
    """
    existing = has_dataset(out_dir)
    if existing and existing != source and not force:
        raise DataError(
            "%s already holds %s data; writing %s would replace it. Use "
            "another --out directory, or --force to replace it"
            % (out_dir, existing, source))
    return existing


def save_dataset(dataset, out_dir, split_info=None, overwrite_source=False):
    """Write ``dataset`` to ``out_dir`` in the safe formats, atomically.

    Captions go to ``caption_tokens.json``, codes to ``image_codes.npy``
    (``allow_pickle=False``), names to ``image_names.txt``, the split to
    ``split.json`` and ``dataset.json`` last.

    Parameters
    ----------
    dataset : Dataset
    out_dir : str or Path
    split_info : dict, optional
        Extra fields for ``split.json`` (e.g. the seed).
    overwrite_source : bool
        Allow replacing a dataset of another source in ``out_dir``.

    Raises
    ------
    DataError
        If the data is invalid, or ``out_dir`` holds another source's data
        and ``overwrite_source`` is false (nothing is written then).
    """
    out = Path(out_dir)
    validate(dataset.codes, dataset.captions, dataset.names, dataset.split)
    existing = check_target(out, dataset.source, overwrite_source)
    out.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        (out / META_FILE).unlink()   # directory incomplete until rewritten
    with atomic_write(out / CODES_FILE) as f:
        np.save(f, np.asarray(dataset.codes, dtype=np.float32),
                allow_pickle=False)
    with atomic_write(out / CAPTIONS_JSON, "w") as f:
        json.dump([list(c) for c in _normalise(dataset.captions)], f,
                  ensure_ascii=False)
    with atomic_write(out / NAMES_FILE, "w") as f:
        f.write("".join(name + "\n" for name in dataset.names))
    save_split(out, dataset.split, split_info)
    meta = dict(dataset.meta)
    meta.update(source=dataset.source, captions_file=CAPTIONS_JSON,
                normaliser=NORMALISER, n_images=len(dataset.names),
                n_captions=sum(len(c) for c in dataset.captions))
    with atomic_write(out / META_FILE, "w") as f:
        json.dump(meta, f, indent=1, ensure_ascii=False)
    if existing == "seminar" and (out / CAPTIONS_PCL).exists():
        # the bundle's codes were replaced; its pickle no longer matches
        os.replace(out / CAPTIONS_PCL, out / (CAPTIONS_PCL + ".replaced"))
    return out


def save_split(out_dir, split, info=None):
    """Write ``split.json``: the labels plus counts and ``info``."""
    split = np.asarray(split)
    record = dict(info or {})
    record["counts"] = {s: int((split == s).sum()) for s in SPLITS}
    record["split"] = split.tolist()
    with atomic_write(Path(out_dir) / SPLIT_FILE, "w") as f:
        json.dump(record, f)


# ------------------------------------------------------------------ encode

def refuse_unreadable(failures, n_images):
    """DataError naming the images that could not be encoded, if any."""
    if failures:
        raise DataError(
            "%d of %d images could not be encoded (%s); fix or remove them, "
            "or pass --skip-unreadable to leave them out"
            % (len(failures), n_images,
               _examples("%s: %s" % f for f in failures)))


