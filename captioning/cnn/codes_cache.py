"""Where image codes are kept between runs: one folder of shards per encoder.

Encoding Flickr8k's 7,000 photos with the CNN takes minutes; training and
evaluation ask for the same photos again and again. Each encoder has one
cache, the folder ``codes-<cnn>[-<kind>]`` (see
:attr:`captioning.cnn.encode.Encoder.cache_name`) in ``$CAPTION_CACHE_DIR``
or ``~/.cache/captioning``. A photo is keyed by its absolute path, size and
modification time, so an edited or replaced file is encoded again. The cache
holds derived data: it lives outside the repository and is never committed.

Layout (large codes, such as 49 x 1280 region maps, must not be rewritten
whole every chunk, nor read whole into memory):

* a shard per :meth:`CodeCache.add` call: ``<stamp>.npy`` (the codes, one row
  per photo, in the encoder's dtype: float16 for region maps) written first,
  then ``<stamp>.keys.json`` (the rows' keys), each atomically. The keys file
  commits the shard: a ``.npy`` without one (a run killed between the two
  writes) is ignored. Shards are never rewritten, so several processes may
  add to one cache; the newest shard wins for a repeated key.
* reading maps each shard's ``.npy`` into memory (``np.load(mmap_mode='r')``):
  opening the cache reads only the keys.
* a committed shard that cannot be read whole (truncated, bad header, keys
  that do not parse, codes file gone) or that holds codes of another shape or dtype is deleted
  when the cache is opened, so its photos are encoded again. Bit flips inside
  the codes are not detected (that would mean reading every shard in full).
* the single ``codes-<cnn>.npz`` file of earlier versions (``keys``,
  ``codes``), if present beside the folder, is still read (never written or
  deleted); shards take precedence over it.

This module only stores and finds codes; :func:`captioning.cnn.encode.encode`
decides what to encode and adds a shard per chunk as it goes (so an
interrupted run resumes).
"""
import contextlib
import json
import os
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np

from captioning.io.files import atomic_write

__all__ = ["CACHE_ENV", "cache_dir", "file_key", "CodeCache"]

CACHE_ENV = "CAPTION_CACHE_DIR"
KEYS_SUFFIX = ".keys.json"


def cache_dir():
    """``$CAPTION_CACHE_DIR``, else ``~/.cache/captioning``."""
    return Path(os.environ.get(CACHE_ENV) or
                Path.home() / ".cache" / "captioning")


def file_key(path):
    """``abspath|size|mtime_ns`` of an existing file; raises OSError."""
    stat = os.stat(path)
    return "%s|%d|%d" % (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)


class CodeCache:
    """The codes of one encoder: ``key in cache``, ``cache[key]`` (a row,
    memory-mapped when read from disk), :meth:`add`.

    Parameters
    ----------
    path : str or Path or None
        The cache folder; None keeps the codes in memory only (nothing is
        read or written).
    code_shape : tuple of int
        One photo's code, e.g. ``(1000,)`` or ``(49, 1280)``.
    dtype : numpy dtype
        How codes are stored (and returned).
    """

    def __init__(self, path, code_shape, dtype=np.float32):
        self.path = None if path is None else Path(path)
        self.code_shape = tuple(code_shape)
        self.dtype = np.dtype(dtype)
        self.rows = {}
        if self.path is not None:
            self._read_legacy(self.path.with_name(self.path.name + ".npz"))
            self._read_shards()

    def __contains__(self, key):
        return key in self.rows

    def __getitem__(self, key):
        return self.rows[key]

    def __len__(self):
        return len(self.rows)

    def _fits(self, codes, n):
        return codes.dtype == self.dtype and codes.shape == (n,) + self.code_shape

    def _read_legacy(self, npz):
        """The one-file cache of earlier versions (float32), if it fits."""
        try:
            with np.load(npz, allow_pickle=False) as saved:
                keys, codes = saved["keys"], saved["codes"]
                if codes.shape != (len(keys),) + self.code_shape:
                    return
                codes = codes.astype(self.dtype, copy=False)
                self.rows.update(zip(keys.tolist(), codes))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile,
                zlib.error):  # missing, truncated or not an npz: unused
            return

    def _read_shards(self):
        try:
            names = sorted(os.listdir(self.path))
        except (FileNotFoundError, NotADirectoryError):
            return
        for name in names:   # stamps sort by time: newer shards win
            if not name.endswith(KEYS_SUFFIX):
                continue
            keys_file = self.path / name
            codes_file = self.path / (name[:-len(KEYS_SUFFIX)] + ".npy")
            try:
                keys = json.loads(keys_file.read_text(encoding="utf-8"))
                codes = np.load(codes_file, mmap_mode="r", allow_pickle=False)
                if not (isinstance(keys, list) and self._fits(codes, len(keys))):
                    raise ValueError("shard of another shape or dtype")
            except (OSError, ValueError, EOFError, UnicodeDecodeError):
                # Damaged, half gone or foreign: drop it (whatever is left
                # of it), its photos get encoded again.
                for path in (keys_file, codes_file):
                    with contextlib.suppress(OSError):
                        path.unlink()
                continue
            self.rows.update(zip(keys, codes))

    def add(self, keys, codes):
        """Store ``codes[i]`` under ``keys[i]``: one new shard, written
        atomically (in memory only when the cache has no path)."""
        keys = list(keys)
        codes = np.asarray(codes).astype(self.dtype, copy=False)
        if not self._fits(codes, len(keys)):
            raise ValueError("codes of shape %s %s for %d keys; this cache "
                             "holds %s %s" % (codes.shape, codes.dtype,
                                              len(keys), self.code_shape,
                                              self.dtype))
        if not keys:
            return
        if self.path is not None:
            stamp = "%020d-%d" % (time.time_ns(), os.getpid())
            codes_file = self.path / (stamp + ".npy")
            with atomic_write(codes_file) as f:
                np.save(f, codes, allow_pickle=False)
            with atomic_write(self.path / (stamp + KEYS_SUFFIX), "w") as f:
                json.dump(keys, f)
            # Keep the rows mapped from disk, not in memory.
            codes = np.load(codes_file, mmap_mode="r", allow_pickle=False)
        self.rows.update(zip(keys, codes))
