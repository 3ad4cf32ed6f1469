"""captioning.cnn.encode: image paths -> codes through the cache, resumable.

The CNN is a fake passed as the ``encoder`` argument: its code of a file
is the SHA-256 of the file's bytes (tiled to 1000 values), so the expected
codes are computed here from the files alone, and it counts what it reads
and encodes. conftest.py gives every test an empty ``CAPTION_CACHE_DIR``.
The real encoders are only named here, never compiled (test_extract runs
the real CNN).
"""
import hashlib
import json
import os
from types import SimpleNamespace

import numpy as np
import pytest

from _encoder_fakes import FakeEncoder
from captioning.cnn import codes_cache, encode as encode_module
from captioning.cnn.encode import (FEATURE_KINDS, Encoder, EncoderError, encode,
                                   encoder_for_model)


def digest_code(path):
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).digest()
    return np.resize(np.frombuffer(digest, np.uint8), 1000).astype(np.float32)


def make_files(folder, n, prefix="f"):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / ("%s%d.bin" % (prefix, i))
        path.write_bytes(b"file %d " % i * (i + 1))
        paths.append(path)
    return paths


def cache_file(encoder):
    return codes_cache.cache_dir() / encoder.cache_name


# ------------------------------------------------------------ codes

@pytest.mark.parametrize("cache", [True, False])
def test_rows_kept_indices_and_failures_follow_the_input_order(tmp_path, cache):
    paths = make_files(tmp_path, 5)
    paths.insert(3, tmp_path / "missing.bin")
    fake = FakeEncoder(digest_code, fail=["f1.bin"])
    codes, kept, failures = encode(paths, fake, cache=cache, progress=False,
                                   batch_size=2)
    assert kept == [0, 2, 4, 5]
    np.testing.assert_array_equal(codes, [digest_code(paths[i]) for i in kept])
    assert codes.dtype == np.float32 and codes.shape == (4, 1000)
    assert [p for p, _ in failures] == [str(paths[1]), str(paths[3])]
    assert failures[0][1] == "fake failure"
    if cache:   # the cache looks at the file first
        assert failures[1][1] == "no such file"


def test_the_batch_size_does_not_change_the_codes(tmp_path):
    paths = make_files(tmp_path, 7)
    results = []
    for batch_size in (1, 3, 32):
        fake = FakeEncoder(digest_code)
        codes, kept, _ = encode(paths, fake, cache=False, progress=False,
                                batch_size=batch_size)
        assert fake.batches == [min(batch_size, 7 - s)
                                for s in range(0, 7, batch_size)]
        results.append(codes)
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])


def test_no_paths_give_an_empty_array(tmp_path):
    codes, kept, failures = encode([], FakeEncoder(digest_code),
                                   progress=False)
    assert codes.shape == (0, 1000) and kept == [] and failures == []


def test_a_bad_batch_size_is_refused():
    with pytest.raises(ValueError, match="batch_size"):
        encode([], FakeEncoder(digest_code), batch_size=0)


# ------------------------------------------------------------ the cache

def test_a_second_call_reads_the_cache_and_encodes_nothing(tmp_path):
    paths = make_files(tmp_path, 4)
    first, _, _ = encode(paths, FakeEncoder(digest_code), progress=False)
    again = FakeEncoder(digest_code)
    codes, kept, failures = encode(paths[::-1], again, progress=False)
    assert again.loaded == [] and again.batches == []
    assert kept == [0, 1, 2, 3] and failures == []
    np.testing.assert_array_equal(codes, first[::-1])


def test_a_changed_file_is_encoded_again(tmp_path):
    paths = make_files(tmp_path, 3)
    encode(paths, FakeEncoder(digest_code), progress=False)
    paths[1].write_bytes(b"something else entirely")
    os.utime(paths[1], ns=(1, 1))
    again = FakeEncoder(digest_code)
    codes, _, _ = encode(paths, again, progress=False)
    assert again.loaded == [str(paths[1])]
    np.testing.assert_array_equal(codes[1], digest_code(paths[1]))


def test_failures_are_not_cached_but_tried_again(tmp_path):
    paths = make_files(tmp_path, 3) + [tmp_path / "gone.bin"]
    encode(paths, FakeEncoder(digest_code, fail=["f1.bin"]), progress=False)
    again = FakeEncoder(digest_code)          # f1.bin is readable now
    codes, kept, failures = encode(paths, again, progress=False)
    assert again.loaded == [str(paths[1])]
    assert kept == [0, 1, 2] and failures == [(str(paths[3]), "no such file")]
    np.testing.assert_array_equal(codes[1], digest_code(paths[1]))


def test_an_interrupted_run_resumes_and_encodes_only_the_rest(tmp_path,
                                                              monkeypatch):
    monkeypatch.setattr(encode_module, "CHUNK", 2)   # save every 2 files
    paths = make_files(tmp_path, 5)
    first = FakeEncoder(digest_code, interrupt_on_batch=4)
    with pytest.raises(KeyboardInterrupt):
        encode(paths, first, progress=False, batch_size=1)
    # batches 1-2 (files 0, 1) were saved with the first chunk; file 2 was
    # encoded but its chunk never finished
    second = FakeEncoder(digest_code)
    codes, kept, _ = encode(paths, second, progress=False, batch_size=1)
    assert second.loaded == [str(p) for p in paths[2:]]
    assert second.batches == [1, 1, 1]
    np.testing.assert_array_equal(codes, [digest_code(p) for p in paths])


def test_a_damaged_shard_is_encoded_again_not_fatal(tmp_path, monkeypatch):
    monkeypatch.setattr(encode_module, "CHUNK", 2)   # a shard every 2 files
    paths = make_files(tmp_path / "files", 4)
    encode(paths, FakeEncoder(digest_code), progress=False)
    first = sorted(cache_file(FakeEncoder(digest_code)).glob("*.npy"))[0]
    first.write_bytes(first.read_bytes()[:-7])       # truncated
    fake = FakeEncoder(digest_code)
    codes, kept, failures = encode(paths, fake, progress=False)
    assert fake.loaded == [str(p) for p in paths[:2]]
    assert kept == [0, 1, 2, 3] and failures == []
    np.testing.assert_array_equal(codes, [digest_code(p) for p in paths])
    again = FakeEncoder(digest_code)
    encode(paths, again, progress=False)
    assert again.loaded == []


def _old_cache_file(encoder, paths, codes):
    """The one-file cache earlier versions wrote (``codes-<cnn>.npz``)."""
    folder = codes_cache.cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / (encoder.cache_name + ".npz"),
             keys=np.array([codes_cache.file_key(p) for p in paths], dtype=str),
             codes=np.asarray(codes, dtype="float32"))


def test_the_one_file_cache_of_earlier_versions_is_still_read(tmp_path):
    paths = make_files(tmp_path / "files", 3)
    fake = FakeEncoder(digest_code)
    _old_cache_file(fake, paths[:2], [digest_code(p) for p in paths[:2]])
    codes, kept, _ = encode(paths, fake, progress=False)
    assert fake.loaded == [str(paths[2])]
    np.testing.assert_array_equal(codes, [digest_code(p) for p in paths])


def test_an_old_cache_of_codes_of_another_size_is_not_used(tmp_path):
    paths = make_files(tmp_path / "files", 2)
    fake = FakeEncoder(digest_code)
    _old_cache_file(fake, paths, np.zeros((2, 10)))
    codes, _, _ = encode(paths, fake, progress=False)
    assert len(fake.loaded) == 2
    np.testing.assert_array_equal(codes, [digest_code(p) for p in paths])


def test_each_encoder_has_its_own_cache_file_where_the_environment_says(
        tmp_path, monkeypatch):
    monkeypatch.setenv("CAPTION_CACHE_DIR", str(tmp_path / "elsewhere"))
    paths = make_files(tmp_path / "files", 2)
    encode(paths, FakeEncoder(digest_code, cnn="one"), progress=False)
    assert (tmp_path / "elsewhere" / "codes-one").is_dir()
    other = FakeEncoder(digest_code, cnn="two")
    encode(paths, other, progress=False)
    assert len(other.loaded) == 2             # nothing shared between CNNs
    assert (tmp_path / "elsewhere" / "codes-two").is_dir()


def test_without_the_cache_nothing_is_written(tmp_path):
    paths = make_files(tmp_path / "files", 2)
    fake = FakeEncoder(digest_code)
    encode(paths, fake, cache=False, progress=False)
    encode(paths, fake, cache=False, progress=False)
    assert len(fake.loaded) == 4
    assert not any(codes_cache.cache_dir().iterdir())


# ------------------------------------------------------------ encoders

def test_the_real_encoders_cache_names_extend_the_file_names_of_before():
    # codes-<cnn>.npz was the one-file cache of earlier versions (still read)
    assert Encoder().cache_name == "codes-efficientnet_lite0"
    assert Encoder("googlenet").cache_name == "codes-googlenet"
    assert Encoder(feature_kind="spatial").cache_name == \
        "codes-efficientnet_lite0-spatial"
    assert Encoder(feature_kind="pooled").cache_name == \
        "codes-efficientnet_lite0-pooled"
    other_weights = Encoder("googlenet", weights="/some/other.pkl").cache_name
    assert other_weights.startswith("codes-googlenet-weights-")
    assert other_weights != Encoder("googlenet", weights="/a/b.pkl").cache_name


@pytest.mark.parametrize("size, side", [(448, 14), (300, 10), (32, 1), (260, 9)])
def test_a_larger_image_size_gives_a_finer_grid_its_own_cache_and_record(
        size, side):
    fine = Encoder(feature_kind="spatial", image_size=size)
    assert fine.code_shape == (side * side, 1280)
    assert fine.record() == {
        "cnn": "efficientnet_lite0", "feature_kind": "spatial",
        "preprocessing": "rgb-short%d-bilinear-centrecrop-minus127-div128" % size,
        "code_size": 1280, "code_shape": [side * side, 1280],
        "image_size": size}
    assert fine.cache_name == "codes-efficientnet_lite0-spatial-%dpx" % size
    assert fine.for_kind("pooled").cache_name == \
        "codes-efficientnet_lite0-pooled-%dpx" % size
    back = Encoder.from_record(json.loads(json.dumps(fine.record())))
    assert (back.image_size, back.code_shape) == (size, fine.code_shape)
    assert encoder_for_model(fine.record(), 1280)[0].image_size == size
    with pytest.raises(EncoderError, match="trained on efficientnet_lite0 "
                                           "spatial .*short%d" % size):
        encoder_for_model(fine.record(), 1280,
                          given=Encoder(feature_kind="spatial"))


def test_the_cnns_own_image_size_is_the_default():
    # Naming the default changes nothing: records (and so every model
    # directory made before the option) and cache folders stay the same.
    for cnn, size in (("efficientnet_lite0", 224), ("efficientnet_lite2", 260),
                      ("googlenet", 224)):
        kinds = ("logits",) if cnn == "googlenet" else FEATURE_KINDS
        for kind in kinds:
            plain, named = Encoder(cnn, kind), Encoder(cnn, kind, image_size=size)
            assert named.record() == plain.record()
            assert "image_size" not in plain.record()
            assert named.cache_name == plain.cache_name
    assert Encoder("efficientnet_lite2", "spatial").code_shape == (81, 1280)


def test_a_region_grid_averages_the_map_and_is_recorded():
    coarse = Encoder(feature_kind="spatial", image_size=448, grid=7)
    assert coarse.code_shape == (49, 1280)
    record = coarse.record()
    assert record["grid"] == 7 and record["image_size"] == 448
    assert record["code_shape"] == [49, 1280]
    assert coarse.cache_name == "codes-efficientnet_lite0-spatial-448px-grid7"
    # the other kinds of the same pass: one vector a photo, no grid
    assert coarse.for_kind("pooled").record() == Encoder(
        feature_kind="pooled", image_size=448).record()
    back = Encoder.from_record(json.loads(json.dumps(record)))
    assert (back.image_size, back.grid, back.code_shape) == (448, 7, (49, 1280))
    # a model of the averaged grid refuses the fine one, and the 224-px one
    # (whose shape is the same)
    for other in (Encoder(feature_kind="spatial", image_size=448),
                  Encoder(feature_kind="spatial")):
        with pytest.raises(EncoderError, match="the model was trained on"):
            encoder_for_model(record, 1280, given=other)
    # the map's own side is the default grid
    assert Encoder(feature_kind="spatial", image_size=448, grid=14).record() \
        == Encoder(feature_kind="spatial", image_size=448).record()


@pytest.mark.parametrize("kind, size, grid, message", [
    ("spatial", 448, 5, "a grid of 5 regions on a side: at 448 px the map is "
                        "14 x 14, and the grid must divide 14 \\(1, 2, 7, 14\\)"),
    ("spatial", 224, 0, "a grid of 0 regions"),
    ("spatial", 224, 7.0, "a grid of 7.0 regions"),
    ("pooled", 448, 7, "a region grid is for spatial codes, not pooled"),
])
def test_grids_that_cannot_be_made_are_refused(kind, size, grid, message):
    with pytest.raises(EncoderError, match=message):
        Encoder(feature_kind=kind, image_size=size, grid=grid)


@pytest.mark.parametrize("cnn, size, message", [
    ("googlenet", 448, "googlenet sees 224-px photos only"),
    ("efficientnet_lite0", 31, "image size 31: give a whole number of pixels "
                               "from 32 to 1024"),
    ("efficientnet_lite0", 1025, "from 32 to 1024"),
    ("efficientnet_lite0", 300.0, "image size 300.0"),
    ("efficientnet_lite0", True, "image size True"),
])
def test_image_sizes_that_cannot_be_made_are_refused(cnn, size, message):
    with pytest.raises(EncoderError, match=message):
        Encoder(cnn, image_size=size)
    record = dict(Encoder().record(), cnn=cnn, image_size=size)
    with pytest.raises(EncoderError, match=message):
        Encoder.from_record(record)


def test_records_name_the_cnn_the_feature_kind_and_the_preprocessing():
    record = Encoder().record()
    assert record == {"cnn": "efficientnet_lite0", "feature_kind": "logits",
                      "preprocessing": (
                          "rgb-short224-bilinear-centrecrop-minus127-div128"), "code_size": 1000}
    assert Encoder("googlenet").record()["preprocessing"] != \
        record["preprocessing"]
    assert Encoder.from_record(Encoder("googlenet").record()).cnn == "googlenet"
    with pytest.raises(EncoderError, match="cannot be made here"):
        Encoder.from_record(dict(record, preprocessing="rgb-0-1"))
    with pytest.raises(EncoderError, match="unknown CNN 'vgg16'"):
        Encoder.from_record(dict(record, cnn="vgg16"))
    with pytest.raises(EncoderError, match="unknown feature kind 'pool5'"):
        Encoder("googlenet", "pool5")


@pytest.mark.parametrize("source, meta, cnn", [
    ("seminar", {}, "googlenet"),
    ("flickr8k", {}, "efficientnet_lite0"),
    ("flickr8k", {"cnn": "googlenet"}, "googlenet"),
    ("synthetic", {"encoder": Encoder("googlenet").record()}, "googlenet"),
])
def test_the_encoder_of_a_dataset(source, meta, cnn):
    dataset = SimpleNamespace(source=source, meta=meta)
    assert Encoder.for_dataset(dataset).cnn == cnn


def test_a_model_gets_the_encoder_it_records():
    googlenet = Encoder("googlenet").record()
    encoder, note = encoder_for_model(googlenet, 1000)
    assert encoder.record() == googlenet and note is None
    fake = FakeEncoder(digest_code)
    assert encoder_for_model(fake.record(), 1000, given=fake) == (fake, None)


def test_an_old_model_gets_efficientnet_logits_and_a_note():
    encoder, note = encoder_for_model(None, 1000)
    assert encoder.record() == Encoder().record()
    assert "assuming efficientnet_lite0 logits" in note


@pytest.mark.parametrize("ask, message", [
    (dict(cnn="googlenet"), "trained on efficientnet_lite0 codes; --cnn "
                            "googlenet would feed it other codes"),
    (dict(given=FakeEncoder(digest_code)), "trained on efficientnet_lite0 "
                                           "logits .* not fake logits"),
    (dict(code_size=512), "takes codes of 512 values"),
])
def test_a_model_refuses_other_codes(ask, message):
    options = dict(dict(code_size=1000), **ask)
    with pytest.raises(EncoderError, match=message):
        encoder_for_model(Encoder().record(), options.pop("code_size"),
                          **options)


# ------------------------------------------------------------ feature kinds

def test_the_kinds_shapes_dtypes_and_records():
    spatial = Encoder(feature_kind="spatial")
    assert spatial.code_shape == (49, 1280) and spatial.code_size == 1280
    assert spatial.code_dtype == np.float16
    assert spatial.record() == {
        "cnn": "efficientnet_lite0", "feature_kind": "spatial",
        "preprocessing": "rgb-short224-bilinear-centrecrop-minus127-div128",
        "code_size": 1280, "code_shape": [49, 1280]}
    # model.json stores it as JSON: the record must survive that
    back = Encoder.from_record(json.loads(json.dumps(spatial.record())))
    assert back.feature_kind == "spatial"
    pooled = Encoder(feature_kind="pooled")
    assert pooled.code_shape == (1280,) and pooled.code_dtype == np.float32
    assert "code_shape" not in pooled.record()
    assert spatial.pass_kinds == ("spatial", "pooled", "logits")
    assert pooled.pass_kinds == ("pooled", "logits")
    assert Encoder().pass_kinds == ("logits",)
    assert Encoder("googlenet").pass_kinds == ("logits",)
    with pytest.raises(EncoderError, match="googlenet gives no spatial codes; "
                                           "its kinds: logits"):
        Encoder("googlenet", "spatial")
    with pytest.raises(EncoderError, match="cannot be made here"):
        Encoder.from_record(dict(spatial.record(), code_shape=[64, 1280]))


def test_a_model_of_one_kind_refuses_codes_of_another():
    spatial = Encoder(feature_kind="spatial")
    assert encoder_for_model(spatial.record(), 1280)[0].feature_kind == \
        "spatial"
    with pytest.raises(EncoderError, match=r"trained on efficientnet_lite0 "
                       r"logits .* not efficientnet_lite0 spatial .*49 x 1280"):
        encoder_for_model(Encoder().record(), 1000, given=spatial)
    with pytest.raises(EncoderError, match="trained on efficientnet_lite0 "
                                           "spatial .* not .* pooled"):
        encoder_for_model(spatial.record(), 1280,
                          given=Encoder(feature_kind="pooled"))


REGIONS = (4, 3)   # the fake CNN's map: 4 regions of 3 values


def region_map(path):
    """A (4, 3) float32 map from the file's bytes; /7 so that float16
    cannot hold it exactly."""
    return (digest_code(path)[:12].reshape(REGIONS) / 7).astype(np.float32)


class KindsFake(FakeEncoder):
    """A CNN whose pass gives the region map (its input), pooled = the
    regions' mean and logits = 2 x pooled, like the real one's kinds."""

    def __init__(self, kind):
        super().__init__(region_map, cnn="kinds")
        self.feature_kind = kind
        self.code_shape = {"spatial": REGIONS, "pooled": REGIONS[1:],
                           "logits": REGIONS[1:]}[kind]
        self.code_size = self.code_shape[-1]
        self.code_dtype = np.dtype(np.float16 if kind == "spatial"
                                   else np.float32)

    @property
    def cache_name(self):
        return "codes-kinds-" + self.feature_kind

    def for_kind(self, kind):
        return KindsFake(kind)

    def batch_codes(self, inputs):
        maps = self.batch_function(inputs)
        every = {"spatial": maps, "pooled": maps.mean(axis=1),
                 "logits": 2 * maps.mean(axis=1)}
        order = ["spatial", "pooled", "logits"]
        return {k: every[k] for k in order[order.index(self.feature_kind):]}


def test_spatial_codes_are_float16_and_one_pass_fills_the_later_kinds(
        tmp_path):
    paths = make_files(tmp_path / "files", 5)
    maps = np.stack([region_map(p) for p in paths])
    # photo 0's logits are already cached (with a marker value): kept as is
    codes_cache.CodeCache(codes_cache.cache_dir() / "codes-kinds-logits",
                          (3,)).add([codes_cache.file_key(paths[0])],
                                    np.full((1, 3), -1.0))
    spatial = KindsFake("spatial")
    codes, kept, _ = encode(paths, spatial, progress=False, batch_size=2)
    assert codes.dtype == np.float16 and codes.shape == (5, 4, 3)
    assert not np.array_equal(codes, maps)           # rounded to float16
    np.testing.assert_allclose(codes, maps, rtol=2.0 ** -11, atol=0)
    assert len(spatial.loaded) == 5

    pooled = KindsFake("pooled")
    codes, _, _ = encode(paths, pooled, progress=False)
    assert pooled.loaded == []                     # no CNN pass
    assert codes.dtype == np.float32
    np.testing.assert_array_equal(codes, maps.mean(axis=1))   # not from float16
    logits = KindsFake("logits")
    codes, _, _ = encode(paths, logits, progress=False)
    assert logits.loaded == []
    np.testing.assert_array_equal(codes[0], [-1, -1, -1])
    np.testing.assert_array_equal(codes[1:], 2 * maps[1:].mean(axis=1))


def test_without_the_cache_no_kind_is_written(tmp_path):
    paths = make_files(tmp_path / "files", 2)
    codes, _, _ = encode(paths, KindsFake("spatial"), cache=False,
                         progress=False)
    assert codes.shape == (2, 4, 3) and codes.dtype == np.float16
    assert not any(codes_cache.cache_dir().iterdir())
