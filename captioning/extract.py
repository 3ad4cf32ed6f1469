"""``caption extract``: image files -> CNN codes (1000 ImageNet logits each).

::

    caption extract --cnn {efficientnet_lite0,googlenet} --images DIR
                    [--list FILE] --out CODES.npy [--weights PATH]
                    [--batch-size N] [--no-progress] [--force]

Writes ``CODES.npy`` (N x 1000 float32, row i = image i) and
``CODES.names.txt`` (image i's name on line i). Images are taken in the
order of ``--list`` (names relative to DIR, one per line), else all image
files of DIR sorted by name.

Resuming: batches are saved as they finish in ``CODES.npy.partial/``; an
interrupted run, rerun with the same images and CNN, computes only what is
missing. Every file is written through :func:`captioning.files.atomic_write`
(a temporary name, then renamed), so ``CODES.npy`` is either absent or
complete.
A finished run leaves ``CODES.run.json`` (the images' names, sizes and
modification times, the CNN, the unreadable images): rerunning the same
command then finds nothing to do unless an image, the CNN or ``CODES.npy``
changed (``--force`` recomputes anyway).

Unreadable images are not dropped: their row is NaN (so row i is still
image i), they are listed at the end with the reason, and the command
exits with code 2 (0 when every image was encoded).

The Python entry point :func:`extract_codes` does the same in memory, for
the data builders and the notebook. Bad input (unknown CNN, missing weights,
no images) raises :class:`ExtractError`, which ``caption`` prints as one line
(exit 2).
"""
import hashlib
import json
import os
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .files import atomic_write, is_image_name, read_list
from .images import ImageError, load_rgb

__all__ = ["CNNS", "NUM_CODES", "ExtractError", "extract_codes", "get_cnn",
           "list_images", "register", "run_extract"]

CNNS = ("efficientnet_lite0", "googlenet")
NUM_CODES = 1000
GOOGLENET_WEIGHTS = "data/blvc_googlenet.pkl"
REPO_ROOT = Path(__file__).resolve().parent.parent


class _Cnn:
    """A ready CNN: ``preprocess(uint8 RGB) -> (1, 3, 224, 224)`` and
    ``logits(batch) -> (N, 1000)``."""

    def __init__(self, name, preprocess, logits, weights):
        self.name, self.preprocess, self.logits = name, preprocess, logits
        self.weights = weights


_CNN_CACHE = {}


class ExtractError(ValueError):
    """Bad input to the encoder: unknown CNN, missing weights, no images.

    The message is meant for the user as it is (the command line prints it
    as one line and exits with code 2).
    """


def _import_pretrained_lenet():
    """The seminar's ``pretrained_lenet`` module (repo root), or None."""
    import importlib
    import importlib.util
    try:
        return importlib.import_module("pretrained_lenet")
    except ModuleNotFoundError as error:
        if error.name != "pretrained_lenet":
            raise
    # Not on sys.path (e.g. run from another directory): the repo copy.
    path = REPO_ROOT / "pretrained_lenet.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("pretrained_lenet", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["pretrained_lenet"] = module
    return module


def _googlenet_weights(weights):
    if weights is not None:
        candidates = [Path(weights)]
    else:
        candidates = [Path(GOOGLENET_WEIGHTS), REPO_ROOT / GOOGLENET_WEIGHTS]
    for path in candidates:
        if path.is_file():
            return str(path)
    raise ExtractError(
        "GoogLeNet weights not found (looked for %s). They are "
        "blvc_googlenet.pkl in the seminar's data.tar.gz: run `caption data "
        "seminar` to download and unpack it into data/, or pass --weights "
        "PATH." % " and ".join(str(p) for p in candidates))


def get_cnn(cnn="efficientnet_lite0", weights=None):
    """Build, load and compile a CNN once per process.

    Parameters
    ----------
    cnn : {'efficientnet_lite0', 'googlenet'}
    weights : str, optional
        Weights file; default: the packaged EfficientNet-Lite0 ``.pth``, or
        ``data/blvc_googlenet.pkl`` for GoogLeNet.

    Raises
    ------
    ExtractError
        Unknown CNN, GoogLeNet code or weights unavailable (the message
        says where to get them).
    """
    if cnn not in CNNS:
        raise ExtractError("unknown CNN %r; choose from %s" % (cnn, ", ".join(CNNS)))
    if cnn == "efficientnet_lite0":
        from . import efficientnet
        path = efficientnet.default_weights_path() if weights is None else str(weights)
        if not os.path.isfile(path):
            raise ExtractError("EfficientNet-Lite0 weights not found: %s" % path)
        key = (cnn, os.path.realpath(path))
        if key not in _CNN_CACHE:
            _CNN_CACHE[key] = _Cnn(cnn, efficientnet.preprocess,
                                   efficientnet.pretrained_logits_function(path),
                                   key[1])
        return _CNN_CACHE[key]

    lenet = _import_pretrained_lenet()
    if lenet is None:
        raise ExtractError("--cnn googlenet is unavailable: pretrained_lenet.py "
                           "(the seminar's GoogLeNet module) is not in %s" % REPO_ROOT)
    path = _googlenet_weights(weights)
    key = (cnn, os.path.realpath(path))
    if key not in _CNN_CACHE:
        import lasagne
        import theano
        model = lenet.build_model()
        lenet.load_weights(model, path)
        out = lasagne.layers.get_output(model["loss3/classifier"], deterministic=True)
        fn = theano.function([model["input"].input_var], out,
                             allow_input_downcast=True)
        _CNN_CACHE[key] = _Cnn(cnn, lenet.preprocess, fn, key[1])
    return _CNN_CACHE[key]


# ------------------------------------------------------------------ batches

def _load_batch(cnn, paths):
    """Read and preprocess ``paths``; returns (inputs or None, ok rows, failures)."""
    inputs, ok, failures = [], [], []
    for i, path in enumerate(paths):
        try:
            inputs.append(cnn.preprocess(load_rgb(path)))
            ok.append(i)
        except ImageError as error:
            failures.append((str(path), error.reason))
        except (ValueError, OSError) as error:  # e.g. preprocess refusing it
            failures.append((str(path), str(error)))
    return (np.concatenate(inputs) if inputs else None), ok, failures


def _encode_batches(cnn, paths, ranges):
    """Yield ``(start, stop, codes, failures)`` for each (start, stop) range.

    The next batch's files are read in a thread while the CNN runs (Pillow
    decodes without holding the GIL), so I/O and compute overlap.
    """
    if not ranges:
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(_load_batch, cnn, paths[ranges[0][0]:ranges[0][1]])
        for k, (start, stop) in enumerate(ranges):
            inputs, ok, failures = pending.result()
            if k + 1 < len(ranges):
                nxt = ranges[k + 1]
                pending = pool.submit(_load_batch, cnn, paths[nxt[0]:nxt[1]])
            codes = np.full((stop - start, NUM_CODES), np.nan, dtype=np.float32)
            if inputs is not None:
                codes[ok] = np.asarray(cnn.logits(inputs), dtype=np.float32)
            yield start, stop, codes, failures


def _batch_ranges(todo_rows, batch_size):
    """Split sorted row indices into contiguous runs of <= batch_size."""
    ranges, start, prev = [], None, None
    for row in todo_rows:
        if start is None:
            start = prev = row
        elif row != prev + 1 or row - start >= batch_size:
            ranges.append((start, prev + 1))
            start = row
        prev = row
    if start is not None:
        ranges.append((start, prev + 1))
    return ranges


def _progress_bar(progress, total, initial, desc):
    if not progress:
        return None
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, unit="img", desc=desc,
                dynamic_ncols=True)


def extract_codes(image_paths, cnn="efficientnet_lite0", batch_size=32,
                  weights=None, progress=True):
    """CNN codes of image files, in memory.

    Parameters
    ----------
    image_paths : sequence of str or Path
    cnn : {'efficientnet_lite0', 'googlenet'}
    batch_size : int
    weights : str, optional
        See :func:`get_cnn`.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    codes : ndarray, float32, (N, 1000)
        Logits, row i for ``image_paths[i]``; NaN rows for failures.
    failures : list of (str, str)
        (path, reason) of each image that could not be read.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    paths = [str(p) for p in image_paths]
    model = get_cnn(cnn, weights)
    codes = np.full((len(paths), NUM_CODES), np.nan, dtype=np.float32)
    failures = []
    bar = _progress_bar(progress, len(paths), 0, cnn)
    try:
        ranges = _batch_ranges(range(len(paths)), batch_size)
        for start, stop, batch, failed in _encode_batches(model, paths, ranges):
            codes[start:stop] = batch
            failures.extend(failed)
            if bar is not None:
                bar.update(stop - start)
    finally:
        if bar is not None:
            bar.close()
    return codes, failures


# ------------------------------------------------------- resumable CLI run

def list_images(images_dir, list_file=None):
    """Image names (relative to ``images_dir``) in extraction order.

    ``list_file``: read by :func:`captioning.files.read_list` (one name a
    line, UTF-8, blank lines ignored, order kept). Otherwise every file in
    ``images_dir`` with an image extension, sorted.
    """
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise ExtractError("--images %s is not a directory" % images_dir)
    if list_file is not None:
        try:
            names = read_list(list_file)
        except (OSError, ValueError) as error:
            raise ExtractError("cannot read --list %s: %s" % (
                list_file, getattr(error, "strerror", None) or error)) from None
    else:
        names = sorted(entry.name for entry in os.scandir(images_dir)
                       if entry.is_file() and is_image_name(entry.name))
    if not names:
        raise ExtractError("no images to encode in %s" % (list_file or images_dir))
    return names


def _sidecar(out, suffix):
    """``CODES.npy`` -> ``CODES<suffix>`` beside it."""
    out = Path(out)
    stem = out.name[:-4] if out.name.endswith(".npy") else out.name
    return out.with_name(stem + suffix)


def _names_path(out):
    return _sidecar(out, ".names.txt")


def _run_id(cnn, names):
    digest = hashlib.sha1("\n".join(names).encode("utf-8")).hexdigest()
    return {"cnn": cnn.name, "weights": cnn.weights, "names_sha1": digest,
            "count": len(names)}


def _record_path(out):
    return _sidecar(out, ".run.json")


def _files_sha1(paths):
    """Digest of the images' paths, sizes and modification times."""
    digest = hashlib.sha1()
    for path in paths:
        try:
            stat = os.stat(path)
            digest.update(("%s|%d|%d\n" % (path, stat.st_size, stat.st_mtime_ns)).encode())
        except OSError:
            digest.update(("%s|missing\n" % path).encode())
    return digest.hexdigest()


def _output_stamp(out):
    stat = os.stat(out)
    return [stat.st_size, stat.st_mtime_ns]


def _finished_before(out, finished):
    """Failures of an earlier run that already wrote ``out`` for ``finished``, or None."""
    try:
        record = json.loads(_record_path(out).read_text())
        if record["run"] == finished and record["output"] == _output_stamp(out):
            return [tuple(f) for f in record["failures"]]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _open_partial(partial, run_id):
    """Chunks already done for this run: {(start, stop): chunk path}."""
    meta_path = partial / "run.json"
    if partial.is_dir():
        try:
            same = json.loads(meta_path.read_text()) == run_id
        except (OSError, ValueError):
            same = False
        if not same:
            print("caption extract: %s is from a different run (other images "
                  "or CNN); starting over" % partial, file=sys.stderr)
            shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    if not meta_path.exists():
        with atomic_write(meta_path, "w") as f:
            f.write(json.dumps(run_id))
    done = {}
    for chunk in partial.glob("rows-*.npz"):
        start, stop = (int(x) for x in chunk.stem.split("-")[1:3])
        done[(start, stop)] = chunk
    return done


def run_extract(images_dir, out, cnn="efficientnet_lite0", list_file=None,
                weights=None, batch_size=32, progress=True, force=False):
    """The ``caption extract`` work; returns the failures [(path, reason)].

    See the module docstring for the files written and the resume rules.
    """
    if batch_size < 1:
        raise ExtractError("--batch-size must be >= 1")
    out = Path(out)
    names = list_images(images_dir, list_file)
    paths = [str(Path(images_dir) / name) for name in names]
    model = get_cnn(cnn, weights)
    run_id = _run_id(model, names)
    finished = dict(run_id, files_sha1=_files_sha1(paths))
    earlier = None if force else _finished_before(out, finished)
    if earlier is not None:
        print("caption extract: %s already holds the codes of these %d images "
              "(%s); nothing to do (--force recomputes)"
              % (out, len(names), model.name), file=sys.stderr)
        return earlier
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    done = _open_partial(partial, run_id)

    todo = np.ones(len(names), dtype=bool)
    for start, stop in done:
        todo[start:stop] = False
    ranges = _batch_ranges(np.flatnonzero(todo).tolist(), batch_size)
    if done:
        print("caption extract: resuming, %d of %d images already encoded"
              % (len(names) - todo.sum(), len(names)), file=sys.stderr)

    bar = _progress_bar(progress, len(names), len(names) - int(todo.sum()), cnn)
    try:
        for start, stop, codes, failed in _encode_batches(model, paths, ranges):
            chunk = partial / ("rows-%08d-%08d.npz" % (start, stop))
            with atomic_write(chunk) as f:
                np.savez(f, codes=codes, failures=np.array(json.dumps(failed)))
            done[(start, stop)] = chunk
            if bar is not None:
                bar.update(stop - start)
    finally:
        if bar is not None:
            bar.close()

    codes = np.full((len(names), NUM_CODES), np.nan, dtype=np.float32)
    failures = []
    for (start, stop), chunk in sorted(done.items()):
        with np.load(chunk, allow_pickle=False) as saved:
            codes[start:stop] = saved["codes"]
            failures.extend(tuple(f) for f in json.loads(str(saved["failures"])))
    with atomic_write(_names_path(out), "w") as f:
        f.write("\n".join(names) + "\n")
    with atomic_write(out) as f:
        np.save(f, codes)
    record = {"run": finished, "output": _output_stamp(out),
              "failures": [list(f) for f in failures]}
    with atomic_write(_record_path(out), "w") as f:
        f.write(json.dumps(record))
    shutil.rmtree(partial)
    return failures


def _main(args):
    failures = run_extract(args.images, args.out, cnn=args.cnn,
                           list_file=args.list, weights=args.weights,
                           batch_size=args.batch_size, progress=args.progress,
                           force=args.force)
    total = len(list_images(args.images, args.list))
    print("wrote %s (%d x %d) and %s" % (args.out, total, NUM_CODES,
                                         _names_path(args.out)))
    if failures:
        print("caption extract: %d of %d images could not be read; their rows "
              "are NaN:" % (len(failures), total), file=sys.stderr)
        for path, reason in failures:
            print("  %s: %s" % (path, reason), file=sys.stderr)
        return 2
    return 0


def register(subparsers):
    """Add the ``extract`` subcommand (see :mod:`captioning.cli`)."""
    parser = subparsers.add_parser(
        "extract", help="encode images into CNN codes (N x 1000 logits)",
        # The module docstring minus its title/usage block and Python notes.
        description=__doc__[__doc__.index("Writes"):__doc__.index("The Python entry")],
        formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    parser.add_argument("--cnn", choices=CNNS, default="efficientnet_lite0",
                        help="CNN (default: efficientnet_lite0, weights "
                             "bundled; googlenet needs data/blvc_googlenet.pkl)")
    parser.add_argument("--images", required=True, metavar="DIR",
                        help="folder of image files")
    parser.add_argument("--list", metavar="FILE",
                        help="image names in DIR, one per line, in output order "
                             "(default: all images in DIR, sorted)")
    parser.add_argument("--out", required=True, metavar="CODES.npy",
                        help="output array; names go to CODES.names.txt")
    parser.add_argument("--weights", metavar="PATH",
                        help="weights file (default: the CNN's usual one)")
    parser.add_argument("--batch-size", type=int, default=32, metavar="N",
                        help="images per CNN call (default 32)")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bar")
    parser.add_argument("--force", action="store_true",
                        help="recompute even if CODES.npy is already complete")
    parser.set_defaults(func=_main)
