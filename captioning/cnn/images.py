"""Load any image file as an 8-bit RGB array.

Photos arrive in every format and mode; the CNNs want ``uint8`` H x W x 3.
:func:`load_rgb` is the one place that turns a file into that, so that the
feature extractor, the data builders and the notebook agree pixel for pixel.

Conversions (documented choices)
--------------------------------
* EXIF orientation is applied (a phone photo stored sideways comes out the
  way it is displayed).
* Animated GIF/WebP/TIFF: the first frame.
* Transparency (RGBA, LA, palette or RGB with a transparent colour) is
  **composited onto white**: ``out = rgb * a + 255 * (1 - a)``, rounded.
  Dropping alpha instead would expose whatever colour the editor left under
  transparent pixels (often black), which a CNN would read as content.
* Greyscale and 1-bit images are repeated over the three channels.
* 16-bit (and 32-bit integer) greyscale is scaled to 8 bits with
  ``round(v / 257)`` (65535 -> 255, exact on multiples of 257), not clipped.
  16-bit RGB is reduced to 8 bits by Pillow's decoder itself.
* Float greyscale (mode ``F``) is taken to be on the 0..255 scale, clipped.
* CMYK, YCbCr, LAB, HSV: Pillow's conversion to RGB.

Anything that cannot be decoded (truncated file, not an image, missing
file, pixel bomb beyond Pillow's limit) raises :class:`ImageError`, whose
message names the file.
"""
import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from captioning.errors import CaptionError

__all__ = ["ImageError", "load_rgb"]

# Which file names count as images: captioning.io.files.IMAGE_EXTENSIONS.


class ImageError(CaptionError, ValueError):
    """An image file could not be read; ``path`` is the file at fault."""

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = reason
        super().__init__("cannot read image %s: %s" % (self.path, reason))


def _scale_16bit(values):
    # round(v / 257): maps 0..65535 onto 0..255, exact for multiples of 257.
    values = np.clip(values.astype(np.float64), 0, 65535)
    return np.round(values / 257.0).astype(np.uint8)


def _composite_on_white(rgba):
    rgb = rgba[..., :3].astype(np.float32)
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    out = rgb * alpha + 255.0 * (1.0 - alpha)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _to_rgb_array(img):
    """Pillow image (any mode) -> uint8 H x W x 3, per the module rules."""
    mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        grey = _scale_16bit(np.asarray(img))
        return np.repeat(grey[..., None], 3, axis=2)
    if mode == "F":
        grey = np.clip(np.round(np.asarray(img, dtype=np.float64)), 0, 255)
        return np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2)
    has_alpha = (mode in ("RGBA", "LA", "PA", "RGBa", "La")
                 or "transparency" in img.info)
    if has_alpha:
        return _composite_on_white(np.asarray(img.convert("RGBA")))
    if mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8)


def load_rgb(path):
    """Read an image file as ``uint8`` RGB, shape (H, W, 3).

    Parameters
    ----------
    path : str or os.PathLike
        Any format Pillow decodes (PNG, JPEG, GIF, WebP, BMP, TIFF, ...).

    Returns
    -------
    numpy.ndarray
        ``uint8`` array (H, W, 3), rows top to bottom as displayed (EXIF
        orientation applied); see the module docstring for mode conversions.

    Raises
    ------
    ImageError
        If the file is missing, truncated, not an image, or too large for
        Pillow's decompression-bomb limit. The message names the file.
    """
    path = os.fspath(path)
    try:
        with Image.open(path) as img:
            img.seek(0)  # first frame of animations
            # Decode now, so a truncated file fails here and not later.
            img.load()
            with warnings.catch_warnings():
                # exif_transpose warns on malformed EXIF; orientation is
                # simply left alone then, which is the right fallback.
                warnings.simplefilter("ignore")
                oriented = ImageOps.exif_transpose(img)
            array = _to_rgb_array(oriented if oriented is not None else img)
    except FileNotFoundError:
        raise ImageError(path, "no such file") from None
    except IsADirectoryError:
        raise ImageError(path, "is a directory") from None
    except UnidentifiedImageError:
        raise ImageError(path, "not an image file (or a format Pillow "
                               "cannot read)") from None
    except Image.DecompressionBombError as error:
        raise ImageError(path, "too many pixels (%s)" % error) from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        # Pillow reports truncated/corrupt data as OSError ("image file is
        # truncated", "broken data stream"), SyntaxError for bad headers.
        raise ImageError(path, "corrupt or truncated (%s)" % error) from None
    if array.ndim != 3 or array.shape[2] != 3 or 0 in array.shape:
        raise ImageError(path, "decoded to unexpected shape %s" % (array.shape,))
    return np.ascontiguousarray(array)
