"""Apply a layer to every tick of every sequence: the seminar's two reshapes.

``BroadcastLayer`` folds some axes of its input into axis 0, so that a
``DenseLayer`` (which wants ``(batch, units)``) sees every time step of every
example as its own row; ``UnbroadcastLayer`` unfolds them again::

    (batch, time, 200) --Broadcast(0, 1)--> (batch*time, 200)
        --Dense(n_tokens)--> (batch*time, n_tokens)
        --Unbroadcast--> (batch, time, n_tokens)

The sizes of the folded axes are only known when the graph runs, so the
BroadcastLayer records the symbolic shape of what it was given and the
UnbroadcastLayer reads it back.
"""
import captioning.stack  # noqa: F401  (Theano flags and the Lasagne backport first)

import numpy as np
import theano.tensor as T
from lasagne.layers import Layer

__all__ = ["BroadcastLayer", "UnbroadcastLayer"]


def _product(sizes):
    """Product of known sizes; None if any is unknown."""
    if any(s is None for s in sizes):
        return None
    return int(np.prod(sizes))


class BroadcastLayer(Layer):
    """Merge ``broadcasted_axes`` of the input into a new axis 0.

    Parameters
    ----------
    incoming : Layer or shape tuple
    broadcasted_axes : int or sequence of int
        Axes to merge, e.g. ``(0, 1)`` for (batch, time). Negative axes count
        from the end. The remaining axes follow in their original order.

    Example
    -------
    >>> from lasagne.layers import InputLayer
    >>> l_in = InputLayer((None, None, 200))
    >>> BroadcastLayer(l_in, (0, 1)).output_shape
    (None, 200)
    """

    def __init__(self, incoming, broadcasted_axes, **kwargs):
        super().__init__(incoming, **kwargs)
        ndim = len(self.input_shape)
        axes = (broadcasted_axes,) if np.isscalar(broadcasted_axes) \
            else tuple(broadcasted_axes)
        if not axes:
            raise ValueError("BroadcastLayer needs at least one axis to merge")
        normalised = []
        for axis in axes:
            if not isinstance(axis, (int, np.integer)) or not -ndim <= axis < ndim:
                raise ValueError("broadcasted axis %r is not an axis of an input "
                                 "with %d dimensions %s" % (axis, ndim, self.input_shape))
            normalised.append(int(axis) % ndim)
        if len(set(normalised)) != len(normalised):
            raise ValueError("broadcasted_axes %r repeat an axis" % (axes,))
        self.broadcasted_axes = tuple(normalised)
        self.kept_axes = tuple(a for a in range(ndim) if a not in normalised)
        self.symbolic_input_shape = None  # set by get_output_for

    def get_output_shape_for(self, input_shape):
        merged = _product([input_shape[a] for a in self.broadcasted_axes])
        return (merged,) + tuple(input_shape[a] for a in self.kept_axes)

    def get_output_for(self, input, **kwargs):
        self.symbolic_input_shape = input.shape
        moved = input.dimshuffle(self.broadcasted_axes + self.kept_axes)
        kept = [input.shape[a] for a in self.kept_axes]
        return moved.reshape([-1] + kept, ndim=1 + len(kept))


class UnbroadcastLayer(Layer):
    """Undo a :class:`BroadcastLayer`: split axis 0 back into the axes it merged.

    The axes that were not merged keep whatever sizes the layers in between
    gave them (e.g. 200 LSTM units become ``n_tokens`` probabilities).

    Parameters
    ----------
    incoming : Layer
        Output of layers applied to ``broadcast_layer``'s output; its axis 0
        must still be the merged axis.
    broadcast_layer : BroadcastLayer
        The layer whose merge is undone.
    """

    def __init__(self, incoming, broadcast_layer, **kwargs):
        if not isinstance(broadcast_layer, BroadcastLayer):
            raise TypeError("broadcast_layer must be a BroadcastLayer, got %r"
                            % (broadcast_layer,))
        super().__init__(incoming, **kwargs)
        self.broadcast_layer = broadcast_layer
        expected = 1 + len(broadcast_layer.kept_axes)
        if len(self.input_shape) != expected:
            raise ValueError("UnbroadcastLayer expects a %d-d input like its "
                             "BroadcastLayer's output, got shape %s"
                             % (expected, self.input_shape))

    def _inverse_order(self):
        order = self.broadcast_layer.broadcasted_axes + self.broadcast_layer.kept_axes
        return tuple(int(i) for i in np.argsort(order))

    def get_output_shape_for(self, input_shape):
        source = self.broadcast_layer.input_shape
        merged = tuple(source[a] for a in self.broadcast_layer.broadcasted_axes)
        unfolded = merged + tuple(input_shape[1:])
        return tuple(unfolded[i] for i in self._inverse_order())

    def get_output_for(self, input, **kwargs):
        shape = self.broadcast_layer.symbolic_input_shape
        if shape is None:
            raise RuntimeError(
                "UnbroadcastLayer evaluated before its BroadcastLayer: compute "
                "both in one lasagne.layers.get_output call on a graph that "
                "contains the BroadcastLayer.")
        merged = [shape[a] for a in self.broadcast_layer.broadcasted_axes]
        rest = [input.shape[i] for i in range(1, input.ndim)]
        unfolded = input.reshape(merged + rest, ndim=len(merged) + len(rest))
        return unfolded.dimshuffle(self._inverse_order())
