"""Training for ``caption train``: fit the seminar graph on Flickr8k and write a model dir.

Trains with Adam on the standard train split (6,000 photos x 5 captions)
minus a fixed *selection* slice: 500 of its photos, chosen by a salted hash
of their names (so the same ones every run), held out of training. After
every epoch the loss on the selection slice drives everything that needs a
held-out number: the learning rate is halved after an epoch that did not
lower it by ``MIN_DELTA`` (down to a floor), training stops after
``--patience`` such epochs in a row, and the weights kept are those of the
epoch with the lowest selection loss. The dev split is never read, so
``caption evaluate ... --list Flickr_8k.devImages.txt`` is an honest
estimate. Writes into ``--out``:

``params.npz``, ``model.json``
    The model of the epoch with the lowest selection loss, read by
    ``caption describe`` and ``caption evaluate``; ``model.json`` also holds
    the history, the kept epoch, the selection photos and why training
    stopped.
``train_state.npz``
    The latest epoch's weights, Adam's moments, the history and the
    settings they depend on (hyper-parameters, vocabulary, a fingerprint of
    the data): rerunning the same command resumes from it (an interrupt
    loses at most the epoch in progress); other settings are refused.
``loss.png``
    Train and selection loss per epoch (kept epoch and stop marked), and
    the selection slice's greedy BLEU-4 (for information only); after
    self-critical training, its rounds' selection scores.
``self_critical_state.npz``
    With ``--self-critical-rounds``: the latest round's weights, its Adam
    state and history, to resume self-critical training (which starts from
    the kept cross-entropy epoch and then keeps, in ``params.npz``, the
    round with the best selection BLEU-4; :func:`self_critical_phase`).

The photos' CNN codes are computed once and cached
(:func:`captioning.cnn.encode.encode`); ``model.json`` records which CNN made them.
"""
# Theano comes in with the model, imported inside train(): importing this
# module (as `caption train --help` does) stays light.
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from captioning.errors import CaptionError

__all__ = ["TrainingError", "train", "selection_split", "stale_epochs",
           "next_learning_rate", "stop_reason", "kept_epoch"]

DEFAULT_MINUTES = 55     # the whole run, compile and validation included
DEFAULT_EPOCHS = 40
PATIENCE = 3             # epochs without improvement before stopping
MIN_DELTA = 1e-3         # nats per word: smaller gains count as no improvement
LR_DECAY = 0.5           # applied after every epoch without improvement
LR_FLOOR = 1 / 16        # of the initial learning rate (four halvings)
SELECTION_IMAGES = 500   # photos held out of the train split (at most 1/10)
BATCH_SIZE = 64
MAX_TOKENS = 22          # #START# + 20 words + #END#: longer captions are cut
STATE_FILE = "train_state.npz"
SELF_CRITICAL_STATE = "self_critical_state.npz"
SELF_CRITICAL_MINUTES = 15   # of --minutes, when self-critical training follows
SELF_CRITICAL_SEED = 1000    # its shuffles and samples: SEED + this + pass / round
SELF_CRITICAL_PATIENCE = 3   # rounds in a row without a better selection BLEU-4
SELECTION_BEAM = 3           # self-critical rounds are judged as evaluated
PLOT_FILE = "loss.png"
SEED = 0


class TrainingError(CaptionError):
    """The photos, captions or model directory cannot be trained on (or
    resumed from); the message says why and what to do."""


def load_flickr8k(folder):
    """``(image names, image paths, raw captions per image)`` of the train
    list; refuses a train list that shares photos with the dev/test lists."""
    from captioning.datasets.formats import DataError
    from captioning.datasets.flickr8k import (SPLIT_FILES, TOKEN_FILE, image_folder,
                                     is_flickr8k_dir, read_split_lists,
                                     read_tokens)
    folder = Path(folder)
    if not is_flickr8k_dir(folder):
        raise TrainingError("%s is not a Flickr8k folder: it needs %s and "
                         "images/" % (folder, TOKEN_FILE))
    try:
        captions = read_tokens(folder / TOKEN_FILE)
        lists = read_split_lists(folder)
    except DataError as error:
        raise TrainingError(str(error))
    if "train" not in lists:
        raise TrainingError("%s has no %s" % (folder, SPLIT_FILES["train"]))
    for split in ("val", "test"):
        shared = sorted(set(lists["train"]) & set(lists.get(split, ())))
        if shared:
            raise TrainingError("%d photos of %s are also in %s (%s): the "
                             "evaluation photos must stay out of training"
                             % (len(shared), SPLIT_FILES["train"],
                                SPLIT_FILES[split], ", ".join(shared[:3])))
    names = [n for n in dict.fromkeys(lists["train"]) if n in captions]
    if not names:
        raise TrainingError("no image of the train list has captions")
    image_dir = image_folder(folder)
    return names, [image_dir / n for n in names], [captions[n] for n in names]


def selection_split(names, n_selection=SELECTION_IMAGES):
    """``(train names, selection names)``: the held-out photos are the
    ``min(n_selection, len(names) // 10)`` (at least one) whose salted
    sha256 comes first, so the choice does not depend on the list's order
    and stays the same from run to run."""
    if len(names) < 2:
        raise TrainingError("the train list needs at least 2 photos (one is "
                         "held out to choose the epoch)")
    n = max(1, min(n_selection, len(names) // 10))
    ranked = sorted(names, key=lambda name: hashlib.sha256(
        ("selection-%d:%s" % (SEED, name)).encode()).hexdigest())
    held = set(ranked[:n])
    return ([m for m in names if m not in held], [m for m in names if m in held])


def fingerprint(names, captions):
    """Photos and captions in one short line (count + sha256)."""
    pairs = sorted(zip(names, captions))
    digest = hashlib.sha256(json.dumps(pairs).encode()).hexdigest()
    return "%d photos, %d captions, sha256 %s" % (
        len(pairs), sum(len(c) for _, c in pairs), digest[:16])


def encode_split(names, paths, captions, encoder):
    """Cached CNN codes; drop (and report) photos that cannot be read."""
    from captioning.cnn.encode import EncoderError, encode
    try:
        codes, kept, failures = encode(paths, encoder, cache=True,
                                       progress=True)
    except EncoderError as error:
        raise TrainingError(str(error))
    for path, reason in failures:
        print("skipping %s: %s" % (path, reason), file=sys.stderr)
    if not kept:
        raise TrainingError("none of the %d images could be read" % len(paths))
    return codes, [names[i] for i in kept], [captions[i] for i in kept]


def caption_pairs(codes_index, captions):
    """Flat lists (image row, token list) over every caption of every image."""
    from captioning.text import caption_tokens
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


def feature_statistics(codes, chunk=500):
    """Mean and standard deviation of each feature (the last axis) over
    photos and, for region features, regions; float32, computed in float64
    a chunk of photos at a time (a float32 copy of Flickr8k's region
    features would take 1.5 GB)."""
    n_features = codes.shape[-1]
    total = np.zeros(n_features)
    squares = np.zeros(n_features)
    count = 0
    for start in range(0, len(codes), chunk):
        part = np.asarray(codes[start:start + chunk], np.float64).reshape(-1, n_features)
        total += part.sum(axis=0)
        squares += (part ** 2).sum(axis=0)
        count += len(part)
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean ** 2, 0))
    # a floor keeps constant features from blowing up
    return mean.astype(np.float32), np.maximum(std, 1e-3).astype(np.float32)


def evaluate_selection(model, codes, rows, tokens, refs, batch_size=500):
    """Selection loss (all captions) and greedy BLEU / CIDEr (all photos)."""
    from captioning.decode import greedy
    from captioning.metrics import score_captions
    _, val_step = model.compile_train()
    total = count = 0.0
    for start in range(0, len(tokens), batch_size):
        part = slice(start, start + batch_size)
        matrix = model.vocab.as_matrix(tokens[part])
        n = float((matrix[:, 1:] != -1).sum())
        total += float(val_step(model.prepare_codes(codes[rows[part]]), matrix)) * n
        count += n
    scores = score_captions(greedy(model, codes), refs)
    return total / count, scores


# ------------------------------------------------- schedule and stopping
# Pure functions of the history, so a resumed run decides exactly as the
# uninterrupted one would have.

def stale_epochs(history):
    """Epochs since the selection loss last beat its best by > MIN_DELTA."""
    best, stale = float("inf"), 0
    for h in history:
        stale = 0 if h["selection_loss"] < best - MIN_DELTA else stale + 1
        best = min(best, h["selection_loss"])
    return stale


def next_learning_rate(history, learning_rate, floor):
    """Halve the rate after an epoch without improvement, not below floor."""
    if history and stale_epochs(history) > 0:
        return max(learning_rate * LR_DECAY, floor)
    return learning_rate


def kept_epoch(history):
    """The epoch with the lowest selection loss (the first, on a tie)."""
    return min(history, key=lambda h: h["selection_loss"])["epoch"]


def stop_reason(history, seconds, epochs, minutes, patience):
    """Why training is over: 'plateau', 'epochs', 'minutes', or None."""
    if history and stale_epochs(history) >= patience:
        return "plateau"
    if len(history) >= epochs:
        return "epochs"
    if seconds >= minutes * 60:
        return "minutes"
    return None


def describe_stop(reason, history, seconds, epochs, minutes):
    """One sentence: why training stopped after the last epoch."""
    if reason == "plateau":
        best = min(history, key=lambda h: h["selection_loss"])
        return ("the selection loss has not improved by %g for %d epochs "
                "(best %.3f at epoch %d; last learning rate %.2g)"
                % (MIN_DELTA, stale_epochs(history), best["selection_loss"],
                   best["epoch"], history[-1]["learning_rate"]))
    if reason == "epochs":
        return "%d epochs done (--epochs %d)" % (len(history), epochs)
    return "the %g-minute budget is spent (%.1f min)" % (minutes, seconds / 60)


MORE = {"plateau": "rerun with a larger --patience (it continues from the "
                   "last epoch)",
        "epochs": "rerun with a larger --epochs",
        "minutes": "rerun with a larger --minutes"}


STOP_LABELS = {"plateau": "no more improvement", "epochs": "--epochs reached",
               "minutes": "--minutes spent"}


def plot_history(history, path, kept=None, stopped=None, self_critical=None):
    """Train and selection loss per epoch (kept epoch and stop marked) and
    the selection slice's greedy BLEU-4, as a PNG; with ``self_critical``
    (model.json's record of it), a third panel: its rounds' selection
    BLEU-4 and CIDEr-D (beam search), round 0 being the cross-entropy model."""
    import matplotlib
    import matplotlib.ticker
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from captioning.io.files import atomic_write
    epochs = [h["epoch"] for h in history]
    panels = 3 if self_critical else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4))
    ax1, ax2 = axes[:2]
    ax1.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    ax1.plot(epochs, [h["selection_loss"] for h in history], "o-",
             label="selection (held out of train)")
    if kept is not None:
        ax1.axvline(kept, color="C2", ls="--", label="kept: epoch %d" % kept)
    if stopped is not None:
        ax1.axvline(epochs[-1], color="C3", ls=":",
                    label="stopped: " + STOP_LABELS[stopped])
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("cross-entropy per word")
    ax1.legend()
    ax2.plot(epochs, [h["selection_bleu4"] for h in history], "o-", color="C2")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("selection BLEU-4 (greedy; not used to choose)")
    if self_critical:
        ax3 = axes[2]
        start = dict(self_critical["start"], round=0)
        rounds = self_critical["history"]
        # each round starts from the round kept before it (training goes
        # back to it after a round without a new best)
        came_from = []
        for i in range(len(rounds)):
            before = self_critical_kept(rounds[:i], start["selection_bleu4"])
            came_from.append(rounds[before - 1] if before else start)
        for key, label, color in (("selection_bleu4", "BLEU-4", "C2"),
                                  ("selection_cider", "CIDEr-D / 4", "C4")):
            scale = 0.25 if key == "selection_cider" else 1.0
            for origin, h in zip(came_from, rounds):
                ax3.plot([origin["round"], h["round"]],
                         [scale * origin[key], scale * h[key]], "s-",
                         color=color)
            ax3.plot([0], [scale * start[key]], "s", color=color,
                     label="selection " + label)
        if self_critical.get("round"):
            ax3.axvline(self_critical["round"], color="C2", ls="--",
                        label="kept: round %d" % self_critical["round"])
        ax3.set_xlabel("self-critical round (0: the cross-entropy model)")
        ax3.set_ylabel("selection score, beam %d" % SELECTION_BEAM)
        ax3.legend()
        axes = axes[:3]
    for ax in axes:
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


def run_settings(hyper, batch_size, vocab, train_data, selection_data, encoder,
                 arch="seminar", word_vectors="none"):
    """What the training state depends on: a resume must match all of it.
    (--epochs, --minutes and --patience only say when to stop.)"""
    from captioning.text import NORMALISER
    features = {} if encoder.feature_kind == "logits" else {
        "features": encoder.feature_kind}
    extra = {} if arch == "seminar" and word_vectors == "none" else {
        "arch": arch, "word_vectors": word_vectors}
    return dict(hyper, batch_size=batch_size, max_tokens=MAX_TOKENS,
                seed=SEED, cnn=encoder.cnn, min_delta=MIN_DELTA, **features, **extra,
                learning_rate_decay=LR_DECAY,
                learning_rate_floor=hyper["learning_rate"] * LR_FLOOR,
                normaliser=NORMALISER, vocabulary=vocab.words,
                train_data=train_data, selection_data=selection_data)


def initial_embedding(source, vocab, embed_size, train_tokens):
    """``(matrix, facts)``: word vectors for the embedding's start, and what
    to record about them; ``source`` is ``glove`` or ``word2vec`` (trained
    here on the training captions, so nothing held out is seen)."""
    from captioning.word_vectors import (embedding_matrix, load_glove,
                                         train_word2vec)
    if source == "glove":
        vectors = load_glove()
    else:
        vectors = train_word2vec(train_tokens, size=embed_size, seed=SEED)
    matrix, missing = embedding_matrix(vocab, vectors, size=embed_size,
                                       rng=np.random.RandomState(SEED))
    print("word vectors: %s (%d-d) for %d of %d words; no vector: %d (%s)"
          % (vectors.name, vectors.vectors.shape[1], len(vocab) - 4 - len(missing),
             len(vocab) - 4, len(missing), ", ".join(missing[:8])
             + (", ..." if len(missing) > 8 else "")), file=sys.stderr)
    return matrix, {"source": vectors.name, "dimension": int(vectors.vectors.shape[1]),
                    "words_without_vector": len(missing)}


def self_critical_settings(meta):
    """What a self-critical state depends on: its own settings and the
    cross-entropy run's (a resume must match all of it)."""
    from captioning import self_critical as sc
    return {"cross_entropy": meta, "reward": "CIDEr-D",
            "baseline": "mean reward of the photo's other samples",
            "samples": sc.SAMPLES, "images_per_step": sc.IMAGES_PER_STEP,
            "steps_per_round": sc.ROUND_STEPS,
            "learning_rate": sc.LEARNING_RATE, "max_words": sc.MAX_WORDS,
            "max_norm": sc.MAX_NORM, "selection_beam": SELECTION_BEAM,
            "patience_rounds": SELF_CRITICAL_PATIENCE}


def self_critical_kept(history, start_bleu4):
    """The round with the highest selection BLEU-4 (beam search; the first,
    on a tie), or None if none beats ``start_bleu4``, the cross-entropy
    model's: then its weights stay."""
    if not history:
        return None
    best = max(history, key=lambda h: (h["selection_bleu4"], -h["round"]))
    return best["round"] if best["selection_bleu4"] > start_bleu4 else None


def self_critical_stale(history, start_bleu4):
    """Rounds since the selection BLEU-4 last beat its best (the
    cross-entropy model's included)."""
    best, stale = start_bleu4, 0
    for h in history:
        stale = 0 if h["selection_bleu4"] > best else stale + 1
        best = max(best, h["selection_bleu4"])
    return stale


def round_chunks(n_photos, round_index, steps, size):
    """The photo batches of round ``round_index`` (1-based): rounds take
    ``steps`` batches of ``size`` photos in turn from passes over all
    photos, each pass in its own fixed random order (so a resumed run
    trains on exactly the batches the uninterrupted one would have)."""
    per_pass = -(-n_photos // size)
    chunks = []
    for step in range((round_index - 1) * steps, round_index * steps):
        pass_index, i = divmod(step, per_pass)
        order = np.random.RandomState(
            SEED + SELF_CRITICAL_SEED + pass_index).permutation(n_photos)
        chunks.append(np.sort(order[i * size:(i + 1) * size]))
    return chunks


def selection_beam_scores(model, codes, refs):
    """BLEU / CIDEr-D of the selection photos' beam-search captions."""
    from captioning.decode import caption
    from captioning.metrics import score_captions
    return score_captions(caption(model, codes, beam=SELECTION_BEAM), refs)


def self_critical_phase(model, out, train_codes, train_caps, selection,
                        rounds, budget, elapsed, training, meta):
    """Self-critical training (:mod:`captioning.self_critical`) from the
    kept cross-entropy weights, resumable; returns its history.

    Runs in rounds of ``ROUND_STEPS`` updates; after each, the selection
    photos are captioned with beam search (as ``caption evaluate --beam 3``
    does). ``params.npz`` keeps the round with the highest selection BLEU-4
    if it beats the cross-entropy model's; after a round that does not,
    training goes back to the kept weights with a fresh Adam and half its
    learning rate (REINFORCE can make a model worse). It stops after
    ``rounds``, when the ``budget`` (seconds for the whole run; ``elapsed``
    already spent) is gone, or after ``SELF_CRITICAL_PATIENCE`` rounds in a
    row without a new best.
    ``selection``: the selection photos' ``(codes, captions)``.
    ``model.json`` gains ``training["self_critical"]``.
    """
    from tqdm import tqdm
    from captioning.checkpoint import (CheckpointMismatch, check_meta,
                                       load_checkpoint, read_checkpoint,
                                       save_checkpoint)
    from captioning.metrics import CiderD
    from captioning.model_dir import (load_params, save_model,
                                      with_hyper_added_since)
    from captioning.self_critical import (IMAGES_PER_STEP, ROUND_STEPS,
                                          SelfCritical)

    state_path = out / SELF_CRITICAL_STATE
    settings = self_critical_settings(meta)
    history, spent, start = [], elapsed, None
    if state_path.exists():
        try:
            state, saved = read_checkpoint(str(state_path))
            # the cross-entropy run's settings, as train() reads them
            if isinstance(saved, dict) and "cross_entropy" in saved:
                saved = dict(saved, cross_entropy=with_hyper_added_since(
                    type(model), saved["cross_entropy"]))
            check_meta(state_path, saved, settings)
        except CheckpointMismatch as error:
            raise TrainingError("cannot resume self-critical training: %s. "
                                "Delete %s to start it afresh from the "
                                "weights now in params.npz"
                                % (error, state_path))
        except (OSError, ValueError, KeyError) as error:
            raise TrainingError("cannot read %s: %s; delete it to start "
                                "self-critical training afresh"
                                % (state_path, error))
        history, spent, start = state["history"], state["seconds"], state["start"]
        why = self_critical_stop(history, start, rounds, spent, budget)
        if why:
            print("%s: self-critical training is finished after round %d (%s); "
                  "nothing to do" % (out, len(history), why), file=sys.stderr)
            return history
    started = time.time()

    # the kept cross-entropy epoch is where self-critical training starts
    load_params(model, out)
    print("self-critical training on CIDEr-D from cross-entropy epoch %d: "
          "compiling..." % training["epoch"], file=sys.stderr)
    trainer = SelfCritical(model)
    if history:
        load_checkpoint(str(state_path), trainer.state_variables())
        print("resuming self-critical training after round %d"
              % len(history), file=sys.stderr)
    else:
        start = selection_beam_scores(model, *selection)
        print("cross-entropy model: selection BLEU-4 %.3f, CIDEr-D %.3f (beam "
              "%d)" % (start["bleu4"], start["cider"], SELECTION_BEAM),
              file=sys.stderr)
    scorer = CiderD(train_caps)
    clock = lambda: time.time() - started + spent
    tuned = {k: v for k, v in settings.items() if k != "cross_entropy"}
    while not self_critical_stop(history, start, rounds, clock(), budget):
        index = len(history) + 1
        rng = np.random.RandomState(SEED + SELF_CRITICAL_SEED + index)
        chunks = round_chunks(len(train_codes), index, ROUND_STEPS,
                              IMAGES_PER_STEP)
        rewards = []
        bar = tqdm(chunks, desc="self-critical round %d" % index,
                   unit="batch", file=sys.stderr, mininterval=2)
        for chunk in bar:
            rewards.append(trainer.step(train_codes[chunk], chunk, scorer,
                                        rng).mean())
            bar.set_postfix(reward="%.3f" % np.mean(rewards[-20:]),
                            refresh=False)
            if clock() > budget:
                break
        bar.close()
        scores = selection_beam_scores(model, *selection)
        record = {"round": index, "mean_reward": float(np.mean(rewards)),
                  "learning_rate": float(trainer.learning_rate.get_value()),
                  "finished": len(rewards) == len(chunks), "seconds": clock()}
        record.update({"selection_" + k: scores[k]
                       for k in ("bleu1", "bleu4", "cider")})
        history.append(record)
        print("self-critical round %d: mean reward (CIDEr-D) %.3f; selection "
              "BLEU-4 %.3f, CIDEr-D %.3f (beam %d; %.1f min)"
              % (index, record["mean_reward"], record["selection_bleu4"],
                 record["selection_cider"], SELECTION_BEAM,
                 record["seconds"] / 60), file=sys.stderr)
        kept = self_critical_kept(history, start["bleu4"])
        training["self_critical"] = dict(
            tuned, history=history, round=kept,
            start={"selection_" + k: start[k] for k in ("bleu1", "bleu4", "cider")},
            selected_by="highest selection BLEU-4 (beam %d), if above the "
                        "cross-entropy model's" % SELECTION_BEAM)
        save_model(model, out, extra={"training": training},
                   weights=kept == index)
        if kept != index:
            # REINFORCE can make a model worse: back to the best weights
            # (params.npz), with a fresh Adam and half the step
            load_params(model, out)
            trainer.restart(record["learning_rate"] * LR_DECAY)
            print("  back to %s, learning rate %.2g" % (
                "round %d" % kept if kept else "the cross-entropy weights",
                trainer.learning_rate.get_value()), file=sys.stderr)
        save_checkpoint(str(state_path), trainer.state_variables(),
                        {"history": history, "seconds": record["seconds"],
                         "start": start}, settings)
        plot_history(training["history"], out / PLOT_FILE, training["epoch"],
                     training.get("stopped", {}).get("reason"), training["self_critical"])
    kept = self_critical_kept(history, start["bleu4"])
    print("self-critical training stopped after round %d (%s); kept: %s"
          % (len(history), self_critical_stop(history, start, rounds, clock(),
                                               budget),
             "round %d" % kept if kept else
             "the cross-entropy weights (no round beat their selection "
             "BLEU-4)"), file=sys.stderr)
    return history


def self_critical_stop(history, start, rounds, seconds, budget):
    """Why self-critical training is over, in words, or None."""
    if len(history) >= rounds:
        return "--self-critical-rounds done"
    if history and self_critical_stale(history, start["bleu4"]) >= SELF_CRITICAL_PATIENCE:
        return "%d rounds in a row without a better selection BLEU-4" % SELF_CRITICAL_PATIENCE
    if seconds >= budget:
        return "the --minutes budget is spent"
    return None


def check_arch(arch, encoder):
    """The arch and the features must fit: the seminar graph takes one
    vector per photo, attention a grid of regions."""
    regions = len(getattr(encoder, "code_shape", (encoder.code_size,))) > 1
    if arch == "attention" and not regions:
        raise TrainingError("--arch attention needs region features: add "
                            "--features spatial (not %s)" % encoder.feature_kind)
    if arch == "seminar" and regions:
        raise TrainingError("--arch seminar takes one vector per photo: use "
                            "--features logits or pooled, or --arch attention "
                            "for %s features" % encoder.feature_kind)


def train(flickr8k_dir, out, minutes=DEFAULT_MINUTES, epochs=DEFAULT_EPOCHS,
          batch_size=BATCH_SIZE, embed_size=None, lstm_units=None,
          patience=PATIENCE, encoder=None, arch="seminar", word_vectors="none",
          freeze_embedding=False, self_critical_rounds=0,
          self_critical_minutes=SELF_CRITICAL_MINUTES, attention_entropy=None,
          attention_entropy_words=None, attend=None):
    """Train (or resume) and write the model directory; returns the history.

    ``encoder`` (a :class:`captioning.cnn.encode.Encoder`, default
    EfficientNet-Lite0 logits) makes the photos' codes; the model records it.
    ``arch``: ``seminar`` (the notebook's graph, :class:`CaptionModel`) or
    ``attention`` (:class:`AttentionCaptionModel`, on spatial features).
    ``word_vectors``: ``none``, ``glove`` or ``word2vec`` starts the
    embedding; ``freeze_embedding`` keeps it there.
    ``self_critical_rounds`` > 0: after cross-entropy, up to that many
    rounds of self-critical training on CIDEr-D (:func:`self_critical_phase`),
    which get the last ``self_critical_minutes`` of ``minutes``.
    ``attention_entropy`` (attention only; None: the model's default)
    weighs the entropy of each word's attention in the objective,
    ``attention_entropy_words`` (``all`` or ``content``) which words', and
    ``attend`` chooses when the decoder looks (attention's hyper-parameters
    of the same names).
    """
    from tqdm import tqdm
    from captioning.checkpoint import (CheckpointMismatch, check_meta,
                                       load_checkpoint, read_checkpoint,
                                       save_checkpoint)
    from captioning.cnn.encode import Encoder
    from captioning.model_dir import (ARCHS, read_config, save_model,
                                      with_hyper_added_since)
    from captioning.text import Vocabulary

    started = time.time()
    encoder = Encoder() if encoder is None else encoder
    check_arch(arch, encoder)
    if word_vectors not in ("none", "glove", "word2vec"):
        raise TrainingError("word vectors must be none, glove or word2vec, not %r"
                            % word_vectors)
    if freeze_embedding and word_vectors == "none":
        raise TrainingError("--freeze-embedding keeps word vectors fixed: give "
                            "--word-vectors glove or word2vec")
    if self_critical_rounds and not 0 < self_critical_minutes < minutes:
        raise TrainingError("--self-critical-minutes (%g) must be > 0 and "
                            "leave part of --minutes (%g) for cross-entropy"
                            % (self_critical_minutes, minutes))
    # cross-entropy's share of the budget
    xe_minutes = minutes - self_critical_minutes if self_critical_rounds else minutes
    model_class = ARCHS[arch]
    listed = load_flickr8k(flickr8k_dir)
    held = set(selection_split(listed[0])[1])  # unreadable photos included
    codes, names, captions = encode_split(*listed, encoder)
    is_held = np.array([n in held for n in names], bool)
    if is_held.all() or not is_held.any():
        raise TrainingError("no readable photo left to %s"
                         % ("train on" if is_held.all() else "choose the epoch"))
    train_codes, sel_codes = codes[~is_held], codes[is_held]
    train_names = [n for n in names if n not in held]
    selection_names = [n for n in names if n in held]
    train_caps = [c for n, c in zip(names, captions) if n not in held]
    sel_caps = [c for n, c in zip(names, captions) if n in held]
    train_rows, train_tokens = caption_pairs(range(len(train_codes)), train_caps)
    sel_rows, sel_tokens = caption_pairs(range(len(sel_codes)), sel_caps)

    hyper = dict(model_class.default_hyper, cnn_feature_size=encoder.code_size,
                 train_embedding=not freeze_embedding, **{
                     k: v for k, v in (("embed_size", embed_size),
                                       ("lstm_units", lstm_units),
                                       ("attention_entropy", attention_entropy),
                                       ("attention_entropy_words",
                                        attention_entropy_words),
                                       ("attend", attend))
                     if v is not None})
    vocab = Vocabulary.build(train_tokens)
    meta = run_settings(hyper, batch_size, vocab,
                        fingerprint(train_names, train_caps),
                        fingerprint(selection_names, sel_caps), encoder,
                        arch, word_vectors)
    out = Path(out)
    state_path = out / STATE_FILE
    history, spent = [], 0.0
    xe_done = False     # finished before this run (self-critical training follows)
    if state_path.exists():
        try:
            state, saved_meta = read_checkpoint(str(state_path))
            # a run written before a hyper-parameter existed resumes if the
            # parameter keeps its old value
            check_meta(state_path, with_hyper_added_since(
                model_class, saved_meta), meta)
        except CheckpointMismatch as error:
            raise TrainingError("cannot resume: %s. %s" % (error, (
                "Use the same options, or --out a new directory"
                if error.differences else
                "Use --out a new directory, or delete it to start afresh")))
        except (OSError, ValueError, KeyError) as error:
            raise TrainingError("cannot read %s: %s; --out a new directory"
                             % (state_path, error))
        history, spent = state["history"], state["seconds"]
        reason = stop_reason(history, spent, epochs, xe_minutes, patience)
        xe_done = reason is not None
        if not xe_done and (out / SELF_CRITICAL_STATE).exists():
            # params.npz may hold a self-critical round by now, and the
            # rounds started from the cross-entropy epoch kept back then
            raise TrainingError(
                "%s went on to self-critical training after epoch %d; its "
                "cross-entropy training cannot be extended (more epochs, "
                "minutes or patience than it stopped with): --out a new "
                "directory" % (out, len(history)))
        if xe_done and not self_critical_rounds:
            print("%s is finished after epoch %d: %s; nothing to do. To "
                  "train more, %s, or --out a new directory"
                  % (out, len(history), describe_stop(
                      reason, history, spent, epochs, xe_minutes),
                     MORE[reason]), file=sys.stderr)
            return history
    embedding, vector_facts = None, None
    if word_vectors != "none" and not history:
        embedding, vector_facts = initial_embedding(
            word_vectors, vocab, hyper["embed_size"], train_tokens)
    model = model_class(vocab, seed=SEED, embedding=embedding, **hyper)
    model.encoder_record = encoder.record()
    if history:
        # its settings were checked above, before anything was compiled
        load_checkpoint(str(state_path), _state_variables(model))
        model.code_mean = np.array(state["code_mean"], "float32")
        model.code_std = np.array(state["code_std"], "float32")
        print("resuming %s after epoch %d (%.1f min spent)"
              % (out, len(history), spent / 60), file=sys.stderr)
    else:
        model.code_mean, model.code_std = feature_statistics(train_codes)
        print("vocabulary: %d words; %d train / %d selection captions "
              "(%d / %d photos; the dev split is not used)"
              % (len(vocab), len(train_tokens), len(sel_tokens),
                 len(train_codes), len(sel_codes)), file=sys.stderr)
        print("compiling the training graph (about two minutes)...",
              file=sys.stderr)
        _state_variables(model)

    train_step, _ = model.compile_train()
    budget = xe_minutes * 60.0
    if train_codes.ndim == 2:   # small: standardise once
        prepared = model.prepare_codes(train_codes)
        batch_codes = prepared.__getitem__
    else:                       # region features: a batch at a time
        batch_codes = lambda rows: model.prepare_codes(train_codes[rows])
    if word_vectors != "none" and vector_facts is None:   # resumed
        from captioning.model_dir import ModelFileError, read_config
        try:
            vector_facts = read_config(out)["training"]["word_vectors"]
        except (ModelFileError, KeyError):
            vector_facts = {"source": word_vectors}
    if vector_facts is not None:
        vector_facts["frozen"] = bool(freeze_embedding)
    training = {"flickr8k": str(flickr8k_dir),
                "arch": arch, "features": encoder.feature_kind,
                "word_vectors": vector_facts,
                "selected_by": "lowest selection loss: %d photos of the "
                               "train split held out of training"
                               % len(selection_names),
                "selection_images": sorted(selection_names),
                "schedule": {"patience": patience, "min_delta": MIN_DELTA,
                             "learning_rate_decay": LR_DECAY,
                             "learning_rate_floor": meta["learning_rate_floor"]}}
    elapsed = time.time() - started + spent
    if xe_done:
        training = read_config(out)["training"]
    while True:
        reason = stop_reason(history, elapsed, epochs, xe_minutes, patience)
        if reason:
            break
        epoch = len(history) + 1
        rng = np.random.RandomState(SEED + epoch)
        chunks = batches(train_rows, train_tokens, batch_size, rng)
        total = count = 0.0
        bar = tqdm(chunks, desc="epoch %d" % epoch, unit="batch",
                   file=sys.stderr, mininterval=2)
        for chunk in bar:
            matrix = model.vocab.as_matrix([train_tokens[i] for i in chunk])
            n = float((matrix[:, 1:] != -1).sum())
            total += float(train_step(batch_codes(train_rows[chunk]), matrix)) * n
            count += n
            bar.set_postfix(loss="%.3f" % (total / count), refresh=False)
            if time.time() - started + spent > budget:
                break
        bar.close()
        sel_loss, scores = evaluate_selection(model, sel_codes, sel_rows,
                                              sel_tokens, sel_caps)
        lr = float(model.learning_rate.get_value())
        elapsed = time.time() - started + spent
        record = {"epoch": epoch, "train_loss": total / max(count, 1),
                  "selection_loss": sel_loss, "learning_rate": lr,
                  "finished": count > 0 and chunk is chunks[-1],
                  "seconds": elapsed}
        record.update({"selection_" + k: scores[k]
                       for k in ("bleu1", "bleu4", "cider")})
        history.append(record)
        # Adam with a smaller step once the selection loss stops improving
        model.learning_rate.set_value(np.float32(next_learning_rate(
            history, lr, meta["learning_rate_floor"])))
        print("epoch %d: train loss %.3f, selection loss %.3f, selection "
              "greedy BLEU-4 %.3f (%.1f min)"
              % (epoch, record["train_loss"], sel_loss,
                 record["selection_bleu4"], elapsed / 60), file=sys.stderr)
        # params.npz keeps the epoch with the lowest selection loss;
        # model.json always has the whole history
        kept = kept_epoch(history)
        training.update(history=history, epoch=kept)
        save_model(model, out, extra={"training": training},
                   weights=kept == epoch or not (out / "params.npz").exists())
        save_checkpoint(str(state_path), _state_variables(model),
                        {"history": history, "seconds": elapsed,
                         "code_mean": model.code_mean.tolist(),
                         "code_std": model.code_std.tolist()}, meta)
        plot_history(history, out / PLOT_FILE, kept)
    if history and not xe_done:
        why = describe_stop(reason, history, elapsed, epochs, xe_minutes)
        saved = "; saved ~%.0f min of the budget" % ((budget - elapsed) / 60) \
            if reason == "plateau" else ""
        print("stopping after epoch %d: %s%s" % (len(history), why, saved),
              file=sys.stderr)
        training.update(history=history, epoch=kept_epoch(history),
                        stopped={"reason": reason, "after_epoch": len(history),
                                 "why": why})
        save_model(model, out, extra={"training": training}, weights=False)
        plot_history(history, out / PLOT_FILE, kept_epoch(history), reason)
    if self_critical_rounds and history:
        self_critical_phase(model, out, train_codes, train_caps,
                            (sel_codes, sel_caps), self_critical_rounds,
                            minutes * 60.0,
                            time.time() - started + spent, training, meta)
    return history
