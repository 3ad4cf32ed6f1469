"""`caption extract` and extract_codes on a small folder with a corrupt file.

Uses the real EfficientNet-Lite0 (compiled once per session, shared with
test_efficientnet through ``pretrained_logits_function``).
"""
import numpy as np
import pytest
from PIL import Image

import captioning  # noqa: F401  (Theano flags first)
from captioning import efficientnet as E
from captioning import extract
from captioning.cli import main
from captioning.images import load_rgb

GOOD = ["a_coffee.png", "b_chelsea.jpg", "c_camera.png", "d_rocket.jpg",
        "f_astronaut.webp"]
BAD = "e_broken.jpg"


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    import skimage.data
    folder = tmp_path_factory.mktemp("images")
    for name in GOOD:
        img = getattr(skimage.data, name[2:].split(".")[0])()
        Image.fromarray(img).reduce(2).save(folder / name)
    (folder / BAD).write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "notes.txt").write_text("not an image name, not listed")
    return folder


@pytest.fixture(scope="module")
def direct_codes(image_dir):
    """Logits of each good image, one at a time, straight from the model."""
    fn = E.pretrained_logits_function()
    return {name: fn(E.preprocess(load_rgb(image_dir / name)))[0] for name in GOOD}


class CountingCnn:
    """Wraps the real CNN: counts logits calls, can fail on the n-th."""

    def __init__(self, fail_on_call=None):
        self.real = extract.get_cnn("efficientnet_lite0")
        self.name, self.weights = self.real.name, self.real.weights
        self.preprocess = self.real.preprocess
        self.calls, self.rows, self.fail_on_call = 0, 0, fail_on_call

    def logits(self, batch):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C
        self.rows += len(batch)
        return self.real.logits(batch)


def _check_output(out, image_dir, direct_codes):
    codes = np.load(out)
    names = (out.parent / (out.name[:-4] + ".names.txt")).read_text().split()
    assert codes.shape == (6, 1000) and codes.dtype == np.float32
    assert names == sorted(GOOD + [BAD])
    for row, name in enumerate(names):
        if name == BAD:
            assert np.isnan(codes[row]).all()
        else:
            np.testing.assert_allclose(codes[row], direct_codes[name], atol=1e-4)


@pytest.mark.slow
def test_cli_extract(image_dir, direct_codes, tmp_path, capsys):
    out = tmp_path / "codes.npy"
    rc = main(["extract", "--images", str(image_dir), "--out", str(out),
               "--batch-size", "4", "--no-progress"])
    assert rc == 2  # one unreadable image
    err = capsys.readouterr().err
    assert "1 of 6 images could not be read" in err and BAD in err
    _check_output(out, image_dir, direct_codes)
    assert not (tmp_path / "codes.npy.partial").exists()


@pytest.mark.slow
def test_interrupted_run_resumes_without_recomputing(image_dir, direct_codes,
                                                     tmp_path, monkeypatch):
    out = tmp_path / "codes.npy"
    argv = ["extract", "--images", str(image_dir), "--out", str(out),
            "--batch-size", "2", "--no-progress"]
    first = CountingCnn(fail_on_call=2)
    monkeypatch.setattr(extract, "get_cnn", lambda cnn, weights=None: first)
    assert main(argv) == 130           # interrupted in the second batch
    assert not out.exists()
    assert len(list((tmp_path / "codes.npy.partial").glob("rows-*.npz"))) == 1

    second = CountingCnn()
    monkeypatch.setattr(extract, "get_cnn", lambda cnn, weights=None: second)
    assert main(argv) == 2
    # 6 images in batches of 2: the first batch was kept, two remain; the
    # corrupt image never reaches the CNN.
    assert second.calls == 2 and second.rows == 3
    _check_output(out, image_dir, direct_codes)


@pytest.mark.slow
def test_list_order_and_missing_file(image_dir, direct_codes, tmp_path, capsys):
    listing = tmp_path / "list.txt"
    listing.write_text("d_rocket.jpg\n\na_coffee.png\nno_such.jpg\n")
    out = tmp_path / "sub" / "codes.npy"
    rc = main(["extract", "--images", str(image_dir), "--list", str(listing),
               "--out", str(out), "--no-progress"])
    assert rc == 2 and "no_such.jpg: no such file" in capsys.readouterr().err
    codes = np.load(out)
    assert (tmp_path / "sub" / "codes.names.txt").read_text().split() == [
        "d_rocket.jpg", "a_coffee.png", "no_such.jpg"]
    np.testing.assert_allclose(codes[0], direct_codes["d_rocket.jpg"], atol=1e-4)
    np.testing.assert_allclose(codes[1], direct_codes["a_coffee.png"], atol=1e-4)
    assert np.isnan(codes[2]).all()


@pytest.mark.slow
def test_extract_codes_function(image_dir, direct_codes):
    paths = [image_dir / name for name in GOOD[:2]] + [image_dir / BAD]
    codes, failures = extract.extract_codes(paths, batch_size=2, progress=False)
    assert codes.shape == (3, 1000) and codes.dtype == np.float32
    np.testing.assert_allclose(codes[1], direct_codes[GOOD[1]], atol=1e-4)
    assert np.isnan(codes[2]).all()
    assert len(failures) == 1 and failures[0][0] == str(image_dir / BAD)


def test_batch_ranges():
    assert extract._batch_ranges([0, 1, 2, 3, 4], 2) == [(0, 2), (2, 4), (4, 5)]
    assert extract._batch_ranges([2, 3, 6, 7, 8], 4) == [(2, 4), (6, 9)]
    assert extract._batch_ranges([], 4) == []


def test_googlenet_without_weights_says_where_to_get_them(image_dir, tmp_path, capsys):
    rc = main(["extract", "--cnn", "googlenet", "--images", str(image_dir),
               "--out", str(tmp_path / "g.npy"), "--weights",
               str(tmp_path / "missing.pkl")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "caption data seminar" in err and "blvc_googlenet.pkl" in err


def test_usage_errors(tmp_path, capsys):
    assert main(["extract", "--images", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "c.npy")]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert main(["extract", "--images", str(tmp_path),
                 "--out", str(tmp_path / "c.npy")]) == 2
    assert "no images" in capsys.readouterr().err


@pytest.mark.slow
def test_a_finished_run_is_not_redone_unless_something_changed(
        image_dir, direct_codes, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in GOOD[:3]:
        (folder / name).write_bytes((image_dir / name).read_bytes())
    out = tmp_path / "codes.npy"
    argv = ["extract", "--images", str(folder), "--out", str(out), "--no-progress"]
    cnn = CountingCnn()
    monkeypatch.setattr(extract, "get_cnn", lambda cnn_name, weights=None: cnn)
    assert main(argv) == 0 and cnn.rows == 3
    assert (tmp_path / "codes.run.json").is_file()
    capsys.readouterr()

    assert main(argv) == 0 and cnn.rows == 3          # nothing recomputed
    assert "nothing to do" in capsys.readouterr().err
    assert main(argv + ["--force"]) == 0 and cnn.rows == 6

    (folder / GOOD[0]).write_bytes((image_dir / GOOD[3]).read_bytes())  # changed
    assert main(argv) == 0 and cnn.rows == 9
    codes = np.load(out)
    np.testing.assert_allclose(codes[0], direct_codes[GOOD[3]], atol=1e-4)

    np.save(out, np.zeros((3, 1000), np.float32))      # output replaced
    assert main(argv) == 0 and cnn.rows == 12
