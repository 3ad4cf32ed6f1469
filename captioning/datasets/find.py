"""Which data to use: what ``data/`` holds, else Flickr8k, else the
generated world (:func:`find_data`, as the notebook calls it)."""
import os
from pathlib import Path

from captioning.datasets.formats import (
    COMMANDS, REPO_ROOT, SOURCES, DataError, has_dataset, load_dataset,
    read_meta, resolve_data_dir, source_name, stale_captions)

__all__ = ["find_data", "default_flickr8k_dir", "FLICKR8K_ENV"]

FLICKR8K_ENV = "CAPTION_FLICKR8K_DIR"


def default_flickr8k_dir():
    """``$CAPTION_FLICKR8K_DIR``, else ``../shared/flickr8k`` beside the repo."""
    env = os.environ.get(FLICKR8K_ENV)
    if env:
        return Path(env)
    return (REPO_ROOT / ".." / "shared" / "flickr8k").resolve()


def find_data(preferred=None, data_dir="data", flickr8k_dir=None,
              build=True, progress=True, encoder=None):
    """Load the best available data, making it first if needed.

    Order when ``preferred`` is None:

    1. whatever ``data_dir`` already holds (the original seminar bundle, or
       data made earlier by ``caption data ...``);
    2. Flickr8k from ``flickr8k_dir`` (default ``$CAPTION_FLICKR8K_DIR``, else
       ``../shared/flickr8k`` beside the repository), encoded into
       ``data_dir``;
    3. the generated picture world (``caption data synthetic``), offline.

    Parameters
    ----------
    preferred : {'auto', 'seminar', 'flickr8k', 'synthetic'}, optional
        Insist on this source; ``'auto'`` is the same as None (the
        notebook passes its CAPTION_DATA through). ``'seminar'`` is never
        downloaded here (500 MB): run ``caption data seminar``.
    data_dir : str or Path
    flickr8k_dir : str or Path, optional
    build : bool
        If false, only load; raise DataError when nothing is ready.
    progress : bool
    encoder : captioning.cnn.encode.Encoder, optional
        Encodes the photos of a data set built here (default: EfficientNet-Lite0
        logits).

    Returns
    -------
    Dataset
    """
    preferred = None if preferred == "auto" else preferred
    if preferred is not None:
        preferred = source_name(preferred)
        if preferred not in SOURCES:
            raise DataError("unknown source %r; choose one of %s"
                            % (preferred, ", ".join(("auto",) + SOURCES)))
    d = resolve_data_dir(data_dir)
    held = has_dataset(d)
    if held and (preferred is None or held == preferred):
        meta = read_meta(d)
        folder = meta.get("flickr8k_dir")
        if build and stale_captions(held, meta) and folder:
            from captioning.datasets import flickr8k
            if flickr8k.is_flickr8k_dir(folder):
                print("%s: captions tokenised by an older version; "
                      "rebuilding them from %s" % (d, folder))
                if encoder is None:   # the one that made these codes
                    from captioning.cnn.encode import Encoder
                    encoder = Encoder.for_meta(meta, held)
                return flickr8k.build_flickr8k(
                    folder, d, encoder=encoder, progress=progress,   # and leaving out what it left out
                    skip_unreadable="left_out_unreadable_images" in meta,
                    allow_missing_images=(
                        "left_out_captioned_images_without_file" in meta))
        return load_dataset(d)
    if held:
        raise DataError("%s holds %s data, not %s; run `%s --out OTHER_DIR` "
                        "and load that" % (d, held, preferred,
                                           COMMANDS[preferred]))
    if preferred == "seminar" or not build:
        want = COMMANDS.get(preferred, "caption data ...")
        raise DataError("no data in %s; run `%s`" % (d, want))
    flickr = Path(flickr8k_dir) if flickr8k_dir else default_flickr8k_dir()
    if preferred in (None, "flickr8k"):
        from captioning.datasets import flickr8k
        if preferred == "flickr8k" or flickr8k.is_flickr8k_dir(flickr):
            return flickr8k.build_flickr8k(flickr, d, progress=progress,
                                           encoder=encoder)
    from captioning.datasets import synthetic
    return synthetic.build_synthetic(d, progress=progress, encoder=encoder)
