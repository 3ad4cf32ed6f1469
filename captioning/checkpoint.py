"""Save and restore training state (parameters + optimiser state + history).

Used by the notebook's training loop and ``caption train`` so that
interrupting training loses at most one epoch: a checkpoint is written
atomically after every epoch, and re-running continues from it.

A checkpoint can also record ``meta``, a JSON dict of everything the state
depends on (hyper-parameters, vocabulary, a fingerprint of the data).
Resuming under other settings would silently mix two trainings, so
``load_checkpoint(..., meta=current)`` refuses when the saved ``meta``
differs (:class:`CheckpointMismatch`, naming every difference; see
:func:`describe_mismatch`) or when the checkpoint recorded none.
"""
import json

import numpy as np

from captioning.errors import CaptionError
from captioning.io.files import atomic_write

__all__ = ["save_checkpoint", "load_checkpoint", "read_checkpoint", "graph_settings",
           "check_meta", "describe_mismatch", "CheckpointMismatch"]

# non-variable entries of the .npz (JSON text stored as uint8 bytes)
HISTORY_KEY = "history"
META_KEY = "meta"


class CheckpointMismatch(CaptionError, ValueError):
    """The checkpoint was written under other settings (or recorded none).

    ``differences`` lists them as ``"key: saved X, now Y"``.
    """

    def __init__(self, message, differences=()):
        super().__init__(message)
        self.differences = list(differences)


def _as_bytes(obj):
    return np.frombuffer(json.dumps(obj).encode(), np.uint8)


def _from_bytes(array):
    return json.loads(array.tobytes().decode())


def save_checkpoint(path, shared_variables, history, meta=None):
    """Write the values of ``shared_variables``, ``history`` and ``meta``
    (both JSON-able) to ``path`` (.npz) atomically: a crash never leaves a
    half-written file."""
    arrays = {"v%04d" % i: v.get_value() for i, v in enumerate(shared_variables)}
    arrays[HISTORY_KEY] = _as_bytes(history)
    if meta is not None:
        arrays[META_KEY] = _as_bytes(meta)
    with atomic_write(path) as f:
        np.savez(f, **arrays)


def read_checkpoint(path):
    """``(history, meta)`` of a checkpoint, without touching any variable;
    ``meta`` is None for a checkpoint that recorded none."""
    with np.load(path, allow_pickle=False) as saved:
        meta = _from_bytes(saved[META_KEY]) if META_KEY in saved.files else None
        return _from_bytes(saved[HISTORY_KEY]), meta


def check_meta(path, saved, current):
    """Raise CheckpointMismatch unless ``saved`` (a checkpoint's meta) is
    ``current``."""
    if saved is None:
        raise CheckpointMismatch(
            "%s records no settings (written by an older version), so "
            "resuming it cannot be checked" % path)
    differences = describe_mismatch(saved, current)
    if differences:
        raise CheckpointMismatch("%s was written with other settings: %s"
                                 % (path, "; ".join(differences)), differences)


def load_checkpoint(path, shared_variables, meta=None):
    """Restore ``shared_variables`` from ``path``; return the saved history.

    With ``meta``, first check that the checkpoint was written with the same
    meta: raises CheckpointMismatch otherwise, before restoring anything.

    Raises ValueError naming the file when it does not fit these variables
    (e.g. the vocabulary or the layer sizes changed since it was written).
    """
    with np.load(path, allow_pickle=False) as saved:
        if meta is not None:
            check_meta(path, _from_bytes(saved[META_KEY])
                       if META_KEY in saved.files else None, meta)
        names = sorted(k for k in saved.files if k not in (HISTORY_KEY, META_KEY))
        if len(names) != len(shared_variables):
            raise ValueError("%s holds %d arrays but the model has %d; delete it "
                             "to start afresh" % (path, len(names), len(shared_variables)))
        values = [saved[k] for k in names]
        for var, value in zip(shared_variables, values):
            if var.get_value(borrow=True).shape != value.shape:
                raise ValueError("%s does not fit this model (%s has shape %s, saved "
                                 "%s); delete it to start afresh"
                                 % (path, var.name, var.get_value(borrow=True).shape, value.shape))
        for var, value in zip(shared_variables, values):
            var.set_value(value)
        return _from_bytes(saved[HISTORY_KEY])


_ABSENT = object()


def _show(value):
    """A short text for a meta value: long lists by their length."""
    if value is _ABSENT:
        return "(not recorded)"
    if isinstance(value, list) and len(value) > 5:
        return "%d items" % len(value)
    return json.dumps(value)


def _first_difference(saved, current):
    for i, (a, b) in enumerate(zip(saved, current)):
        if a != b:
            return " (item %d: %s vs %s)" % (i, json.dumps(a), json.dumps(b))
    return ""


def describe_mismatch(saved, current, prefix=""):
    """Differences between two meta dicts, as ``"key: saved X, now Y"``.

    Nested dicts are compared key by key (``"outer.inner: ..."``); a key
    present on one side only shows ``(not recorded)`` on the other; long
    lists are shown by their length and first differing item. Returns []
    when they are equal.
    """
    differences = []
    for key in sorted(set(saved) | set(current), key=str):
        a, b = saved.get(key, _ABSENT), current.get(key, _ABSENT)
        name = prefix + str(key)
        if isinstance(a, dict) and isinstance(b, dict):
            differences += describe_mismatch(a, b, name + ".")
        elif a is _ABSENT or b is _ABSENT or \
                json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True):
            detail = ""
            if isinstance(a, list) and isinstance(b, list) and \
                    max(len(a), len(b)) > 5:
                detail = _first_difference(a, b)
            differences.append("%s: saved %s, now %s%s"
                               % (name, _show(a), _show(b), detail))
    return differences


def _setting(value):
    """A layer attribute as JSON: numbers, strings, functions by name."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, tuple):
        return [_setting(v) for v in value]
    if callable(value):
        return getattr(value, "__name__", type(value).__name__)
    return None


# the attributes of Lasagne's layers that change what a layer computes
_LAYER_SETTINGS = ("p", "rescale", "num_units", "output_size", "input_size",
                   "nonlinearity", "grad_clipping", "peepholes", "gradient_steps",
                   "learn_init", "precompute_input", "only_return_final")


def graph_settings(output_layer):
    """Every layer below ``output_layer`` as JSON: its class, output shape,
    the settings that change what it computes (dropout ``p``, units,
    nonlinearities, ``grad_clipping``, ...) and its parameters' shapes.

    A checkpoint's ``meta`` can hold this, so that a changed graph is named
    instead of silently resumed (e.g. ``"layer 3 DropoutLayer.p: saved 0.5,
    now 0.3"`` from :func:`describe_mismatch`).
    """
    from lasagne.layers import get_all_layers
    settings = {}
    for i, layer in enumerate(get_all_layers(output_layer)):
        entry = {"output_shape": _setting(tuple(layer.output_shape))}
        for name in _LAYER_SETTINGS:
            if hasattr(layer, name):
                entry[name] = _setting(getattr(layer, name))
        for param in layer.get_params():
            entry["shape of %s" % param.name] = list(param.get_value(borrow=True).shape)
        settings["layer %d %s" % (i, type(layer).__name__)] = entry
    return settings
