"""The ``caption`` command: one entry point, one module per subcommand.

Each subcommand module defines ``register(subparsers)``, which adds its parser
and sets ``func`` (called with the parsed args, returns an exit code).
Modules are imported only when listed here, so `caption --help` stays fast
for subcommands that do not need Theano.
"""
import argparse
import importlib
import sys

# subcommand name -> module that implements it
SUBCOMMANDS = {
    "extract": "captioning.extract",
    "data": "captioning.data_cli",
    "train": "captioning.train",
    "describe": "captioning.describe",
    "evaluate": "captioning.evaluate",
    "grade": "captioning.grade_cli",
}


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


def _library_input_errors():
    """Library errors that mean bad input, not a bug: one line, exit code 2.

    Commands raise :class:`UsageError`; library code cannot (it must not
    import the command layer), so its own input errors are listed here.
    Imported only when such an error may be on its way, to keep start-up
    light.
    """
    from .encode import EncoderError
    return (EncoderError,)


def _error_line(args, error):
    print("caption %s: error: %s" % (args.command, error), file=sys.stderr)
    return 2


def build_parser():
    parser = argparse.ArgumentParser(
        prog="caption",
        description="Image captioning with the seminar's Theano/Lasagne model.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in SUBCOMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue  # not written yet
        module.register(subparsers)
    return parser


def main(argv=None, encoder=None):
    """Run ``caption ARGV``; returns the exit code.

    ``encoder``: a :class:`captioning.encode.Encoder` (or a stand-in with its
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
    except UsageError as error:
        return _error_line(args, error)
    except KeyboardInterrupt:
        print("\ninterrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except _library_input_errors() as error:  # evaluated only if reached
        return _error_line(args, error)


if __name__ == "__main__":
    # under `python -m captioning.cli` this file is __main__: take main (and
    # its UsageError) from captioning.cli, the module the commands import
    from captioning.cli import main as _main
    sys.exit(_main())
