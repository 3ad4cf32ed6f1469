"""load_rgb on files of every awkward kind, built with Pillow in tmp_path."""
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from captioning.cnn.images import ImageError, load_rgb


def _rgb_pattern(h, w):
    """Deterministic RGB test pattern with distinct values per pixel."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(x * 37) % 256, (y * 53) % 256, (x + y) % 256],
                    axis=2).astype(np.uint8)


def _write_png16_rgb(path, array16):
    """Minimal PNG writer for 16-bit RGB (Pillow cannot save that mode)."""
    h, w, _ = array16.shape

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + array16[r].astype(">u2").tobytes() for r in range(h))
    png = (b"\x89PNG\r\n\x1a\n"
           + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(rows))
           + chunk(b"IEND", b""))
    path.write_bytes(png)


@pytest.mark.parametrize("ext", ["png", "bmp", "tiff", "webp"])
def test_lossless_rgb_roundtrip(tmp_path, ext):
    array = _rgb_pattern(5, 7)  # non-square
    path = tmp_path / ("img." + ext)
    kwargs = {"lossless": True} if ext == "webp" else {}
    Image.fromarray(array).save(path, **kwargs)
    out = load_rgb(path)
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3)
    np.testing.assert_array_equal(out, array)


def test_jpeg_close_to_source(tmp_path):
    array = np.full((16, 24, 3), (200, 30, 90), np.uint8)
    path = tmp_path / "img.jpg"
    Image.fromarray(array).save(path, quality=95)
    out = load_rgb(path)
    assert out.shape == (16, 24, 3)
    assert np.abs(out.astype(int) - array).max() <= 3


def test_greyscale_repeated_on_channels(tmp_path):
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    path = tmp_path / "grey.png"
    Image.fromarray(grey, "L").save(path)
    out = load_rgb(path)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], grey)


def test_one_bit(tmp_path):
    bits = np.array([[0, 1], [1, 0]], bool)
    path = tmp_path / "bits.png"
    Image.fromarray(bits).convert("1").save(path)
    out = load_rgb(path)
    np.testing.assert_array_equal(out[..., 0], [[0, 255], [255, 0]])


def test_rgba_composited_on_white(tmp_path):
    rgba = np.array([[[255, 0, 0, 255], [255, 0, 0, 0], [0, 0, 255, 128]]], np.uint8)
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(path)
    out = load_rgb(path)
    # opaque red stays red, transparent -> white, half blue -> light blue
    expected = [[[255, 0, 0], [255, 255, 255], [127, 127, 255]]]
    np.testing.assert_array_equal(out, expected)


def test_grey_alpha(tmp_path):
    la = np.array([[[0, 0], [100, 255]]], np.uint8)
    path = tmp_path / "la.png"
    Image.fromarray(la, "LA").save(path)
    np.testing.assert_array_equal(load_rgb(path)[0], [[255] * 3, [100] * 3])


def test_palette_and_palette_transparency(tmp_path):
    pal = Image.new("P", (3, 1))
    pal.putpalette([10, 20, 30, 200, 100, 50, 0, 0, 0] + [0] * (256 * 3 - 9))
    pal.putdata([0, 1, 2])
    path = tmp_path / "pal.png"
    pal.save(path)
    np.testing.assert_array_equal(load_rgb(path)[0],
                                  [[10, 20, 30], [200, 100, 50], [0, 0, 0]])
    path_t = tmp_path / "pal_t.png"
    pal.save(path_t, transparency=2)  # index 2 fully transparent -> white
    np.testing.assert_array_equal(load_rgb(path_t)[0],
                                  [[10, 20, 30], [200, 100, 50], [255, 255, 255]])


def test_16bit_grey_scaled_not_clipped(tmp_path):
    grey16 = np.array([[0, 257, 257 * 128, 65535]], np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(grey16).save(path)
    out = load_rgb(path)
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 128, 255])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_16bit_rgb(tmp_path):
    rgb16 = (_rgb_pattern(3, 4).astype(np.uint16) * 257)
    path = tmp_path / "rgb16.png"
    _write_png16_rgb(path, rgb16)
    np.testing.assert_array_equal(load_rgb(path), _rgb_pattern(3, 4))


def test_cmyk_jpeg(tmp_path):
    # Pure cyan in CMYK -> (0, 255, 255) in Pillow's CMYK->RGB conversion.
    cmyk = Image.new("CMYK", (8, 8), (255, 0, 0, 0))
    path = tmp_path / "cmyk.jpg"
    cmyk.save(path, quality=100)
    out = load_rgb(path)
    assert out.shape == (8, 8, 3)
    assert np.abs(out.astype(int) - [0, 255, 255]).max() <= 3


@pytest.mark.parametrize("orientation, expected", [
    (1, [[1, 2, 3], [4, 5, 6]]),
    (3, [[6, 5, 4], [3, 2, 1]]),        # rotated 180
    (6, [[4, 1], [5, 2], [6, 3]]),      # stored rotated 90 CCW: turn CW
    (8, [[3, 6], [2, 5], [1, 4]]),      # stored rotated 90 CW: turn CCW
])
def test_exif_orientation_applied(tmp_path, orientation, expected):
    # Lossless format that carries EXIF: encode pixel ids in the red channel.
    ids = np.array([[1, 2, 3], [4, 5, 6]], np.uint8) * 40
    img = Image.fromarray(np.repeat(ids[..., None], 3, axis=2))
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "exif.png"
    img.save(path, exif=exif)
    out = load_rgb(path)
    np.testing.assert_array_equal(out[..., 0], np.array(expected) * 40)


def test_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (4, 3), colour) for colour in
              [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50)
    out = load_rgb(path)
    assert out.shape == (3, 4, 3)
    np.testing.assert_array_equal(out, np.broadcast_to([255, 0, 0], (3, 4, 3)))


def test_one_pixel(tmp_path):
    path = tmp_path / "one.png"
    Image.new("RGB", (1, 1), (7, 8, 9)).save(path)
    np.testing.assert_array_equal(load_rgb(path), [[[7, 8, 9]]])


def test_ten_thousand_pixels_wide(tmp_path):
    array = np.zeros((2, 10000, 3), np.uint8)
    array[:, -1] = (1, 2, 3)
    path = tmp_path / "wide.png"
    Image.fromarray(array).save(path)
    out = load_rgb(path)
    assert out.shape == (2, 10000, 3)
    np.testing.assert_array_equal(out[1, -1], [1, 2, 3])


def test_truncated_file_raises_naming_it(tmp_path):
    path = tmp_path / "cut.jpg"
    Image.fromarray(_rgb_pattern(64, 64)).save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cut.jpg") as info:
        load_rgb(path)
    assert isinstance(info.value, ValueError)
    assert info.value.path == str(path)


def test_truncated_png_raises(tmp_path):
    path = tmp_path / "cut.png"
    Image.fromarray(_rgb_pattern(64, 64)).save(path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ImageError, match="cut.png"):
        load_rgb(path)


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a picture")
    with pytest.raises(ImageError, match="notes.jpg.*not an image"):
        load_rgb(path)


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="missing.png.*no such file"):
        load_rgb(tmp_path / "missing.png")
