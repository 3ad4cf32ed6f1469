"""LSTMLayer: Lasagne master's documented behaviour on Lasagne 0.1's class.

Lasagne 0.1's LSTMLayer (a) rejects a Layer as ``hid_init``/``cell_init``,
(b) adds the output-gate peephole *after* the sigmoid, (c) clips gradients
to zero for ``grad_clipping=0`` and (d) lacks ``only_return_final``.
:func:`backport` replaces three methods of the class in place rather than
subclassing it: 0.1's ``__init__`` calls ``super(LSTMLayer, self)`` through
the module-level name, so rebinding that name to a subclass would recurse
forever, while patching keeps ``lasagne.layers.LSTMLayer``,
``lasagne.layers.recurrent.LSTMLayer`` and ``import *`` all pointing at one
(fixed) class. Imported by :func:`captioning.lasagne_compat.apply` once
``import lasagne`` works.

Incomings are in master's order: the input, then the mask (if any), then the
``hid_init`` layer, then the ``cell_init`` layer (each if given as a Layer).
``get_all_layers``/``get_all_params`` follow that order, so parameter values
saved under master (``get_all_param_values``) load onto the right layers.
"""
import functools
import inspect

import theano
import theano.tensor as T
from lasagne import init, nonlinearities
from lasagne.layers import Layer
from lasagne.layers.recurrent import Gate, LSTMLayer
from lasagne.utils import unroll_scan

__all__ = ["backport"]

GATES = ("ingate", "forgetgate", "cell", "outgate")  # order of the stacked weights
INIT_LAYERS = ("hid_init", "cell_init")             # master's order of the incomings

EXTRA_DOC = """
    Backported from Lasagne master (see ``captioning.lasagne_compat``; the
    full argument list is in ``__init__``'s docstring):

    hid_init, cell_init : Layer, callable, array or shared variable
        A Layer gives the initial state per example, shape
        ``(batch, num_units)`` (the seminar's image code as ``cell_init``);
        it is then not a parameter of this layer.
    peepholes
        The output gate looks at the *new* cell inside its sigmoid:
        ``o_t = sigmoid(... + w_co * c_t)`` (Lasagne 0.1 added it outside).
    grad_clipping : float (default 0)
        Bounds the gradient flowing back through each step's gate inputs;
        0 means no clipping (Lasagne 0.1 clipped to zero).
    only_return_final : bool (default False)
        Return only the last step's hidden state, ``(batch, num_units)``.
"""

_lasagne01_init = None  # the class's own __init__, set by backport()


def lstm_init(self, incoming, num_units,
              ingate=Gate(),
              forgetgate=Gate(),
              cell=Gate(W_cell=None, nonlinearity=nonlinearities.tanh),
              outgate=Gate(),
              nonlinearity=nonlinearities.tanh,
              cell_init=init.Constant(0.),
              hid_init=init.Constant(0.),
              backwards=False,
              learn_init=False,
              peepholes=True,
              gradient_steps=-1,
              grad_clipping=0,
              unroll_scan=False,
              precompute_input=True,
              mask_input=None,
              only_return_final=False,
              **kwargs):
    """Lasagne 0.1's constructor, plus master's extensions.

    Parameters
    ----------
    cell_init, hid_init : callable, np.ndarray, theano.shared, \
TensorVariable or Layer
        As in Lasagne 0.1, or a Layer whose output, of shape
        ``(batch, num_units)``, is the initial state; no parameter is
        created for it and `learn_init` does not apply to it. Such layers
        are incomings after the input and the mask: `hid_init`'s, then
        `cell_init`'s (master's order).
    grad_clipping : float
        If nonzero, gradient messages are clipped to
        ``[-grad_clipping, grad_clipping]`` in the backward pass;
        0 (or False) means no clipping.
    only_return_final : bool
        If True, return only the last computed hidden state, shape
        ``(batch, num_units)``, instead of all of them.

    Other parameters are those of Lasagne 0.1 (see the class docstring).
    """
    # 0.1 takes a TensorVariable init as-is, without creating a parameter:
    # hand it a placeholder for each Layer init, then add the Layer as an
    # incoming (after the mask, if any).
    init_layers = {}
    if isinstance(hid_init, Layer):
        init_layers["hid_init"], hid_init = hid_init, T.matrix()
    if isinstance(cell_init, Layer):
        init_layers["cell_init"], cell_init = cell_init, T.matrix()
    _lasagne01_init(self, incoming, num_units, ingate, forgetgate, cell,
                    outgate, nonlinearity, cell_init, hid_init, backwards,
                    learn_init, peepholes, gradient_steps, grad_clipping,
                    unroll_scan, precompute_input, mask_input, **kwargs)
    self.only_return_final = only_return_final
    self.mask_incoming_index = 1 if mask_input is not None else -1
    add_init_incomings(self, init_layers)


def add_init_incomings(layer, init_layers, units=None):
    """Append the ``{"hid_init"|"cell_init": Layer}`` of ``init_layers`` to
    ``layer``'s incomings in master's order, recording each one's index in
    ``<name>_incoming_index`` (-1 if not a Layer). Each must give
    ``(batch, units)``, by default ``(batch, layer.num_units)``."""
    units = units or layer.num_units
    for name in INIT_LAYERS:
        setattr(layer, name + "_incoming_index", -1)
        if name not in init_layers:
            continue
        incoming = init_layers[name]
        shape = incoming.output_shape
        if len(shape) != 2 or shape[1] not in (None, units):
            raise ValueError("%s layer must have output shape (batch, %d), "
                             "not %r" % (name, units, shape))
        setattr(layer, name + "_incoming_index", len(layer.input_layers))
        setattr(layer, name, None)
        layer.input_layers.append(incoming)
        layer.input_shapes.append(shape)


def get_output_shape_for(self, input_shapes):
    """``(batch, time, num_units)``, or ``(batch, num_units)`` if
    `only_return_final`."""
    batch, time = input_shapes[0][:2]
    if self.only_return_final:
        return batch, self.num_units
    return batch, time, self.num_units


def get_output_for(self, inputs, **kwargs):
    """Hidden states for the input ``inputs[0]`` (batch, time, ...).

    Parameters
    ----------
    inputs : list of TensorVariable
        The input, then the mask ``(batch, time)`` if `mask_input` was
        given (1 = real step, 0 = padding: the state is carried over),
        then the outputs of the `hid_init` and `cell_init` layers, if any
        (in that order).

    Returns
    -------
    TensorVariable
        ``(batch, time, num_units)`` hidden states in input order (also
        when `backwards`), or only the last computed one,
        ``(batch, num_units)``, if `only_return_final`.
    """
    x = inputs[0]
    if x.ndim > 3:
        x = T.flatten(x, 3)
    x = x.dimshuffle(1, 0, 2)  # scan loops over the first axis: time
    mask = inputs[1] if self.mask_incoming_index > 0 else None
    W_in, W_hid, b = stacked_weights(self)
    if self.precompute_input:
        x = T.dot(x, W_in) + b  # one big product instead of one per step

    sequences = [x] if mask is None else [x, mask.T.dimshuffle(0, 1, 'x')]
    outputs_info = [initial_state(self, "cell_init", inputs, x),
                    initial_state(self, "hid_init", inputs, x)]
    # Weights go in as non_sequences so that scan (strict=True) sees them
    # as inputs of the loop.
    non_seqs = [W_hid, W_in, b]
    if self.peepholes:
        non_seqs += [self.W_cell_to_ingate, self.W_cell_to_forgetgate,
                     self.W_cell_to_outgate]
    step = functools.partial(scan_step, self, mask is not None)
    if self.unroll_scan:
        cells, hids = unroll_scan(
            step, sequences, outputs_info, non_seqs,
            self.input_shapes[0][1], go_backwards=self.backwards)
    else:
        cells, hids = theano.scan(
            step, sequences, outputs_info=outputs_info,
            non_sequences=non_seqs, go_backwards=self.backwards,
            truncate_gradient=self.gradient_steps, strict=True)[0]

    if self.only_return_final:
        return hids[-1]  # the state after the last processed step
    hids = hids.dimshuffle(1, 0, 2)
    return hids[:, ::-1] if self.backwards else hids  # input order


def stacked_weights(layer):
    """``W_in, W_hid, b`` of the four gates side by side (``GATES`` order)."""
    W_in = T.concatenate([getattr(layer, "W_in_to_" + g) for g in GATES], 1)
    W_hid = T.concatenate([getattr(layer, "W_hid_to_" + g) for g in GATES], 1)
    b = T.concatenate([getattr(layer, "b_" + g) for g in GATES], 0)
    return W_in, W_hid, b


def initial_state(layer, name, inputs, x):
    """``(batch, num_units)`` start of ``name`` ("cell_init" or "hid_init"):
    its layer's output, 0.1's expression, or the (1, num_units) parameter
    repeated over the batch (``x``: the time-major input)."""
    index = getattr(layer, name + "_incoming_index")
    if index > 0:
        return inputs[index]
    value = getattr(layer, name)
    if isinstance(value, theano.compile.SharedVariable):
        return T.dot(T.ones((x.shape[1], 1)), value)
    return value


def scan_step(layer, masked, x_t, *args):
    """One step as scan calls it: the sequences (``x_t`` and, if ``masked``,
    ``m_t``), the states (c, h), then the non-sequences (W_hid, W_in, b and,
    with peepholes, w_ci, w_cf, w_co). Returns ``[c_t, h_t]``."""
    if masked:
        m_t, args = args[0], args[1:]
    c_prev, h_prev, W_hid, W_in, b = args[:5]
    c, h = lstm_tick(layer, x_t, c_prev, h_prev, W_hid, W_in, b, args[5:])
    if masked:  # padded steps keep the previous state
        c = T.switch(m_t, c, c_prev)
        h = T.switch(m_t, h, h_prev)
    return [c, h]


def lstm_tick(layer, x_t, c_prev, h_prev, W_hid, W_in, b, peepholes):
    """Master's LSTM equations for one step (see the class docstring);
    ``x_t`` is already ``x_t W_in + b`` if the layer precomputes its input;
    ``peepholes`` is ``(w_ci, w_cf, w_co)``, or empty without them."""
    pre = gate_preactivations(layer, x_t, h_prev, W_hid, W_in, b)
    return lstm_gates(layer, pre, c_prev, peepholes)


def gate_preactivations(layer, x_t, h_prev, W_hid, W_in, b):
    """The four gates' inputs side by side, ``(batch, 4 num_units)``, with
    their gradient clipped (the first half of :func:`lstm_tick`)."""
    pre = x_t if layer.precompute_input else T.dot(x_t, W_in) + b
    pre = pre + T.dot(h_prev, W_hid)
    if layer.grad_clipping:  # 0/False: no clipping (0.1 clipped to 0)
        pre = theano.gradient.grad_clip(
            pre, -layer.grad_clipping, layer.grad_clipping)
    return pre


def lstm_gates(layer, pre, c_prev, peepholes):
    """``(c_t, h_t)`` from :func:`gate_preactivations`' ``pre`` (the second
    half of :func:`lstm_tick`)."""
    n = layer.num_units
    pre_i, pre_f, pre_c, pre_o = (pre[:, k * n:(k + 1) * n] for k in range(4))
    if layer.peepholes:  # input/forget gates peek at c_{t-1}
        w_ci, w_cf, w_co = peepholes
        pre_i += c_prev * w_ci
        pre_f += c_prev * w_cf
    c = (layer.nonlinearity_forgetgate(pre_f) * c_prev +
         layer.nonlinearity_ingate(pre_i) * layer.nonlinearity_cell(pre_c))
    if layer.peepholes:  # output gate peeks at the new c_t, *inside*
        pre_o += c * w_co  # its nonlinearity (0.1 added it outside)
    h = layer.nonlinearity_outgate(pre_o) * layer.nonlinearity(c)
    return c, h


def needs_backport():
    """False where the installed LSTMLayer has ``only_return_final``, added to
    Lasagne after the other three fixes."""
    return "only_return_final" not in inspect.signature(LSTMLayer.__init__).parameters


def backport():
    """Patch ``LSTMLayer`` in place (idempotent; no-op on a newer Lasagne)."""
    global _lasagne01_init
    if not needs_backport():
        return
    _lasagne01_init = LSTMLayer.__init__
    lstm_init.__name__ = lstm_init.__qualname__ = "__init__"
    LSTMLayer.__init__ = lstm_init
    LSTMLayer.get_output_shape_for = get_output_shape_for
    LSTMLayer.get_output_for = get_output_for
    if LSTMLayer.__doc__ and EXTRA_DOC not in LSTMLayer.__doc__:
        LSTMLayer.__doc__ = LSTMLayer.__doc__.rstrip() + "\n" + EXTRA_DOC
