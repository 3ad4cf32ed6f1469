"""The top-down attention decoder (Anderson et al. 2018), as one Lasagne layer.

"Bottom-Up and Top-Down Attention for Image Captioning and Visual Question
Answering" (arXiv 1707.07998), sec. 3.2: two LSTMs per tick. The first (the
attention LSTM) reads the word, the mean region and the second's previous
output, and looks at the regions with its new state; the second (the
language LSTM) reads what it saw::

    c1_t, h1_t = LSTM_1([E y_{t-1}, mean_i a_i, h2_{t-1}], c1_{t-1}, h1_{t-1})
    e_ti    = w_att . tanh(a_i W_att + b_att + h1_t W_hid_att)
    alpha_t = softmax_i(e_t)
    v_t     = sum_i alpha_ti a_i                                 the context
    c2_t, h2_t = LSTM_2([v_t, h1_t], c2_{t-1}, h2_{t-1})

Xu et al.'s layer (:class:`captioning.attention.AttentionLSTMLayer`) looks
with the state before the tick has read its word; here the attention LSTM
has read it. The LSTM equations are Lasagne's (``lstm_gates``: the same
``Gate`` nonlinearities, ``grad_clipping`` on each LSTM's pre-activations;
no peepholes, as in the paper).

The state carried from tick to tick is ``c = [c1, c2]`` and ``h = [h1, h2]``
side by side, ``2 num_units`` wide, so that the one-tick decoder and beam
search hold one row per caption as they do for Xu's layer. The output per
tick is ``[h2_t, v_t, alpha_t]``, the parts of
:class:`captioning.attention.AttentionPart` ("hid" is the language LSTM's).
"""
import captioning.stack  # noqa: F401  (Theano flags and the Lasagne backport first)

import theano.tensor as T
from lasagne import init, nonlinearities
from lasagne.layers import Layer, MergeLayer
from lasagne.layers.recurrent import Gate

from captioning.attention import RegionAttentionMLP
from captioning.stack.lasagne_compat.lstm import (GATES, add_init_incomings,
                                            gate_preactivations, lstm_gates,
                                            stacked_weights)

__all__ = ["TopDownLSTMLayer"]


class TopDownLSTMLayer(RegionAttentionMLP, MergeLayer):
    """Anderson et al.'s attention LSTM and language LSTM in one scan.

    Parameters
    ----------
    incoming : Layer or shape tuple
        The word input, ``(batch, time, num_inputs)``.
    regions : Layer or shape tuple
        ``(batch, n_regions, region_size)``, ``region_size`` known.
    num_units : int
        Units of each LSTM (H).
    attention_units : int, optional
        Width of the attention MLP (A); default ``num_units``.
    ingate, forgetgate, cell, outgate : Gate
        Initialisers and nonlinearities of both LSTMs' gates: ``W_in``
        initialises every input weight (word, mean region, the other
        LSTM's output, context), ``W_hid`` the recurrent ones.
    nonlinearity : callable
        Applied to each cell before its output gate (tanh).
    cell_init, hid_init : Layer, callable, array or shared variable
        The initial ``[c1, c2]`` and ``[h1, h2]``, ``(batch, 2 num_units)``
        from a Layer, else the initialiser of a ``(1, 2 num_units)``
        parameter (trained if ``learn_init``).
    grad_clipping : float
        Bounds the gradient reaching each tick's gate pre-activations of
        both LSTMs; 0: no clipping.
    mask_input : Layer, optional
        ``(batch, time)``; padded ticks keep the previous state (their
        context and alpha mean nothing: a loss must mask them).
    W_att, W_hid_att, b_att, w_att : initialisers
        The attention MLP's ``(region_size, A)``, ``(num_units, A)``,
        ``(A,)``, ``(A,)``.

    Output: ``(batch, time, num_units + region_size + n_regions)``, at tick
    t ``[h2_t, v_t, alpha_t]``.
    """
    # _tick's results the scan returns after c, h (see
    # RegionAttentionMLP._scan_ticks): the language LSTM's pre-activations,
    # v, alpha, the MLP's hidden layer, the attention LSTM's pre-activations
    _SCAN_ORDER = (5, 3, 2, 6, 4)

    def __init__(self, incoming, regions, num_units, attention_units=None,
                 ingate=Gate(), forgetgate=Gate(),
                 cell=Gate(W_cell=None, nonlinearity=nonlinearities.tanh),
                 outgate=Gate(), nonlinearity=nonlinearities.tanh,
                 cell_init=init.Constant(0.), hid_init=init.Constant(0.),
                 learn_init=False, grad_clipping=0, mask_input=None,
                 W_att=init.GlorotUniform(), W_hid_att=init.GlorotUniform(),
                 b_att=init.Constant(0.), w_att=init.Normal(0.1), **kwargs):
        incomings = [incoming, regions]
        if mask_input is not None:
            incomings.append(mask_input)
        super().__init__(incomings, **kwargs)
        self.mask_incoming_index = 2 if mask_input is not None else -1
        self.num_units = num_units
        self.attention_units = attention_units or num_units
        self.nonlinearity = nonlinearity or nonlinearities.identity
        self.grad_clipping = grad_clipping
        # what gate_preactivations and lstm_gates read: the state-free parts
        # come computed, no peepholes
        self.precompute_input = True
        self.peepholes = False

        input_shape, region_shape = self.input_shapes[:2]
        if len(input_shape) != 3 or input_shape[2] is None:
            raise ValueError("the word input must be (batch, time, features) "
                             "with known features, not %r" % (input_shape,))
        self.region_size = D = self._region_size(region_shape)
        H = num_units
        # attention LSTM: W_in/W_hid/b under LSTMLayer's names
        # (stacked_weights), then the mean region's and h2's weights;
        # language LSTM: the context's, h1's and its own recurrent weights
        shapes = [("W_in_to_", input_shape[2], "W_in"), ("W_hid_to_", H, "W_hid"),
                  ("W_mean_to_", D, "W_in"), ("W_lang_to_", H, "W_in"),
                  ("W_ctx_to_lang_", D, "W_in"), ("W_att_to_lang_", H, "W_in"),
                  ("W_hid_to_lang_", H, "W_hid")]
        for gate, name in zip((ingate, forgetgate, cell, outgate), GATES):
            for prefix, rows, initialiser in shapes:
                setattr(self, prefix + name, self.add_param(
                    getattr(gate, initialiser), (rows, H), name=prefix + name))
            for prefix in ("b_", "b_lang_"):
                setattr(self, prefix + name, self.add_param(
                    gate.b, (H,), name=prefix + name, regularizable=False))
            setattr(self, "nonlinearity_" + name, gate.nonlinearity)
        self._add_attention_mlp(H, W_att, W_hid_att, b_att, w_att)

        init_layers = {name: value for name, value in
                       (("hid_init", hid_init), ("cell_init", cell_init))
                       if isinstance(value, Layer)}
        add_init_incomings(self, init_layers, units=2 * H)
        for name, value in (("cell_init", cell_init), ("hid_init", hid_init)):
            if name not in init_layers:
                setattr(self, name, self.add_param(
                    value, (1, 2 * H), name=name, trainable=learn_init,
                    regularizable=False))

    # ---------------------------------------------------------------- shapes
    def get_output_shape_for(self, input_shapes):
        """``(batch, time, num_units + region_size + n_regions)``."""
        batch, time = input_shapes[0][:2]
        n_regions = input_shapes[1][1]
        width = None if n_regions is None else \
            self.num_units + self.region_size + n_regions
        return batch, time, width

    def part_slices(self):
        """``{"hid" | "context" | "attention": slice}`` of the last axis."""
        H, D = self.num_units, self.region_size
        return {"hid": slice(0, H), "context": slice(H, H + D),
                "attention": slice(H + D, None)}

    def language_hid(self, hid):
        """h2, the language LSTM's output, of a state ``[h1, h2]``."""
        return hid[:, self.num_units:]

    # ---------------------------------------------------------------- one tick
    def _stacked(self, *prefixes):
        """The four gates' weights side by side, each prefix's below the
        previous one's: ``(sum of rows, 4 num_units)``."""
        return T.concatenate([T.concatenate(
            [getattr(self, prefix + g) for g in GATES], 1)
            for prefix in prefixes], 0)

    def _word_part(self, words, regions):
        """``x W_in + b + mean_i(a_i) W_mean`` of the attention LSTM, for
        words ``(..., batch, num_inputs)``: the part that does not depend on
        the state."""
        W_in, _, b = stacked_weights(self)
        mean = T.dot(regions.mean(axis=1), self._stacked("W_mean_to_"))
        return T.dot(words, W_in) + b + mean

    def _tick(self, x_t, c_prev, h_prev, regions, projected, W_rec_att,
              W_lang, b_lang, W_hid_att, w_att, probe_t=None):
        """One tick; ``x_t`` is :meth:`_word_part` (batch, 4H). The weights
        come as arguments, so that scan (strict) sees them. Returns ``c, h``
        (each ``[LSTM_1's, LSTM_2's]``), ``alpha, v`` and what the backward
        pass reuses: both LSTMs' pre-activations and the MLP's hidden layer.
        """
        H = self.num_units
        # [h1, h2]_{t-1} against [W_hid; W_lang]: h1 W_hid + h2 W_lang
        pre_att = gate_preactivations(self, x_t, h_prev, W_rec_att, None, None)
        c1, h1 = lstm_gates(self, pre_att, c_prev[:, :H], [])
        alpha, v, hidden = self._look_in_tick(h1, regions, projected,
                                              W_hid_att, w_att, probe_t)
        # [v, h1, h2_{t-1}] against the language LSTM's stacked weights
        pre_lang = gate_preactivations(
            self, b_lang, T.concatenate([v, h1, h_prev[:, H:]], axis=1),
            W_lang, None, None)
        c2, h2 = lstm_gates(self, pre_lang, c_prev[:, H:], [])
        return (T.concatenate([c1, c2], axis=1), T.concatenate([h1, h2], axis=1),
                alpha, v, pre_att, pre_lang, hidden)

    def _tick_weights(self):
        b_lang = T.concatenate([getattr(self, "b_lang_" + g) for g in GATES], 0)
        return [self._stacked("W_hid_to_", "W_lang_to_"),
                self._stacked("W_ctx_to_lang_", "W_att_to_lang_",
                              "W_hid_to_lang_"),
                b_lang, self.W_hid_att, self.w_att]

    def step(self, word_input, cell, hid, regions, projected):
        """One tick for decoding, as :meth:`AttentionLSTMLayer.step`:
        ``word_input`` (batch, num_inputs), ``cell``/``hid`` (batch, 2H),
        the regions and their :meth:`project_regions`. Returns ``cell, hid,
        alpha, context``."""
        return self._tick(self._word_part(word_input, regions), cell, hid,
                          regions, projected, *self._tick_weights())[:4]

    # ---------------------------------------------------------------- the scan
    def get_output_for(self, inputs, context_probe=None, **kwargs):
        """``[h2_t, v_t, alpha_t]`` per tick, ``(batch, time, H + D + R)``.

        ``inputs``: the words, the regions, the mask (if any), the
        ``hid_init`` and ``cell_init`` layers' outputs (if Layers).
        ``context_probe`` (time, batch, region_size) zeros: as in
        :meth:`AttentionLSTMLayer.get_output_for` (the regions' gradient
        through ``v_t`` leaves the scan through it).
        """
        regions = inputs[1]
        # (time, batch, 4H): the mean region's part broadcast over time
        x = self._word_part(inputs[0].dimshuffle(1, 0, 2), regions)
        hids, contexts, alphas = self._scan_ticks(x, inputs, context_probe)
        return T.concatenate([hids[:, :, self.num_units:], contexts, alphas],
                             axis=2).dimshuffle(1, 0, 2)
