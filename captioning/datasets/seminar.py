"""The seminar's own data: the 2016 COCO bundle (GoogLeNet codes + captions).

:func:`fetch_seminar` downloads ``data.tar.gz`` (500 MB; resumable) and
extracts it safely; :func:`finish_seminar` records names, the seeded split
and ``dataset.json`` beside the original files, which stay as they are
(the seminar notebook reads them directly).
"""
import contextlib
import json
from pathlib import Path

from captioning.datasets.formats import (
    CAPTIONS_PCL, CODES_FILE, META_FILE, NAMES_FILE, SEMINAR_SPLIT_SEED,
    SPLIT_FILE, DataError, has_dataset, load_dataset, save_split)
from captioning.io.download import download, safe_extract
from captioning.io.files import atomic_write

__all__ = ["fetch_seminar", "finish_seminar", "SEMINAR_URL", "SEMINAR_SIZE",
           "SEMINAR_SHA256"]

SEMINAR_URL = "https://www.dropbox.com/s/3hj16b0fj6yw7cc/data.tar.gz?dl=1"
SEMINAR_SIZE = 506_221_998
SEMINAR_SHA256 = None          # not published; the size is checked instead


def fetch_seminar(out_dir="data", url=SEMINAR_URL, expected_size=SEMINAR_SIZE,
                  sha256=SEMINAR_SHA256, progress=True, keep_archive=False,
                  force=False):
    """Download, extract and record the seminar's COCO bundle.

    Skips the download when ``out_dir`` already holds the extracted files.
    Afterwards ``image_names.txt``, ``split.json`` (seeded, 5000 val
    images) and ``dataset.json`` are written beside the original files.

    Returns
    -------
    Dataset
    """
    out_dir = Path(out_dir)
    held = has_dataset(out_dir)
    if held and held != "seminar" and not force:
        raise DataError("%s already holds %s data; use another --out "
                        "directory, or --force to replace it"
                        % (out_dir, held))
    if not ((out_dir / CODES_FILE).exists()
            and (out_dir / CAPTIONS_PCL).exists() and held == "seminar"):
        if held and held != "seminar":
            (out_dir / "dataset.json").unlink()   # replaced below
        archive = out_dir / "data.tar.gz"
        if not archive.exists():
            download(url, archive, expected_size, sha256, progress)
        safe_extract(archive, out_dir, progress=progress)
        if not keep_archive:
            archive.unlink()
    return finish_seminar(out_dir)


def finish_seminar(out_dir):
    """Record names, split and source beside an extracted COCO bundle.

    The original ``image_codes.npy`` and ``caption_tokens.pcl`` are left
    as they are (the seminar notebook reads them directly); this adds
    ``image_names.txt``, ``split.json`` (seeded, 5000 val images) and
    ``dataset.json``, after checking the bundle.

    Returns
    -------
    Dataset
    """
    out = Path(out_dir)
    for name in (CODES_FILE, CAPTIONS_PCL):
        if not (out / name).exists():
            raise DataError("%s has no %s after extraction: the archive is "
                            "not the seminar's bundle; delete %s/data.tar.gz "
                            "and rerun `caption data seminar`"
                            % (out, name, out))
    with contextlib.suppress(FileNotFoundError):
        (out / META_FILE).unlink()
    for name in (NAMES_FILE, SPLIT_FILE):   # regenerate, don't trust
        with contextlib.suppress(FileNotFoundError):
            (out / name).unlink()
    dataset = load_dataset(out)
    with atomic_write(out / NAMES_FILE, "w") as f:
        f.write("".join(name + "\n" for name in dataset.names))
    save_split(out, dataset.split, {
        "seed": SEMINAR_SPLIT_SEED,
        "method": "seeded random split by image, %d val images"
                  % int((dataset.split == "val").sum())})
    meta = {"source": "seminar", "captions_file": CAPTIONS_PCL,
            "cnn": "googlenet (BVLC, the seminar's codes)",
            "n_images": len(dataset),
            "n_captions": sum(len(c) for c in dataset.captions),
            "names": "row numbers; the bundle has no image ids"}
    with atomic_write(out / META_FILE, "w") as f:
        json.dump(meta, f, indent=1)
    dataset.meta = meta
    return dataset
