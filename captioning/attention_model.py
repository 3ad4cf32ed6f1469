"""The attention caption model ("Show, Attend and Tell"), driven like CaptionModel.

Xu et al. 2015 (arXiv 1502.03044) with soft attention::

    regions (batch, R, D) --mean over R--Dense tanh--> h_0 ; --Dense tanh--> c_0
    words (batch, time) --Embedding--> E y_{t-1} --+
    regions -------------------------------------+--> AttentionLSTMLayer (mask)
        --> h_t, z_t (gated context), alpha_t per tick
    deep output (sec. 3.1.2, eq. 7), one row per (batch, tick):
        E y_{t-1} + L_h h_t + L_z z_t --[tanh]--Dropout--L_o, softmax--> p(y_t)

trained on the mean cross-entropy per target word plus the doubly stochastic
attention regulariser (sec. 4.2.1), ``lambda * sum_i (1 - sum_t alpha_ti)^2``
per caption over the ticks that predict a word, divided by the same word
count as the cross-entropy (so ``lambda`` weighs it as in the paper's
per-caption sums). The paper's eq. 7 is linear inside ``L_o``; the authors'
code puts a tanh there (``deep_output_nonlinearity``).

Not in the paper: ``mu`` times the entropy of alpha per target word
(``attention_entropy``, ``caption train --attention-entropy``; by default
0.05, on the words that name something: ``attention_entropy_words``). The
regulariser alone is smallest
when every word looks everywhere (with T words and R > T regions every
region's coverage can at best be T / R, so only evenness is asked for),
and the model learnt nearly uniform alpha; the entropy term asks each word
to look somewhere, and with the regulariser asking for even coverage the
words must then look at different places (README, "The bonus").

With ``attend="after"`` the LSTM is the seminar's (no context in), and the
context comes from ``h_t`` instead (Lu et al. 2017's spatial attention,
:class:`captioning.attention.HiddenAttentionLayer`) and goes to the deep
output as ``L_c c_t``; ``"both"`` keeps Xu's and adds this one.

With ``attend="top_down"`` the decoder is Anderson et al. 2018's two LSTMs
(:class:`captioning.top_down.TopDownLSTMLayer`): the first looks at the
regions with its new state, the second reads the context; the deep output
reads the second's ``h_t`` and the context.

It is a :class:`captioning.model.CaptionModel` with another graph: the same
``train_step``/``val_step``/``get_probs``/``prepare_codes``, weights by name,
``learning_rate`` and Adam state; its image input is the regions
(n, R, D) instead of one vector per image. Decoding needs the regions at
every tick, see :meth:`AttentionCaptionModel.compile_step`.
"""
import captioning.stack  # noqa: F401  (Theano flags and the Lasagne backport first)

import numpy as np
import theano
import theano.tensor as T
from lasagne import nonlinearities
from lasagne.layers import (DenseLayer, DimshuffleLayer, DropoutLayer,
                            ElemwiseSumLayer, EmbeddingLayer, GlobalPoolLayer,
                            InputLayer, LSTMLayer, NonlinearityLayer,
                            get_all_layers, get_all_params, get_output)

from broadcast import BroadcastLayer, UnbroadcastLayer
from captioning.attention import (AttentionLSTMLayer, AttentionPart,
                                  FeatureDropoutLayer, HiddenAttentionLayer,
                                  regions_gradient)
from captioning.model import CaptionModel, lstm_tick
from captioning.top_down import TopDownLSTMLayer
from captioning.stack.theano_setup import SPEEDUPS
from captioning.text import END, PAD_ix

__all__ = ["ATTENTION_HYPER", "AttentionCaptionModel"]

ATTENTION_HYPER = {
    # features per region (the 7x7x1280 map of EfficientNet-Lite0)
    "cnn_feature_size": 1280,
    "embed_size": 256,
    "lstm_units": 512,
    "attention_units": 256,
    # dropout before L_o, as in the authors' code
    "output_dropout": 0.5,
    # dropout on the region features (the seminar graph drops half of its
    # image code): without it the model overfit Flickr8k after 4 epochs
    "region_dropout": 0.5,
    # "feature": one mask per image, the same features dropped in all its
    # regions (FeatureDropoutLayer), so that the mean region is dropped as
    # the seminar drops its image code; "element": each (region, feature)
    # alone. Selection loss on Flickr8k: see README, "The bonus"
    "region_dropout_mode": "feature",
    # a Dense (linear) from the region features to this many units, shared
    # by all regions, before the decoder sees them (fewer weights from the
    # context to the LSTM's gates); 0 gives the decoder the CNN's features
    "region_units": 512,
    "grad_clipping": 5.0,
    "learning_rate": 1e-3,
    # lambda of the doubly stochastic regulariser; 0 turns it off
    "attention_penalty": 1.0,
    # mu: weight of the entropy of alpha (nats per target word) in the
    # objective, so that each word looks somewhere (not in the paper; 0 turns
    # it off: then lambda's even coverage leaves the maps flat). Over all
    # words, 0.1 makes the maps move and 0.05 does not; weighed only in the
    # first epochs, or only after them, it leaves them flat
    # (README, "Attention that moves")
    "attention_entropy": 0.05,
    # which words the entropy term asks to look somewhere: "all", or
    # "content": only the ticks whose next word is not in FUNCTION_WORDS
    # (nor #END#), so that "a", "is", "the" may keep a flat look. 0.05 on
    # content words moves the maps and matched mu = 0 on the selection
    # photos (README, "The entropy term on content words only")
    "attention_entropy_words": "content",
    "deep_output_nonlinearity": "linear",   # or "tanh"
    # when the decoder looks at the regions: "before" each tick, with
    # h_{t-1}, feeding the context into the LSTM (Xu et al.); "after" it,
    # with h_t, the context going to the deep output only (Lu et al. 2017's
    # spatial attention: HiddenAttentionLayer); "both"; "top_down": two
    # LSTMs, the first looking with its new state, the second reading the
    # context (Anderson et al. 2018: captioning.top_down)
    "attend": "before",
    # False keeps the embedding at its initial value (e.g. word vectors)
    "train_embedding": True,
}

ATTEND = ("before", "after", "both", "top_down")

ENTROPY_WORDS = ("all", "content")

# The closed-class words of the captions (articles, prepositions, pronouns,
# auxiliaries) that name nothing in the photo; with #END#, 47 % of
# Flickr8k's target words. The entropy term leaves them free with
# attention_entropy_words "content".
FUNCTION_WORDS = frozenset("""
    a an the is are in on of with and at to while his her their its by for
    from into through near up down out over under another other some it he
    she they there as be being has have that this who which 's""".split())

def content_word_flags(vocab):
    """(n_words,) float32: 1 for the words whose ticks the entropy term
    weighs with attention_entropy_words "content", 0 for FUNCTION_WORDS and
    #END#."""
    return np.array([w not in FUNCTION_WORDS and w != END for w in vocab.words],
                    np.float32)


DEEP_OUTPUT_NONLINEARITIES = {"linear": None, "tanh": nonlinearities.tanh}


def check_choice(hyper, key, choices):
    """ValueError unless ``hyper[key]`` is one of ``choices``."""
    if hyper[key] not in choices:
        raise ValueError("%s must be one of %s, got %r"
                         % (key, ", ".join(map(repr, choices)), hyper[key]))


class AttentionCaptionModel(CaptionModel):
    """Soft attention over image regions with a deep output layer.

    Parameters
    ----------
    vocab : Vocabulary
    seed : int, optional
        Seeds the initial weights and the dropout masks.
    embedding : ndarray (len(vocab), embed_size), optional
        Initial word embedding (e.g. pretrained word vectors, one row per
        vocabulary word); default Lasagne's Normal(0.01).
        ``train_embedding=False`` keeps it fixed.
    **hyper
        Overrides of :data:`ATTENTION_HYPER`.

    Attributes
    ----------
    layers : dict
        As CaptionModel's, by name: ``words, mask, embedding, regions,
        mean_region, hid_init, cell_init, decoder, hid, context, attention,
        broadcast, out_hid, context_rows, out_context, word_rows,
        deep_output, [deep_output_tanh], [output_dropout], output,
        probabilities``.
    regions : TensorVariable (batch, n_regions, cnn_feature_size)
        The image input (also ``image_vectors``, the name CaptionModel's
        functions use).
    code_mean, code_std : ndarray (cnn_feature_size,)
        Per-feature standardisation of the regions (:meth:`prepare_codes`).
    """

    default_hyper = ATTENTION_HYPER
    # the regions' gradient through the context summed after the scan
    # (training_gradients); CAPTION_SPEEDUPS=0: inside it, Theano's way
    probe_context_gradient = SPEEDUPS
    # what model directories saved before these keys existed were trained with
    hyper_before_added = {"region_units": 0, "region_dropout_mode": "element",
                          "attend": "before", "attention_entropy": 0.0,
                          "attention_entropy_words": "all"}

    # ------------------------------------------------------------ the graph
    def _build_graph(self):
        h = self.hyper
        n_tokens, E = len(self.vocab), h["embed_size"]
        H, D = h["lstm_units"], h["cnn_feature_size"]
        check_choice(h, "deep_output_nonlinearity",
                     sorted(DEEP_OUTPUT_NONLINEARITIES))
        W_embedding = self._initial_embedding(n_tokens)
        self.sentences = T.imatrix("sentences")
        self.regions = self.image_vectors = T.tensor3("regions")
        self.sentence_mask = T.neq(self.sentences, PAD_ix)
        self.word_ids = T.maximum(self.sentences, 0)  # PAD -> 0, masked

        l_words = InputLayer((None, None), self.word_ids, name="words")
        l_mask = InputLayer((None, None), self.sentence_mask, name="mask")
        l_embedding = EmbeddingLayer(l_words, n_tokens, E, W=W_embedding,
                                     name="embedding")
        if not h["train_embedding"]:
            l_embedding.params[l_embedding.W].discard("trainable")
        l_regions = InputLayer((None, None, D), self.regions, name="regions")
        check_choice(h, "region_dropout_mode", ("element", "feature"))
        if h["region_dropout"]:
            dropout = (FeatureDropoutLayer if h["region_dropout_mode"] == "feature"
                       else DropoutLayer)
            l_regions = dropout(l_regions, p=h["region_dropout"],
                                name="region_dropout")
        if h["region_units"]:
            # one row per (image, region), the seminar's way to apply a Dense
            l_rows = BroadcastLayer(l_regions, (0, 1), name="region_rows")
            l_regions = UnbroadcastLayer(
                DenseLayer(l_rows, h["region_units"], nonlinearity=None,
                           name="region_dense"),
                broadcast_layer=l_rows, name="decoder_regions")
        # GlobalPoolLayer means over the trailing axis: put the regions last
        l_mean = GlobalPoolLayer(DimshuffleLayer(l_regions, (0, 2, 1)),
                                 name="mean_region")
        check_choice(h, "attention_entropy_words", ENTROPY_WORDS)
        check_choice(h, "attend", ATTEND)
        top_down = h["attend"] == "top_down"
        before = h["attend"] in ("before", "both")
        after = h["attend"] in ("after", "both")
        # the top-down decoder's state is both LSTMs' side by side
        state_units = 2 * H if top_down else H
        l_hid0 = DenseLayer(l_mean, state_units,
                            nonlinearity=nonlinearities.tanh, name="hid_init")
        l_cell0 = DenseLayer(l_mean, state_units,
                             nonlinearity=nonlinearities.tanh, name="cell_init")
        if top_down:
            decoder = TopDownLSTMLayer(
                l_embedding, l_regions, H, attention_units=h["attention_units"],
                mask_input=l_mask, hid_init=l_hid0, cell_init=l_cell0,
                grad_clipping=h["grad_clipping"], name="decoder")
            l_hid = AttentionPart(decoder, "hid", name="hid")
            parts = [(AttentionPart(decoder, "context", name="context"),
                      "context_rows", "out_context")]
            l_attention = AttentionPart(decoder, "attention", name="attention")
        elif before:
            decoder = AttentionLSTMLayer(
                l_embedding, l_regions, H, attention_units=h["attention_units"],
                mask_input=l_mask, hid_init=l_hid0, cell_init=l_cell0,
                peepholes=False, grad_clipping=h["grad_clipping"],
                name="decoder")
            l_hid = AttentionPart(decoder, "hid", name="hid")
            parts = [(AttentionPart(decoder, "context", name="context"),
                      "context_rows", "out_context")]
            l_attention = AttentionPart(decoder, "attention", name="attention")
        else:  # the seminar's LSTMLayer, started from the mean region
            l_hid = decoder = LSTMLayer(
                l_embedding, H, mask_input=l_mask, hid_init=l_hid0,
                cell_init=l_cell0, peepholes=False,
                grad_clipping=h["grad_clipping"], name="decoder")
            parts = []
        if after:
            looker = HiddenAttentionLayer(l_hid, l_regions, h["attention_units"],
                                          name="look_after")
            parts.append((AttentionPart(looker, "context",
                                        name="context_after"),
                          "context_after_rows", "out_context_after"))
            # "attention" is what the regulariser and the maps see: Xu's if
            # there is one
            l_attention_after = AttentionPart(
                looker, "attention",
                name="attention_after" if before else "attention")
            if not before:
                l_attention = l_attention_after
        # the regions the decoder sees (after region_dense, if any)
        self._seen_regions = l_regions

        # the deep output, on one row per (batch, tick)
        l_broadcast = BroadcastLayer(l_hid, (0, 1), name="broadcast")
        l_out_hid = DenseLayer(l_broadcast, E, nonlinearity=None,
                               name="out_hid")
        # no bias: out_hid's already shifts the sum
        l_deep = ElemwiseSumLayer(
            [BroadcastLayer(l_embedding, (0, 1), name="word_rows"), l_out_hid]
            + [DenseLayer(BroadcastLayer(part, (0, 1), name=rows), E, b=None,
                          nonlinearity=None, name=name)
               for part, rows, name in parts], name="deep_output")
        nonlinearity = DEEP_OUTPUT_NONLINEARITIES[h["deep_output_nonlinearity"]]
        if nonlinearity is not None:
            l_deep = NonlinearityLayer(l_deep, nonlinearity,
                                       name="deep_output_tanh")
        if h["output_dropout"]:
            l_deep = DropoutLayer(l_deep, p=h["output_dropout"],
                                  name="output_dropout")
        l_output = DenseLayer(l_deep, n_tokens,
                              nonlinearity=nonlinearities.softmax,
                              name="output")
        l_probs = UnbroadcastLayer(l_output, broadcast_layer=l_broadcast,
                                   name="probabilities")
        shown = [l_probs, l_attention] + ([l_attention_after] if after else [])
        self.layers = {l.name: l for l in get_all_layers(shown) if l.name}

    # ------------------------------------------------------------ losses
    def _losses(self, deterministic):
        """``(cross-entropy, attention penalty, attention entropy)``, each
        per target word, from one pass through the graph (one dropout
        draw); the entropy is 0 unless ``attention_entropy`` is set."""
        return self._graph_losses(deterministic)[:3]

    def _graph_losses(self, deterministic, context_probe=None):
        """``_losses`` and the attention (batch, time, regions) and regions
        the decoder saw, of the same pass."""
        probs, alpha, seen = get_output(
            [self.layers["output"], self.layers["attention"],
             self._seen_regions],
            deterministic=deterministic, context_probe=context_probe)
        loss, output_mask = self._rows_loss(probs)
        # each region's attention summed over the ticks that predict a word
        coverage = (alpha * output_mask.dimshuffle(0, 1, "x")).sum(axis=1)
        penalty = T.sqr(1 - coverage).sum() / output_mask.sum()
        entropy = T.constant(np.float32(0))
        if self.hyper["attention_entropy"]:
            weighed = output_mask * self._entropy_word_flags()
            # alpha can underflow to 0, whose term is 0 (not 0 * -inf)
            log_alpha = T.log(T.maximum(alpha, np.float32(1e-30)))
            entropy = (-(alpha * log_alpha).sum(axis=2) * weighed).sum() \
                / T.maximum(weighed.sum(), np.float32(1))
        return loss, penalty, entropy, alpha, seen

    def _entropy_word_flags(self):
        """(batch, time) in floatX: 1 where the entropy term weighs the tick
        (its next word is one the term is for), else 0."""
        if self.hyper["attention_entropy_words"] == "all":
            return np.float32(1)
        flags = content_word_flags(self.vocab).astype(theano.config.floatX)
        return T.constant(flags)[self._next_word_ids()]

    def loss(self, deterministic):
        """Mean cross-entropy of the next word over the non-PAD targets."""
        return self._losses(deterministic)[0]

    def training_losses(self):
        """The cross-entropy (reported) and it plus lambda * the penalty
        plus mu * the entropy (minimised)."""
        losses = self._losses(deterministic=False)
        return losses[0], self._objective(*losses)

    def _objective(self, loss, penalty, entropy):
        h = self.hyper
        objective = loss + np.float32(h["attention_penalty"]) * penalty
        if h["attention_entropy"]:
            objective += np.float32(h["attention_entropy"]) * entropy
        return objective

    def training_gradients(self, weights):
        """``(reported loss, gradients of the objective)`` (CaptionModel's).

        Speed, same maths: when weights lie below the decoder (the
        ``region_dense``), the regions' gradient through each tick's
        attended context is taken out of the scan with a context probe and
        summed over the ticks by one batched product
        (:func:`captioning.attention.regions_gradient`); inside the backward
        scan it was a (batch, regions, region_units) sum at every tick.
        """
        decoder = self.layers["decoder"]
        # the weights between the regions input and the decoder's regions
        below = set(get_all_params(self._seen_regions, trainable=True))
        if not (self.probe_context_gradient and below.intersection(weights)
                and self.hyper["attend"] != "after"):
            return super().training_gradients(weights)
        probe = T.zeros((self.sentences.shape[1], self.sentences.shape[0],
                         decoder.region_size))
        loss, penalty, entropy, alpha, seen = self._graph_losses(False, probe)
        objective = self._objective(loss, penalty, entropy)
        decoder_side = [w for w in weights if w not in below]
        region_side = [w for w in weights if w in below]
        grads = theano.grad(objective, decoder_side + [probe, seen])
        # seen's gradient from the mean region and a W_att, plus the context's
        grad_seen = grads[-1] + regions_gradient(alpha, grads[-2])
        by_weight = dict(zip(decoder_side, grads[:-2]))
        by_weight.update(zip(region_side, theano.grad(
            None, region_side, known_grads={seen: grad_seen})))
        return loss, [by_weight[w] for w in weights]

    # ------------------------------------------------------------ decoding
    def compile_step(self):
        """Compile (once) the one-tick decoder; returns ``init_state, step``.

        ``init_state(regions) -> (cell, hid, decoder_regions, projected)``:
        the state before the first word, the regions as the decoder sees
        them (after ``region_dense``, if any) and their attention
        projection, computed once per image. ``step(prev_words, cell, hid,
        decoder_regions, projected) -> (log_probs, cell, hid, alpha)``: one
        word per row in, the next word's log-probabilities, the new state
        and where the tick looked (alpha, (rows, n_regions)). Row r of
        ``decoder_regions``/``projected`` must be the image of row r of the
        state: for beam search repeat them once per beam (a beam never
        changes image, so they are never reordered).
        """
        if self._step_fns is not None:
            return self._step_fns
        decoder = self.layers["decoder"]
        top_down = self.hyper["attend"] == "top_down"
        # Xu's layer and the top-down one share step()'s signature
        before = self.hyper["attend"] != "after"
        after = self.layers.get("look_after")
        lookers = ([decoder] if before else []) + ([after] if after else [])
        cell0, hid0, seen = get_output(
            [self.layers["cell_init"], self.layers["hid_init"],
             self._seen_regions], deterministic=True)
        # with both attentions, their projections side by side
        projected = T.concatenate([l.project_regions(seen) for l in lookers], 2)
        init_state = theano.function(
            [self.regions], [cell0, hid0, seen, projected], name="init_state")

        prev_words = T.ivector("prev_words")
        cell_prev, hid_prev = T.matrix("cell"), T.matrix("hid")
        seen, projected = T.tensor3("decoder_regions"), T.tensor3("projected")
        embedded = self.layers["embedding"].get_output_for(prev_words)
        split = decoder.attention_units if before else 0
        if before:
            cell, hid, alpha, context = decoder.step(
                embedded, cell_prev, hid_prev, seen, projected[:, :, :split])
        else:
            cell, hid = lstm_tick(decoder, embedded, cell_prev, hid_prev)
        out_hid = decoder.language_hid(hid) if top_down else hid
        deep = embedded + self.layers["out_hid"].get_output_for(out_hid)
        if before:
            deep += self.layers["out_context"].get_output_for(context)
        if after:
            context_after, alpha_after = after.step(hid, seen,
                                                    projected[:, :, split:])
            deep += self.layers["out_context_after"].get_output_for(
                context_after)
            if not before:
                alpha = alpha_after
        if "deep_output_tanh" in self.layers:
            deep = self.layers["deep_output_tanh"].get_output_for(deep)
        output = self.layers["output"]
        log_probs = T.nnet.logsoftmax(T.dot(deep, output.W) + output.b)
        step = theano.function(
            [prev_words, cell_prev, hid_prev, seen, projected],
            [log_probs, cell, hid, alpha], name="decode_step")
        self._step_fns = (init_state, step)
        return self._step_fns

    def prepare_codes(self, codes):
        """Standardise region features (n, n_regions, cnn_feature_size),
        float16 or float32, per feature; float32 out."""
        codes = np.asarray(codes)
        D = self.hyper["cnn_feature_size"]
        if codes.ndim != 3 or codes.shape[2] != D:
            raise ValueError("region features must be (n, regions, %d), got %s"
                             % (D, codes.shape))
        # statistics over images *and* regions: a (regions, D) mean would
        # broadcast silently and standardise each region on its own
        for name in ("code_mean", "code_std"):
            if np.shape(getattr(self, name)) != (D,):
                raise ValueError("%s must be (%d,) (one value per feature, "
                                 "over all images and regions), not %s"
                                 % (name, D, np.shape(getattr(self, name))))
        return ((codes.astype("float32") - self.code_mean)
                / self.code_std).astype("float32")
