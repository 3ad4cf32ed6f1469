"""Flickr8k (images + ``Flickr8k.token.txt``) into the seminar's formats.

Expected folder layout (as distributed; see ``data/README.md``)::

    images/                     the JPEGs (also accepted: Flicker8k_Dataset/)
    Flickr8k.token.txt          IMAGE.jpg#N<TAB>caption, 5 per image
    Flickr_8k.trainImages.txt   optional split lists, one file name a line
    Flickr_8k.devImages.txt
    Flickr_8k.testImages.txt

Captions are normalised as the metrics tokenise them
(:func:`captioning.text.normalise_caption`); the standard splits are kept
(train -> 'train', dev -> 'val', test -> 'test'). Without split lists a
seeded split by image is made.
"""
from pathlib import Path

import numpy as np

from captioning.cnn.encode import Encoder, encode
from captioning.datasets.formats import (
    DataError, Dataset, _examples, check_target, image_folder, load_dataset,
    make_split, refuse_unreadable, save_dataset)
from captioning.io.files import is_image_name, read_list
from captioning.text import normalise_caption

__all__ = ["read_tokens", "read_split_lists", "collect", "build_flickr8k",
           "is_flickr8k_dir", "image_folder"]

TOKEN_FILE = "Flickr8k.token.txt"
SPLIT_FILES = {"train": "Flickr_8k.trainImages.txt",
               "val": "Flickr_8k.devImages.txt",
               "test": "Flickr_8k.testImages.txt"}
SEED = 0


def is_flickr8k_dir(folder):
    """True if ``folder`` has the token file and an image folder."""
    folder = Path(folder)
    return (folder / TOKEN_FILE).is_file() and image_folder(folder) is not None


def read_tokens(path):
    """Read ``Flickr8k.token.txt`` into ``{image name: [raw captions]}``.

    Raises
    ------
    DataError
        On lines that are not ``IMAGE#N<TAB>caption`` or not UTF-8, with
        counts and line numbers.
    """
    captions, bad, not_utf8 = {}, [], []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                not_utf8.append(lineno)
                continue
            if not line.strip():
                continue
            key, tab, text = line.partition("\t")
            name, hash_, _ = key.partition("#")
            if not tab or not hash_ or not name:
                bad.append(lineno)
                continue
            captions.setdefault(name.strip(), []).append(text)
    problems = []
    if not_utf8:
        problems.append("%d lines are not UTF-8 (lines %s)"
                        % (len(not_utf8), _examples(not_utf8)))
    if bad:
        problems.append("%d lines are not IMAGE#N<TAB>caption (lines %s)"
                        % (len(bad), _examples(bad)))
    if problems:
        raise DataError("%s: %s" % (path, "; ".join(problems)))
    return captions


def read_split_lists(folder):
    """``{'train'|'val'|'test': [names]}`` for the split lists present.

    Each is read by :func:`captioning.io.files.read_list`; an unreadable one
    raises :class:`DataError`.
    """
    lists = {}
    for split, filename in SPLIT_FILES.items():
        path = Path(folder) / filename
        if path.is_file():
            try:
                lists[split] = read_list(path)
            except (OSError, ValueError) as error:
                raise DataError("cannot read %s: %s" % (
                    path, getattr(error, "strerror", None) or error)) from None
    return lists


def collect(folder, allow_missing_images=False):
    """Match images, captions and split lists; report every mismatch.

    Parameters
    ----------
    folder : Path
        A Flickr8k folder (see module docs).
    allow_missing_images : bool
        Leave out (and report) captioned images that have no file and are
        in no split list, e.g. a withheld test split, instead of failing.

    Returns
    -------
    names : list of str
        Image file names, sorted.
    paths : list of Path
    captions : list of list of str
        Tokenised captions per image.
    split : np.ndarray
    report : dict
        Counts for ``dataset.json`` (including anything left out).
    """
    folder = Path(folder)
    token_path = folder / TOKEN_FILE
    image_dir = image_folder(folder)
    if not token_path.is_file() or image_dir is None:
        raise DataError(
            "%s is not a Flickr8k folder (needs %s and images/). Set "
            "CAPTION_FLICKR8K_DIR or pass --flickr8k DIR; without Flickr8k "
            "use `caption data synthetic`" % (folder, TOKEN_FILE))
    raw = read_tokens(token_path)
    files = {p.name: p for p in image_dir.iterdir() if is_image_name(p.name)}
    lists = read_split_lists(folder)
    listed = {}
    for split, names in lists.items():
        for name in names:
            listed.setdefault(name, split)

    problems, report = [], {}
    no_captions = sorted(set(files) - set(raw))
    if no_captions:
        problems.append("%d images in %s have no caption in %s (%s)"
                        % (len(no_captions), image_dir.name, TOKEN_FILE,
                           _examples(no_captions)))
    no_file = sorted(set(raw) - set(files))
    listed_no_file = [n for n in no_file if n in listed]
    unlisted_no_file = [n for n in no_file if n not in listed]
    if listed_no_file:
        problems.append("%d images of the split lists have captions but no "
                        "file (%s)" % (len(listed_no_file),
                                       _examples(listed_no_file)))
    if unlisted_no_file and not allow_missing_images:
        problems.append("%d captioned images have no file in %s (%s); pass "
                        "--allow-missing-images to leave them out"
                        % (len(unlisted_no_file), image_dir.name,
                           _examples(unlisted_no_file)))
    if unlisted_no_file and allow_missing_images:
        report["left_out_captioned_images_without_file"] = len(
            unlisted_no_file)
        print("left out %d captioned images that have no file (e.g. %s)"
              % (len(unlisted_no_file), _examples(unlisted_no_file)))
    names = sorted(set(files) & set(raw))
    if lists:
        unlisted = [n for n in names if n not in listed]
        if unlisted:
            problems.append("%d images are in no split list (%s); add them "
                            "to one of %s" % (len(unlisted),
                                              _examples(unlisted),
                                              ", ".join(SPLIT_FILES.values())))
    captions = [[normalise_caption(c) for c in raw[n]] for n in names]
    empty = ["%s#%d" % (n, j) for n, caps in zip(names, captions)
             for j, c in enumerate(caps) if not c]
    if empty:
        problems.append("%d captions have no words (%s)"
                        % (len(empty), _examples(empty)))
    if problems:
        raise DataError("%s: %s" % (folder, "; ".join(problems)))

    if lists:
        split = np.array([listed[n] for n in names], dtype="<U5")
        report["split_from"] = [SPLIT_FILES[s] for s in lists]
    else:
        split = make_split(len(names), seed=SEED, n_val=0.125)
        report["split_from"] = "seeded (seed %d, 12.5%% val)" % SEED
    return names, [files[n] for n in names], captions, split, report


def build_flickr8k(folder, out_dir="data", encoder=None, batch_size=32,
                   progress=True, skip_unreadable=False,
                   allow_missing_images=False, force=False):
    """Encode a Flickr8k folder and save it to ``out_dir``.

    ``encoder``: a :class:`captioning.cnn.encode.Encoder` (default:
    EfficientNet-Lite0 logits); ``dataset.json`` records it.

    Returns
    -------
    Dataset
        As saved (``source='flickr8k'``).
    """
    check_target(out_dir, "flickr8k", force)
    names, paths, captions, split, report = collect(folder,
                                                    allow_missing_images)
    encoder = Encoder() if encoder is None else encoder
    # Through the code cache: `caption train` and re-builds reuse the codes,
    # and an interrupted build resumes.
    codes, kept, failures = encode(paths, encoder, cache=True,
                                   progress=progress, batch_size=batch_size)
    if not skip_unreadable:
        refuse_unreadable(failures, len(paths))
    if failures:
        report["left_out_unreadable_images"] = [f[0] for f in failures]
        print("left out %d unreadable images (listed in dataset.json)"
              % len(failures))
    meta = dict(report, cnn=encoder.cnn, encoder=encoder.record(),
                flickr8k_dir=str(Path(folder).resolve()),
                citation="M. Hodosh, P. Young and J. Hockenmaier (2013), "
                         "Framing Image Description as a Ranking Task: Data, "
                         "Models and Evaluation Metrics, JAIR 47:853-899")
    dataset = Dataset(codes, [captions[i] for i in kept],
                      [names[i] for i in kept], split[kept], "flickr8k", meta)
    save_dataset(dataset, out_dir, {"method": report["split_from"]},
                 overwrite_source=force)
    # as a later run loads it (with meta["image_dir"], where the photos are)
    return load_dataset(out_dir)
