"""``caption evaluate``: caption a set of photos and score them.

Reads reference captions from a Flickr8k-style token file
(``IMAGE.jpg#N<TAB>caption``), captions every listed photo and prints
progress on stderr and, as the last line on stdout, one JSON object::

    {"bleu1": ..., "bleu2": ..., "bleu3": ..., "bleu4": ..., "cider": ...,
     "n_images": ...}

(see :mod:`captioning.metrics` for the conventions). Listed photos that are
unknown, missing or unreadable are reported and left out; the rest are still
scored, and the exit code is then 2.
"""
import json
import sys
from pathlib import Path

from captioning.commands.common import (add_cnn_option, add_decoding_options,
                                        check_decoding,
                                        encode_or_fail, load_model_or_fail,
                                        model_encoder)
from captioning.errors import UsageError

__all__ = ["register", "run"]


def register(subparsers):
    p = subparsers.add_parser(
        "evaluate", help="BLEU and CIDEr-D of a model on captioned photos",
        description="Caption every listed photo with a trained model and "
                    "score the captions against the references in TOKENFILE "
                    "(BLEU-1..4 and CIDEr-D, coco-caption conventions). The "
                    "last line printed is one JSON object.")
    p.add_argument("--model", required=True, metavar="MODEL_DIR",
                   help="model directory written by `caption train`")
    p.add_argument("--images", required=True, metavar="DIR",
                   help="folder with the photos")
    p.add_argument("--captions", required=True, metavar="TOKENFILE",
                   help="reference captions, IMAGE#N<TAB>caption per line "
                        "(Flickr8k.token.txt)")
    p.add_argument("--list", metavar="FILE",
                   help="photos to evaluate, one file name a line (e.g. "
                        "Flickr_8k.devImages.txt); default: every photo of "
                        "TOKENFILE")
    add_decoding_options(p)
    add_cnn_option(p)
    p.set_defaults(func=run, encoder=None)


def _listed_names(path):
    """The names of ``--list`` in order, each once."""
    from captioning.io.files import read_list
    try:
        return list(dict.fromkeys(read_list(path)))
    except (OSError, ValueError) as error:
        raise UsageError("cannot read the list %s: %s" % (path, error)) from None


def run(args):
    from captioning.datasets.formats import DataError
    from captioning.decode import caption
    from captioning.datasets.flickr8k import read_tokens
    from captioning.metrics import score_captions

    check_decoding(args)
    if not Path(args.images).is_dir():
        raise UsageError("--images %s is not a folder" % args.images)
    try:
        references = read_tokens(args.captions)
    except OSError as error:
        raise UsageError("cannot read --captions %s: %s"
                         % (args.captions, error.strerror or error))
    except DataError as error:
        raise UsageError(str(error))
    names = _listed_names(args.list) if args.list else list(references)
    if not names:
        raise UsageError("no images to evaluate: %s is empty"
                         % (args.list or args.captions))
    model = load_model_or_fail(args.model)
    encoder = model_encoder(model, args.cnn, args.encoder, "evaluate")

    unknown = [n for n in names if n not in references]
    for name in unknown:
        print("%s: not in %s, so it has no reference captions"
              % (name, args.captions), file=sys.stderr)
    known = [n for n in names if n in references]
    paths = [str(Path(args.images) / n) for n in known]
    codes, kept, failures = encode_or_fail(paths, encoder, cache=True,
                                           progress=True)
    problems = len(failures) + len(unknown)
    if not kept:
        raise UsageError("none of the %d listed images could be captioned"
                         % len(names))
    kept_names = [known[i] for i in kept]
    found = caption(model, codes, beam=args.beam, progress=True,
                    no_repeat_ngram=args.no_repeat_ngram)
    scores = score_captions(found, [references[n] for n in kept_names])
    scores = {k: round(v, 4) for k, v in scores.items()}
    scores["n_images"] = len(kept_names)
    print(json.dumps(scores))
    if problems:
        print("caption evaluate: %d of %d listed images were left out (see "
              "above)" % (problems, len(names)), file=sys.stderr)
        return 2
    return 0
