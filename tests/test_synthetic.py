"""The generated picture world: deterministic, true captions, real images."""
import json

import numpy as np
import pytest
from PIL import Image

from _data_fakes import fake_codes, fake_encoder
from captioning.datasets import synthetic
from captioning.datasets.formats import DataError, load_dataset, save_dataset
from captioning.text import normalise_caption


def scene(kind, objects, bg=("plain", ["blue"]), relation=None):
    s = {"kind": kind, "background": {"kind": bg[0], "colours": list(bg[1]),
                                      "direction": "horizontal"},
         "objects": [dict(zip(("size", "colour", "shape", "cell"), o))
                     for o in objects]}
    if relation:
        s["relation"] = relation
    return s


TWO_RED_CIRCLES = scene("group", [("small", "red", "circle", [0, 0]),
                                  ("small", "red", "circle", [2, 2])])
# every caption the grammar may give it, written out by hand
TWO_RED_CIRCLES_CAPTIONS = {
    "two red circles on a blue background",
    "two red circles on a plain blue background",
    "two small red circles",
    "there are two small red circles on a blue background",
    "there are two small red circles on a plain blue background",
    "a picture of two small red circles",
    "a blue background with two red circles",
    "a plain blue background with two red circles",
    "two circles that are red",
    "two small circles on a blue background",
    "two small circles on a plain blue background",
}

TRIANGLE_LEFT_OF_SQUARE = scene(
    "pair", [("large", "green", "triangle", [1, 0]),
             ("small", "yellow", "square", [1, 2])],
    bg=("gradient", ["white", "black"]), relation="left")


def test_describe_group_matches_hand_written_captions():
    for i in range(20):
        caps = synthetic.describe(TWO_RED_CIRCLES, np.random.default_rng(i))
        assert 5 <= len(caps) <= 7
        assert len(set(caps)) == len(caps)
        assert set(caps) <= TWO_RED_CIRCLES_CAPTIONS, set(caps) - \
            TWO_RED_CIRCLES_CAPTIONS


def test_describe_pair_relation():
    seen = set()
    for i in range(30):
        seen |= set(synthetic.describe(TRIANGLE_LEFT_OF_SQUARE,
                                       np.random.default_rng(i)))
    assert "a large green triangle next to a small yellow square" in seen
    assert "a small yellow square to the right of a large green triangle" \
        in seen
    assert "a large green triangle to the left of a small yellow square" \
        in seen
    assert not any("above" in c or "below" in c for c in seen)


def colour_mask(image, rgb, tol=10):
    pixels = np.asarray(image, dtype=int)
    return (np.abs(pixels - rgb).max(axis=2) <= tol)


def test_render_puts_shapes_where_the_scene_says():
    image = synthetic.render_scene(TRIANGLE_LEFT_OF_SQUARE, 224,
                                   np.random.default_rng(0))
    assert image.size == (224, 224) and image.mode == "RGB"
    green = colour_mask(image, synthetic.COLOURS["green"])
    yellow = colour_mask(image, synthetic.COLOURS["yellow"])
    # a large triangle covers ~ (3*sqrt(3)/4) r^2 with r = 0.14*224
    assert 800 < green.sum() < 1600
    assert 150 < yellow.sum() < 700
    gx = np.nonzero(green)[1].mean()
    yx = np.nonzero(yellow)[1].mean()
    assert gx < 75 and yx > 149              # left column vs right column


def test_render_counts_blobs():
    image = synthetic.render_scene(TWO_RED_CIRCLES, 224,
                                   np.random.default_rng(0))
    red = colour_mask(image, synthetic.COLOURS["red"])
    assert red[:112, :112].sum() > 300 and red[112:, 112:].sum() > 300
    assert red[:112, 112:].sum() == 0 and red[112:, :112].sum() == 0
    blue = colour_mask(image, (40, 80, 215), tol=0)
    assert blue.mean() > 0.9                 # plain blue background


def test_generate_is_deterministic(tmp_path):
    a = synthetic.generate(20, 7, tmp_path / "a")
    b = synthetic.generate(20, 7, tmp_path / "b")
    c = synthetic.generate(20, 8, tmp_path / "c")
    assert a[0] == b[0] == ["synthetic_%05d.png" % i for i in range(1, 21)]
    assert a[2] == b[2] and a[3] == b[3]
    for name in a[0]:
        assert (tmp_path / "a" / name).read_bytes() == \
            (tmp_path / "b" / name).read_bytes()
    assert a[2] != c[2]
    # image i depends on (seed, i) only: a longer run starts the same
    d = synthetic.generate(25, 7, tmp_path / "d")
    assert d[2][:20] == a[2]


def test_generated_captions_are_valid_and_varied(tmp_path):
    rngs = [np.random.default_rng([3, i]) for i in range(300)]
    scenes = [synthetic.generate_scene(r) for r in rngs]
    captions = [synthetic.describe(s, r) for s, r in zip(scenes, rngs)]
    words = set()
    for caps in captions:
        assert 5 <= len(caps) <= 7 and len(set(caps)) == len(caps)
        for c in caps:
            assert c == normalise_caption(c) and c
            words.update(c.split())
    assert set(synthetic.COLOURS) <= words
    assert {s + "s" for s in synthetic.SHAPES} | set(synthetic.SHAPES) <= words
    assert {"two", "three", "four", "above", "below", "next", "gradient",
            "noisy", "small", "large"} <= words
    assert {s["kind"] for s in scenes} == {"group", "pair", "mix"}
    assert {s["background"]["kind"] for s in scenes} == {"plain", "gradient",
                                                         "noise"}
    # a shape's colour never hides in its background
    for s in scenes:
        for o in s["objects"]:
            assert o["colour"] not in s["background"]["colours"]


def test_group_captions_tell_the_truth(tmp_path):
    numbers = {1: "one", 2: "two", 3: "three", 4: "four"}
    for i in range(200):
        rng = np.random.default_rng([5, i])
        s = synthetic.generate_scene(rng)
        if s["kind"] != "group":
            continue
        o, k = s["objects"][0], len(s["objects"])
        plurals = {x + "s" for x in synthetic.SHAPES}
        for c in synthetic.describe(s, rng):
            words = c.split()
            if k == 1:
                assert o["shape"] in words and not plurals & set(words), c
                assert {"one", "a", "an"} & set(words), c
            else:
                assert o["shape"] + "s" in words and numbers[k] in words, c
            other = set(synthetic.SHAPES) - {o["shape"]}
            assert not other & set(words), c


def test_build_synthetic(tmp_path):
    encoder = fake_encoder()
    out = tmp_path / "data"
    ds = synthetic.build_synthetic(out, n=20, seed=1, size=64,
                                   progress=False, encoder=encoder)
    assert ds.source == "synthetic" and len(ds) == 20
    assert ds.codes.shape == (20, 1000) and ds.codes.dtype == np.float32
    assert [(s, int((ds.split == s).sum())) for s in ("train", "val", "test")
            ] == [("train", 16), ("val", 2), ("test", 2)]
    assert encoder.batches == [20]
    assert encoder.loaded == [str(out / "images" / n) for n in ds.names]
    np.testing.assert_array_equal(
        ds.codes, [fake_codes(out / "images" / n) for n in ds.names])
    assert ds.meta["encoder"] == encoder.record()
    assert Image.open(out / "images" / "synthetic_00001.png").size == (64, 64)
    assert "GENERATED" in (out / "NOTICE.txt").read_text()
    scenes = json.loads((out / "synthetic_scenes.json").read_text())
    assert set(scenes) == set(ds.names)
    back = load_dataset(out)
    assert back.source == "synthetic" and back.meta["generated"] is True
    assert back.captions == ds.captions and back.names == ds.names
    assert back.meta["image_dir"] == str(out / "images")


def test_build_synthetic_refuses_to_replace_other_data(tmp_path):
    out = tmp_path / "data"
    ds = synthetic.build_synthetic(out, n=6, size=32, progress=False,
                                   val=1, test=1, encoder=fake_encoder())
    ds.source = "flickr8k"
    save_dataset(ds, out, overwrite_source=True)
    with pytest.raises(DataError, match="already holds flickr8k"):
        synthetic.build_synthetic(out, n=6, size=32, progress=False,
                                  encoder=fake_encoder())
