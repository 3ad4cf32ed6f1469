"""Seminar formats: splits, load/save, errors, Flickr8k, find_data."""
import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _data_fakes import fake_codes, fake_encoder
from captioning.commands import main
from captioning.datasets import find, flickr8k, formats, seminar
from captioning.datasets.find import find_data
from captioning.datasets.formats import (DataError, Dataset, load_dataset,
                                         make_split, save_dataset)
from captioning.text import NORMALISER, normalise_caption

SHARED_FLICKR8K = find.default_flickr8k_dir()


# ------------------------------------------------------------ splits

def test_make_split_deterministic_by_image():
    a = make_split(100, seed=3, n_val=10, n_test=0.2)
    b = make_split(100, seed=3, n_val=10, n_test=0.2)
    assert list(a) == list(b)
    assert (a == "val").sum() == 10 and (a == "test").sum() == 20
    assert (a == "train").sum() == 70
    assert list(make_split(100, seed=4, n_val=10)) != list(
        make_split(100, seed=3, n_val=10))
    with pytest.raises(DataError, match="cannot hold out"):
        make_split(5, n_val=4, n_test=2)


def test_seminar_split_holds_out_5000():
    s = formats.seminar_split(123287)
    assert (s == "val").sum() == 5000 and (s == "train").sum() == 118287
    assert list(s[:50]) == list(formats.seminar_split(123287)[:50])


# ------------------------------------------------------------ load / save

def toy(n=6, source="synthetic"):
    codes = np.random.RandomState(1).randn(n, 1000).astype(np.float32)
    captions = [["a red circle %d" % i, "one circle", "a circle that is red",
                 "there is a circle", "a red shape"] for i in range(n)]
    names = ["img_%02d.png" % i for i in range(n)]
    return Dataset(codes, captions, names, make_split(n, 0, n_val=2), source)


def test_save_load_round_trip(tmp_path):
    ds = toy()
    save_dataset(ds, tmp_path, {"seed": 0})
    assert sorted(os.listdir(tmp_path)) == [
        "caption_tokens.json", "dataset.json", "image_codes.npy",
        "image_names.txt", "split.json"]
    back = load_dataset(tmp_path)
    np.testing.assert_array_equal(back.codes, ds.codes)
    assert back.codes.dtype == np.float32
    assert back.captions == ds.captions
    assert back.names == ds.names
    assert list(back.split) == list(ds.split)
    assert back.source == "synthetic"
    # the codes file loads without pickle, as the notebook does it
    assert np.load(tmp_path / "image_codes.npy", allow_pickle=False).shape \
        == (6, 1000)
    assert json.loads((tmp_path / "split.json").read_text())["counts"] == \
        {"train": 4, "val": 2, "test": 0}
    assert len(back.subset("val")) == 2


def write_bundle(folder, codes, captions, protocol=2):
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "image_codes.npy", codes)
    with open(folder / "caption_tokens.pcl", "wb") as f:
        pickle.dump(captions, f, protocol)


def test_original_bundle_loads_with_seeded_split(tmp_path):
    codes = np.ones((30, 1000), np.float32)
    captions = [["a man riding a bike"] * 5 for _ in range(30)]
    write_bundle(tmp_path, codes, captions)
    ds = load_dataset(tmp_path)
    assert ds.source == "seminar"
    assert ds.names[0] == "coco_000000" and ds.names[-1] == "coco_000029"
    assert (ds.split == "val").sum() == 6          # n // 5 below 25000
    assert ds.captions[0][0] == "a man riding a bike"


def test_python2_bundle_with_utf8_text(tmp_path):
    np.save(tmp_path / "image_codes.npy", np.zeros((1, 1000), np.float32))
    # protocol-2 pickle of [['Caf\xc3\xa9 Au Lait']] as Python 2 wrote it
    (tmp_path / "caption_tokens.pcl").write_bytes(
        b"\x80\x02]q\x00]q\x01U\x0dCaf\xc3\xa9 Au Laitq\x02aa.")
    assert load_dataset(tmp_path).captions == [["caf\u00e9 au lait"]]


def test_caption_arrays_in_pickle_load_as_lists(tmp_path):
    captions = np.array([["a cat", "the cat"], ["a dog", "one dog"]],
                        dtype=object)
    write_bundle(tmp_path, np.zeros((2, 1000), np.float32), captions)
    assert load_dataset(tmp_path).captions == [["a cat", "the cat"],
                                               ["a dog", "one dog"]]


def test_finish_seminar_records_files_and_keeps_originals(tmp_path):
    codes = np.ones((10, 1000), np.float32)
    write_bundle(tmp_path, codes, [["a dog"]] * 10)
    before = (tmp_path / "caption_tokens.pcl").read_bytes()
    seminar.finish_seminar(tmp_path)
    assert (tmp_path / "caption_tokens.pcl").read_bytes() == before
    assert (tmp_path / "image_names.txt").read_text().splitlines()[3] == \
        "coco_000003"
    meta = json.loads((tmp_path / "dataset.json").read_text())
    assert meta["source"] == "seminar"
    assert meta["captions_file"] == "caption_tokens.pcl"


def test_missing_files_name_the_commands(tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset(tmp_path)
    for command in ("caption data seminar", "caption data flickr8k",
                    "caption data synthetic"):
        assert command in str(info.value)
    np.save(tmp_path / "image_codes.npy", np.zeros((2, 1000), np.float32))
    with pytest.raises(DataError, match="caption_tokens.pcl not found.*"
                                        "caption data synthetic"):
        load_dataset(tmp_path)


def test_interrupted_write_is_detected(tmp_path):
    save_dataset(toy(), tmp_path)
    (tmp_path / "dataset.json").unlink()
    with pytest.raises(DataError, match="interrupted"):
        load_dataset(tmp_path)


def test_count_mismatch_reported_with_counts(tmp_path):
    write_bundle(tmp_path, np.zeros((3, 1000), np.float32),
                 [["a cat"], ["a dog"]])
    with pytest.raises(DataError, match="3 image codes, 2 caption lists"):
        load_dataset(tmp_path)


def test_nan_codes_reported(tmp_path):
    codes = np.zeros((4, 1000), np.float32)
    codes[1, 5] = np.nan
    codes[3, 0] = np.inf
    write_bundle(tmp_path, codes, [["a cat"]] * 4)
    with pytest.raises(DataError, match=r"2 images have NaN/inf codes "
                                        r"\(rows 1, 3\)"):
        load_dataset(tmp_path)


def test_empty_captions_and_images_without_captions(tmp_path):
    write_bundle(tmp_path, np.zeros((4, 1000), np.float32),
                 [["a cat", " . "], [], ["a dog"], []])
    with pytest.raises(DataError) as info:
        load_dataset(tmp_path)
    msg = str(info.value)
    assert "2 images have no captions (rows 1, 3)" in msg
    assert "1 captions are empty (image/caption 0/1)" in msg


def test_non_utf8_captions_reported(tmp_path):
    ds = toy()
    save_dataset(ds, tmp_path)
    raw = (tmp_path / "caption_tokens.json").read_bytes()
    (tmp_path / "caption_tokens.json").write_bytes(
        raw.replace(b"one circle", b"one \xff\xfe circle", 1))
    with pytest.raises(DataError, match="not UTF-8"):
        load_dataset(tmp_path)


def test_non_utf8_bytes_in_pickle_reported(tmp_path):
    write_bundle(tmp_path, np.zeros((2, 1000), np.float32),
                 [[b"a \xff cat", "ok"], [b"fine"]], protocol=3)
    with pytest.raises(DataError, match="1 captions are not UTF-8"):
        load_dataset(tmp_path)


def test_malicious_caption_pickle_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, ("touch %s" % marker,))

    write_bundle(tmp_path, np.zeros((1, 1000), np.float32),
                 [[Payload()]])
    with pytest.raises(DataError, match="refusing"):
        load_dataset(tmp_path)
    assert not marker.exists()


def test_other_source_is_not_overwritten(tmp_path):
    write_bundle(tmp_path, np.zeros((2, 1000), np.float32), [["a"], ["b"]])
    with pytest.raises(DataError, match="already holds seminar data"):
        save_dataset(toy(), tmp_path)
    assert np.load(tmp_path / "image_codes.npy").shape == (2, 1000)
    save_dataset(toy(), tmp_path, overwrite_source=True)
    assert load_dataset(tmp_path).source == "synthetic"
    assert (tmp_path / "caption_tokens.pcl.replaced").exists()


def test_relative_data_dir_found_from_repo_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert formats.resolve_data_dir("data") == formats.REPO_ROOT / "data"
    assert formats.resolve_data_dir(tmp_path) == tmp_path


# ------------------------------------------------------------ Flickr8k

def make_flickr(root, with_lists=True, extra_caption=None, extra_image=None):
    """Five images (3 train, 1 dev, 1 test) and raw Flickr8k captions."""
    (root / "images").mkdir(parents=True)
    names = ["100_a.jpg", "200_b.jpg", "300_c.jpg", "400_d.jpg", "500_e.jpg"]
    for i, name in enumerate(names + ([extra_image] if extra_image else [])):
        Image.new("RGB", (32, 24), (40 * i, 10, 200 - 30 * i)).save(
            root / "images" / name)
    lines = []
    for name in names + ([extra_caption] if extra_caption else []):
        for j in range(5):
            lines.append("%s#%d\tA Dog 's toy , number %d ." % (name, j, j))
    (root / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n")
    if with_lists:
        (root / "Flickr_8k.trainImages.txt").write_text(
            "300_c.jpg\n100_a.jpg\n200_b.jpg\n")
        (root / "Flickr_8k.devImages.txt").write_text("400_d.jpg\n")
        (root / "Flickr_8k.testImages.txt").write_text("500_e.jpg\n")
    return names


def test_flickr8k_build(tmp_path):
    encoder = fake_encoder()
    names = make_flickr(tmp_path / "f8k")
    out = tmp_path / "data"
    ds = flickr8k.build_flickr8k(tmp_path / "f8k", out, progress=False,
                                 encoder=encoder, batch_size=2)
    assert ds.names == names
    assert list(ds.split) == ["train", "train", "train", "val", "test"]
    assert ds.captions[0] == ["a dog 's toy number %d" % j for j in range(5)]
    assert encoder.batches == [2, 2, 1]
    assert ds.meta["encoder"] == encoder.record()
    np.testing.assert_allclose(
        ds.codes[2], fake_codes(tmp_path / "f8k" / "images" / "300_c.jpg"))
    back = load_dataset(out)
    assert back.source == "flickr8k" and back.names == names
    assert back.captions == ds.captions
    assert "Hodosh" in back.meta["citation"]
    assert back.meta["image_dir"] == str(tmp_path / "f8k" / "images")


def make_old_version(out, captions):
    """Make ``out`` look as an older version wrote it: no normaliser record
    and the given captions."""
    meta = json.loads((out / "dataset.json").read_text())
    del meta["normaliser"]
    (out / "dataset.json").write_text(json.dumps(meta))
    (out / "caption_tokens.json").write_text(json.dumps(captions))


def test_flickr8k_data_of_an_older_normaliser_is_refused_or_rebuilt(
        tmp_path, capsys):
    encoder = fake_encoder()
    make_flickr(tmp_path / "f8k")
    out = tmp_path / "data"
    flickr8k.build_flickr8k(tmp_path / "f8k", out, progress=False,
                           encoder=encoder)
    assert json.loads((out / "dataset.json").read_text())["normaliser"] \
        == NORMALISER
    # the old tokeniser wrote "horse 's" as "horses": it cannot be undone
    make_old_version(out, [["a dogs toy number %d" % j for j in range(5)]] * 5)
    command = "caption data flickr8k --flickr8k %s --out %s" % (
        (tmp_path / "f8k").resolve(), out)
    with pytest.raises(DataError, match="older version.*" + re.escape(command)):
        load_dataset(out)
    with pytest.raises(DataError, match="older version"):
        find_data(data_dir=out, build=False)
    # `caption data check` refuses it in one line (captioning.commands.main prints it, exit 2)
    capsys.readouterr()
    assert main(["data", "check", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and command in err
    # the notebook's find_data rebuilds it, with the codes from the cache
    encoded = len(encoder.loaded)
    ds = find_data(data_dir=out, progress=False, encoder=encoder)
    assert "rebuilding" in capsys.readouterr().out
    assert ds.captions[0] == ["a dog 's toy number %d" % j for j in range(5)]
    assert load_dataset(out).captions == ds.captions
    assert len(encoder.loaded) == encoded


def test_synthetic_data_of_an_older_version_still_loads(tmp_path):
    # generated captions are plain words: no normaliser changed them
    save_dataset(toy(), tmp_path)
    make_old_version(tmp_path, toy().captions)
    assert load_dataset(tmp_path).captions == toy().captions


def test_flickr8k_without_lists_gets_seeded_split(tmp_path):
    make_flickr(tmp_path / "f8k", with_lists=False)
    a = flickr8k.collect(tmp_path / "f8k")[3]
    assert list(a) == list(flickr8k.collect(tmp_path / "f8k")[3])
    assert set(a) <= {"train", "val"} and (a == "val").sum() == 1


def test_flickr8k_image_without_captions_reported(tmp_path, monkeypatch):
    make_flickr(tmp_path / "f8k", extra_image="999_z.jpg")
    with pytest.raises(DataError, match="1 images in images have no caption"
                                        ".*999_z.jpg"):
        flickr8k.collect(tmp_path / "f8k")


def test_flickr8k_counts_every_image_extension(tmp_path):
    # The one extension list (captioning.io.files): a .webp photo is an image
    # too, so one without captions is reported, not silently skipped.
    make_flickr(tmp_path / "f8k", extra_image="999_z.webp")
    with pytest.raises(DataError, match="1 images in images have no caption"
                                        ".*999_z.webp"):
        flickr8k.collect(tmp_path / "f8k")


def test_flickr8k_split_lists_with_bom_and_crlf(tmp_path):
    make_flickr(tmp_path / "f8k")
    (tmp_path / "f8k" / "Flickr_8k.trainImages.txt").write_bytes(
        b"\xef\xbb\xbf300_c.jpg\r\n100_a.jpg\r\n\r\n200_b.jpg\r\n")
    assert flickr8k.read_split_lists(tmp_path / "f8k") == {
        "train": ["300_c.jpg", "100_a.jpg", "200_b.jpg"],
        "val": ["400_d.jpg"], "test": ["500_e.jpg"]}
    split = flickr8k.collect(tmp_path / "f8k")[3]
    assert list(split) == ["train", "train", "train", "val", "test"]


def test_flickr8k_split_list_not_utf8_is_a_data_error(tmp_path):
    make_flickr(tmp_path / "f8k")
    path = tmp_path / "f8k" / "Flickr_8k.devImages.txt"
    path.write_bytes(b"400_d.jpg\n\xff\xfe.jpg\n")
    with pytest.raises(DataError, match="cannot read .*devImages.txt: line 2 "
                                        "is not UTF-8"):
        flickr8k.read_split_lists(tmp_path / "f8k")


def test_flickr8k_captions_without_image_reported(tmp_path):
    make_flickr(tmp_path / "f8k", extra_caption="888_y.jpg")
    with pytest.raises(DataError, match="1 captioned images have no file"):
        flickr8k.collect(tmp_path / "f8k")
    names = flickr8k.collect(tmp_path / "f8k", allow_missing_images=True)[0]
    assert "888_y.jpg" not in names and len(names) == 5
    ds = flickr8k.build_flickr8k(tmp_path / "f8k", tmp_path / "d",
                                 progress=False, allow_missing_images=True,
                                 encoder=fake_encoder())
    assert ds.meta["left_out_captioned_images_without_file"] == 1


def test_flickr8k_unreadable_images_never_silently_dropped(tmp_path):
    encoder = fake_encoder(fail=["200_b.jpg"])
    make_flickr(tmp_path / "f8k")
    with pytest.raises(DataError, match="1 of 5 images could not be encoded"
                                        ".*200_b.jpg"):
        flickr8k.build_flickr8k(tmp_path / "f8k", tmp_path / "d",
                                progress=False, encoder=encoder)
    assert not (tmp_path / "d" / "image_codes.npy").exists()
    ds = flickr8k.build_flickr8k(tmp_path / "f8k", tmp_path / "d",
                                 progress=False, skip_unreadable=True,
                                 encoder=encoder)
    assert "200_b.jpg" not in ds.names and len(ds) == 4
    assert ds.meta["left_out_unreadable_images"][0].endswith("200_b.jpg")


def test_flickr8k_bad_token_line_reported(tmp_path):
    make_flickr(tmp_path / "f8k")
    with open(tmp_path / "f8k" / "Flickr8k.token.txt", "a") as f:
        f.write("no tab or hash here\n")
    with pytest.raises(DataError, match="1 lines are not IMAGE#N"):
        flickr8k.collect(tmp_path / "f8k")


@pytest.mark.skipif(not (SHARED_FLICKR8K / "Flickr8k.token.txt").exists(),
                    reason="shared Flickr8k not found at %s (set "
                           "CAPTION_FLICKR8K_DIR)" % SHARED_FLICKR8K)
def test_shared_flickr8k_collects():
    names, paths, captions, split, report = flickr8k.collect(SHARED_FLICKR8K)
    assert len(names) == 7000
    assert (split == "train").sum() == 6000 and (split == "val").sum() == 1000
    assert all(len(c) == 5 for c in captions)
    i = names.index("1000268201_693b08cb0e.jpg")
    assert captions[i][0] == ("a child in a pink dress is climbing up a set "
                              "of stairs in an entry way")
    assert all(normalise_caption(c) == c for caps in captions for c in caps)


@pytest.mark.slow
def test_flickr8k_with_real_cnn(tmp_path):
    make_flickr(tmp_path / "f8k")
    ds = flickr8k.build_flickr8k(tmp_path / "f8k", tmp_path / "d",
                                 progress=False, batch_size=2)
    assert ds.codes.shape == (5, 1000) and ds.codes.dtype == np.float32
    assert np.isfinite(ds.codes).all()
    assert not np.allclose(ds.codes[0], ds.codes[1])


# ------------------------------------------------------------ find_data

def test_find_data_prefers_what_data_dir_holds(tmp_path):
    save_dataset(toy(source="synthetic"), tmp_path / "data")
    ds = find_data(data_dir=tmp_path / "data",
                   flickr8k_dir=tmp_path / "nothing")
    assert ds.source == "synthetic"
    with pytest.raises(DataError, match="holds synthetic data, not flickr8k"):
        find_data("flickr8k", data_dir=tmp_path / "data")


def test_find_data_order(tmp_path, monkeypatch):
    make_flickr(tmp_path / "f8k")
    ds = find_data(data_dir=tmp_path / "d1", flickr8k_dir=tmp_path / "f8k",
                   progress=False, encoder=fake_encoder())
    assert ds.source == "flickr8k" and len(ds) == 5
    # built or loaded, the data set says where its photos are (the notebook
    # shows held-out photos from there)
    assert ds.meta["image_dir"] == str((tmp_path / "f8k" / "images").resolve())
    assert find_data(data_dir=tmp_path / "d1").meta == ds.meta

    from captioning.datasets import synthetic
    seen = []
    monkeypatch.setattr(synthetic, "build_synthetic",
                        lambda d, progress, encoder: seen.append(d) or "synthetic!")
    assert find_data(data_dir=tmp_path / "d2", flickr8k_dir=tmp_path / "no",
                     progress=False) == "synthetic!"
    assert seen == [tmp_path / "d2"]
    with pytest.raises(DataError, match="caption data seminar"):
        find_data("seminar", data_dir=tmp_path / "d3")
    with pytest.raises(DataError, match="no data"):
        find_data(data_dir=tmp_path / "d4", build=False)


@pytest.mark.parametrize("name, make", [
    ("seminar", lambda d: write_bundle(d, np.zeros((10, 1000), np.float32),
                                       [["a dog"]] * 10)),
    ("flickr8k", lambda d: save_dataset(toy(source="flickr8k"), d)),
    ("synthetic", lambda d: save_dataset(toy(source="synthetic"), d)),
])
def test_find_data_takes_each_name_and_auto(tmp_path, name, make):
    # the notebook passes CAPTION_DATA (auto | seminar | flickr8k | synthetic)
    # straight through; `caption data NAME` makes each of them
    make(tmp_path / "d")
    for asked in (name, "auto", None):
        ds = find_data(asked, data_dir=tmp_path / "d", build=False)
        assert ds.source == name
    other = {"seminar": "synthetic"}.get(name, "seminar")
    with pytest.raises(DataError, match="holds %s data, not %s; run `%s"
                       % (name, other, "caption data " + other)):
        find_data(other, data_dir=tmp_path / "d", build=False)


def test_unknown_source_lists_the_names(tmp_path):
    with pytest.raises(DataError) as info:
        find_data("coco", data_dir=tmp_path)
    assert str(info.value) == ("unknown source 'coco'; choose one of auto, "
                               "seminar, flickr8k, synthetic")


def test_data_dir_written_as_coco_seminar_still_loads(tmp_path):
    # what `caption data seminar` wrote before the sources had one set of names
    write_bundle(tmp_path, np.ones((10, 1000), np.float32), [["a dog"]] * 10)
    (tmp_path / "image_names.txt").write_text(
        "".join("coco_%06d\n" % i for i in range(10)))
    (tmp_path / "split.json").write_text(json.dumps(
        {"split": ["train"] * 8 + ["val"] * 2}))
    (tmp_path / "dataset.json").write_text(json.dumps(
        {"source": "coco-seminar", "captions_file": "caption_tokens.pcl"}))
    assert formats.has_dataset(tmp_path) == "seminar"
    ds = load_dataset(tmp_path)
    assert ds.source == "seminar" and ds.meta["source"] == "seminar"
    assert list(ds.split) == ["train"] * 8 + ["val"] * 2
    assert find_data("seminar", data_dir=tmp_path).source == "seminar"
    assert find_data(data_dir=tmp_path).source == "seminar"
    with pytest.raises(DataError, match="already holds seminar data"):
        save_dataset(toy(), tmp_path)
    # re-recording the bundle writes the new name
    seminar.finish_seminar(tmp_path)
    assert json.loads((tmp_path / "dataset.json").read_text())["source"] \
        == "seminar"


def test_cli_library_error_is_one_line_naming_the_command(tmp_path, capsys):
    # An encoder error (captioning.cnn.encode.EncoderError, raised below the
    # command layer) reaches captioning.commands.main, which prints it as one line, exit 2.
    from captioning.commands import main
    from captioning.cnn.encode import EncoderError

    class MissingWeights(type(fake_encoder())):
        def batch_function(self, inputs):
            raise EncoderError("fake weights not found: /nowhere.pth")

    make_flickr(tmp_path / "f8k")
    assert main(["data", "flickr8k", "--flickr8k", str(tmp_path / "f8k"),
                 "--out", str(tmp_path / "out"), "--no-progress"],
                encoder=MissingWeights(fake_codes)) == 2
    err = capsys.readouterr().err
    assert err == ("caption data flickr8k: error: fake weights not found: "
                   "/nowhere.pth\n")


def test_flickr8k_env_var_overrides_default(monkeypatch, tmp_path):
    monkeypatch.setenv("CAPTION_FLICKR8K_DIR", str(tmp_path))
    assert find.default_flickr8k_dir() == tmp_path
    monkeypatch.delenv("CAPTION_FLICKR8K_DIR")
    assert find.default_flickr8k_dir() == (formats.REPO_ROOT.parent / "shared"
                                           / "flickr8k").resolve()


# ------------------------------------------------------------ CLI

def test_cli_flickr8k_and_check(tmp_path, capsys):
    make_flickr(tmp_path / "f8k")
    out = tmp_path / "out"
    assert main(["data", "flickr8k", "--flickr8k", str(tmp_path / "f8k"),
                 "--out", str(out), "--no-progress"], fake_encoder()) == 0
    assert "flickr8k: 5 images (3 train, 1 val, 1 test), 25 captions" in \
        capsys.readouterr().out
    assert main(["data", "check", "--out", str(out)]) == 0
    assert main(["data", "check", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "caption data synthetic" in err

