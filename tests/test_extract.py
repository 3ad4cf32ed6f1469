"""`caption extract` and the real encoder on a small folder with a corrupt file.

Uses the real EfficientNet-Lite0 (compiled once per process by
``captioning.cnn.encode.Encoder``, shared with test_efficientnet). Codes go
through the code cache (conftest.py gives each test an empty one).
"""
import numpy as np
import pytest
from PIL import Image

import captioning.stack  # noqa: F401  (Theano flags first)
from captioning.cnn import efficientnet as E
from captioning.cnn import encode as encode_module
from captioning.commands import main
from captioning.cnn.encode import Encoder, encode
from captioning.cnn.images import load_rgb

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
    fn = Encoder().batch_function
    return {name: fn(E.preprocess(load_rgb(image_dir / name)))[0] for name in GOOD}


class CountingEncoder:
    """The real encoder, counting its CNN calls; can fail on the n-th."""

    def __init__(self, fail_on_call=None):
        self.real = Encoder()
        for name in ("cnn", "feature_kind", "preprocessing", "code_size",
                     "code_shape", "code_dtype", "cache_name", "record",
                     "load"):
            setattr(self, name, getattr(self.real, name))
        self.calls, self.rows, self.fail_on_call = 0, 0, fail_on_call

    def batch_codes(self, batch):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C
        self.rows += len(batch)
        return self.real.batch_codes(batch)


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
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "codes.names.txt", "codes.npy"]                 # no temporary files


@pytest.mark.slow
def test_interrupted_run_resumes_without_recomputing(image_dir, direct_codes,
                                                     tmp_path, monkeypatch):
    monkeypatch.setattr(encode_module, "CHUNK", 2)   # cache saved every 2
    out = tmp_path / "codes.npy"
    argv = ["extract", "--images", str(image_dir), "--out", str(out),
            "--batch-size", "2", "--no-progress"]
    first = CountingEncoder(fail_on_call=2)
    assert main(argv, encoder=first) == 130     # interrupted in the 2nd chunk
    assert not out.exists()

    second = CountingEncoder()
    assert main(argv, encoder=second) == 2
    # 6 images in chunks of 2: the first chunk was kept, two remain; the
    # corrupt image never reaches the CNN.
    assert second.calls == 2 and second.rows == 3
    _check_output(out, image_dir, direct_codes)


@pytest.mark.slow
def test_list_order_and_missing_file(image_dir, direct_codes, tmp_path, capsys):
    listing = tmp_path / "list.txt"        # read by captioning.io.files.read_list:
    listing.write_bytes(b"\xef\xbb\xbfd_rocket.jpg\r\n\r\na_coffee.png\r\n"
                        b"no_such.jpg\r\n")  # a BOM, CRLF and a blank line
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
def test_encode_with_the_real_cnn(image_dir, direct_codes):
    paths = [image_dir / name for name in GOOD[:2]] + [image_dir / BAD]
    codes, kept, failures = encode(paths, Encoder(), cache=False,
                                   batch_size=2, progress=False)
    assert codes.shape == (2, 1000) and codes.dtype == np.float32
    assert kept == [0, 1]
    np.testing.assert_allclose(codes[1], direct_codes[GOOD[1]], atol=1e-4)
    assert len(failures) == 1 and failures[0][0] == str(image_dir / BAD)
    assert "corrupt or truncated" in failures[0][1]     # from load_rgb


@pytest.mark.slow
def test_the_cnn_is_compiled_once_per_process(direct_codes):
    assert Encoder().batch_function is Encoder("efficientnet_lite0").batch_function


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
    err = capsys.readouterr().err
    assert err.startswith("caption extract: error: --images ")
    assert "not a directory" in err and err.count("\n") == 1
    assert main(["extract", "--images", str(tmp_path),
                 "--out", str(tmp_path / "c.npy")]) == 2
    assert "no images" in capsys.readouterr().err
    (tmp_path / "list.txt").write_bytes(b"a.jpg\n\xff.jpg\n")
    assert main(["extract", "--images", str(tmp_path), "--list",
                 str(tmp_path / "list.txt"), "--out", str(tmp_path / "c.npy")]) == 2
    assert "cannot read --list %s: line 2 is not UTF-8" % (
        tmp_path / "list.txt") in capsys.readouterr().err


def test_library_raises_its_own_error_not_the_command_layers():
    # the encoder is library code: its bad-input error is EncoderError (which
    # captioning.commands.main prints as one line), not captioning.commands.UsageError.
    from captioning.commands import UsageError
    from captioning.cnn.encode import Encoder, EncoderError
    with pytest.raises(EncoderError, match="unknown CNN 'vgg'") as error:
        Encoder("vgg")
    assert not isinstance(error.value, UsageError)


@pytest.mark.slow
def test_a_rerun_encodes_only_what_changed(image_dir, direct_codes, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in GOOD[:3]:
        (folder / name).write_bytes((image_dir / name).read_bytes())
    out = tmp_path / "codes.npy"
    argv = ["extract", "--images", str(folder), "--out", str(out), "--no-progress"]
    cnn = CountingEncoder()
    assert main(argv, encoder=cnn) == 0 and cnn.rows == 3
    first = np.load(out)

    np.save(out, np.zeros((3, 1000), np.float32))      # output replaced
    assert main(argv, encoder=cnn) == 0 and cnn.rows == 3   # from the cache
    np.testing.assert_array_equal(np.load(out), first)

    (folder / GOOD[0]).write_bytes((image_dir / GOOD[3]).read_bytes())  # changed
    assert main(argv, encoder=cnn) == 0 and cnn.rows == 4
    codes = np.load(out)
    np.testing.assert_allclose(codes[0], direct_codes[GOOD[3]], atol=1e-4)
    np.testing.assert_array_equal(codes[1:], first[1:])
