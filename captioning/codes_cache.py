"""Image codes computed once: a cache in front of ``captioning.extract``.

Encoding Flickr8k's 7,000 photos with the CNN takes minutes; training and
evaluation ask for the same photos again and again. The cache is one
``.npz`` per CNN (``codes-<cnn>.npz``: ``keys`` and ``codes``) in
``$CAPTION_CACHE_DIR`` or ``~/.cache/captioning``. A photo is keyed by its
absolute path, size and modification time, so an edited or replaced file is
encoded again. The cache holds derived data: it lives outside the
repository and is never committed. Photos are encoded in chunks and the
cache is saved after each, so an interrupted run (Ctrl-C in the middle of
Flickr8k) resumes where it stopped.

``caption data flickr8k`` (and the notebook, through it), ``caption train``
and ``caption evaluate`` all read photos' codes through here.
"""
import os
from pathlib import Path

import numpy as np

from captioning.data import encode_images
from captioning.files import atomic_write

__all__ = ["cache_dir", "cached_codes"]

CACHE_ENV = "CAPTION_CACHE_DIR"
# Photos encoded between two saves of the cache (~20 s of CNN work).
CHUNK = 256


def cache_dir():
    """``$CAPTION_CACHE_DIR``, else ``~/.cache/captioning``."""
    return Path(os.environ.get(CACHE_ENV) or
                Path.home() / ".cache" / "captioning")


def _key(path):
    stat = os.stat(path)
    return "%s|%d|%d" % (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)


def cached_codes(image_paths, cnn="efficientnet_lite0", progress=True,
                 batch_size=32):
    """Codes of ``image_paths``, encoding only those not cached yet.

    Parameters
    ----------
    image_paths : sequence of str or Path
    cnn : str
        Passed to ``extract_codes``; each CNN has its own cache file.
    progress : bool
        Show a progress bar (it moves once per chunk of photos).
    batch_size : int
        Photos per CNN batch, passed to ``extract_codes``.

    Returns
    -------
    codes : ndarray (n_kept, 1000) float32
    kept : list of int
        Indices into ``image_paths`` of the rows of ``codes``.
    failures : list of (str, str)
        Path and reason for each image that is missing or unreadable
        (never cached, so a fixed file is retried next time).
    """
    paths = [str(p) for p in image_paths]
    failures, keys = [], {}
    for i, path in enumerate(paths):
        try:
            keys[i] = _key(path)
        except OSError as error:
            failures.append((path, error.strerror or str(error)))

    cache_file = cache_dir() / ("codes-%s.npz" % cnn)
    cached = {}
    if cache_file.exists():
        try:
            with np.load(cache_file, allow_pickle=False) as saved:
                cached = dict(zip(saved["keys"].tolist(), saved["codes"]))
        except (OSError, ValueError, KeyError):
            cached = {}  # unreadable cache: rebuild it

    todo = sorted({i for i, key in keys.items() if key not in cached})
    bar = None
    if todo and progress:
        from tqdm import tqdm
        print("encoding %d of %d photos with %s (cached in %s)"
              % (len(todo), len(paths), cnn, cache_file))
        bar = tqdm(total=len(todo), unit="img", desc=cnn, dynamic_ncols=True)
    try:
        for start in range(0, len(todo), CHUNK):
            chunk = todo[start:start + CHUNK]
            codes, kept, failed = encode_images(
                [paths[i] for i in chunk], cnn=cnn, batch_size=batch_size,
                progress=False, skip_unreadable=True)
            failures.extend(failed)
            for row, j in zip(codes, kept):
                cached[keys[chunk[j]]] = row
            _save(cache_file, cached)
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()

    kept = [i for i in range(len(paths)) if keys.get(i) in cached]
    codes = np.array([cached[keys[i]] for i in kept], dtype="float32")
    return codes.reshape(len(kept), -1), kept, sorted(failures)


def _save(cache_file, cached):
    with atomic_write(cache_file) as f:
        np.savez(f, keys=np.array(list(cached)),
                 codes=np.array(list(cached.values()), dtype="float32"))
