"""The model directory: what ``caption train`` writes and the others read.

``params.npz`` holds the weights by layer and parameter name (``numpy``
arrays, nothing pickled); ``model.json`` the architecture (``arch``:
``seminar`` for :class:`captioning.model.CaptionModel`, ``attention`` for
:class:`captioning.attention_model.AttentionCaptionModel`), the vocabulary,
the hyper-parameters, the encoder that made the image codes it was trained
on and the text normaliser of its captions, plus what training adds (its
history, ``loss.png`` beside it).
"""
import json
import os
import zipfile
import zlib

import numpy as np

from captioning.attention_model import AttentionCaptionModel
from captioning.io.files import atomic_write
from captioning.model import CaptionModel, ModelFileError
from captioning.text import NORMALISER, Vocabulary

__all__ = ["ARCHS", "save_model", "read_config", "load_model", "load_params",
           "with_hyper_added_since", "ModelFileError"]

PARAMS_FILE = "params.npz"
CONFIG_FILE = "model.json"
# 3: model.json records "arch"; 2 recorded "encoder" and "text_normaliser"
# (arch: seminar); 1 (older) did neither and still loads (encoder_record None).
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
# The name of the normalisation caption_tokens applies to captions before
# the vocabulary is built (and the metrics score): recorded in model.json.
TEXT_NORMALISER = NORMALISER
# model.json's "arch" -> the class that builds its graph
ARCHS = {"seminar": CaptionModel, "attention": AttentionCaptionModel}


def arch_of(model):
    """The ``arch`` name of a model object."""
    for name, cls in ARCHS.items():
        if type(model) is cls:
            return name
    raise ValueError("no arch name for %s" % type(model).__name__)


def save_model(model, model_dir, extra=None, weights=True):
    """Write ``model_dir/params.npz`` and ``model_dir/model.json``.

    Parameters
    ----------
    model : CaptionModel or AttentionCaptionModel
    model_dir : str or Path
        Created if missing. Files are replaced atomically
        (:func:`captioning.io.files.atomic_write`), so an interrupt never leaves
        a half-written model.
    extra : dict, optional
        More JSON-able facts to keep in ``model.json`` (e.g. training
        history).
    weights : bool
        Also write ``params.npz``; False updates only ``model.json`` (whose
        vocabulary and hyper-parameters must then be those of the saved
        weights).

    Raises
    ------
    ValueError
        If ``model.encoder_record`` is not set or gives codes of another
        size than the model takes: a model must say what it was trained on.
    """
    record = model.encoder_record
    if not isinstance(record, dict) or \
            record.get("code_size") != model.hyper["cnn_feature_size"]:
        raise ValueError("model.encoder_record must describe codes of %d "
                         "values (set it to the Encoder.record() of the codes "
                         "it is trained on); got %r"
                         % (model.hyper["cnn_feature_size"], record))
    os.makedirs(model_dir, exist_ok=True)
    config = {"format_version": FORMAT_VERSION,
              "arch": arch_of(model),
              "hyper_parameters": model.hyper,
              "vocabulary": model.vocab.words,
              "encoder": record,
              "text_normaliser": TEXT_NORMALISER}
    config.update(extra or {})
    if weights:
        with atomic_write(os.path.join(model_dir, PARAMS_FILE)) as f:
            np.savez(f, **model.get_param_values())
    with atomic_write(os.path.join(model_dir, CONFIG_FILE), "w") as f:
        json.dump(config, f, indent=1)


def read_config(model_dir):
    """``model.json`` of a model directory, checked; raises ModelFileError."""
    path = os.path.join(model_dir, CONFIG_FILE)
    if not os.path.isdir(model_dir):
        raise ModelFileError("model directory %s does not exist (train one "
                             "with `caption train`)" % model_dir)
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except FileNotFoundError:
        raise ModelFileError("%s is missing: %s is not a trained model "
                             "directory" % (path, model_dir))
    except (OSError, ValueError) as error:
        raise ModelFileError("cannot read %s: %s" % (path, error))
    if not isinstance(config, dict) or \
            config.get("format_version") not in READABLE_VERSIONS:
        raise ModelFileError("%s is not a model file of format %s"
                             % (path, " or ".join(map(str, READABLE_VERSIONS))))
    needed = ("hyper_parameters", "vocabulary")
    if config["format_version"] >= 2:
        needed += ("encoder", "text_normaliser")
    for key in needed:
        if key not in config:
            raise ModelFileError("%s has no %r" % (path, key))
    arch = config.setdefault("arch", "seminar")   # formats 1 and 2: seminar only
    if arch not in ARCHS:
        raise ModelFileError("%s: unknown arch %r (this version knows %s)"
                             % (path, arch, ", ".join(ARCHS)))
    normaliser = config.get("text_normaliser", TEXT_NORMALISER)  # format 1: unknown
    if normaliser != TEXT_NORMALISER:
        # its vocabulary was built from other tokens than the captions it
        # would now be scored against
        raise ModelFileError(
            "%s was trained on captions normalised by %r; this version "
            "normalises them by %r: retrain it with `caption train`"
            % (model_dir, normaliser, TEXT_NORMALISER))
    return config


def with_hyper_added_since(model_class, saved):
    """``saved`` (a model's recorded hyper-parameters, or a training
    checkpoint's settings, which hold them) with each hyper-parameter added
    to ``model_class`` since it was written at the value that gives the graph
    it was trained with (``hyper_before_added``), not today's default.
    Anything but a dict is returned as it is."""
    if not isinstance(saved, dict):
        return saved
    return dict(getattr(model_class, "hyper_before_added", {}), **saved)


def load_model(model_dir):
    """Rebuild the model saved in ``model_dir``.

    Raises
    ------
    ModelFileError
        If a file is missing or unreadable, or the weights do not fit the
        vocabulary and hyper-parameters recorded beside them (the message
        names each mismatching array).
    """
    config = read_config(model_dir)
    try:
        vocab = Vocabulary(config["vocabulary"])
        model_class = ARCHS[config["arch"]]
        hyper = with_hyper_added_since(model_class, config["hyper_parameters"])
        model = model_class(vocab, **hyper)
    except (TypeError, ValueError) as error:
        raise ModelFileError("%s: %s" % (os.path.join(model_dir, CONFIG_FILE),
                                         error))
    model.encoder_record = config.get("encoder")
    load_params(model, model_dir)
    return model


def load_params(model, model_dir):
    """Set ``model``'s weights to those saved in ``model_dir``.

    Raises
    ------
    ModelFileError
        As :func:`load_model`.
    """
    path = os.path.join(model_dir, PARAMS_FILE)
    try:
        with np.load(path, allow_pickle=False) as saved:
            values = {k: saved[k] for k in saved.files}
    except FileNotFoundError:
        raise ModelFileError("%s is missing (was training interrupted before "
                             "its first epoch ended?)" % path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile,
            zlib.error) as error:
        # a truncated or damaged file: np.load raises zipfile's and zlib's
        # errors as they come
        raise ModelFileError("cannot read %s (%s: %s); the file is damaged: "
                             "copy the model again or retrain it"
                             % (path, type(error).__name__, error))
    model.set_param_values(values, source=path)
