"""The torch-free .pth reader on hand-built files of both layouts.

The files are written with a stand-in ``torch`` module (only the names the
format references), so the test needs no torch either.
"""
import collections
import io
import os
import pickle
import re
import struct
import sys
import types
import zipfile

import numpy as np
import pytest

from captioning.cnn.pth import LEGACY_MAGIC, PthError, load_state_dict


@pytest.fixture
def fake_torch(monkeypatch):
    """Install importable ``torch`` / ``torch._utils`` stand-ins for pickling."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):  # never called: only its name is pickled
        raise AssertionError

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    storage_types = {}
    for name in ("FloatStorage", "LongStorage"):
        cls = type(name, (), {"__module__": "torch"})
        setattr(torch, name, cls)
        storage_types[name] = cls
    torch._utils = utils
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return types.SimpleNamespace(rebuild=_rebuild_tensor_v2, **storage_types)


class Storage:
    def __init__(self, key, array, storage_type):
        self.key, self.array, self.storage_type = key, array, storage_type


class Tensor:
    def __init__(self, rebuild, storage, offset, size, stride):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())
        self.rebuild = rebuild

    def __reduce__(self):
        return self.rebuild, self.args


def _example(fake):
    """State dict: a 2x3 tensor, its transpose (a strided view of the same
    storage) and an offset slice, plus an int64 scalar."""
    data = np.arange(8, dtype=np.float32)
    shared = Storage("0", data, fake.FloatStorage)
    longs = Storage("1", np.array([42], np.int64), fake.LongStorage)
    state = collections.OrderedDict([
        ("a.weight", Tensor(fake.rebuild, shared, 0, (2, 3), (3, 1))),
        ("a.weight_t", Tensor(fake.rebuild, shared, 0, (3, 2), (1, 3))),
        ("tail", Tensor(fake.rebuild, shared, 6, (2,), (1,))),
        ("count", Tensor(fake.rebuild, longs, 0, (), ())),
    ])
    expected = {"a.weight": data[:6].reshape(2, 3),
                "a.weight_t": data[:6].reshape(2, 3).T,
                "tail": data[6:], "count": np.int64(42)}
    return state, [shared, longs], expected


def _pickle_with_storages(obj, legacy):
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=2)

    def persistent_id(o):
        if isinstance(o, Storage):
            pid = ("storage", o.storage_type, o.key, "cpu", o.array.size)
            return pid + (None,) if legacy else pid
        return None

    pickler.persistent_id = persistent_id
    pickler.dump(obj)
    return buffer.getvalue()


def write_legacy(path, state, storages):
    with open(path, "wb") as f:
        for header in (LEGACY_MAGIC, 1001,
                       {"protocol_version": 1001, "little_endian": True,
                        "type_sizes": {"short": 2, "int": 4, "long": 4}}):
            pickle.dump(header, f, protocol=2)
        f.write(_pickle_with_storages(state, legacy=True))
        pickle.dump([s.key for s in storages], f, protocol=2)
        for s in storages:
            f.write(struct.pack("<q", s.array.size) + s.array.tobytes())


def write_zip(path, state, storages):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model/data.pkl", _pickle_with_storages(state, legacy=False))
        for s in storages:
            archive.writestr("model/data/" + s.key, s.array.tobytes())


def _check(loaded, expected):
    assert list(loaded) == list(expected)
    assert isinstance(loaded, collections.OrderedDict)
    for key, value in expected.items():
        np.testing.assert_array_equal(loaded[key], value)
        assert loaded[key].dtype == np.asarray(value).dtype


@pytest.mark.parametrize("writer", [write_legacy, write_zip])
def test_roundtrip(tmp_path, fake_torch, writer):
    state, storages, expected = _example(fake_torch)
    path = tmp_path / "model.pth"
    writer(path, state, storages)
    _check(load_state_dict(path), expected)


def test_truncated_legacy_file(tmp_path, fake_torch):
    state, storages, _ = _example(fake_torch)
    path = tmp_path / "model.pth"
    write_legacy(path, state, storages)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(PthError, match="model.pth"):
        load_state_dict(path)


def test_refuses_other_globals(tmp_path):
    class Evil:
        def __reduce__(self):
            return os.system, ("echo should-not-run",)

    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x/data.pkl", pickle.dumps({"w": Evil()}, protocol=2))
    with pytest.raises(PthError, match="refusing to load .*system"):
        load_state_dict(path)


def test_not_a_torch_file(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(b"hello world, not a pickle")
    with pytest.raises(PthError, match="junk.pth"):
        load_state_dict(path)


def test_packaged_efficientnet_weights():
    from captioning.cnn.efficientnet import default_weights_path
    state = load_state_dict(default_weights_path())
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.15._depthwise_conv.weight"].shape == (1152, 1, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_fc.weight"].dtype == np.float32
    assert np.isfinite(state["_fc.weight"]).all()


# Globals outside the .pth allow-list: a command, and what the other uses of
# the restricted unpickler admit (numpy arrays and scalars, bytes).
@pytest.mark.parametrize("module, name", [
    ("os", "system"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("_codecs", "encode")])
def test_refuses_globals_of_other_uses(tmp_path, module, name):
    path = tmp_path / "other.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x/data.pkl", b"c%s\n%s\n(S'true'\ntR."
                         % (module.encode(), name.encode()))
    with pytest.raises(PthError, match=re.escape("refusing to load %s.%s" % (module, name))):
        load_state_dict(path)
