"""The code cache's file: keys, save/load round trip, damaged files.

What is encoded when, and resuming, are tested through
``captioning.cnn.encode.encode`` in test_encode.py. conftest.py gives every
test an empty ``CAPTION_CACHE_DIR``.
"""
import os

import numpy as np

from captioning.cnn import codes_cache


def test_the_key_is_the_absolute_path_the_size_and_the_mtime(tmp_path,
                                                             monkeypatch):
    path = tmp_path / "a.jpg"
    path.write_bytes(b"12345")
    os.utime(path, ns=(7, 1234567))
    monkeypatch.chdir(tmp_path)
    assert codes_cache.file_key("a.jpg") == "%s|5|1234567" % path


def test_save_and_load_round_trip(tmp_path):
    store = {"a|1|2": np.arange(4, dtype=np.float32),
             "b|3|4": -np.arange(4, dtype=np.float32)}
    codes_cache.save(tmp_path / "c.npz", store)
    back = codes_cache.load(tmp_path / "c.npz", 4)
    assert sorted(back) == ["a|1|2", "b|3|4"]
    for key in store:
        np.testing.assert_array_equal(back[key], store[key])
        assert back[key].dtype == np.float32


def test_missing_damaged_or_other_size_files_load_empty(tmp_path):
    assert codes_cache.load(tmp_path / "none.npz", 4) == {}
    codes_cache.save(tmp_path / "c.npz", {"a|1|2": np.zeros(4)})
    assert codes_cache.load(tmp_path / "c.npz", 5) == {}
    data = (tmp_path / "c.npz").read_bytes()
    (tmp_path / "c.npz").write_bytes(data[:len(data) // 2])   # truncated
    assert codes_cache.load(tmp_path / "c.npz", 4) == {}
    (tmp_path / "c.npz").write_bytes(b"not a zip file")
    assert codes_cache.load(tmp_path / "c.npz", 4) == {}


def test_the_cache_lives_where_the_environment_says(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPTION_CACHE_DIR", str(tmp_path / "x"))
    assert codes_cache.cache_dir() == tmp_path / "x"
    monkeypatch.delenv("CAPTION_CACHE_DIR")
    assert str(codes_cache.cache_dir()) == \
        os.path.join(os.path.expanduser("~"), ".cache", "captioning")
