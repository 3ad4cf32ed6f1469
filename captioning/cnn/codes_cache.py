"""Where image codes are kept between runs: one ``.npz`` per encoder.

Encoding Flickr8k's 7,000 photos with the CNN takes minutes; training and
evaluation ask for the same photos again and again. The cache is one file
per encoder (``codes-<cnn>.npz``, see :attr:`captioning.cnn.encode.Encoder.cache_name`)
in ``$CAPTION_CACHE_DIR`` or ``~/.cache/captioning``, holding ``keys`` and
``codes``. A photo is keyed by its absolute path, size and modification
time, so an edited or replaced file is encoded again. The cache holds
derived data: it lives outside the repository and is never committed.

This module only stores and finds codes; :func:`captioning.cnn.encode.encode`
decides what to encode and saves the cache as it goes (so an interrupted
run resumes).
"""
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from captioning.io.files import atomic_write

__all__ = ["CACHE_ENV", "cache_dir", "file_key", "load", "save"]

CACHE_ENV = "CAPTION_CACHE_DIR"


def cache_dir():
    """``$CAPTION_CACHE_DIR``, else ``~/.cache/captioning``."""
    return Path(os.environ.get(CACHE_ENV) or
                Path.home() / ".cache" / "captioning")


def file_key(path):
    """``abspath|size|mtime_ns`` of an existing file; raises OSError."""
    stat = os.stat(path)
    return "%s|%d|%d" % (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)


def load(cache_file, code_size):
    """``{key: code row}`` saved in ``cache_file``; empty if the file is
    missing, unreadable or holds codes of another size (it is then rebuilt)."""
    try:
        with np.load(cache_file, allow_pickle=False) as saved:
            keys, codes = saved["keys"], saved["codes"]
            if codes.ndim != 2 or codes.shape != (len(keys), code_size):
                return {}
            return dict(zip(keys.tolist(), codes))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile,
            zlib.error):  # missing, truncated or not an npz: rebuild it
        return {}


def save(cache_file, store):
    """Write ``{key: code row}`` to ``cache_file`` atomically."""
    with atomic_write(cache_file) as f:
        np.savez(f, keys=np.array(list(store), dtype=str),
                 codes=np.array(list(store.values()), dtype="float32"))
