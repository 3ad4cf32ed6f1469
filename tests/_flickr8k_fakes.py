"""A tiny fake Flickr8k (coloured squares, 5 captions each) and a fake CNN
(codes from the mean colour), for the `caption train|describe|evaluate`
tests: no real photo is ever encoded.
"""
import sys
import types

import numpy as np
from PIL import Image

COLOURS = {"red": (220, 20, 20), "blue": (20, 20, 220), "green": (20, 200, 20)}
CAPTIONS = {
    "red": ["A red square .", "a red box", "The red square on white .",
            "red square", "a square that is red"],
    "blue": ["A blue square .", "a blue box", "The blue square on white .",
             "blue square", "a square that is blue"],
    "green": ["A green square .", "a green box", "the green square",
              "green square", "a square that is green"],
}
TRAIN = ["r%d.jpg" % i for i in range(3)] + ["b%d.jpg" % i for i in range(3)] + \
        ["g%d.jpg" % i for i in range(2)]
DEV = ["r9.jpg", "b9.jpg", "g9.jpg"]


def colour_of(name):
    return {"r": "red", "b": "blue", "g": "green"}[name[0]]


def fake_extract_codes(image_paths, cnn="efficientnet_lite0", batch_size=32,
                       weights=None, progress=True):
    """Same contract as captioning.extract.extract_codes: N rows (NaN for
    failures) and a list of (path, reason)."""
    codes = np.full((len(image_paths), 1000), np.nan, dtype="float32")
    failures = []
    for i, path in enumerate(image_paths):
        try:
            pixels = np.asarray(Image.open(path).convert("RGB"), "float32")
        except Exception as error:  # noqa: BLE001 (any unreadable file)
            failures.append((str(path), "cannot identify image (%s)"
                             % type(error).__name__))
            continue
        mean = pixels.mean(axis=(0, 1)) / 255.0
        codes[i] = np.tile(mean, 334)[:1000] + 0.01 * np.arange(1000) / 1000
    return codes, failures


def make_fake_flickr8k(root):
    """Write the photos, the token file and the train/dev lists into root."""
    (root / "images").mkdir(parents=True)
    lines = []
    for name in TRAIN + DEV:
        Image.new("RGB", (32, 32), COLOURS[colour_of(name)]).save(
            root / "images" / name)
        lines += ["%s#%d\t%s" % (name, j, c)
                  for j, c in enumerate(CAPTIONS[colour_of(name)])]
    (root / "images" / "broken.jpg").write_bytes(b"not a jpeg")
    (root / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n")
    (root / "Flickr_8k.trainImages.txt").write_text("\n".join(TRAIN) + "\n")
    (root / "Flickr_8k.devImages.txt").write_text("\n".join(DEV) + "\n")
    return root


def install_fake_cnn(monkeypatch, calls=None):
    """Replace captioning.extract by fake_extract_codes; the paths of every
    call are appended to ``calls`` if given."""
    def extract_codes(image_paths, **kwargs):
        if calls is not None:
            calls.extend(str(p) for p in image_paths)
        return fake_extract_codes(image_paths, **kwargs)

    fake = types.ModuleType("captioning.extract")
    fake.extract_codes = extract_codes
    fake.register = lambda subparsers: None
    monkeypatch.setitem(sys.modules, "captioning.extract", fake)
