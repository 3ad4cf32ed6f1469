"""Load pickles that can only contain plain data.

``pickle.load`` runs whatever callable a pickle names, so loading a
downloaded ``caption_tokens.pcl`` with it could run arbitrary code. The
unpickler here resolves no global at all except ``_codecs.encode`` (how
Python 3 writes bytes in old protocols) and, when asked, the three numpy
names an array pickle needs. Lists, tuples, dicts, str, bytes, int,
float, bool and None are built by pickle opcodes without any global, so they
load as usual.

The seminar's files were written by Python 2: load them with
``encoding="latin1"`` (the default here), which turns Python 2 ``str`` into
``str`` byte for byte; :func:`fix_py2_text` repairs UTF-8 text read that way.
"""
import io
import pickle

__all__ = ["UnsafePickleError", "RestrictedUnpickler", "safe_load",
           "safe_loads", "fix_py2_text"]

# Python 3 pickles bytes with protocol < 3 as `_codecs.encode(str, "latin1")`:
# harmless (it only converts text to bytes), so always admitted.
BYTES_GLOBALS = {("_codecs", "encode")}
# Globals an ndarray pickle refers to; nothing else is ever resolved.
NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle refers to a callable or class that is not allowed."""


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global outside an allow-list.

    Parameters
    ----------
    file : binary file object
    allow_numpy : bool
        Admit ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray`` and
        ``numpy.dtype`` so that pickled arrays load.
    encoding : str
        How Python 2 ``str`` objects are decoded; ``"latin1"`` never fails
        and is what numpy arrays pickled by Python 2 need.
    """

    def __init__(self, file, allow_numpy=False, encoding="latin1"):
        super().__init__(file, encoding=encoding)
        self.allow_numpy = allow_numpy

    def find_class(self, module, name):
        if (module, name) in BYTES_GLOBALS or (
                self.allow_numpy and (module, name) in NUMPY_GLOBALS):
            return super().find_class(module, name)
        raise UnsafePickleError(
            "refusing to load %s.%s: this pickle may only hold lists, tuples, "
            "dicts, strings, numbers%s. If you trust the file, convert it to "
            "JSON yourself." % (module, name,
                                " and numpy arrays" if self.allow_numpy else ""))

    def persistent_load(self, pid):
        raise UnsafePickleError("refusing persistent id %r" % (pid,))


def safe_load(path_or_file, allow_numpy=False, encoding="latin1"):
    """Unpickle a file with :class:`RestrictedUnpickler`.

    Parameters
    ----------
    path_or_file : str, os.PathLike or binary file object
    allow_numpy : bool
        Also admit numpy arrays.
    encoding : str
        Decoding of Python 2 ``str``; see :class:`RestrictedUnpickler`.

    Returns
    -------
    object
        The unpickled plain data.

    Raises
    ------
    UnsafePickleError
        If the pickle names any callable or class outside the allow-list;
        nothing it names is imported or called.
    """
    if hasattr(path_or_file, "read"):
        return RestrictedUnpickler(path_or_file, allow_numpy, encoding).load()
    with open(path_or_file, "rb") as f:
        return RestrictedUnpickler(f, allow_numpy, encoding).load()


def safe_loads(data, allow_numpy=False, encoding="latin1"):
    """Like :func:`safe_load`, from bytes."""
    return safe_load(io.BytesIO(data), allow_numpy, encoding)


def fix_py2_text(text):
    """Undo latin1-decoding of UTF-8 bytes (Python 2 ``str`` read by Python 3).

    ASCII and genuine latin1/unicode text come back unchanged.

    Examples
    --------
    >>> fix_py2_text('caf\\xc3\\xa9')
    'café'
    >>> fix_py2_text('café')
    'café'
    """
    try:
        return text.encode("latin1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text
