"""Soft attention over image regions, as a Lasagne layer ("Show, Attend and Tell").

Xu et al. 2015 (arXiv 1502.03044), sec. 3.1.2 and 4.2: an LSTM that, before
each tick, looks at the image's regions ``a_i`` (the cells of the CNN's last
spatial map, e.g. 7x7 = 49 regions of 1280 features) and feeds itself a
weighted mean of them, the context ``z_t``, beside the previous word::

    e_ti    = w_att . tanh(a_i W_att + b_att + h_{t-1} W_hid_att)   attention MLP
    alpha_t = softmax_i(e_t)                     weights over the regions, sum 1
    beta_t  = sigmoid(h_{t-1} . w_beta + b_beta)    gating scalar (sec. 4.2.1)
    z_t     = beta_t * sum_i alpha_ti a_i                            the context
    c_t, h_t = LSTM(x_t W_in + b + z_t W_ctx, c_{t-1}, h_{t-1})

The LSTM part is Lasagne's own (master's equations, via the backport's
``lstm_tick``: same ``Gate`` objects, peepholes, ``grad_clipping``), with the
context as a second input: ``W_ctx_to_<gate>`` beside ``W_in_to_<gate>``.
``a_i W_att + b_att`` and ``x_t W_in + b`` do not depend on t, so they are
computed once, outside the scan; the scan's step is left with two small
products (h W_hid_att, alpha a) and the LSTM's two (h W_hid, z W_ctx).

The layer returns, per tick, ``[h_t, z_t, alpha_t]`` side by side (one scan
gives all three; the deep output needs z_t and the doubly stochastic
regulariser alpha_t); :class:`AttentionPart` takes one of them out.
:meth:`AttentionLSTMLayer.step` is one tick on the same weights, for
decoding a word at a time.
"""
import captioning.stack  # noqa: F401  (Theano flags and the Lasagne backport first)

import theano
import theano.tensor as T
from lasagne import init, nonlinearities
from lasagne.layers import Layer, MergeLayer
from lasagne.layers.recurrent import Gate
from lasagne.random import get_rng
from theano.gradient import disconnected_grad
from theano.sandbox.rng_mrg import MRG_RandomStreams

from captioning.stack.lasagne_compat.lstm import (GATES, add_init_incomings,
                                            gate_preactivations, initial_state,
                                            lstm_gates, stacked_weights)

__all__ = ["AttentionLSTMLayer", "AttentionPart", "FeatureDropoutLayer",
           "HiddenAttentionLayer", "RegionAttentionMLP", "regions_gradient"]


class FeatureDropoutLayer(Layer):
    """Dropout of whole features of an image: the same features are zeroed
    in all its regions (Lasagne master's ``DropoutLayer(shared_axes=(1,))``,
    which 0.1 lacks).

    Dropping each (region, feature) on its own barely regularises what the
    model mostly uses, means over regions: the mean region (the initial
    state) and the attended context average 49 independent masks. With one
    mask per image the mean region is dropped as the seminar graph drops its
    image code. Input (batch, n_regions, features); scaled by 1 / (1 - p) in
    training, unchanged when deterministic.
    """

    def __init__(self, incoming, p=0.5, **kwargs):
        super().__init__(incoming, **kwargs)
        if not 0 <= p < 1:
            raise ValueError("p must be in [0, 1), got %r" % (p,))
        self.p = p
        self._srng = MRG_RandomStreams(get_rng().randint(1, 2147462579))

    def get_output_for(self, input, deterministic=False, **kwargs):
        if deterministic or self.p == 0:
            return input
        keep = 1 - self.p
        mask = self._srng.binomial((input.shape[0], input.shape[2]), p=keep,
                                   dtype=theano.config.floatX)
        return input * (mask / keep).dimshuffle(0, "x", 1)


class RegionAttentionMLP:
    """What both attention layers share: the MLP's weights ``W_att``
    (region_size, A), ``b_att`` (A,), ``W_hid_att`` (num_units, A), ``w_att``
    (A,), and the regions' projection, computed once per image."""

    def _region_size(self, region_shape):
        if len(region_shape) != 3 or region_shape[2] is None:
            raise ValueError("the regions must be (batch, n_regions, features)"
                             " with known features, not %r" % (region_shape,))
        return region_shape[2]

    def _add_attention_mlp(self, num_units, W_att, W_hid_att, b_att, w_att):
        A = self.attention_units
        self.W_att = self.add_param(W_att, (self.region_size, A), name="W_att")
        self.b_att = self.add_param(b_att, (A,), name="b_att",
                                    regularizable=False)
        self.W_hid_att = self.add_param(W_hid_att, (num_units, A),
                                        name="W_hid_att")
        self.w_att = self.add_param(w_att, (A,), name="w_att")

    def project_regions(self, regions):
        """``a W_att + b_att`` (batch, n_regions, A): once per image."""
        return T.dot(regions, self.W_att) + self.b_att

    @staticmethod
    def _look_in_tick(query, regions, projected, W_hid_att, w_att, probe_t=None):
        """One tick's look from ``query`` (batch, num_units), inside a scan
        (the weights as arguments): ``alpha`` (batch, n_regions), the
        attended regions ``alpha . a`` (batch, region_size) and the MLP's
        hidden layer (batch * n_regions, A), which the backward pass reuses.
        ``probe_t``: see :meth:`AttentionLSTMLayer.get_output_for`."""
        summed = projected + T.dot(query, W_hid_att).dimshuffle(0, "x", 1)
        # one row per (image, region): Theano would move the reshape that
        # dot(3-d, vector) makes inside the tanh, and compute a second tanh
        # for the hidden layer returned for the backward pass
        hidden = T.tanh(summed.reshape((-1, summed.shape[2])))
        alpha = T.nnet.softmax(T.dot(hidden, w_att).reshape(
            (summed.shape[0], summed.shape[1])))  # (batch, regions)
        if probe_t is None:
            attended = T.batched_dot(alpha, regions)
        else:  # the regions' gradient on this path leaves through the probe
            attended = T.batched_dot(alpha, disconnected_grad(regions)) + probe_t
        return alpha, attended, hidden

    def _scan_ticks(self, x, inputs, context_probe):
        """``self._tick`` over the ticks of ``x`` (time, batch, ...) in one
        ``theano.scan``: the mask's padded ticks keep the previous state,
        ``context_probe`` (if given) is a sequence. Returns the ticks'
        ``h, context, alpha``, each (time, batch, ...).

        ``_tick`` returns ``c, h, alpha, context`` and then what only the
        backward pass reads; all are outputs of the scan, in the order of
        the layer's ``_SCAN_ORDER`` after ``c, h``. Speed, same maths: the
        backward scan reuses the forward scan's outputs wherever its graph
        contains one of them, and computes everything else again, tick by
        tick (Theano's Scan.L_op). It substitutes them one after the other,
        so each must come before the values it is computed from (gate
        pre-activations before the context, the context before alpha,
        alpha before the MLP's hidden layer), or it is no longer recognised.
        """
        regions = inputs[1]
        sequences = [x]
        masked = self.mask_incoming_index > 0
        if masked:
            sequences.append(inputs[self.mask_incoming_index]
                             .T.dimshuffle(0, 1, "x"))
        probing = context_probe is not None
        if probing:
            sequences.append(context_probe)
        order = self._SCAN_ORDER
        outputs_info = [initial_state(self, "cell_init", inputs, x),
                        initial_state(self, "hid_init", inputs, x)] + \
            [None] * len(order)
        non_sequences = [regions, self.project_regions(regions)] + \
            self._tick_weights()

        def scan_step(x_t, *args):
            if masked:
                m_t, args = args[0], args[1:]
            probe_t = None
            if probing:
                probe_t, args = args[0], args[1:]
            c_prev, h_prev = args[:2]
            tick = self._tick(x_t, c_prev, h_prev, *args[2:], probe_t=probe_t)
            c, h = tick[:2]
            if masked:  # padded ticks keep the previous state
                c = T.switch(m_t, c, c_prev)
                h = T.switch(m_t, h, h_prev)
            return [c, h] + [tick[i] for i in order]

        outputs = theano.scan(scan_step, sequences, outputs_info=outputs_info,
                              non_sequences=non_sequences, strict=True)[0]
        by_position = dict(zip(order, outputs[2:]))
        return outputs[1], by_position[3], by_position[2]


class AttentionLSTMLayer(RegionAttentionMLP, MergeLayer):
    """An LSTM with soft attention over image regions (Xu et al. 2015).

    Parameters
    ----------
    incoming : Layer or shape tuple
        The word input, ``(batch, time, num_inputs)`` (the embedding of
        the previous word at each tick).
    regions : Layer or shape tuple
        The image regions, ``(batch, n_regions, region_size)``;
        ``region_size`` must be known.
    num_units : int
        LSTM units (H).
    attention_units : int, optional
        Width of the attention MLP (A); default ``num_units``.
    ingate, forgetgate, cell, outgate : Gate
        As for ``LSTMLayer``; each gate's ``W_in`` initialiser also makes
        its context weights ``W_ctx_to_<gate>`` (region_size, num_units).
    nonlinearity : callable
        Applied to the cell before the output gate (tanh).
    cell_init, hid_init : Layer, callable, array or shared variable
        The initial state: a Layer giving ``(batch, num_units)`` (e.g. a
        tanh Dense of the mean region, as in the paper), else the
        initialiser of a ``(1, num_units)`` parameter.
    learn_init : bool
        Train the initial-state parameters (not used for Layer inits).
    peepholes : bool
        Lasagne's cell-to-gate connections (Xu et al. have none).
    grad_clipping : float
        Bounds the gradient reaching each tick's gate pre-activations (word,
        context and recurrent parts) to ``[-grad_clipping, grad_clipping]``;
        0 means no clipping, as in ``LSTMLayer``.
    mask_input : Layer, optional
        ``(batch, time)``, 1 for a real tick, 0 for padding: padded ticks
        keep the previous (c, h). Their z and alpha are computed from that
        kept state and mean nothing: a loss must mask them.
    W_att, W_hid_att : initialisers
        ``(region_size, A)`` and ``(num_units, A)``.
    b_att, w_att : initialisers
        ``(A,)`` each.
    w_beta, b_beta : initialisers
        ``(num_units,)`` and a scalar: the gate beta.
    **kwargs
        To ``Layer`` (e.g. ``name``).

    Output: ``(batch, time, num_units + region_size + n_regions)``, at tick t
    ``[h_t, z_t, alpha_t]`` (use :class:`AttentionPart`).

    Examples
    --------
    >>> from lasagne.layers import InputLayer
    >>> words = InputLayer((None, None, 256))     # embedded words
    >>> regions = InputLayer((None, 49, 1280))    # 7x7 map of EfficientNet-Lite0
    >>> layer = AttentionLSTMLayer(words, regions, 512, attention_units=256)
    >>> layer.output_shape
    (None, None, 1841)
    >>> AttentionPart(layer, "attention").output_shape
    (None, None, 49)
    """
    # _tick's results the scan returns after c, h (see _scan_ticks): the gate
    # pre-activations (z W_ctx + h W_hid: the step's two large products), z,
    # alpha . a (beta's gradient), alpha, the attention MLP's hidden layer
    _SCAN_ORDER = (4, 3, 5, 2, 6)

    def __init__(self, incoming, regions, num_units, attention_units=None,
                 ingate=Gate(), forgetgate=Gate(),
                 cell=Gate(W_cell=None, nonlinearity=nonlinearities.tanh),
                 outgate=Gate(), nonlinearity=nonlinearities.tanh,
                 cell_init=init.Constant(0.), hid_init=init.Constant(0.),
                 learn_init=False, peepholes=True, grad_clipping=0,
                 mask_input=None,
                 W_att=init.GlorotUniform(), W_hid_att=init.GlorotUniform(),
                 b_att=init.Constant(0.), w_att=init.Normal(0.1),
                 w_beta=init.Normal(0.1), b_beta=init.Constant(0.),
                 **kwargs):
        incomings = [incoming, regions]
        if mask_input is not None:
            incomings.append(mask_input)
        super().__init__(incomings, **kwargs)
        self.mask_incoming_index = 2 if mask_input is not None else -1
        self.num_units = num_units
        self.attention_units = attention_units or num_units
        self.nonlinearity = nonlinearity or nonlinearities.identity
        self.peepholes = peepholes
        self.grad_clipping = grad_clipping
        # lstm_tick reads this: the word part x W_in + b is always computed
        # before the scan (the attention needs no such option).
        self.precompute_input = True

        input_shape, region_shape = self.input_shapes[:2]
        if len(input_shape) != 3 or input_shape[2] is None:
            raise ValueError("the word input must be (batch, time, features) "
                             "with known features, not %r" % (input_shape,))
        num_inputs = input_shape[2]
        self.region_size = self._region_size(region_shape)

        for gate, name in zip((ingate, forgetgate, cell, outgate), GATES):
            # the names LSTMLayer gives, so stacked_weights() finds them
            setattr(self, "W_in_to_" + name, self.add_param(
                gate.W_in, (num_inputs, num_units), name="W_in_to_" + name))
            setattr(self, "W_hid_to_" + name, self.add_param(
                gate.W_hid, (num_units, num_units), name="W_hid_to_" + name))
            setattr(self, "b_" + name, self.add_param(
                gate.b, (num_units,), name="b_" + name, regularizable=False))
            setattr(self, "W_ctx_to_" + name, self.add_param(
                gate.W_in, (self.region_size, num_units),
                name="W_ctx_to_" + name))
            setattr(self, "nonlinearity_" + name, gate.nonlinearity)
            if peepholes and name != "cell":
                setattr(self, "W_cell_to_" + name, self.add_param(
                    gate.W_cell, (num_units,), name="W_cell_to_" + name))

        self._add_attention_mlp(num_units, W_att, W_hid_att, b_att, w_att)
        self.w_beta = self.add_param(w_beta, (num_units,), name="w_beta")
        self.b_beta = self.add_param(b_beta, (), name="b_beta",
                                     regularizable=False)

        init_layers = {name: value for name, value in
                       (("hid_init", hid_init), ("cell_init", cell_init))
                       if isinstance(value, Layer)}
        add_init_incomings(self, init_layers)
        for name, value in (("cell_init", cell_init), ("hid_init", hid_init)):
            if name not in init_layers:
                setattr(self, name, self.add_param(
                    value, (1, num_units), name=name, trainable=learn_init,
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

    # ---------------------------------------------------------------- one tick
    def _context_weights(self):
        return T.concatenate([getattr(self, "W_ctx_to_" + g) for g in GATES], 1)

    def _peepholes(self):
        if not self.peepholes:
            return []
        return [self.W_cell_to_ingate, self.W_cell_to_forgetgate,
                self.W_cell_to_outgate]

    def _tick(self, x_t, c_prev, h_prev, regions, projected, W_hid, W_ctx,
              W_hid_att, w_att, w_beta, b_beta, *peepholes, probe_t=None):
        """One tick; ``x_t`` is the word part ``x W_in + b`` (batch, 4H).
        The weights come as arguments, so that scan (strict) sees them.
        ``probe_t`` (batch, region_size), zeros: see :meth:`get_output_for`.

        Returns ``c, h, alpha, z`` and what the backward pass needs (see
        :meth:`get_output_for`): the gates' pre-activations (batch, 4H), the
        attended regions before the gate beta (batch, region_size) and the
        attention MLP's hidden layer (batch * regions, A).
        """
        alpha, attended, hidden = self._look_in_tick(
            h_prev, regions, projected, W_hid_att, w_att, probe_t)
        beta = T.nnet.sigmoid(T.dot(h_prev, w_beta) + b_beta)  # (batch,)
        z = beta.dimshuffle(0, "x") * attended
        pre = gate_preactivations(self, x_t + T.dot(z, W_ctx), h_prev, W_hid,
                                  None, None)
        c, h = lstm_gates(self, pre, c_prev, peepholes)
        return c, h, alpha, z, pre, attended, hidden

    def _tick_weights(self):
        _, W_hid, _ = stacked_weights(self)
        return [W_hid, self._context_weights(), self.W_hid_att, self.w_att,
                self.w_beta, self.b_beta] + self._peepholes()

    def step(self, word_input, cell, hid, regions, projected):
        """One tick on symbolic inputs with this layer's weights (decoding).

        Parameters
        ----------
        word_input : (batch, num_inputs)
            The previous word's input (its embedding).
        cell, hid : (batch, num_units)
            The state after the previous tick.
        regions : (batch, n_regions, region_size)
        projected : (batch, n_regions, A)
            :meth:`project_regions` of ``regions``.

        Returns
        -------
        cell, hid, alpha (batch, n_regions), context z (batch, region_size)
            What the full graph gives at the tick after ``(cell, hid)``
            (a tick without padding).
        """
        W_in, _, b = stacked_weights(self)
        return self._tick(T.dot(word_input, W_in) + b, cell, hid, regions,
                          projected, *self._tick_weights())[:4]

    # ---------------------------------------------------------------- the scan
    def get_output_for(self, inputs, context_probe=None, **kwargs):
        """``[h_t, z_t, alpha_t]`` per tick, ``(batch, time, H + D + R)``.

        Parameters
        ----------
        inputs : list of TensorVariable
            The word input (batch, time, num_inputs), the regions (batch,
            n_regions, region_size), then the mask (batch, time) if
            `mask_input` was given, then the outputs of the `hid_init` and
            `cell_init` layers, if any (in that order).
        context_probe : TensorVariable (time, batch, region_size), optional
            Zeros, added to each tick's attended regions ``alpha_t . a``.
            With it the gradient of the regions through ``alpha_t . a``
            stops inside the scan, and ``grad(cost, context_probe)[t]`` is
            the gradient of ``alpha_t . a``; :func:`regions_gradient` turns
            it into the missing part of the regions' gradient (same value,
            but one batched product after the scan instead of a
            (batch, regions, features) sum inside the backward scan at every
            tick). Only for gradients: the outputs are unchanged.
        """
        W_in, _, b = stacked_weights(self)
        x = T.dot(inputs[0].dimshuffle(1, 0, 2), W_in) + b  # (time, batch, 4H)
        hids, contexts, alphas = self._scan_ticks(x, inputs, context_probe)
        return T.concatenate([hids, contexts, alphas], axis=2) \
            .dimshuffle(1, 0, 2)


class AttentionPart(Layer):
    """One of an :class:`AttentionLSTMLayer`'s (or a
    :class:`HiddenAttentionLayer`'s) outputs, per tick.

    ``part`` is ``"hid"`` (batch, time, num_units; the LSTM only),
    ``"context"`` (the gated z_t, or c_t, (batch, time, region_size)) or
    ``"attention"`` (alpha_t, (batch, time, n_regions)).
    """

    def __init__(self, incoming, part, **kwargs):
        super().__init__(incoming, **kwargs)
        if not hasattr(incoming, "part_slices"):
            raise TypeError("AttentionPart takes an attention layer (with "
                            "part_slices(): AttentionLSTMLayer, "
                            "HiddenAttentionLayer, TopDownLSTMLayer), not %r"
                            % (incoming,))
        slices = incoming.part_slices()
        if part not in slices:
            raise ValueError("part must be one of %s, not %r"
                             % (sorted(slices), part))
        self.part = part
        self.slice = slices[part]
        widths = {"hid": incoming.num_units, "context": incoming.region_size,
                  "attention": incoming.input_shapes[1][1]}
        self.width = widths[part]

    def get_output_shape_for(self, input_shape):
        return input_shape[0], input_shape[1], self.width

    def get_output_for(self, input, **kwargs):
        return input[:, :, self.slice]


class HiddenAttentionLayer(RegionAttentionMLP, MergeLayer):
    """Soft attention from each tick's *new* hidden state (Lu et al. 2017,
    arXiv 1612.01887, sec. 2.2, their "spatial attention")::

        e_ti    = w_att . tanh(a_i W_att + b_att + h_t W_hid_att)
        alpha_t = softmax_i(e_t)
        c_t     = sum_i alpha_ti a_i

    Xu et al.'s layer looks with ``h_{t-1}``, before the tick has read the
    word it was given; here the tick has read it, so ``alpha_t`` is where
    the word about to be predicted is looked for. Nothing is fed back into
    the LSTM, so no scan: all ticks at once, after the decoder.

    Parameters
    ----------
    incoming : Layer or shape tuple
        The hidden states ``(batch, time, num_units)``.
    regions : Layer or shape tuple
        ``(batch, n_regions, region_size)``; ``region_size`` known.
    attention_units : int
        Width of the attention MLP (A).
    W_att, W_hid_att, b_att, w_att : initialisers
        ``(region_size, A)``, ``(num_units, A)``, ``(A,)``, ``(A,)``.

    Output: ``(batch, time, region_size + n_regions)``, at tick t
    ``[c_t, alpha_t]`` (:meth:`part_slices`; :class:`AttentionPart` takes
    one out).
    """

    def __init__(self, incoming, regions, attention_units,
                 W_att=init.GlorotUniform(), W_hid_att=init.GlorotUniform(),
                 b_att=init.Constant(0.), w_att=init.Normal(0.1), **kwargs):
        super().__init__([incoming, regions], **kwargs)
        hid_shape, region_shape = self.input_shapes
        if len(hid_shape) != 3 or hid_shape[2] is None:
            raise ValueError("the hidden states must be (batch, time, units) "
                             "with known units, not %r" % (hid_shape,))
        self.num_units = hid_shape[2]
        self.region_size = self._region_size(region_shape)
        self.attention_units = attention_units
        self._add_attention_mlp(self.num_units, W_att, W_hid_att, b_att, w_att)

    def get_output_shape_for(self, input_shapes):
        """``(batch, time, region_size + n_regions)``."""
        batch, time = input_shapes[0][:2]
        n_regions = input_shapes[1][1]
        width = None if n_regions is None else self.region_size + n_regions
        return batch, time, width

    def part_slices(self):
        """``{"context" | "attention": slice}`` of the last axis."""
        return {"context": slice(0, self.region_size),
                "attention": slice(self.region_size, None)}

    def _look(self, hids, regions, projected):
        """``context (batch, time, D), alpha (batch, time, n_regions)`` of
        ``hids`` (batch, time, num_units)."""
        # (batch, time, regions, A): every tick against every region at once
        summed = (projected.dimshuffle(0, "x", 1, 2)
                  + T.dot(hids, self.W_hid_att).dimshuffle(0, 1, "x", 2))
        scores = T.dot(T.tanh(summed), self.w_att)      # (batch, time, regions)
        alpha = T.nnet.softmax(scores.reshape((-1, scores.shape[2]))) \
            .reshape(scores.shape)
        return T.batched_dot(alpha, regions), alpha

    def step(self, hid, regions, projected):
        """One tick: ``hid`` (batch, num_units), ``regions`` and their
        :meth:`project_regions` as in :meth:`AttentionLSTMLayer.step`.
        Returns ``context (batch, region_size), alpha (batch, n_regions)``."""
        context, alpha = self._look(hid.dimshuffle(0, "x", 1), regions,
                                    projected)
        return context[:, 0], alpha[:, 0]

    def get_output_for(self, inputs, **kwargs):
        hids, regions = inputs
        return T.concatenate(self._look(hids, regions,
                                        self.project_regions(regions)), axis=2)


def regions_gradient(alphas, probe_gradient):
    """The regions' gradient through the attended context, sum over ticks
    of ``alpha_t^T g_t``: ``alphas`` (batch, time, n_regions) as
    :class:`AttentionPart` ``"attention"`` gives them, ``probe_gradient``
    (time, batch, region_size) the gradient of a ``context_probe``
    (:meth:`AttentionLSTMLayer.get_output_for`). (batch, n_regions,
    region_size), to add to the gradient the regions get otherwise."""
    return T.batched_dot(alphas.dimshuffle(0, 2, 1),
                         probe_gradient.dimshuffle(1, 0, 2))
