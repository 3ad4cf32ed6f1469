"""Layer 5: the ``caption`` command, one module per subcommand.

Each subcommand module defines ``register(subparsers)``, which adds its
parser and sets ``func`` (called with the parsed args, returns an exit
code). Subcommand modules import the library (and with it Theano) only
inside ``func``, so ``caption --help`` answers without Theano. A
:class:`captioning.errors.CaptionError` from anywhere below is printed as
one line and the exit code is 2.
"""
import argparse
import importlib
import sys

from captioning.errors import CaptionError, UsageError

# subcommand name -> module that implements it
SUBCOMMANDS = {
    "extract": "captioning.commands.extract",
    "data": "captioning.commands.data",
    "train": "captioning.commands.train",
    "describe": "captioning.commands.describe",
    "evaluate": "captioning.commands.evaluate",
    "grade": "captioning.commands.grade",
}

__all__ = ["main", "build_parser", "SUBCOMMANDS", "UsageError"]


def _error_line(args, error):
    print("caption %s: error: %s" % (args.command, error), file=sys.stderr)
    return 2


def build_parser():
    parser = argparse.ArgumentParser(
        prog="caption",
        description="Image captioning with the seminar's Theano/Lasagne model.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in SUBCOMMANDS.items():
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv=None, encoder=None):
    """Run ``caption ARGV``; returns the exit code.

    ``encoder``: a :class:`captioning.cnn.encode.Encoder` (or a stand-in with its
    interface, as the tests pass) for the commands that encode photos, used
    instead of the one they would build (a model's record must still match).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if encoder is not None:
        args.encoder = encoder
    try:
        return args.func(args) or 0
    except CaptionError as error:
        return _error_line(args, error)
    except KeyboardInterrupt:
        print("\ninterrupted; rerun the same command to resume", file=sys.stderr)
        return 130

