"""What ``caption describe`` and ``caption evaluate`` share: the model, its
encoder and the photos' codes, each problem as a one-line UsageError."""
import sys

from captioning.errors import UsageError

__all__ = ["add_cnn_option", "add_decoding_options", "load_model_or_fail",
           "check_decoding", "model_encoder", "encode_or_fail"]


def add_cnn_option(p):
    """``--cnn``: only to check it against the CNN the model records."""
    from captioning.cnn.encode import CNNS
    p.add_argument("--cnn", choices=CNNS, default=None,
                   help="the CNN to encode the photos with; default (and the "
                        "only one accepted): the one the model was trained on, "
                        "as model.json records it")


def add_decoding_options(p):
    """``--beam`` and ``--no-repeat-ngram`` (see :mod:`captioning.decode`)."""
    p.add_argument("--beam", type=int, default=1, metavar="K",
                   help="beam width; 1 = greedy (default %(default)s)")
    p.add_argument("--no-repeat-ngram", type=int, default=0, metavar="N",
                   help="never repeat a phrase of N words within a caption "
                        "(3 turns 'on a bike on a bike' into something else); "
                        "0 = off (default %(default)s)")


def load_model_or_fail(model_dir):
    """The model, or a UsageError that says what is wrong with the dir."""
    from captioning.model_dir import ModelFileError, load_model
    try:
        return load_model(model_dir)
    except ModelFileError as error:
        raise UsageError(str(error))


def check_decoding(args):
    if args.beam < 1:
        raise UsageError("--beam must be >= 1, got %d" % args.beam)
    if args.no_repeat_ngram < 0:
        raise UsageError("--no-repeat-ngram must be >= 0 (0 = off), got %d"
                         % args.no_repeat_ngram)


def model_encoder(model, cnn=None, given=None, command="describe"):
    """The encoder whose codes ``model`` was trained on (see
    :func:`captioning.cnn.encode.encoder_for_model`); a mismatch is a UsageError."""
    from captioning.cnn.encode import EncoderError, encoder_for_model
    try:
        encoder, note = encoder_for_model(
            model.encoder_record, model.hyper["cnn_feature_size"], cnn, given)
    except EncoderError as error:
        raise UsageError(str(error))
    if note:
        print("caption %s: %s" % (command, note), file=sys.stderr)
    return encoder


def encode_or_fail(paths, encoder, **options):
    """:func:`captioning.cnn.encode.encode`, each failure printed as
    ``PATH: reason`` on stderr; an unusable encoder is a UsageError."""
    from captioning.cnn.encode import EncoderError, encode
    try:
        codes, kept, failures = encode(paths, encoder, **options)
    except EncoderError as error:
        raise UsageError(str(error))
    for path, reason in failures:
        print("%s: %s" % (path, reason), file=sys.stderr)
    return codes, kept, failures
