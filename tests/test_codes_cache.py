"""The code cache on disk: keys, shards, float16, memory maps, damage,
interruptions and the one-file cache of earlier versions.

What is encoded when, and resuming a whole run, are tested through
``captioning.cnn.encode.encode`` in test_encode.py. conftest.py gives every
test an empty ``CAPTION_CACHE_DIR``. Expected values come from numpy
(``np.save``/``np.load``/``np.savez``, float16 spacing), not from the cache.
"""
import json
import os

import numpy as np
import pytest

from captioning.cnn import codes_cache
from captioning.cnn.codes_cache import CodeCache


def shards(folder):
    return sorted(p.name for p in folder.iterdir())


def test_the_key_is_the_absolute_path_the_size_and_the_mtime(tmp_path,
                                                             monkeypatch):
    path = tmp_path / "a.jpg"
    path.write_bytes(b"12345")
    os.utime(path, ns=(7, 1234567))
    monkeypatch.chdir(tmp_path)
    assert codes_cache.file_key("a.jpg") == "%s|5|1234567" % path


def test_the_cache_lives_where_the_environment_says(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPTION_CACHE_DIR", str(tmp_path / "x"))
    assert codes_cache.cache_dir() == tmp_path / "x"
    monkeypatch.delenv("CAPTION_CACHE_DIR")
    assert str(codes_cache.cache_dir()) == \
        os.path.join(os.path.expanduser("~"), ".cache", "captioning")


def test_a_shard_is_an_npy_of_codes_and_a_json_of_keys(tmp_path):
    codes = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
    CodeCache(tmp_path / "c", (2, 3)).add(["a|1|2", "b|3|4"], codes)
    names = shards(tmp_path / "c")
    assert len(names) == 2 and names[0].endswith(".keys.json")
    stamp = names[0][:-len(".keys.json")]
    assert names[1] == stamp + ".npy"
    np.testing.assert_array_equal(np.load(tmp_path / "c" / names[1]), codes)
    assert json.loads((tmp_path / "c" / names[0]).read_text()) == \
        ["a|1|2", "b|3|4"]


def test_float32_round_trip_read_through_a_memory_map(tmp_path):
    codes = np.random.RandomState(0).randn(3, 4).astype(np.float32)
    CodeCache(tmp_path / "c", (4,)).add(["a", "b", "c"], codes)
    back = CodeCache(tmp_path / "c", (4,))
    assert len(back) == 3 and "b" in back and "z" not in back
    for i, key in enumerate("abc"):
        assert isinstance(back[key], np.memmap)   # not read into memory
        assert back[key].dtype == np.float32
        np.testing.assert_array_equal(back[key], codes[i])


def test_float16_round_trip_within_half_a_float16_step(tmp_path):
    # Region maps are ReLU6 outputs: [0, 6]. Rounding to float16 (11
    # significant bits) errs by at most 2**-11 of the value (2**-25 absolute
    # below float16's normal range).
    x = np.random.RandomState(1).uniform(0, 6, (5, 49, 8)).astype(np.float32)
    x[0, 0, :3] = [0.0, 1e-6, 6.0]
    cache = CodeCache(tmp_path / "c", (49, 8), np.float16)
    cache.add(list("abcde"), x)
    back = CodeCache(tmp_path / "c", (49, 8), np.float16)
    got = np.stack([back[k] for k in "abcde"])
    assert got.dtype == np.float16
    err = np.abs(got.astype(np.float64) - x)
    assert (err <= np.abs(x) * 2.0 ** -11 + 2.0 ** -25).all()
    assert err.max() > 0              # it really is stored in 16 bits
    assert os.path.getsize(next((tmp_path / "c").glob("*.npy"))) < \
        5 * 49 * 8 * 2 + 256          # 2 bytes a value + the npy header


def test_each_add_is_a_new_shard_and_the_newest_wins(tmp_path):
    cache = CodeCache(tmp_path / "c", (2,))
    cache.add(["a", "b"], np.zeros((2, 2)))
    cache.add(["b"], np.ones((1, 2)))
    assert cache["b"].tolist() == [1, 1]          # in this process
    assert len(shards(tmp_path / "c")) == 4
    back = CodeCache(tmp_path / "c", (2,))
    assert back["a"].tolist() == [0, 0] and back["b"].tolist() == [1, 1]


def test_codes_of_the_wrong_shape_are_refused(tmp_path):
    cache = CodeCache(tmp_path / "c", (2,))
    with pytest.raises(ValueError, match="shape"):
        cache.add(["a"], np.zeros((1, 3)))
    with pytest.raises(ValueError, match="for 2 keys"):
        cache.add(["a", "b"], np.zeros((1, 2)))
    assert not (tmp_path / "c").exists()


def test_without_a_path_nothing_is_read_or_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cache = CodeCache(None, (2,))
    cache.add(["a"], np.ones((1, 2)))
    assert cache["a"].tolist() == [1, 1] and list(tmp_path.iterdir()) == []


# ------------------------------------------------------- interruptions

def test_an_add_interrupted_while_writing_leaves_no_shard(tmp_path,
                                                          monkeypatch):
    cache = CodeCache(tmp_path / "c", (2,))
    cache.add(["a"], np.zeros((1, 2)))

    def interrupted_save(f, array, **kwargs):
        f.write(b"\x93NUMPY half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        cache.add(["b"], np.ones((1, 2)))
    assert len(shards(tmp_path / "c")) == 2       # no temporary file left
    back = CodeCache(tmp_path / "c", (2,))
    assert "a" in back and "b" not in back


def test_codes_whose_keys_were_never_written_are_ignored(tmp_path):
    # A run killed between the shard's two writes: the .npy, no keys.
    cache = CodeCache(tmp_path / "c", (2,))
    cache.add(["a"], np.zeros((1, 2)))
    np.save(tmp_path / "c" / "99999999999999999999-1.npy", np.ones((1, 2)))
    back = CodeCache(tmp_path / "c", (2,))
    assert list(back.rows) == ["a"]
    back.add(["b"], np.ones((1, 2)))      # and adding still works
    assert sorted(CodeCache(tmp_path / "c", (2,)).rows) == ["a", "b"]


# ------------------------------------------------------- damage

def _damage(kind, npy, keys):
    if kind == "truncated codes":
        data = npy.read_bytes()
        npy.write_bytes(data[:len(data) - 5])
    elif kind == "empty codes":
        npy.write_bytes(b"")
    elif kind == "not an npy":
        npy.write_bytes(b"\x80\x04 a pickle, or anything else")
    elif kind == "codes gone":
        npy.unlink()
    elif kind == "keys not json":
        keys.write_bytes(b"[\"a\", \"b")
    elif kind == "keys not utf-8":
        keys.write_bytes(b"[\"\xff\"]")
    elif kind == "keys and codes disagree":
        keys.write_text(json.dumps(["a"]))
    elif kind == "codes of another shape":
        np.save(npy, np.zeros((2, 3), np.float32))
    elif kind == "codes of another dtype":
        np.save(npy, np.zeros((2, 2), np.float64))


@pytest.mark.parametrize("kind", [
    "truncated codes", "empty codes", "not an npy", "codes gone",
    "keys not json", "keys not utf-8", "keys and codes disagree",
    "codes of another shape", "codes of another dtype"])
def test_a_damaged_shard_is_dropped_and_the_others_kept(tmp_path, kind):
    cache = CodeCache(tmp_path / "c", (2,))
    cache.add(["a", "b"], np.zeros((2, 2)))
    cache.add(["c"], np.ones((1, 2)))
    first = sorted((tmp_path / "c").glob("*.npy"))[0]
    _damage(kind, first, first.with_name(first.name[:-4] + ".keys.json"))
    back = CodeCache(tmp_path / "c", (2,))
    assert sorted(back.rows) == ["c"] and back["c"].tolist() == [1, 1]
    assert len(shards(tmp_path / "c")) == 2   # the damaged one deleted
    back.add(["a", "b"], np.full((2, 2), 2.0))    # encoded again
    assert sorted(CodeCache(tmp_path / "c", (2,)).rows) == ["a", "b", "c"]


# ------------------------------------------------------- earlier versions

def _legacy(path, keys, codes):
    """The one-file cache of earlier versions, as they wrote it."""
    np.savez(path, keys=np.array(keys, dtype=str),
             codes=np.asarray(codes, dtype="float32"))


def test_the_one_file_cache_of_before_is_read_never_written(tmp_path):
    old = tmp_path / "codes-x.npz"
    _legacy(old, ["a|1|2", "b|3|4"], [[1, 2], [3, 4]])
    before = old.read_bytes()
    cache = CodeCache(tmp_path / "codes-x", (2,))
    assert cache["a|1|2"].tolist() == [1, 2] and cache["b|3|4"].tolist() == [3, 4]
    cache.add(["b|3|4"], np.array([[5, 6]]))       # a shard overrides it
    back = CodeCache(tmp_path / "codes-x", (2,))
    assert back["b|3|4"].tolist() == [5, 6] and back["a|1|2"].tolist() == [1, 2]
    assert old.read_bytes() == before


@pytest.mark.parametrize("damage", ["other size", "truncated", "not a zip"])
def test_a_one_file_cache_that_does_not_fit_is_unused_and_kept(tmp_path,
                                                               damage):
    old = tmp_path / "codes-x.npz"
    _legacy(old, ["a|1|2"], [[1, 2, 3]] if damage == "other size" else [[1, 2]])
    if damage == "truncated":
        old.write_bytes(old.read_bytes()[:100])
    elif damage == "not a zip":
        old.write_bytes(b"PK\x03\x04 not really a zip file")
    before = old.read_bytes()
    assert len(CodeCache(tmp_path / "codes-x", (2,))) == 0
    assert old.read_bytes() == before
