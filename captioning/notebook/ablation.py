"""The bonus notebook's results table: one ``caption evaluate`` per row.

:data:`ROWS` lists the table once: each row names a model directory (a
folder under the models folder, ``$CAPTION_BONUS_MODELS`` in the notebook,
default ``runs/bonus/``; a symlink to a model trained elsewhere works), the
``caption train`` options that make it, and the beam width to decode with.
:func:`evaluate_rows` runs ``python -m captioning evaluate`` on the
Flickr8k dev photos for each row, in a subprocess, and keeps the JSON line it
prints last, so every number of the table comes from the same command a
reader can run; a missing model, a missing Flickr8k or a failed command gives
a row that says so. :func:`describe_model` reads what a model directory
really is from its ``model.json`` (a symlink pointing at the wrong model
shows), :func:`histories` its training history for the loss curves.
"""
import json
import os
import shlex
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

from captioning.datasets.flickr8k import (SPLIT_FILES, TOKEN_FILE,
                                          image_folder, is_flickr8k_dir)
from captioning.datasets.formats import REPO_ROOT

__all__ = ["Row", "ROWS", "METRICS", "train_command", "evaluate_command",
           "describe_model", "histories", "evaluate_rows", "markdown_table"]

Row = namedtuple("Row", "label model train_options beam")

# Each step adds one thing to the row above it.
ROWS = (
    Row("seminar graph on logits", "logits", (), 1),
    Row("pooled features", "pooled", ("--features", "pooled"), 1),
    Row("+ GloVe word vectors", "pooled-glove",
        ("--features", "pooled", "--word-vectors", "glove"), 1),
    Row("attention on the 7x7 regions", "attention",
        ("--arch", "attention", "--features", "spatial",
         "--self-critical-rounds", "0"), 1),
    Row("+ self-critical training on CIDEr-D", "attention-self-critical",
        ("--arch", "attention", "--features", "spatial"), 1),
    Row("+ beam search (k = 3)", "attention-self-critical",
        ("--arch", "attention", "--features", "spatial"), 3),
)
METRICS = ("bleu1", "bleu2", "bleu3", "bleu4", "cider")
DEV_LIST = SPLIT_FILES["val"]      # Flickr_8k.devImages.txt


def _shown(path):
    """A path as a command run from the repository root can take it:
    relative to the root when inside it, else absolute."""
    path = Path(os.path.abspath(path))
    try:
        return path.relative_to(REPO_ROOT)
    except ValueError:
        return path


def train_command(row, models_dir, flickr8k_dir):
    """The ``caption train`` command line that makes a row's model (to run
    from the repository root)."""
    return " ".join(shlex.quote(str(a)) for a in [
        "caption", "train", "--flickr8k", _shown(flickr8k_dir),
        "--out", _shown(Path(models_dir) / row.model), *row.train_options])


def evaluate_command(model_dir, flickr8k_dir, beam):
    """``python -m captioning evaluate`` on Flickr8k's dev photos (argv)."""
    flickr8k_dir = Path(flickr8k_dir)
    return [sys.executable, "-m", "captioning", "evaluate",
            "--model", str(model_dir),
            "--images", str(image_folder(flickr8k_dir)),
            "--captions", str(flickr8k_dir / TOKEN_FILE),
            "--list", str(flickr8k_dir / DEV_LIST),
            "--beam", str(beam)]


def _read_model_json(model_dir):
    try:
        with open(Path(model_dir) / "model.json", encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def describe_model(model_dir):
    """What ``model.json`` says a model is, in one short line (e.g.
    ``attention, spatial, glove-6b-50d, E=256 H=512; epoch 9 of 12, then
    self-critical round 3 of 5``), or
    None if the directory holds no readable model."""
    config = _read_model_json(model_dir)
    if not isinstance(config, dict):
        return None
    training = config.get("training") or {}
    encoder = config.get("encoder") or {}
    parts = [config.get("arch", "seminar"),
             encoder.get("feature_kind", "logits")]
    # recorded only when not the CNN's own (e.g. 448 px averaged to 7x7)
    if encoder.get("image_size"):
        parts.append("%s px" % encoder["image_size"])
    if encoder.get("grid"):
        parts.append("%sx%s regions" % (encoder["grid"], encoder["grid"]))
    vectors = training.get("word_vectors")
    if vectors:
        parts.append(vectors.get("source", "word vectors")
                     + (" (frozen)" if vectors.get("frozen") else ""))
    hyper = config.get("hyper_parameters") or {}
    if "embed_size" in hyper and "lstm_units" in hyper:
        parts.append("E=%s H=%s" % (hyper["embed_size"], hyper["lstm_units"]))
    # the attention's entropy term, when the model was trained with one
    if hyper.get("attention_entropy"):
        parts.append("entropy %g on %s words" % (
            hyper["attention_entropy"],
            hyper.get("attention_entropy_words", "all")))
    text = ", ".join(parts)
    history = training.get("history") or []
    if history and "epoch" in training:
        text += "; epoch %s of %d" % (training["epoch"], len(history))
    tuned = training.get("self_critical") or {}
    if tuned.get("history"):
        text += ", then self-critical %s" % (
            "round %s of %d" % (tuned["round"], len(tuned["history"]))
            if tuned.get("round") else "(no round kept of %d)" % len(tuned["history"]))
    return text


def histories(rows, models_dir):
    """``{model name: training history}`` of the rows' models that have one
    (each model once, in row order); a history is ``model.json``'s
    ``training.history``: one dict per epoch (``epoch``, ``train_loss``,
    ``selection_loss``, ...)."""
    found = {}
    for row in rows:
        config = _read_model_json(Path(models_dir) / row.model)
        history = isinstance(config, dict) and (config.get("training") or {}).get("history")
        if history and row.model not in found:
            found[row.model] = history
    return found


def _run(argv):
    """Run a command from the repository root: ``(exit code, stdout, stderr)``."""
    done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True)
    return done.returncode, done.stdout, done.stderr


def _last_json(text):
    """The JSON object on the last non-blank line of ``text``, or None."""
    lines = [line for line in text.splitlines() if line.strip()]
    try:
        found = json.loads(lines[-1]) if lines else None
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def _last_line(text):
    lines = [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def evaluate_rows(rows, models_dir, flickr8k_dir, run=_run, log=print):
    """One result per row: ``dict(row, model_dir, model, scores, note)``.

    ``scores`` is the JSON object ``caption evaluate`` printed last
    (``bleu1``..``bleu4``, ``cider``, ``n_images``), or None; ``note`` says
    why there are none (no Flickr8k here, no model, the command failed: its
    last line) or what to know about them (photos left out). ``run(argv) ->
    (exit code, stdout, stderr)`` runs the command (a subprocess from the
    repository root, so relative paths are made absolute here); ``log`` gets
    one line per row as it is done.
    """
    models_dir = Path(os.path.abspath(models_dir))
    if flickr8k_dir is not None:
        flickr8k_dir = Path(os.path.abspath(flickr8k_dir))
    have_flickr8k = flickr8k_dir is not None and is_flickr8k_dir(flickr8k_dir) \
        and (Path(flickr8k_dir) / DEV_LIST).is_file()
    results = []
    for row in rows:
        model_dir = Path(models_dir) / row.model
        result = {"row": row, "model_dir": model_dir, "scores": None,
                  "model": describe_model(model_dir), "note": ""}
        if result["model"] is None:
            result["note"] = "missing: no model in %s; make it with `%s`" % (
                _shown(model_dir), train_command(row, models_dir, flickr8k_dir or "FLICKR8K_DIR"))
        elif not have_flickr8k:
            result["note"] = "skipped: no Flickr8k here (%s)" % flickr8k_dir
        else:
            started = time.time()
            code, out, err = run(evaluate_command(model_dir, flickr8k_dir, row.beam))
            result["scores"] = _last_json(out)
            if result["scores"] is None:
                result["note"] = "failed (exit code %d): %s" % (code, _last_line(err))
            elif code != 0:
                result["note"] = "%d photos; some left out: %s" % (
                    result["scores"].get("n_images", 0), _last_line(err))
            log("%s (beam %d): %.0f s" % (row.label, row.beam, time.time() - started))
        results.append(result)
    return results


def markdown_table(results):
    """The results as a Markdown table, one line per row, in row order."""
    head = ["", "model (from model.json)", "beam", "photos"] + [
        m.upper().replace("BLEU", "BLEU-").replace("CIDER", "CIDEr-D") for m in METRICS]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in results:
        scores = r["scores"]
        cells = [r["row"].label, r["model"] or "-", str(r["row"].beam)]
        if scores is None:
            cells += [r["note"]] + [""] * len(METRICS)
        else:
            cells += [str(scores.get("n_images", "-"))] + [
                "%.3f" % scores[m] if isinstance(scores.get(m), (int, float))
                else "-" for m in METRICS]
            if r["note"]:
                cells[-1] += " (%s)" % r["note"]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)
