"""``caption extract``: image files -> CNN codes (1000 ImageNet logits each).

::

    caption extract --cnn {efficientnet_lite0,googlenet} --images DIR
                    [--list FILE] --out CODES.npy [--weights PATH]
                    [--batch-size N] [--no-progress]

Writes ``CODES.npy`` (N x 1000 float32, row i = image i) and
``CODES.names.txt`` (image i's name on line i). Images are taken in the
order of ``--list`` (names relative to DIR, one per line), else all image
files of DIR sorted by name.

Resuming: the codes go through the code cache (``~/.cache/captioning`` or
``$CAPTION_CACHE_DIR``, a shard added every 256 images), so an interrupted run,
rerun, encodes only what is missing, and a rerun after a finished one
encodes nothing unless an image changed. The output files are written to a
temporary name and renamed, so ``CODES.npy`` is either absent or complete.

Unreadable images are not dropped: their row is NaN (so row i is still
image i), they are listed at the end with the reason, and the command
exits with code 2 (0 when every image was encoded).

In Python: :func:`captioning.cnn.extract.run_extract`; :func:`captioning.cnn.encode.encode` does the same in memory.
"""
import argparse
import sys

from captioning.cnn.encode import CNNS, DEFAULT_CNN, images_per_call

__all__ = ["register"]


def _main(args):
    from captioning.cnn.encode import Encoder
    from captioning.cnn.extract import names_path, run_extract
    encoder = args.encoder or Encoder(args.cnn, weights=args.weights)
    total, failures = run_extract(args.images, args.out, encoder,
                                  list_file=args.list,
                                  batch_size=args.batch_size,
                                  progress=args.progress)
    print("wrote %s (%s) and %s" % (
        args.out, " x ".join(map(str, (total,) + tuple(encoder.code_shape))),
        names_path(args.out)))
    if failures:
        print("caption extract: %d of %d images could not be read; their rows "
              "are NaN:" % (len(failures), total), file=sys.stderr)
        for path, reason in failures:
            print("  %s: %s" % (path, reason), file=sys.stderr)
        return 2
    return 0


def register(subparsers):
    """Add the ``extract`` subcommand (see :mod:`captioning.commands`)."""
    parser = subparsers.add_parser(
        "extract", help="encode images into CNN codes (N x 1000 logits)",
        # The module docstring minus its title/usage block and Python notes.
        description=__doc__[__doc__.index("Writes"):__doc__.index("In Python")],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cnn", choices=CNNS, default=DEFAULT_CNN,
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
                        help="images read per batch (default 32; the CNN takes "
                             "them %d at a time at 224 px)" % images_per_call(224))
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bar")
    parser.set_defaults(func=_main, encoder=None)
