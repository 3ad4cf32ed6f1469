"""The photo-code cache: encode once, re-encode what changed, resume.

The CNN is the fake of ``_data_fakes`` (codes = mean RGB, tiled), so the
expected codes are computed independently by ``fake_codes``. conftest.py
gives every test an empty ``CAPTION_CACHE_DIR``.
"""
import os
import sys

import numpy as np
import pytest
from PIL import Image

from _data_fakes import fake_codes, install_fake_extract
from captioning import codes_cache
from captioning.codes_cache import cached_codes


def make_photos(folder, n):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / ("photo%d.png" % i)
        Image.new("RGB", (8, 6), (20 * i, 100, 255 - 20 * i)).save(path)
        paths.append(path)
    return paths


def encoded(calls):
    return [p for paths, _ in calls for p in paths]


def test_second_call_encodes_nothing_and_returns_the_same_codes(tmp_path, monkeypatch):
    calls = install_fake_extract(monkeypatch)
    paths = make_photos(tmp_path, 4)
    first, kept, failures = cached_codes(paths, progress=False)
    assert kept == [0, 1, 2, 3] and failures == []
    np.testing.assert_allclose(first, [fake_codes(p) for p in paths])
    again, kept, _ = cached_codes(paths[::-1], progress=False)
    assert len(calls) == 1
    np.testing.assert_array_equal(again, first[::-1])


def test_a_changed_photo_is_encoded_again(tmp_path, monkeypatch):
    calls = install_fake_extract(monkeypatch)
    paths = make_photos(tmp_path, 3)
    cached_codes(paths, progress=False)
    Image.new("RGB", (9, 9), (1, 2, 3)).save(paths[1])
    os.utime(paths[1], ns=(1, 1))        # a different size and mtime
    codes, _, _ = cached_codes(paths, progress=False)
    assert encoded(calls[1:]) == [str(paths[1])]
    np.testing.assert_allclose(codes[1], fake_codes(paths[1]))


def test_missing_and_unreadable_photos_are_reported_not_cached(tmp_path, monkeypatch):
    calls = install_fake_extract(monkeypatch, fail=["photo1.png"])
    paths = make_photos(tmp_path, 3) + [tmp_path / "gone.png"]
    codes, kept, failures = cached_codes(paths, progress=False)
    assert kept == [0, 2] and codes.shape == (2, 1000)
    assert [os.path.basename(p) for p, _ in failures] == ["gone.png", "photo1.png"]
    cached_codes(paths, progress=False)
    assert encoded(calls[1:]) == [str(paths[1])]   # retried, not remembered


def test_an_interrupted_run_resumes_after_the_last_saved_chunk(tmp_path, monkeypatch):
    monkeypatch.setattr(codes_cache, "CHUNK", 2)
    calls = install_fake_extract(monkeypatch)
    paths = make_photos(tmp_path, 5)
    fake = sys.modules["captioning.extract"]     # the fake module
    encode = fake.extract_codes

    def interrupted_on_second_chunk(*args, **kwargs):
        if len(calls) == 1:
            raise KeyboardInterrupt
        return encode(*args, **kwargs)

    monkeypatch.setattr(fake, "extract_codes", interrupted_on_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        cached_codes(paths, progress=False)
    monkeypatch.setattr(fake, "extract_codes", encode)
    codes, kept, _ = cached_codes(paths, progress=False)
    assert encoded(calls) == [str(p) for p in paths]    # each photo once
    np.testing.assert_allclose(codes, [fake_codes(p) for p in paths])


def test_a_corrupt_cache_file_is_rebuilt(tmp_path, monkeypatch):
    calls = install_fake_extract(monkeypatch)
    paths = make_photos(tmp_path / "photos", 2)
    cache = codes_cache.cache_dir() / "codes-efficientnet_lite0.npz"
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(b"not a zip file")
    codes, _, _ = cached_codes(paths, progress=False)
    np.testing.assert_allclose(codes, [fake_codes(p) for p in paths])
    cached_codes(paths, progress=False)
    assert len(calls) == 1


def test_cache_lives_where_the_environment_says(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPTION_CACHE_DIR", str(tmp_path / "elsewhere"))
    install_fake_extract(monkeypatch)
    cached_codes(make_photos(tmp_path / "p", 1), cnn="googlenet", progress=False)
    assert (tmp_path / "elsewhere" / "codes-googlenet.npz").is_file()
