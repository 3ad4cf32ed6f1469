"""A stand-in for ``captioning.cnn.encode.Encoder``: no CNN, codes from a
known function of each file, passed to the code under test as its
``encoder`` argument (or ``captioning.commands.main(argv, encoder=...)``).

It records what it was asked to do: ``loaded`` (every path read, in order)
and ``batches`` (the number of images of each CNN call).
"""
import os

import numpy as np

from captioning.cnn.images import ImageError


class FakeEncoder:
    """``code_of(path) -> (code_size,) float32``; files whose name is in
    ``fail`` are unreadable; the ``interrupt_on_batch``-th CNN call raises
    KeyboardInterrupt (as Ctrl-C would). ``record`` overrides the record
    (e.g. to stand in for the default encoder's)."""

    feature_kind = "logits"
    code_size = 1000
    code_shape = (1000,)
    code_dtype = np.dtype(np.float32)

    def __init__(self, code_of, cnn="fake", fail=(), interrupt_on_batch=None,
                 record=None):
        self.code_of, self.cnn, self.fail = code_of, cnn, set(fail)
        self.preprocessing = "fake-" + cnn
        self.interrupt_on_batch = interrupt_on_batch
        self._record = record
        self.loaded, self.batches = [], []

    @property
    def cache_name(self):
        return "codes-%s" % self.cnn

    def record(self):
        if self._record is not None:
            return dict(self._record)
        return {"cnn": self.cnn, "feature_kind": self.feature_kind,
                "preprocessing": self.preprocessing,
                "code_size": self.code_size}

    def load(self, path):
        self.loaded.append(str(path))
        if os.path.basename(path) in self.fail:
            raise ImageError(path, "fake failure")
        return self.code_of(path)[None]

    def batch_codes(self, inputs):
        return {self.feature_kind: self.batch_function(inputs)}

    def batch_function(self, inputs):
        self.batches.append(len(inputs))
        if len(self.batches) == self.interrupt_on_batch:
            raise KeyboardInterrupt
        return inputs
