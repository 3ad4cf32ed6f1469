"""``caption describe``: one caption per photo, ``IMAGE<TAB>caption`` lines.

Photos that cannot be read are reported on stderr and skipped; the others
are still captioned, and the exit code is then 2.
"""
import captioning  # noqa: F401  (Theano flags and the Lasagne backport first)

import os
import sys

from captioning.cli import UsageError

__all__ = ["register", "run"]


def register(subparsers):
    p = subparsers.add_parser(
        "describe", help="caption photos with a trained model",
        description="Print IMAGE<TAB>caption for every IMAGE, using a model "
                    "directory written by `caption train`.")
    p.add_argument("--model", required=True, metavar="MODEL_DIR",
                   help="model directory (params.npz + model.json)")
    p.add_argument("--beam", type=int, default=1, metavar="K",
                   help="beam width; 1 = greedy (default %(default)s)")
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="photo files (JPEG, PNG, ...)")
    p.set_defaults(func=run)


def load_model_or_fail(model_dir):
    """The model, or a UsageError that says what is wrong with the dir."""
    from captioning.model import ModelFileError, load_model
    try:
        return load_model(model_dir)
    except ModelFileError as error:
        raise UsageError(str(error))


def check_beam(beam):
    if beam < 1:
        raise UsageError("--beam must be >= 1, got %d" % beam)


def encode_photos(paths, encode):
    """Codes of the readable photos; report the others on stderr.

    ``encode(paths) -> (codes, kept, failures)`` as
    :func:`captioning.data.encode_images` returns them.

    Returns
    -------
    codes, kept paths, number of problems
    """
    problems = 0
    existing = []
    for path in paths:
        if os.path.isfile(path):
            existing.append(path)
        else:
            print("%s: no such file" % path, file=sys.stderr)
            problems += 1
    if not existing:
        return None, [], problems
    codes, kept, failures = encode(existing)
    for path, reason in failures:
        print("%s: cannot read this image: %s" % (path, reason),
              file=sys.stderr)
    return codes, [existing[i] for i in kept], problems + len(failures)


def run(args):
    from captioning.data import encode_images
    from captioning.decode import caption
    check_beam(args.beam)
    model = load_model_or_fail(args.model)
    codes, kept, problems = encode_photos(
        args.images,
        lambda paths: encode_images(paths, progress=False,
                                    skip_unreadable=True))
    if kept:
        for path, text in zip(kept, caption(model, codes, beam=args.beam)):
            print("%s\t%s" % (path, text))
    if problems:
        raise UsageError("%d of %d images could not be captioned (see above)"
                         % (problems, len(args.images)))
    return 0
