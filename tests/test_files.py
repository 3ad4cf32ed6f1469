"""captioning.io.files: the atomic writer, the list-file reader, the image
extension list (expected values written out by hand)."""
import os

import numpy as np
import pytest
from PIL import Image

from captioning.io.files import (IMAGE_EXTENSIONS, atomic_write, is_image_name,
                              read_list)
from captioning.cnn.images import load_rgb


# ------------------------------------------------------------ atomic_write

def test_atomic_write_gives_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "f.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(umask)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644


def test_atomic_write_text_is_utf8_and_makes_the_folder(tmp_path):
    path = tmp_path / "new" / "names.txt"
    with atomic_write(path, "w") as f:
        f.write("caf\u00e9\n")
    assert path.read_bytes() == b"caf\xc3\xa9\n"


def test_interrupted_write_keeps_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "codes.npy"
    path.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(path) as f:
            f.write(b"half of the new")
            raise KeyboardInterrupt
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["codes.npy"]


# --------------------------------------------------------------- read_list

@pytest.mark.parametrize("raw", [
    b"a.jpg\nb.jpg\nc.jpg\n",                          # LF
    b"a.jpg\r\nb.jpg\r\nc.jpg\r\n",                    # CRLF (Windows)
    b"a.jpg\rb.jpg\rc.jpg",                            # CR, no final newline
    b"\xef\xbb\xbfa.jpg\r\nb.jpg\r\nc.jpg\r\n",        # BOM (Notepad)
    b"\n  a.jpg \n\n\tb.jpg\r\n \r\nc.jpg\n\n",        # blanks, spaces, tabs
])
def test_read_list_line_endings_bom_and_blank_lines(tmp_path, raw):
    path = tmp_path / "list.txt"
    path.write_bytes(raw)
    assert read_list(path) == ["a.jpg", "b.jpg", "c.jpg"]


def test_read_list_keeps_order_repeats_hash_names_and_utf8(tmp_path):
    path = tmp_path / "list.txt"
    path.write_bytes("z.jpg\n#1.jpg\nz.jpg\ncaf\u00e9.jpg\n".encode("utf-8"))
    assert read_list(path) == ["z.jpg", "#1.jpg", "z.jpg", "caf\u00e9.jpg"]


def test_read_list_bom_only_at_the_start(tmp_path):
    # A BOM later in the file is a character of that line (U+FEFF), kept.
    path = tmp_path / "list.txt"
    path.write_bytes(b"a.jpg\n\xef\xbb\xbfb.jpg\n")
    assert read_list(path) == ["a.jpg", "\ufeffb.jpg"]


def test_read_list_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "list.txt"
    path.write_bytes(b"a.jpg\r\n\r\nb\xe9.jpg\r\n")     # latin-1 "b\u00e9.jpg"
    with pytest.raises(ValueError, match="^line 3 is not UTF-8$"):
        read_list(path)


def test_read_list_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_list(tmp_path / "nope.txt")


def test_read_list_empty_file(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"\xef\xbb\xbf\r\n \n")
    assert read_list(tmp_path / "empty.txt") == []


# -------------------------------------------------------- image extensions

def test_is_image_name():
    for name in ("a.jpg", "B.JPEG", "c.Png", "d.webp", "e.tif", "f.TIFF",
                 "g.gif", "h.bmp", "i.ppm", "j.pgm", "dir.x/k.jpg"):
        assert is_image_name(name), name
    for name in ("a.txt", "jpg", "a.jpg.part", "a.npy", "Flickr8k.token.txt",
                 "a_jpg", ".jpgx"):
        assert not is_image_name(name), name


@pytest.mark.parametrize("extension", IMAGE_EXTENSIONS)
def test_every_listed_extension_is_readable(tmp_path, extension):
    # A file the folder listings count as an image must be one load_rgb reads.
    mode = "L" if extension == ".pgm" else "RGB"
    pixels = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3) * 3
    image = Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode)
    path = tmp_path / ("x" + extension)
    image.save(path)
    rgb = load_rgb(path)
    assert rgb.shape == (4, 6, 3) and rgb.dtype == np.uint8
