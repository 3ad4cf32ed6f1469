"""Test helpers for the data tests: a fake CNN encoder and tiny datasets.

``install_fake_extract(monkeypatch)`` puts a stand-in ``captioning.extract``
module into ``sys.modules`` so the data code never needs the real CNN; its
codes are the mean RGB of each image (read with PIL), tiled to 1000 values.
"""
import sys
import types

import numpy as np


def fake_codes(path):
    from PIL import Image
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    mean = rgb.reshape(-1, 3).mean(axis=0) / 255.0
    return np.resize(mean, 1000).astype(np.float32)


def install_fake_extract(monkeypatch, fail=()):
    """Install a fake ``captioning.extract``; paths ending in ``fail`` fail.

    Returns the list that records each call's (paths, kwargs).
    """
    calls = []

    def extract_codes(image_paths, cnn="efficientnet_lite0", batch_size=32,
                      progress=True):
        calls.append((list(image_paths), dict(cnn=cnn, batch_size=batch_size,
                                              progress=progress)))
        codes, failures = [], []
        for p in image_paths:
            if str(p).endswith(tuple(fail)) if fail else False:
                failures.append((str(p), "cannot identify image file"))
                codes.append(np.full(1000, np.nan, np.float32))
            else:
                codes.append(fake_codes(p))
        return np.stack(codes), failures

    module = types.ModuleType("captioning.extract")
    module.extract_codes = extract_codes
    monkeypatch.setitem(sys.modules, "captioning.extract", module)
    return calls
