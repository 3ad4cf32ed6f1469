"""A folder of photos -> one codes file (what ``caption extract`` writes).

:func:`run_extract` writes ``CODES.npy`` (N x code shape, the encoder's
dtype, row i = image i) and ``CODES.names.txt`` (image i's name on line i). Images are taken
in the order of the list file (names relative to the folder, one per line),
else all image files of the folder sorted by name. The codes go through the
code cache, so a rerun encodes only what is missing; the files are written
atomically. Unreadable images keep their row, as NaN, and are returned as
failures. Bad input raises :class:`captioning.cnn.encode.EncoderError`.
"""
import os
from pathlib import Path

import numpy as np

from captioning.cnn.encode import EncoderError, encode
from captioning.io.files import atomic_write, is_image_name, read_list

__all__ = ["list_images", "names_path", "run_extract"]


def list_images(images_dir, list_file=None):
    """Image names (relative to ``images_dir``) in extraction order.

    ``list_file``: read by :func:`captioning.io.files.read_list` (one name a
    line, UTF-8, blank lines ignored, order kept). Otherwise every file in
    ``images_dir`` with an image extension, sorted.
    """
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise EncoderError("--images %s is not a directory" % images_dir)
    if list_file is not None:
        try:
            names = read_list(list_file)
        except (OSError, ValueError) as error:
            raise EncoderError("cannot read --list %s: %s" % (
                list_file, getattr(error, "strerror", None) or error)) from None
    else:
        names = sorted(entry.name for entry in os.scandir(images_dir)
                       if entry.is_file() and is_image_name(entry.name))
    if not names:
        raise EncoderError("no images to encode in %s" % (list_file or images_dir))
    return names


def names_path(out):
    """``CODES.npy`` -> ``CODES.names.txt`` beside it."""
    out = Path(out)
    stem = out.name[:-4] if out.name.endswith(".npy") else out.name
    return out.with_name(stem + ".names.txt")


def run_extract(images_dir, out, encoder, list_file=None, batch_size=32,
                progress=True):
    """The ``caption extract`` work: write the files, return
    ``(number of images, failures [(path, reason)])``."""
    if batch_size < 1:
        raise EncoderError("--batch-size must be >= 1")
    names = list_images(images_dir, list_file)
    paths = [str(Path(images_dir) / name) for name in names]
    codes, kept, failures = encode(paths, encoder, cache=True,
                                   progress=progress, batch_size=batch_size)
    rows = np.full((len(names),) + tuple(encoder.code_shape), np.nan,
                   dtype=encoder.code_dtype)
    rows[kept] = codes
    with atomic_write(names_path(out), "w") as f:
        f.write("".join(name + "\n" for name in names))
    with atomic_write(out) as f:
        np.save(f, rows, allow_pickle=False)
    return len(names), failures
