"""``caption describe``: one caption per photo, ``IMAGE<TAB>caption`` lines.

Photos that cannot be read are reported on stderr and skipped; the others
are still captioned, and the exit code is then 2.
"""

from captioning.commands.common import (add_cnn_option, check_beam,
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
    p.add_argument("--beam", type=int, default=1, metavar="K",
                   help="beam width; 1 = greedy (default %(default)s)")
    add_cnn_option(p)
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="photo files (JPEG, PNG, ...)")
    p.set_defaults(func=run, encoder=None)


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
