"""``caption train``: the command line of :func:`captioning.training.train`
(its docstring says what is written and how the epoch is chosen)."""
import argparse
import json

from captioning.errors import UsageError
from captioning.training import (BATCH_SIZE, DEFAULT_EPOCHS, DEFAULT_MINUTES,
                                 MIN_DELTA, PATIENCE, SELECTION_IMAGES)

__all__ = ["register", "run"]


def register(subparsers):
    p = subparsers.add_parser(
        "train", help="train the captioning model on Flickr8k",
        description="Train the seminar's LSTM captioner on the Flickr8k train "
                    "split, minus %d of its photos held out to choose the "
                    "epoch, schedule the learning rate and stop when learning "
                    "stops; the dev split is never read. Interrupt at any "
                    "time: rerunning the same command resumes from the last "
                    "finished epoch." % SELECTION_IMAGES)
    p.add_argument("--flickr8k", required=True, metavar="DIR",
                   help="Flickr8k folder: images/, Flickr8k.token.txt and "
                        "the Flickr_8k.trainImages.txt split list")
    p.add_argument("--out", required=True, metavar="MODEL_DIR",
                   help="model directory to write (and resume from)")
    p.add_argument("--minutes", type=float, default=DEFAULT_MINUTES,
                   help="wall-clock budget of the whole run, resumed runs "
                        "included (default %(default)s)")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS,
                   help="stop after this many epochs (default %(default)s)")
    p.add_argument("--patience", type=int, default=PATIENCE,
                   help="stop after this many epochs in a row without the "
                        "selection loss improving by %g (default "
                        "%%(default)s)" % MIN_DELTA)
    from captioning.cnn.encode import CNNS, DEFAULT_CNN
    p.add_argument("--cnn", choices=CNNS, default=DEFAULT_CNN,
                   help="CNN whose codes to train on (default %(default)s); "
                        "model.json records it")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                   help=argparse.SUPPRESS)  # tuning knob for tests
    p.add_argument("--embed-size", type=int, default=None,
                   help=argparse.SUPPRESS)  # tuning knob for tests
    p.add_argument("--lstm-units", type=int, default=None,
                   help=argparse.SUPPRESS)  # tuning knob for tests
    p.set_defaults(func=run, encoder=None)


def run(args):
    if min(args.minutes, args.epochs, args.batch_size, args.patience) <= 0:
        raise UsageError("--minutes, --epochs, --patience and --batch-size "
                         "must be > 0")
    from captioning.cnn.encode import Encoder
    from captioning.training import kept_epoch, train
    history = train(args.flickr8k, args.out, args.minutes, args.epochs,
                    args.batch_size, args.embed_size, args.lstm_units,
                    args.patience, args.encoder or Encoder(args.cnn))
    if history:
        kept = kept_epoch(history)
        print(json.dumps({"model": str(args.out), "epochs": len(history),
                          "kept_epoch": kept,
                          "selection_loss": round(
                              history[kept - 1]["selection_loss"], 4),
                          "minutes": round(history[-1]["seconds"] / 60, 1)}))
    return 0
