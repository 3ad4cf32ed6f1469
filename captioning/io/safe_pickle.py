"""One restricted unpickler: a pickle may only name the globals its use allows.

``pickle.load`` runs whatever callable a pickle names, so loading a downloaded
file with it could run arbitrary code. :class:`RestrictedUnpickler` resolves
only the globals of an :class:`AllowList` chosen per use and refuses every
other one (and every persistent id, unless the use reads them) before
importing or calling anything. Lists, tuples, dicts, str, bytes, int, float,
bool and None are built by pickle opcodes without any global, so they always
load. The uses:

* :data:`PLAIN_DATA`: nothing but those, plus ``_codecs.encode`` (how Python 3
  writes bytes in old protocols; it only turns text into bytes);
* :data:`NUMPY_ARRAYS`: also ndarrays (the seminar's ``caption_tokens.pcl``,
  read by :mod:`captioning.datasets.formats`);
* ``pretrained_lenet.WEIGHTS_PICKLE``: also numpy scalars (GoogLeNet weights);
* ``captioning.cnn.pth.STATE_DICT``: ordered dicts and torch's tensor rebuild
  functions, mapped to local numpy code (PyTorch ``.pth`` files).

The seminar's files were written by Python 2: load them with
``encoding="latin1"`` (the default here), which turns Python 2 ``str`` into
``str`` byte for byte; :func:`fix_py2_text` repairs UTF-8 text read that way.
"""
import importlib
import io
import pickle

from captioning.errors import CaptionError

__all__ = ["UnsafePickleError", "AllowList", "importable", "PLAIN_DATA",
           "NUMPY_ARRAYS", "RestrictedUnpickler", "safe_load", "safe_loads",
           "fix_py2_text"]


class UnsafePickleError(CaptionError, pickle.UnpicklingError):
    """The pickle refers to a callable or class that is not allowed."""


class AllowList:
    """The globals one kind of pickle may name.

    Parameters
    ----------
    holds : str
        What such a pickle holds, in words (for the refusal message).
    names : dict
        ``{(module, name): object}``: what each allowed global stands for
        (the real object, see :func:`importable`, or a local stand-in).
    """

    def __init__(self, holds, names):
        self.holds = holds
        self.names = dict(names)

    def plus(self, holds, names):
        """This list with more globals (``holds`` describes the result)."""
        return AllowList(holds, {**self.names, **names})


def importable(*names):
    """``{(module, name): the real object}`` for globals safe to resolve."""
    return {(module, name): getattr(importlib.import_module(module), name)
            for module, name in names}


PLAIN_DATA = AllowList("lists, tuples, dicts, strings and numbers",
                       importable(("_codecs", "encode")))
NUMPY_ARRAYS = PLAIN_DATA.plus(
    "lists, tuples, dicts, strings, numbers and numpy arrays",
    importable(("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"),
               ("numpy", "dtype")))


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global outside ``allowed``.

    Parameters
    ----------
    file : binary file object
    allowed : AllowList
    encoding : str
        How Python 2 ``str`` objects are decoded; ``"latin1"`` never fails
        and is what numpy arrays pickled by Python 2 need.
    persistent_load : callable, optional
        Resolves persistent ids (torch's storages); without it they are
        refused.
    """

    def __init__(self, file, allowed, encoding="latin1", persistent_load=None):
        super().__init__(file, encoding=encoding)
        self.allowed = allowed
        self._persistent_load = persistent_load

    def find_class(self, module, name):
        try:
            return self.allowed.names[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                "refusing to load %s.%s: this pickle may only hold %s"
                % (module, name, self.allowed.holds)) from None

    def persistent_load(self, pid):
        if self._persistent_load is None:
            raise UnsafePickleError("refusing persistent id %r" % (pid,))
        return self._persistent_load(pid)


def safe_load(path_or_file, allowed=PLAIN_DATA, encoding="latin1"):
    """Unpickle a file with :class:`RestrictedUnpickler`.

    Parameters
    ----------
    path_or_file : str, os.PathLike or binary file object
    allowed : AllowList
        The globals this use admits (default: plain data only).
    encoding : str
        Decoding of Python 2 ``str``; see :class:`RestrictedUnpickler`.

    Returns
    -------
    object
        The unpickled data.

    Raises
    ------
    UnsafePickleError
        If the pickle names any global outside ``allowed`` or a persistent
        id; nothing it names is imported or called.
    """
    if hasattr(path_or_file, "read"):
        return RestrictedUnpickler(path_or_file, allowed, encoding).load()
    with open(path_or_file, "rb") as f:
        return RestrictedUnpickler(f, allowed, encoding).load()


def safe_loads(data, allowed=PLAIN_DATA, encoding="latin1"):
    """Like :func:`safe_load`, from bytes."""
    return safe_load(io.BytesIO(data), allowed, encoding)


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
