"""Test helpers for the data tests: a fake CNN encoder and its codes.

``fake_encoder()`` is a :class:`_encoder_fakes.FakeEncoder` whose codes are
the mean RGB of each image (read with PIL), tiled to 1000 values, so the
data code never needs the real CNN; ``fake_codes(path)`` is that code.
"""
import numpy as np

from _encoder_fakes import FakeEncoder


def fake_codes(path):
    from PIL import Image
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    mean = rgb.reshape(-1, 3).mean(axis=0) / 255.0
    return np.resize(mean, 1000).astype(np.float32)


def fake_encoder(fail=()):
    """A fake encoder; images whose file name is in ``fail`` are unreadable."""
    return FakeEncoder(fake_codes, fail=fail)
