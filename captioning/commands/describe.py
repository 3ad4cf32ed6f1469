"""``caption describe``: one caption per photo, ``IMAGE<TAB>caption`` lines.

Photos that cannot be read are reported on stderr and skipped; the others
are still captioned, and the exit code is then 2.
"""
import sys
from pathlib import Path

import numpy as np

from captioning.commands.common import (add_cnn_option, add_decoding_options,
                                        check_decoding,
                                        encode_or_fail, load_model_or_fail,
                                        model_encoder)
from captioning.errors import UsageError

__all__ = ["register", "run"]


def register(subparsers):
    p = subparsers.add_parser(
        "describe", help="caption photos with a trained model",
        description="Print IMAGE<TAB>caption for every IMAGE, using a model "
                    "directory written by `caption train`.")
    p.add_argument("--model", required=True, metavar="MODEL_DIR",
                   help="model directory (params.npz + model.json)")
    add_decoding_options(p)
    add_cnn_option(p)
    p.add_argument("--attention-map", metavar="OUT.png",
                   help="also draw where an attention model looked for each "
                        "word (the photo as the CNN saw it, lit by the "
                        "word's attention); with several photos, "
                        "OUT-<photo>.png for each")
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="photo files (JPEG, PNG, ...)")
    p.set_defaults(func=run, encoder=None)


def map_path(out, photo, several):
    """``OUT.png``, or ``OUT-<photo stem>.png`` when there are several."""
    out = Path(out)
    if not several:
        return out
    return out.with_name("%s-%s%s" % (out.stem, Path(photo).stem, out.suffix or ".png"))


def draw_attention(model, encoder, paths, codes, beam, out, no_repeat_ngram=0):
    """Caption ``paths`` and draw each one's attention map; returns the
    captions."""
    import matplotlib
    matplotlib.use("Agg")          # files only: no window
    from captioning.decode import beam_search, greedy
    from captioning.notebook.figures import show_attention
    found = (greedy(model, codes, with_attention=True,
                    no_repeat_ngram=no_repeat_ngram) if beam <= 1 else
             beam_search(model, codes, k=beam, with_attention=True,
                         no_repeat_ngram=no_repeat_ngram))
    side = int(round(np.sqrt(codes.shape[1])))
    grid = (side, codes.shape[1] // side)
    for path, (words, weights) in zip(paths, found):
        target = map_path(out, path, len(paths) > 1)
        show_attention(encoder.seen(path), words, weights, grid,
                       save_path=target, show=False)
        print("attention map of %s: %s" % (path, target), file=sys.stderr)
    return [" ".join(words) for words, _ in found]


def run(args):
    from captioning.decode import caption
    check_decoding(args)
    model = load_model_or_fail(args.model)
    if args.attention_map and "attention" not in model.layers:
        raise UsageError("--attention-map needs a model trained with --arch "
                         "attention; %s is a seminar model" % args.model)
    encoder = model_encoder(model, args.cnn, args.encoder)
    # photos seen once: not worth a place in the code cache
    codes, kept, failures = encode_or_fail(args.images, encoder, cache=False,
                                           progress=False)
    if kept:
        paths = [args.images[i] for i in kept]
        if args.attention_map:
            texts = draw_attention(model, encoder, paths, codes, args.beam,
                                   args.attention_map, args.no_repeat_ngram)
        else:
            texts = caption(model, codes, beam=args.beam,
                            no_repeat_ngram=args.no_repeat_ngram)
        for path, text in zip(paths, texts):
            print("%s\t%s" % (path, text))
    if failures:
        raise UsageError("%d of %d images could not be captioned (see above)"
                         % (len(failures), len(args.images)))
    return 0
