"""A tiny fake Flickr8k (coloured squares, 5 captions each) and a fake CNN
(codes from the mean colour), for the `caption train|describe|evaluate`
tests: no real photo is ever encoded.
"""
import numpy as np
from PIL import Image

from _encoder_fakes import FakeEncoder
from captioning.cnn.images import load_rgb

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


def colour_code(path):
    """The fake CNN's code of a photo: its mean colour, tiled, plus a ramp."""
    pixels = load_rgb(path).astype("float32")
    mean = pixels.mean(axis=(0, 1)) / 255.0
    return (np.tile(mean, 334)[:1000]
            + 0.01 * np.arange(1000) / 1000).astype("float32")


def fake_encoder(**options):
    """A FakeEncoder with :func:`colour_code` (the broken photo fails in
    ``load_rgb``, as it would with the real CNN)."""
    return FakeEncoder(colour_code, **options)


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


def colour_regions(path):
    """The fake CNN's spatial map: 2 x 2 regions of 6 features, each its
    quarter's mean colour and a ramp (float16, as the real spatial kind)."""
    pixels = load_rgb(path).astype("float32") / 255.0
    h, w = pixels.shape[0] // 2, pixels.shape[1] // 2
    quarters = [pixels[:h, :w], pixels[:h, w:], pixels[h:, :w], pixels[h:, w:]]
    rows = [np.concatenate([q.mean(axis=(0, 1)), [0.1 * i, 0.2, 0.3]])
            for i, q in enumerate(quarters)]
    return np.array(rows, dtype="float16")


class FakeSpatialEncoder(FakeEncoder):
    """Region features (4 regions x 6) as the real ``spatial`` kind gives
    them, and the photo the fake CNN 'sees' for attention maps."""

    feature_kind = "spatial"
    code_size = 6
    code_shape = (4, 6)
    code_dtype = np.dtype(np.float16)

    def record(self):
        return dict(super().record(), code_shape=list(self.code_shape))

    def seen(self, path):
        return load_rgb(path)


def fake_spatial_encoder(**options):
    return FakeSpatialEncoder(colour_regions, **options)
