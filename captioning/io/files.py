"""Plain files: writing them atomically, reading list files, naming images.

* :func:`atomic_write`: every file the package writes goes through it, so an
  interrupt never leaves a half-written file under the real name.
* :func:`read_list`: the one reader of "one name a line" files (Flickr8k's
  split lists, ``caption extract --list``, ``caption evaluate --list``).
  Encoding: UTF-8; a leading byte-order mark (as Windows Notepad writes) is
  dropped. Lines may end in LF, CRLF or CR. Each line is stripped of
  surrounding whitespace and blank lines are skipped; there is no comment
  syntax (a file name may start with ``#``). Order and repeats are kept.
* :data:`IMAGE_EXTENSIONS` / :func:`is_image_name`: which files of a folder
  count as images.
"""
import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write", "read_list", "IMAGE_EXTENSIONS", "is_image_name"]

# File name endings treated as images when listing a folder (all are formats
# captioning.cnn.images.load_rgb reads).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp",
                    ".tif", ".tiff", ".ppm", ".pgm")

_BOM = b"\xef\xbb\xbf"


def is_image_name(name):
    """True if ``name`` ends with a known image extension (case-insensitive)."""
    return str(name).lower().endswith(IMAGE_EXTENSIONS)


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """Write to a temporary file beside ``path``, then ``os.replace`` it.

    Text modes write UTF-8. The parent folder is created. An interrupted
    write leaves at most a hidden ``.NAME.*.tmp`` file (removed when the
    error passes through here), never a half-written ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".",
                               suffix=".tmp", dir=path.parent)
    # mkstemp makes the file private (0600); give it the usual permissions.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else
                                    {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_list(path):
    """The names in a list file, one a line (see the module notes).

    Returns
    -------
    list of str
        Stripped, non-blank lines, in file order (repeats kept).

    Raises
    ------
    OSError
        If the file cannot be read.
    ValueError
        If a line is not UTF-8; the message gives its number (not the path,
        which the caller's message names).
    """
    raw = Path(path).read_bytes()
    if raw.startswith(_BOM):
        raw = raw[len(_BOM):]
    names = []
    # bytes.splitlines splits at LF, CRLF and CR only (str.splitlines would
    # also split at form feeds, U+2028 and others).
    for lineno, line in enumerate(raw.splitlines(), 1):
        try:
            name = line.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise ValueError("line %d is not UTF-8" % lineno) from None
        if name:
            names.append(name)
    return names
