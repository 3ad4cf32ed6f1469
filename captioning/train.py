"""``caption train``: fit the seminar graph on Flickr8k and write a model dir.

Trains on the standard train split (6,000 photos x 5 captions) with Adam,
validates on the dev split after every epoch, and writes into ``--out``:

``params.npz``, ``model.json``
    The model with the best dev BLEU-4 so far (greedy decoding), read by
    ``caption describe`` and ``caption evaluate``.
``train_state.npz``
    The latest epoch's weights, Adam's moments and the history: rerunning
    the same command resumes from it (an interrupt loses at most the
    epoch in progress).
``loss.png``
    Train and dev loss per epoch, and dev BLEU-4.

The photos' CNN codes are computed once and cached
(:mod:`captioning.codes_cache`).
"""
import captioning  # noqa: F401  (Theano flags and the Lasagne backport first)

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from captioning.cli import UsageError

__all__ = ["register", "run", "train"]

DEFAULT_MINUTES = 55     # the whole run, compile and validation included
DEFAULT_EPOCHS = 40
BATCH_SIZE = 64
MAX_TOKENS = 22          # #START# + 20 words + #END#: longer captions are cut
STATE_FILE = "train_state.npz"
PLOT_FILE = "loss.png"
SEED = 0


def register(subparsers):
    p = subparsers.add_parser(
        "train", help="train the captioning model on Flickr8k",
        description="Train the seminar's LSTM captioner on the Flickr8k train "
                    "split, validate on dev after every epoch and write a "
                    "model directory. Interrupt at any time: rerunning the "
                    "same command resumes from the last finished epoch.")
    p.add_argument("--flickr8k", required=True, metavar="DIR",
                   help="Flickr8k folder: images/, Flickr8k.token.txt and "
                        "the Flickr_8k.{train,dev}Images.txt split lists")
    p.add_argument("--out", required=True, metavar="MODEL_DIR",
                   help="model directory to write (and resume from)")
    p.add_argument("--minutes", type=float, default=DEFAULT_MINUTES,
                   help="wall-clock budget of the whole run, resumed runs "
                        "included (default %(default)s)")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS,
                   help="stop after this many epochs (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                   help=argparse.SUPPRESS)  # tuning knob for tests
    p.add_argument("--embed-size", type=int, default=None,
                   help=argparse.SUPPRESS)  # tuning knob for tests
    p.add_argument("--lstm-units", type=int, default=None,
                   help=argparse.SUPPRESS)  # tuning knob for tests
    p.set_defaults(func=run)


def load_flickr8k(folder):
    """``{split: (image paths, raw captions per image)}`` for train and dev."""
    from captioning.data import DataError
    from captioning.flickr8k import (TOKEN_FILE, image_folder, is_flickr8k_dir,
                                     read_split_lists, read_tokens)
    folder = Path(folder)
    if not is_flickr8k_dir(folder):
        raise UsageError("%s is not a Flickr8k folder: it needs %s and "
                         "images/" % (folder, TOKEN_FILE))
    try:
        captions = read_tokens(folder / TOKEN_FILE)
    except DataError as error:
        raise UsageError(str(error))
    lists = read_split_lists(folder)
    image_dir = image_folder(folder)
    result = {}
    for split in ("train", "val"):
        if split not in lists:
            raise UsageError("%s has no %s split list" % (folder, split))
        names = [n for n in lists[split] if n in captions]
        if not names:
            raise UsageError("no image of the %s list has captions" % split)
        result[split] = ([image_dir / n for n in names],
                         [captions[n] for n in names])
    return result


def encode_split(paths, captions):
    """Cached CNN codes; drop (and report) photos that cannot be read."""
    from captioning.codes_cache import cached_codes
    codes, kept, failures = cached_codes(paths, progress=True)
    for path, reason in failures:
        print("skipping %s: %s" % (path, reason), file=sys.stderr)
    if not kept:
        raise UsageError("none of the %d images could be read" % len(paths))
    return codes, [captions[i] for i in kept]


def caption_pairs(codes_index, captions):
    """Flat lists (image row, token list) over every caption of every image."""
    from captioning.model import caption_tokens
    rows, tokens = [], []
    for i, caps in zip(codes_index, captions):
        for c in caps:
            rows.append(i)
            tokens.append(caption_tokens(c)[:MAX_TOKENS])
    return np.array(rows), tokens


def batches(rows, tokens, batch_size, rng):
    """Batches of similar-length captions, in random order.

    Sorting by length (with random tie order) before cutting into batches
    keeps padding, and so wasted LSTM ticks, near zero.
    """
    lengths = np.array([len(t) for t in tokens])
    order = np.lexsort((rng.random_sample(len(tokens)), lengths))
    chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(chunks)
    return chunks


def evaluate_dev(model, codes, rows, tokens, dev_refs, batch_size=500):
    """Dev loss (all captions) and greedy BLEU-4 / CIDEr (all photos)."""
    from captioning.decode import greedy
    from captioning.metrics import score_captions
    _, val_step = model.compile_train()
    prepared = model.prepare_codes(codes)
    total = count = 0.0
    for start in range(0, len(tokens), batch_size):
        part = slice(start, start + batch_size)
        matrix = model.vocab.as_matrix(tokens[part])
        n = float((matrix[:, 1:] != -1).sum())
        total += float(val_step(prepared[rows[part]], matrix)) * n
        count += n
    found = greedy(model, codes)
    scores = score_captions(found, dev_refs)
    return total / count, scores


def plot_history(history, path):
    """Loss per epoch (train, dev) and dev BLEU-4, as a PNG."""
    import matplotlib
    import matplotlib.ticker
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from captioning.data import atomic_write
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    ax1.plot(epochs, [h["val_loss"] for h in history], "o-", label="dev")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("cross-entropy per word")
    ax1.legend()
    ax2.plot(epochs, [h["bleu4"] for h in history], "o-", color="C2")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("dev BLEU-4 (greedy)")
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=80)
    plt.close(fig)


def _state_variables(model):
    """Everything a resumed run needs, in a fixed order."""
    model.compile_train()
    named = model.named_params()
    return ([named[k] for k in sorted(named)] + model.optimizer_state()
            + [model.learning_rate])


def train(flickr8k_dir, out, minutes=DEFAULT_MINUTES, epochs=DEFAULT_EPOCHS,
          batch_size=BATCH_SIZE, embed_size=None, lstm_units=None):
    """Train (or resume) and write the model directory; returns the history."""
    from tqdm import tqdm
    from captioning.checkpoint import load_checkpoint, save_checkpoint
    from captioning.model import (CaptionModel, ModelFileError, Vocabulary,
                                  read_config, save_model)

    started = time.time()
    data = load_flickr8k(flickr8k_dir)
    train_codes, train_caps = encode_split(*data["train"])
    dev_codes, dev_caps = encode_split(*data["val"])
    train_rows, train_tokens = caption_pairs(range(len(train_codes)), train_caps)
    dev_rows, dev_tokens = caption_pairs(range(len(dev_codes)), dev_caps)

    out = Path(out)
    state_path = out / STATE_FILE
    hyper = {k: v for k, v in (("embed_size", embed_size),
                               ("lstm_units", lstm_units)) if v is not None}
    history, spent = [], 0.0
    if state_path.exists():
        try:
            config = read_config(out)
        except ModelFileError as error:
            raise UsageError("cannot resume from %s: %s" % (out, error))
        model = CaptionModel(Vocabulary(config["vocabulary"]), seed=SEED,
                             **config["hyper_parameters"])
        try:
            saved = load_checkpoint(str(state_path), _state_variables(model))
        except ValueError as error:
            raise UsageError(str(error))
        history, spent = saved["history"], saved["seconds"]
        model.code_mean = np.array(saved["code_mean"], "float32")
        model.code_std = np.array(saved["code_std"], "float32")
        print("resuming %s after epoch %d (%.1f min spent)"
              % (out, len(history), spent / 60), file=sys.stderr)
    else:
        vocab = Vocabulary.build(train_tokens)
        model = CaptionModel(vocab, seed=SEED, **hyper)
        model.code_mean = train_codes.mean(axis=0)
        # a floor keeps constant features from blowing up
        model.code_std = np.maximum(train_codes.std(axis=0), 1e-3)
        print("vocabulary: %d words; %d train / %d dev captions"
              % (len(vocab), len(train_tokens), len(dev_tokens)),
              file=sys.stderr)
        print("compiling the training graph (about two minutes)...",
              file=sys.stderr)
        _state_variables(model)

    train_step, _ = model.compile_train()
    budget = minutes * 60.0
    deadline = started + budget - spent
    prepared = model.prepare_codes(train_codes)
    best = max([h["bleu4"] for h in history], default=-1.0)
    best_epoch = max(history, key=lambda h: h["bleu4"])["epoch"] if history else 0
    while len(history) < epochs and time.time() < deadline:
        epoch = len(history) + 1
        rng = np.random.RandomState(SEED + epoch)
        chunks = batches(train_rows, train_tokens, batch_size, rng)
        total = count = 0.0
        bar = tqdm(chunks, desc="epoch %d" % epoch, unit="batch",
                   file=sys.stderr, mininterval=2)
        for chunk in bar:
            matrix = model.vocab.as_matrix([train_tokens[i] for i in chunk])
            n = float((matrix[:, 1:] != -1).sum())
            total += float(train_step(prepared[train_rows[chunk]], matrix)) * n
            count += n
            bar.set_postfix(loss="%.3f" % (total / count), refresh=False)
            if time.time() > deadline:
                break
        bar.close()
        val_loss, scores = evaluate_dev(model, dev_codes, dev_rows,
                                        dev_tokens, dev_caps)
        lr = float(model.learning_rate.get_value())
        record = {"epoch": epoch, "train_loss": total / max(count, 1),
                  "val_loss": val_loss, "learning_rate": lr,
                  "finished": count > 0 and chunk is chunks[-1],
                  "seconds": time.time() - started + spent}
        record.update({k: scores[k] for k in ("bleu1", "bleu4", "cider")})
        # Adam with a smaller step once the dev loss stops improving
        if history and val_loss > min(h["val_loss"] for h in history):
            model.learning_rate.set_value(np.float32(lr / 2))
        history.append(record)
        print("epoch %d: train loss %.3f, dev loss %.3f, dev greedy BLEU-4 "
              "%.3f, CIDEr %.3f (%.1f min)"
              % (epoch, record["train_loss"], val_loss, record["bleu4"],
                 record["cider"], record["seconds"] / 60), file=sys.stderr)
        # params.npz keeps the epoch with the best dev BLEU-4; model.json
        # always has the whole history
        improved = record["bleu4"] > best or not (out / "params.npz").exists()
        if improved:
            best = record["bleu4"]
            best_epoch = epoch
        extra = {"training": {"flickr8k": str(flickr8k_dir),
                              "history": history, "epoch": best_epoch,
                              "selected_by": "dev BLEU-4, greedy decoding"}}
        save_model(model, out, extra=extra, weights=improved)
        save_checkpoint(str(state_path), _state_variables(model),
                        {"history": history,
                         "seconds": time.time() - started + spent,
                         "code_mean": model.code_mean.tolist(),
                         "code_std": model.code_std.tolist()})
        plot_history(history, out / PLOT_FILE)
    return history


def run(args):
    if args.minutes <= 0 or args.epochs <= 0 or args.batch_size <= 0:
        raise UsageError("--minutes, --epochs and --batch-size must be > 0")
    history = train(args.flickr8k, args.out, args.minutes, args.epochs,
                    args.batch_size, args.embed_size, args.lstm_units)
    if history:
        best = max(history, key=lambda h: h["bleu4"])
        print(json.dumps({"model": str(args.out), "epochs": len(history),
                          "best_epoch": best["epoch"],
                          "dev_bleu4_greedy": round(best["bleu4"], 4),
                          "minutes": round(history[-1]["seconds"] / 60, 1)}))
    return 0
