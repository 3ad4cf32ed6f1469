"""``caption data seminar|flickr8k|synthetic [options] [--out DIR]``.

Makes a data directory in the seminar's formats (described in
data/README.md) from one of three sources:

seminar    the seminar's COCO bundle (download, 506 MB, resumable)
flickr8k   a Flickr8k folder, encoded by the CNN
synthetic  a generated picture world, offline (the default to try first)

`caption data check [--out DIR]` loads a directory and prints a summary.
"""
import argparse
from pathlib import Path

from captioning.errors import UsageError

__all__ = ["register"]


def register(subparsers):
    parser = subparsers.add_parser(
        "data", help="make data/ in the seminar's formats",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sources = parser.add_subparsers(dest="source", metavar="SOURCE")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    def add(name, help_):
        p = sources.add_parser(name, help=help_, description=help_)
        # captioning.commands.main names the command in its error line: "caption data NAME"
        p.set_defaults(command="data " + name)
        p.add_argument("--out", default="data", metavar="DIR",
                       help="output directory (default: data/)")
        p.add_argument("--no-progress", dest="progress",
                       action="store_false", help="no progress bars")
        return p

    p = add("seminar", "download the seminar's COCO bundle (506 MB)")
    p.add_argument("--url", default=None, help="mirror of data.tar.gz")
    p.add_argument("--keep-archive", action="store_true",
                   help="keep data.tar.gz after extracting")
    p.add_argument("--force", action="store_true",
                   help="replace another source's data in --out")
    p.set_defaults(func=_seminar)

    p = add("flickr8k", "encode a Flickr8k folder")
    p.add_argument("--flickr8k", metavar="DIR", default=None,
                   help="Flickr8k folder (default: $CAPTION_FLICKR8K_DIR, "
                        "else ../shared/flickr8k)")
    _cnn_options(p)
    p.add_argument("--skip-unreadable", action="store_true",
                   help="leave out (and report) images the CNN cannot read")
    p.add_argument("--allow-missing-images", action="store_true",
                   help="leave out (and report) captioned images with no "
                        "file that are in no split list")
    p.set_defaults(func=_flickr8k)

    p = add("synthetic", "generate the offline picture world")
    p.add_argument("-n", "--images", type=int, default=2000,
                   help="number of images (default 2000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=224, help="image side, px")
    _cnn_options(p)
    p.set_defaults(func=_synthetic)

    p = add("check", "load a data directory and summarise it")
    p.set_defaults(func=_check)
    parser.set_defaults(encoder=None)   # captioning.commands.main(..., encoder=) overrides


def _cnn_options(p):
    from captioning.cnn.encode import CNNS, DEFAULT_CNN
    p.add_argument("--cnn", choices=CNNS, default=DEFAULT_CNN,
                   help="CNN for the image codes (default %(default)s; see "
                        "`caption extract`)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--force", action="store_true",
                   help="replace another source's data in --out")


def _run(make, args):
    """Call ``make()``; data/download errors become a :class:`UsageError`
    (one line and exit 2, printed by :func:`captioning.commands.main`)."""
    from captioning.datasets.formats import DataError
    from captioning.io.download import DownloadError, UnsafeArchiveError
    from captioning.cnn.encode import EncoderError
    try:
        dataset = make()
    except (DataError, DownloadError, UnsafeArchiveError,
            EncoderError) as error:
        raise UsageError(str(error)) from None
    _summary(dataset, args.out)
    return 0


def _summary(dataset, out):
    counts = {s: int((dataset.split == s).sum()) for s in ("train", "val",
                                                           "test")}
    n_caps = sum(len(c) for c in dataset.captions)
    print("%s: %d images (%s), %d captions, codes %s -> %s"
          % (dataset.source, len(dataset), ", ".join(
              "%d %s" % (v, k) for k, v in counts.items() if v),
             n_caps, "x".join(map(str, dataset.codes.shape)), Path(out)))


def _seminar(args):
    from captioning.datasets.seminar import SEMINAR_URL, fetch_seminar
    return _run(lambda: fetch_seminar(
        args.out, url=args.url or SEMINAR_URL, progress=args.progress,
        keep_archive=args.keep_archive, force=args.force), args)


def _encoder(args):
    from captioning.cnn.encode import Encoder
    return args.encoder or Encoder(args.cnn)


def _flickr8k(args):
    from captioning.datasets.find import default_flickr8k_dir
    from captioning.datasets.flickr8k import build_flickr8k
    folder = Path(args.flickr8k) if args.flickr8k else default_flickr8k_dir()
    return _run(lambda: build_flickr8k(
        folder, args.out, encoder=_encoder(args), batch_size=args.batch_size,
        progress=args.progress, skip_unreadable=args.skip_unreadable,
        allow_missing_images=args.allow_missing_images, force=args.force),
        args)


def _synthetic(args):
    from captioning.datasets.synthetic import build_synthetic
    return _run(lambda: build_synthetic(
        args.out, n=args.images, seed=args.seed, size=args.size,
        encoder=_encoder(args), batch_size=args.batch_size,
        progress=args.progress,
        force=args.force), args)


def _check(args):
    from captioning.datasets.formats import load_dataset
    return _run(lambda: load_dataset(args.out), args)
