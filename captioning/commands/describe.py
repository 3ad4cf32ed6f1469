"""``caption describe``: one caption per photo, ``IMAGE<TAB>caption`` lines.

Photos that cannot be read are reported on stderr and skipped; the others
are still captioned, and the exit code is then 2.
"""
import captioning  # noqa: F401  (Theano flags and the Lasagne backport first)

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
    add_cnn_option(p)
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="photo files (JPEG, PNG, ...)")
    p.set_defaults(func=run, encoder=None)


def add_cnn_option(p):
    """``--cnn``: only to check it against the CNN the model records."""
    from captioning.encode import CNNS
    p.add_argument("--cnn", choices=CNNS, default=None,
                   help="the CNN to encode the photos with; default (and the "
                        "only one accepted): the one the model was trained on, "
                        "as model.json records it")


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


def model_encoder(model, cnn=None, given=None, command="describe"):
    """The encoder whose codes ``model`` was trained on (see
    :func:`captioning.encode.encoder_for_model`); a mismatch is a UsageError."""
    from captioning.encode import EncoderError, encoder_for_model
    try:
        encoder, note = encoder_for_model(
            model.encoder_record, model.hyper["cnn_feature_size"], cnn, given)
    except EncoderError as error:
        raise UsageError(str(error))
    if note:
        print("caption %s: %s" % (command, note), file=sys.stderr)
    return encoder


def encode_or_fail(paths, encoder, **options):
    """:func:`captioning.encode.encode`, each failure printed as
    ``PATH: reason`` on stderr; an unusable encoder is a UsageError."""
    from captioning.encode import EncoderError, encode
    try:
        codes, kept, failures = encode(paths, encoder, **options)
    except EncoderError as error:
        raise UsageError(str(error))
    for path, reason in failures:
        print("%s: %s" % (path, reason), file=sys.stderr)
    return codes, kept, failures


def run(args):
    from captioning.decode import caption
    check_beam(args.beam)
    model = load_model_or_fail(args.model)
    encoder = model_encoder(model, args.cnn, args.encoder)
    # photos seen once: not worth a place in the code cache
    codes, kept, failures = encode_or_fail(args.images, encoder, cache=False,
                                           progress=False)
    if kept:
        paths = [args.images[i] for i in kept]
        for path, text in zip(paths, caption(model, codes, beam=args.beam)):
            print("%s\t%s" % (path, text))
    if failures:
        raise UsageError("%d of %d images could not be captioned (see above)"
                         % (len(failures), len(args.images)))
    return 0
