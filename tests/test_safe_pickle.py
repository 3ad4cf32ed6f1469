"""The restricted unpickler: plain data and arrays load, code never runs."""
import os
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest

from captioning.io.safe_pickle import (NUMPY_ARRAYS, UnsafePickleError,
                                    fix_py2_text, safe_load, safe_loads)

# A Python 2 protocol-2 pickle of [['a dog', 'caf\xc3\xa9']] (two py2 str,
# the second UTF-8 bytes), written out opcode by opcode.
PY2_PICKLE = (b"\x80\x02]q\x00(]q\x01(U\x05a dogq\x02"
              b"U\x05caf\xc3\xa9q\x03ee.")


class Payload:
    """Pickles to `os.system("touch MARKER")`."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ("touch %s" % self.marker,))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_plain_data_round_trips(protocol):
    data = [["a man on a moped", "a dirt road"], ("t", 1, 2.5, None),
            {"k": b"\x00\xff", "ok": True}]
    assert safe_loads(pickle.dumps(data, protocol)) == data


def test_python2_pickle_needs_latin1_and_text_is_repaired():
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(PY2_PICKLE)                 # Python 3's default: ASCII
    loaded = safe_loads(PY2_PICKLE)
    assert loaded == [["a dog", "caf\u00c3\u00a9"]]
    assert [fix_py2_text(s) for s in loaded[0]] == ["a dog", "caf\u00e9"]


def test_fix_py2_text_leaves_real_text_alone():
    assert fix_py2_text("caf\u00e9") == "caf\u00e9"
    assert fix_py2_text("\u65e5\u672c") == "\u65e5\u672c"
    assert fix_py2_text("plain words") == "plain words"


def test_numpy_arrays_only_when_allowed():
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    blob = pickle.dumps({"codes": array}, protocol=2)
    with pytest.raises(UnsafePickleError, match="numpy"):
        safe_loads(blob)
    loaded = safe_loads(blob, NUMPY_ARRAYS)["codes"]
    np.testing.assert_array_equal(loaded, array)
    assert loaded.dtype == np.float32


def test_numpy_scalar_is_not_admitted():
    blob = pickle.dumps(np.float64(1.5), protocol=2)
    with pytest.raises(UnsafePickleError, match="scalar"):
        safe_loads(blob, NUMPY_ARRAYS)


def test_payload_is_real_when_unpickled_unsafely(tmp_path):
    # Proves the payload below would run: plain pickle, in a child process.
    marker = tmp_path / "pwned_plain"
    blob = pickle.dumps(Payload(marker), protocol=2)
    subprocess.run([sys.executable, "-c",
                    "import pickle,sys; pickle.loads(sys.stdin.buffer.read())"],
                   input=blob, check=True)
    assert marker.exists()


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_malicious_pickle_refused_without_running(tmp_path, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / "caption_tokens.pcl"
    path.write_bytes(pickle.dumps([["a cat"], Payload(marker)], protocol))
    with pytest.raises(UnsafePickleError, match="system"):
        safe_load(path)
    with pytest.raises(UnsafePickleError):
        safe_load(path, NUMPY_ARRAYS)
    assert not marker.exists()


def test_builtins_and_reconstructor_are_refused():
    class Obj:
        pass
    for blob in (b"cbuiltins\neval\n(S'1+1'\ntR.",
                 b"c__builtin__\nset\n((lp0\nI1\natR.",
                 b"ccopy_reg\n_reconstructor\n(c__main__\nObj\nc__builtin__"
                 b"\nobject\nNtR."):
        with pytest.raises(UnsafePickleError):
            safe_loads(blob)


def test_persistent_ids_are_refused():
    with pytest.raises(UnsafePickleError):
        safe_loads(b"\x80\x02X\x01\x00\x00\x00xQ.")


def _calls(module, name):
    """A protocol-0 pickle that calls ``module.name("true")``."""
    return b"c%s\n%s\n(S'true'\ntR." % (module.encode(), name.encode())


# Globals outside the caption pickle's allow-list (plain data and numpy
# arrays): a command, a torch rebuild function (the .pth use's), a numpy
# scalar (the GoogLeNet weights use's) and an ordered dict.
@pytest.mark.parametrize("module, name", [
    ("os", "system"), ("torch._utils", "_rebuild_tensor_v2"),
    ("numpy.core.multiarray", "scalar"), ("collections", "OrderedDict")])
def test_caption_pickle_refuses_globals_of_other_uses(tmp_path, module, name):
    from captioning.datasets.formats import DataError, load_dataset
    np.save(tmp_path / "image_codes.npy", np.zeros((1, 1000), np.float32))
    (tmp_path / "caption_tokens.pcl").write_bytes(_calls(module, name))
    with pytest.raises(DataError, match=re.escape("refusing to load %s.%s" % (module, name))):
        load_dataset(tmp_path)
    with pytest.raises(UnsafePickleError, match="refusing"):
        safe_loads(_calls(module, name))       # the plain-data default too
