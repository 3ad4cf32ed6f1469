"""A moving average of a model's weights, for judging and keeping them.

Training goes on with the raw weights; after every update the average moves
towards them, ``average += (1 - d) * (weights - average)``. The average is
what the selection photos judge and what ``params.npz`` keeps: it smooths
the noise of the last updates (Polyak averaging; an exponential moving
average of the weights, as in TensorFlow's ``ExponentialMovingAverage``).

``d`` is ``decay``, or with ``warmup`` ``min(decay, (1 + t) / (10 + t))`` at
the ``t``-th update: a run that starts from random weights forgets them
within its first epoch instead of carrying them for ``1 / (1 - decay)``
updates.
"""
import contextlib

import numpy as np
import theano

__all__ = ["WeightAverage", "applied"]


class WeightAverage:
    """The moving average of ``params`` (Theano shared variables).

    Its state (the averages and the number of updates) is in
    :meth:`state_variables`, so that a resumed run goes on with it.
    """

    def __init__(self, params, decay, warmup=True):
        if not 0 < decay < 1:
            raise ValueError("the weight average's decay must be in (0, 1), "
                             "not %r" % (decay,))
        self.params = list(params)
        self.decay, self.warmup = float(decay), bool(warmup)
        self.averages = [theano.shared(p.get_value(), name="average." + str(p.name))
                         for p in self.params]
        self.updates_done = theano.shared(np.int64(0), name="average.updates")

    def rate(self, t):
        """The decay ``d`` of the ``t``-th update (1-based)."""
        if self.warmup:
            return min(self.decay, (1.0 + t) / (10.0 + t))
        return self.decay

    def update(self):
        """Move the average towards the weights as they are now."""
        t = int(self.updates_done.get_value()) + 1
        step = np.float32(1.0 - self.rate(t))
        for param, average in zip(self.params, self.averages):
            value = average.get_value(borrow=True)
            value += step * (param.get_value(borrow=True) - value)
            average.set_value(value, borrow=True)
        self.updates_done.set_value(np.int64(t))

    def reset(self):
        """Start again from the weights as they are now (no update counted)."""
        for param, average in zip(self.params, self.averages):
            average.set_value(param.get_value())
        self.updates_done.set_value(np.int64(0))

    @contextlib.contextmanager
    def in_place(self):
        """The model holds the average inside the block, its own weights
        again after it (also when the block raises)."""
        raw = [p.get_value() for p in self.params]
        try:
            for param, average in zip(self.params, self.averages):
                param.set_value(average.get_value())
            yield self
        finally:
            for param, value in zip(self.params, raw):
                param.set_value(value)

    def state_variables(self):
        """What a resumed run restores, in a fixed order."""
        return self.averages + [self.updates_done]


def applied(average):
    """``average.in_place()``, or a block that changes nothing for None."""
    return contextlib.nullcontext() if average is None else average.in_place()
