"""Save and restore training state (parameters + optimiser state + history).

Used by the notebook's training loop so that interrupting it loses at most
one epoch: a checkpoint is written atomically after every epoch, and
re-running the training cell continues from it.
"""
import json

import numpy as np

from .data import atomic_write

__all__ = ["save_checkpoint", "load_checkpoint"]


def save_checkpoint(path, shared_variables, history):
    """Write the values of ``shared_variables`` and ``history`` (JSON-able)
    to ``path`` (.npz) atomically: a crash never leaves a half-written file."""
    arrays = {"v%04d" % i: v.get_value() for i, v in enumerate(shared_variables)}
    arrays["history"] = np.frombuffer(json.dumps(history).encode(), np.uint8)
    with atomic_write(path) as f:
        np.savez(f, **arrays)


def load_checkpoint(path, shared_variables):
    """Restore ``shared_variables`` from ``path``; return the saved history.

    Raises ValueError naming the file when it does not fit these variables
    (e.g. the vocabulary or the layer sizes changed since it was written).
    """
    with np.load(path, allow_pickle=False) as saved:
        names = sorted(k for k in saved.files if k != "history")
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
        return json.loads(saved["history"].tobytes().decode())
