"""The seminar's captioning network.

The graph is the seminar notebook's::

    words (batch, time) --Embedding--> (batch, time, EMBED_SIZE) --+
    image codes (batch, 1000) --Dropout--Dense--> cell_init -------+--> LSTM
    LSTM (batch, time, LSTM_UNITS) --Broadcast(0, 1)--Dense(softmax)--Unbroadcast
        --> next-word probabilities (batch, time, n_tokens)

plus what ``caption train`` adds by default, each an option: a linear image
Dense (``image_nonlinearity``; the notebook's is tanh), dropout on the LSTM's
outputs (``output_dropout``; the notebook has none), standardised image codes
(:meth:`CaptionModel.prepare_codes`), and PAD mapped to index 0 before the
embedding (the notebook's PAD = -1 reads the last row; masked either way).
With ``image_nonlinearity="tanh", output_dropout=0`` it is the notebook's
graph: tests/test_notebook_code.py checks that both give the same loss and
gradients with the same weights. (The notebook also starts its forget-gate
bias at 1 instead of Lasagne's 0: an initial value, not a graph difference.)

Beside it, :meth:`CaptionModel.compile_step` builds a one-step graph from the
*same* shared weights (one LSTM tick plus the output layer), so decoding a
caption costs one tick per word instead of re-running the whole prefix.

A trained model is saved as a directory by :mod:`captioning.model_dir`.
"""
import captioning.stack  # noqa: F401  (Theano flags and the Lasagne backport first)


import numpy as np
import theano
import theano.tensor as T
import lasagne
from lasagne.layers import (InputLayer, EmbeddingLayer, DropoutLayer,
                            DenseLayer, LSTMLayer, get_output, get_all_params,
                            get_all_layers)

from broadcast import BroadcastLayer, UnbroadcastLayer
from captioning.errors import CaptionError
from captioning.stack.theano_setup import SPEEDUPS
# The vocabulary lives with the normaliser; re-exported for older imports.
from captioning.text import (END, PAD_ix, START, UNK, Vocabulary,
                             caption_tokens)

__all__ = ["PAD_ix", "UNK", "START", "END", "Vocabulary", "CaptionModel",
           "ModelFileError", "caption_tokens", "lstm_tick"]

class ModelFileError(CaptionError):
    """A model directory that is missing, incomplete or does not fit."""


DEFAULT_HYPER = {
    "cnn_feature_size": 1000,
    "embed_size": 256,
    "lstm_units": 512,
    "dropout": 0.5,
    # dropout on the LSTM's outputs before the softmax: the seed invites
    # "some dropout here and there"; Flickr8k's 30k captions overfit fast
    "output_dropout": 0.5,
    "grad_clipping": 5.0,
    "learning_rate": 1e-3,
    # the image code -> cell_init Dense: "linear" (the cell state may take
    # any magnitude) or "tanh" (the seminar notebook's choice)
    "image_nonlinearity": "linear",
    # False keeps the embedding at its initial value (e.g. word vectors)
    "train_embedding": True,
}

IMAGE_NONLINEARITIES = {"linear": None, "tanh": lasagne.nonlinearities.tanh}


class CaptionModel:
    """The seminar graph, its training functions and a one-step decoder.

    Parameters
    ----------
    vocab : Vocabulary
    embedding : ndarray (len(vocab), embed_size), optional
        Initial word embedding (e.g. :mod:`captioning.word_vectors`); default
        Lasagne's Normal(0.01). ``train_embedding=False`` keeps it fixed.
    **hyper
        Overrides of :data:`DEFAULT_HYPER` (``embed_size``, ``lstm_units``,
        ``dropout``, ``output_dropout``, ``grad_clipping``, ``learning_rate``,
        ``cnn_feature_size``, ``image_nonlinearity``, ``train_embedding``).
    seed : int, optional
        Seeds the initial weights and the dropout masks, so that training
        is repeatable; None draws them from Lasagne's global generator.

    Attributes
    ----------
    layers : dict
        The named layers: ``words, mask, embedding, image, image_dropout,
        image_dense, decoder, broadcast, output, probabilities``.
    code_mean, code_std : ndarray (cnn_feature_size,) float32
        Standardisation of the image codes (set by training, saved with the
        weights); :meth:`prepare_codes` applies it.
    encoder_record : dict or None
        What made the image codes the model is trained on
        (:meth:`captioning.cnn.encode.Encoder.record`); set by training, saved
        in ``model.json``. None only for models saved before it was recorded.

    Functions are compiled lazily, on first use, because a Theano compile
    takes tens of seconds: ``train_step(image_vectors, sentences) -> loss``,
    ``val_step(image_vectors, sentences) -> loss`` (no dropout),
    ``get_probs(image_vectors, sentences) -> (batch, time, n_tokens)`` and
    ``init_state``/``step`` for decoding (see :meth:`compile_step`).
    """

    # a subclass with another graph has its own defaults
    default_hyper = DEFAULT_HYPER

    def __init__(self, vocab, seed=None, embedding=None, **hyper):
        self._embedding_init = embedding  # read by _build_graph only
        unknown = set(hyper) - set(self.default_hyper)
        if unknown:
            raise ValueError("unknown hyper-parameters: %s" % sorted(unknown))
        self.vocab = vocab
        self.hyper = dict(self.default_hyper, **hyper)
        n_features = self.hyper["cnn_feature_size"]
        self.code_mean = np.zeros(n_features, "float32")
        self.code_std = np.ones(n_features, "float32")
        self.encoder_record = None
        global_rng = lasagne.random.get_rng()
        if seed is not None:
            # Lasagne draws initial weights and dropout seeds from here.
            lasagne.random.set_rng(np.random.RandomState(seed))
        try:
            self._build_graph()
        finally:
            lasagne.random.set_rng(global_rng)
        self._train_fns = self._probs_fn = self._step_fns = None

    # ------------------------------------------------------------ the graph
    def _build_graph(self):
        h = self.hyper
        n_tokens = len(self.vocab)
        self.sentences = T.imatrix("sentences")          # (batch, time) word ids
        self.image_vectors = T.matrix("image_vectors")   # (batch, 1000) codes
        self.sentence_mask = T.neq(self.sentences, PAD_ix)
        # The seminar feeds PAD_ix = -1 straight into the EmbeddingLayer,
        # where W[-1] silently reads the *last word's* row (numpy-style
        # wrap-around). The mask makes that harmless (masked ticks keep the
        # previous LSTM state and get no gradient), but we say it explicitly:
        # PAD becomes index 0 (#UNK#) and stays masked.
        self.word_ids = T.maximum(self.sentences, 0)

        l_words = InputLayer((None, None), self.word_ids, name="words")
        l_mask = InputLayer((None, None), self.sentence_mask, name="mask")
        l_embedding = EmbeddingLayer(l_words, n_tokens, h["embed_size"],
                                     W=self._initial_embedding(n_tokens),
                                     name="embedding")
        if not h["train_embedding"]:
            l_embedding.params[l_embedding.W].discard("trainable")
        l_image = InputLayer((None, h["cnn_feature_size"]),
                             self.image_vectors, name="image")
        l_image_dropout = DropoutLayer(l_image, p=h["dropout"],
                                       name="image_dropout")
        # Linear by default: the image sets the LSTM's initial *cell*, which
        # may take any sign and size (a ReLU would zero half of it).
        if h["image_nonlinearity"] not in IMAGE_NONLINEARITIES:
            raise ValueError("image_nonlinearity must be one of %s, got %r"
                             % (sorted(IMAGE_NONLINEARITIES), h["image_nonlinearity"]))
        l_image_dense = DenseLayer(
            l_image_dropout, h["lstm_units"],
            nonlinearity=IMAGE_NONLINEARITIES[h["image_nonlinearity"]],
            name="image_dense")
        decoder = LSTMLayer(l_embedding, num_units=h["lstm_units"],
                            cell_init=l_image_dense, mask_input=l_mask,
                            grad_clipping=h["grad_clipping"], name="decoder")
        l_broadcast = BroadcastLayer(decoder, (0, 1), name="broadcast")
        l_ticks = l_broadcast
        if h["output_dropout"]:
            l_ticks = DropoutLayer(l_broadcast, p=h["output_dropout"],
                                   name="output_dropout")
        l_output = DenseLayer(l_ticks, n_tokens,
                              nonlinearity=lasagne.nonlinearities.softmax,
                              name="output")
        l_probs = UnbroadcastLayer(l_output, broadcast_layer=l_broadcast,
                                   name="probabilities")
        self.layers = {l.name: l for l in get_all_layers(l_probs)}

    def _initial_embedding(self, n_tokens):
        """The embedding's initial value: the given matrix (e.g. word
        vectors, one row per vocabulary word), else Lasagne's Normal(0.01)."""
        if self._embedding_init is None:
            return lasagne.init.Normal()
        W = np.asarray(self._embedding_init, theano.config.floatX)
        if W.shape != (n_tokens, self.hyper["embed_size"]):
            raise ValueError("the initial embedding must be (%d words, %d), not %s" % (
                n_tokens, self.hyper["embed_size"], W.shape))
        return W

    def params(self, trainable=False):
        """The graph's shared variables (all, or only the trainable ones)."""
        tags = {"trainable": True} if trainable else {}
        return get_all_params(self.layers["probabilities"], **tags)

    def named_params(self):
        """``{"layer.param": shared variable}`` (e.g. ``decoder.W_in_to_cell``)."""
        named = {}
        for layer in get_all_layers(self.layers["probabilities"]):
            for param in layer.get_params():
                # Lasagne already prefixes the names of a named layer's params
                name = param.name if param.name.startswith(layer.name + ".") \
                    else "%s.%s" % (layer.name, param.name)
                named[name] = param
        return named

    # Speed: take the cross-entropy on the output layer's own softmax rows,
    # the pattern Theano fuses into one stable op (log-sum-exp, no separate
    # softmax/clip/gradient passes over batch*time x n_tokens). Same loss and
    # gradient; tests/test_speed_equivalence.py compares both ways.
    # CAPTION_SPEEDUPS=0: the plain form.
    fused_loss = SPEEDUPS

    # Speed: keep intermediate arrays between calls of the train and val
    # functions (Theano's allow_gc=False for these two only): the three
    # batch*time x n_tokens arrays (33 MB each at the seminar's sizes) are
    # then reused instead of being mapped and page-faulted again every step.
    # (The CNN encoder does the same, its calls cut to ~1 GB of buffers:
    # captioning.cnn.encode.CALL_PIXELS.)
    # CAPTION_SPEEDUPS=0: Theano's default (config.allow_gc).
    keep_buffers = SPEEDUPS

    @classmethod
    def train_mode(cls):
        """The Theano mode of the train and val functions."""
        mode = theano.compile.get_default_mode()
        if cls.keep_buffers:
            mode = mode.clone(link_kwargs=dict(allow_gc=False))
        return mode

    def loss(self, deterministic):
        """Mean cross-entropy of the next word over the non-PAD targets."""
        if self.fused_loss:
            return self._fused_loss(deterministic)
        probs = get_output(self.layers["probabilities"],
                           deterministic=deterministic)
        n_tokens = len(self.vocab)
        references = self.word_ids[:, 1:]
        output_mask = T.cast(self.sentence_mask[:, 1:], theano.config.floatX)
        # Clip so that a probability that underflowed to 0 gives a large but
        # finite loss: a masked inf would turn into 0 * inf = nan.
        predicted = T.clip(probs[:, :-1].reshape((-1, n_tokens)), 1e-7, 1.0)
        xent = lasagne.objectives.categorical_crossentropy(
            predicted, references.reshape((-1,))).reshape(references.shape)
        # Mean over non-PAD tokens (casting keeps it float32: an int sum
        # in the denominator would upcast the loss to float64).
        return (xent * output_mask).sum() / output_mask.sum()

    def _fused_loss(self, deterministic):
        """:meth:`loss` as ``categorical_crossentropy(softmax rows)``.

        The output layer's rows are (batch, tick) in row-major order; row
        (b, t) is scored against word t+1, and the last tick of each row,
        which has no next word, is masked out. ``minimum(xent, -log 1e-7)``
        is the clip of the unfused form (same value, zero gradient beyond).
        """
        probs = get_output(self.layers["output"], deterministic=deterministic)
        return self._rows_loss(probs)[0]

    def _rows_loss(self, probs):
        """The fused loss of the softmax rows ``probs`` (batch*time,
        n_tokens), and which ticks it scores: ``(loss, output_mask)``, the
        mask (batch, time) in floatX."""
        xent, output_mask = self._rows_xent(probs)
        return xent.sum() / output_mask.sum(), output_mask

    def _next_word_ids(self):
        """(batch, time): the word each tick predicts (0 after the last)."""
        return T.concatenate(
            [self.word_ids[:, 1:], T.zeros_like(self.word_ids[:, :1])], axis=1)

    def _rows_xent(self, probs):
        """``(xent, output_mask)``, both (batch, time): the cross-entropy of
        each tick's next word (0 where the mask is), and the mask."""
        floatX = theano.config.floatX
        next_words = self._next_word_ids()
        mask = T.cast(self.sentence_mask, floatX)
        output_mask = T.concatenate([mask[:, 1:], T.zeros_like(mask[:, :1])],
                                    axis=1)
        xent = lasagne.objectives.categorical_crossentropy(
            probs, next_words.flatten())
        xent = T.minimum(xent, np.float32(-np.log(np.float32(1e-7))))
        xent = (xent * output_mask.flatten()).reshape(output_mask.shape)
        return xent, output_mask

    def caption_losses(self):
        """Each caption's cross-entropy summed over its words, (batch,):
        minus its log-probability under the model, without dropout."""
        probs = get_output(self.layers["output"], deterministic=True)
        return self._rows_xent(probs)[0].sum(axis=1)

    # ------------------------------------------------------------ training
    def training_losses(self):
        """``(reported, objective)``: the loss ``train_step`` returns and what
        Adam minimises; the same here (a regularised model adds to the
        second)."""
        loss = self.loss(deterministic=False)
        return loss, loss

    def training_gradients(self, weights):
        """``(reported loss, gradients of the objective)``, one gradient per
        variable of ``weights``, from one pass through the graph."""
        reported, objective = self.training_losses()
        return reported, theano.grad(objective, weights)

    def compile_train(self):
        """Compile (once) and return ``train_step, val_step``."""
        if self._train_fns is None:
            weights = self.params(trainable=True)
            self.learning_rate = theano.shared(
                np.float32(self.hyper["learning_rate"]), name="learning_rate")
            train_loss, gradients = self.training_gradients(weights)
            self.updates = lasagne.updates.adam(gradients, weights,
                                                learning_rate=self.learning_rate)
            inputs = [self.image_vectors, self.sentences]
            mode = self.train_mode()
            train_step = theano.function(inputs, train_loss,
                                         updates=self.updates, mode=mode,
                                         name="train_step")
            val_step = theano.function(inputs, self.loss(deterministic=True),
                                       mode=mode, name="val_step")
            self._train_fns = (train_step, val_step)
        return self._train_fns

    def optimizer_state(self):
        """Adam's shared variables (moments and step count), in a fixed order."""
        self.compile_train()
        weights = set(self.params(trainable=True))
        return [var for var in self.updates if var not in weights]

    @property
    def train_step(self):
        return self.compile_train()[0]

    @property
    def val_step(self):
        return self.compile_train()[1]

    @property
    def get_probs(self):
        """``(image_vectors, sentences) -> probabilities (batch, time, n_tokens)``."""
        if self._probs_fn is None:
            probs = get_output(self.layers["probabilities"], deterministic=True)
            self._probs_fn = theano.function(
                [self.image_vectors, self.sentences], probs, name="get_probs")
        return self._probs_fn

    # ------------------------------------------------------------ decoding
    def compile_step(self):
        """Compile (once) the one-tick decoder; returns ``init_state, step``.

        ``init_state(image_vectors) -> (cell, hid)`` is the LSTM state before
        the first word (cell from the image, hid zeros), and
        ``step(prev_words, cell, hid) -> (log_probs, cell, hid)`` feeds one
        word per row and returns the next word's log-probabilities.
        The tick is the LSTMLayer's own (stacked gates, peepholes, the same
        nonlinearities), written against the same shared weights, so it
        gives what the full graph gives at the last tick.
        """
        if self._step_fns is not None:
            return self._step_fns
        decoder = self.layers["decoder"]
        cell0 = get_output(self.layers["image_dense"], self.image_vectors,
                           deterministic=True)
        # hid_init is the layer's (1, units) parameter, repeated per image
        hid0 = T.dot(T.ones((self.image_vectors.shape[0], 1)), decoder.hid_init)
        init_state = theano.function([self.image_vectors], [cell0, hid0],
                                     name="init_state")

        prev_words = T.ivector("prev_words")
        cell_prev = T.matrix("cell")
        hid_prev = T.matrix("hid")
        embedded = self.layers["embedding"].get_output_for(prev_words)
        cell, hid = lstm_tick(decoder, embedded, cell_prev, hid_prev)
        output = self.layers["output"]
        logits = T.dot(hid, output.W) + output.b
        log_probs = T.nnet.logsoftmax(logits)
        step = theano.function([prev_words, cell_prev, hid_prev],
                               [log_probs, cell, hid], name="decode_step")
        self._step_fns = (init_state, step)
        return self._step_fns

    def prepare_codes(self, codes):
        """Standardise raw CNN codes with the training set's statistics."""
        codes = np.asarray(codes, dtype="float32")
        if codes.ndim != 2 or codes.shape[1] != self.hyper["cnn_feature_size"]:
            raise ValueError("image codes must be (n, %d), got %s"
                             % (self.hyper["cnn_feature_size"], codes.shape))
        return (codes - self.code_mean) / self.code_std

    # ------------------------------------------------------------ weights
    def get_param_values(self):
        """``{name: ndarray}`` of every weight plus the code statistics."""
        values = {name: p.get_value() for name, p in self.named_params().items()}
        values["codes.mean"] = self.code_mean
        values["codes.std"] = self.code_std
        return values

    def set_param_values(self, values, source="parameters"):
        """Load ``{name: ndarray}``; names and shapes must match exactly.

        Raises
        ------
        ModelFileError
            Naming every missing, unexpected or wrongly shaped array.
        """
        expected = self.get_param_values()
        problems = []
        missing = sorted(set(expected) - set(values))
        extra = sorted(set(values) - set(expected))
        if missing:
            problems.append("missing %s" % ", ".join(missing))
        if extra:
            problems.append("unexpected %s" % ", ".join(extra))
        for name in sorted(set(expected) & set(values)):
            if np.shape(values[name]) != expected[name].shape:
                problems.append("%s has shape %s, the model needs %s"
                                % (name, np.shape(values[name]),
                                   expected[name].shape))
        if problems:
            raise ModelFileError("%s do not fit this model (vocabulary of %d "
                                 "words, hyper-parameters %s): %s"
                                 % (source, len(self.vocab), self.hyper,
                                    "; ".join(problems)))
        for name, param in self.named_params().items():
            param.set_value(np.asarray(values[name], dtype=param.dtype))
        self.code_mean = np.asarray(values["codes.mean"], "float32")
        self.code_std = np.asarray(values["codes.std"], "float32")


def lstm_tick(decoder, x, cell_prev, hid_prev):
    """One tick of a Lasagne ``LSTMLayer`` on symbolic inputs, same weights.

    Mirrors ``LSTMLayer.get_output_for``'s step (gate order ingate,
    forgetgate, cell, outgate; optional peepholes; the layer's
    nonlinearities) for a single input ``x`` of shape (batch, inputs).
    """
    gate_names = ("ingate", "forgetgate", "cell", "outgate")
    W_in = T.concatenate([getattr(decoder, "W_in_to_" + g) for g in gate_names], axis=1)
    W_hid = T.concatenate([getattr(decoder, "W_hid_to_" + g) for g in gate_names], axis=1)
    b = T.concatenate([getattr(decoder, "b_" + g) for g in gate_names], axis=0)
    gates = T.dot(x, W_in) + b + T.dot(hid_prev, W_hid)
    n = decoder.num_units
    ingate, forgetgate, cell_input, outgate = (gates[:, i * n:(i + 1) * n]
                                               for i in range(4))
    if decoder.peepholes:
        ingate += cell_prev * decoder.W_cell_to_ingate
        forgetgate += cell_prev * decoder.W_cell_to_forgetgate
    ingate = decoder.nonlinearity_ingate(ingate)
    forgetgate = decoder.nonlinearity_forgetgate(forgetgate)
    cell_input = decoder.nonlinearity_cell(cell_input)
    cell = forgetgate * cell_prev + ingate * cell_input
    # Lasagne master adds the output gate's peephole *before* the sigmoid
    # (0.1 added it after; captioning.stack.lasagne_compat backports the fix);
    # tests/test_model.py checks this tick against the full graph.
    if decoder.peepholes:
        outgate += cell * decoder.W_cell_to_outgate
    outgate = decoder.nonlinearity_outgate(outgate)
    hid = outgate * decoder.nonlinearity(cell)
    return cell, hid
