"""AttentionLSTMLayer and AttentionCaptionModel against a plain numpy
implementation of Xu et al. 2015 (soft attention, gating scalar beta, deep
output, doubly stochastic regulariser) written here.

The layer's graphs are built in float64 (``theano.change_flags(floatX=
"float64")``) and compiled with the pure-Python linker (scan's inner step is compiled
by Theano's default mode), so the forward pass matches numpy to a relative
1e-10 and the gradients match central differences (step 1e-6) of the numpy
reference to a relative 1e-6. The model is built in the project's float32
and compared with float32 tolerances (relative 1e-5); its decoder is
compiled in Theano's default mode, as ``caption`` compiles it.
"""
import captioning.stack  # noqa: F401  (before theano/lasagne)

import numpy as np
import pytest
import scipy.stats
import theano
import theano.tensor as T
import lasagne
from lasagne.init import Normal
from lasagne.layers import (DenseLayer, DimshuffleLayer, Gate, GlobalPoolLayer,
                            InputLayer, get_all_params, get_output)

from captioning.attention import (AttentionLSTMLayer, AttentionPart,
                                  HiddenAttentionLayer)
from captioning import attention_model
from captioning.attention_model import AttentionCaptionModel
from captioning.model import END, START, Vocabulary

PY = theano.compile.Mode(linker="py", optimizer="fast_compile")
B, TIME, E, H, R, D, A = 3, 4, 3, 5, 4, 6, 3  # batch, ticks, input, units,
GATES = ("ingate", "forgetgate", "cell", "outgate")  # regions, features, MLP


# ------------------------------------------------------------ numpy reference
def sigmoid(v):
    return 1 / (1 + np.exp(-v))


def softmax(v):
    e = np.exp(v - v.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def numpy_attention_lstm(p, x, regions, mask, h0, c0, peepholes):
    """Xu et al.'s soft-attention LSTM, tick by tick.

    ``p``: the layer's weights by name. Returns h, z (the gated context) and
    alpha per tick, (batch, time, ...); a tick with mask 0 keeps (c, h).
    """
    h, c = h0, c0
    hs, zs, alphas = [], [], []
    for t in range(x.shape[1]):
        e = np.tanh(regions @ p["W_att"] + p["b_att"]
                    + (h @ p["W_hid_att"])[:, None, :]) @ p["w_att"]
        alpha = softmax(e)
        beta = sigmoid(h @ p["w_beta"] + p["b_beta"])
        z = beta[:, None] * np.einsum("br,brd->bd", alpha, regions)

        def pre(g):
            return (x[:, t] @ p["W_in_to_" + g] + h @ p["W_hid_to_" + g]
                    + z @ p["W_ctx_to_" + g] + p["b_" + g])
        peep = {g: (p["W_cell_to_" + g] if peepholes else 0)
                for g in ("ingate", "forgetgate", "outgate")}
        i = sigmoid(pre("ingate") + c * peep["ingate"])
        f = sigmoid(pre("forgetgate") + c * peep["forgetgate"])
        c_new = f * c + i * np.tanh(pre("cell"))
        o = sigmoid(pre("outgate") + c_new * peep["outgate"])
        h_new = o * np.tanh(c_new)
        m = mask[:, t, None]
        c, h = m * c_new + (1 - m) * c, m * h_new + (1 - m) * h
        hs.append(h)
        zs.append(z)
        alphas.append(alpha)
    return [np.stack(v, axis=1) for v in (hs, zs, alphas)]


def numpy_hidden_attention(p, h, regions):
    """Lu et al.'s attention from each tick's new hidden state: context
    and alpha per tick, (batch, time, ...), one tick at a time."""
    contexts, alphas = [], []
    for t in range(h.shape[1]):
        e = np.tanh(regions @ p["W_att"] + p["b_att"]
                    + (h[:, t] @ p["W_hid_att"])[:, None, :]) @ p["w_att"]
        alpha = softmax(e)
        contexts.append(np.einsum("br,brd->bd", alpha, regions))
        alphas.append(alpha)
    return np.stack(contexts, axis=1), np.stack(alphas, axis=1)


def numpy_top_down(p, x, regions, mask, h0, c0):
    """Anderson et al.'s two LSTMs, tick by tick: the attention LSTM reads
    [word, mean region, h2_{t-1}] and looks with its new h1; the language
    LSTM reads [context, h1]. ``h0``/``c0`` are [h1, h2] / [c1, c2].
    Returns h2, the context v and alpha per tick; mask 0 keeps the state."""
    H = p["W_hid_to_ingate"].shape[0]
    h1, h2, c1, c2 = h0[:, :H], h0[:, H:], c0[:, :H], c0[:, H:]
    mean = regions.mean(axis=1)
    h2s, vs, alphas = [], [], []

    def lstm(pre, c):
        c_new = sigmoid(pre("forgetgate")) * c + \
            sigmoid(pre("ingate")) * np.tanh(pre("cell"))
        return c_new, sigmoid(pre("outgate")) * np.tanh(c_new)

    for t in range(x.shape[1]):
        c1_new, h1_new = lstm(lambda g: x[:, t] @ p["W_in_to_" + g]
                              + mean @ p["W_mean_to_" + g]
                              + h2 @ p["W_lang_to_" + g]
                              + h1 @ p["W_hid_to_" + g] + p["b_" + g], c1)
        e = np.tanh(regions @ p["W_att"] + p["b_att"]
                    + (h1_new @ p["W_hid_att"])[:, None, :]) @ p["w_att"]
        alpha = softmax(e)
        v = np.einsum("br,brd->bd", alpha, regions)
        c2_new, h2_new = lstm(lambda g: v @ p["W_ctx_to_lang_" + g]
                              + h1_new @ p["W_att_to_lang_" + g]
                              + h2 @ p["W_hid_to_lang_" + g]
                              + p["b_lang_" + g], c2)
        m = mask[:, t, None]
        c1, h1 = m * c1_new + (1 - m) * c1, m * h1_new + (1 - m) * h1
        c2, h2 = m * c2_new + (1 - m) * c2, m * h2_new + (1 - m) * h2
        h2s.append(h2)
        vs.append(v)
        alphas.append(alpha)
    return tuple(np.stack(v, axis=1) for v in (h2s, vs, alphas))


def mean_init(W, b, regions):
    """The paper's initial state: tanh Dense of the mean region."""
    return np.tanh(regions.mean(axis=1) @ W + b)


def values(layer):
    """``{name: float64 array}`` of a layer's weights (name unprefixed)."""
    return {q.name.split(".")[-1]: np.asarray(q.get_value(), np.float64)
            for q in layer.get_params()}


# ------------------------------------------------------------ the layer
def build_layer(peepholes=True, masked=True, grad_clipping=0):
    """A float64 layer whose h0/c0 come from the mean region, as in the
    paper, with weights large enough that every term matters."""
    with theano.change_flags(floatX="float64"):
        lasagne.random.set_rng(np.random.RandomState(42))
        l_x = InputLayer((None, None, E))
        l_regions = InputLayer((None, R, D))
        l_mask = InputLayer((None, None)) if masked else None
        l_mean = GlobalPoolLayer(DimshuffleLayer(l_regions, (0, 2, 1)))
        inits = {name: DenseLayer(l_mean, H, W=Normal(0.5), b=Normal(0.5),
                                  nonlinearity=lasagne.nonlinearities.tanh)
                 for name in ("hid_init", "cell_init")}
        gate = dict(W_in=Normal(0.6), W_hid=Normal(0.6), W_cell=Normal(1.0),
                    b=Normal(0.5))
        layer = AttentionLSTMLayer(
            l_x, l_regions, H, attention_units=A,
            ingate=Gate(**gate), forgetgate=Gate(**gate), outgate=Gate(**gate),
            cell=Gate(W_cell=None, nonlinearity=lasagne.nonlinearities.tanh,
                      **{k: v for k, v in gate.items() if k != "W_cell"}),
            W_att=Normal(0.7), W_hid_att=Normal(0.7), b_att=Normal(0.5),
            w_att=Normal(1.0), w_beta=Normal(0.7), b_beta=Normal(0.5),
            peepholes=peepholes, grad_clipping=grad_clipping,
            mask_input=l_mask, **inits)
    inputs = [l_x.input_var, l_regions.input_var] + \
        ([l_mask.input_var] if masked else [])
    return layer, inputs, inits


def data(seed=0):
    rng = np.random.RandomState(seed)
    x = rng.randn(B, TIME, E)
    regions = rng.randn(B, R, D)
    mask = np.ones((B, TIME))
    mask[0, TIME - 1:] = 0   # one tick shorter
    mask[1, 1] = 0           # a hole: the state is carried over
    mask[2, 0] = 0           # padded first tick: keeps h0, c0
    return x, regions, mask


def all_values(layer, inits):
    """The layer's weights and its init layers' (``hid_init.W``, ...)."""
    p = values(layer)
    for name, init_layer in inits.items():
        p.update({name + "." + k: v for k, v in values(init_layer).items()})
    return p


def reference(p, x, regions, mask, peepholes=True):
    """numpy forward with the weights ``p`` (:func:`all_values`)."""
    h0 = mean_init(p["hid_init.W"], p["hid_init.b"], regions)
    c0 = mean_init(p["cell_init.W"], p["cell_init.b"], regions)
    return numpy_attention_lstm(p, x, regions, mask, h0, c0, peepholes)


def test_shapes_and_parts():
    layer, _, _ = build_layer()
    assert layer.output_shape == (None, None, H + D + R)
    assert AttentionPart(layer, "hid").output_shape == (None, None, H)
    assert AttentionPart(layer, "context").output_shape == (None, None, D)
    assert AttentionPart(layer, "attention").output_shape == (None, None, R)
    l_any = AttentionLSTMLayer(InputLayer((None, None, E)),
                               InputLayer((None, None, D)), H)
    assert AttentionPart(l_any, "attention").output_shape == (None, None, None)
    with pytest.raises(ValueError):
        AttentionPart(layer, "beta")
    with pytest.raises(ValueError):  # region features must be known
        AttentionLSTMLayer(InputLayer((None, None, E)),
                           InputLayer((None, R, None)), H)


@pytest.mark.parametrize("peepholes, masked", [(True, True), (False, True),
                                               (True, False)])
def test_forward_matches_numpy(peepholes, masked):
    layer, inputs, inits = build_layer(peepholes, masked)
    x, regions, mask = data()
    if not masked:
        mask = np.ones_like(mask)
    parts = [AttentionPart(layer, p) for p in ("hid", "context", "attention")]
    f = theano.function(inputs, get_output(parts), mode=PY)
    got = f(x, regions, mask) if masked else f(x, regions)
    expected = reference(all_values(layer, inits), x, regions, mask, peepholes)
    for name, g, e in zip(("h", "z", "alpha"), got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12, err_msg=name)


def test_attention_weights_are_a_distribution_and_padding_keeps_state():
    layer, inputs, inits = build_layer()
    x, regions, mask = data(seed=1)
    hid, alpha = theano.function(
        inputs, get_output([AttentionPart(layer, "hid"),
                            AttentionPart(layer, "attention")]),
        mode=PY)(x, regions, mask)
    assert np.all(alpha >= 0)
    np.testing.assert_allclose(alpha.sum(axis=2), 1, rtol=1e-12)
    assert alpha.std(axis=2).min() > 1e-3  # not uniform: the MLP matters
    # padded ticks repeat the previous hidden state; a padded first tick
    # gives h0 = tanh(mean region W + b)
    np.testing.assert_array_equal(hid[0, TIME - 1], hid[0, TIME - 2])
    np.testing.assert_array_equal(hid[1, 1], hid[1, 0])
    h0 = mean_init(inits["hid_init"].W.get_value(),
                   inits["hid_init"].b.get_value(), regions)
    np.testing.assert_allclose(hid[2, 0], h0[2], rtol=1e-12)
    assert not np.allclose(hid[2, 1], hid[2, 0])


def numeric_grad(fun, value, eps=1e-6):
    grad = np.zeros_like(value)
    for idx in np.ndindex(value.shape):
        step = np.zeros_like(value)
        step[idx] = eps
        grad[idx] = (fun(value + step) - fun(value - step)) / (2 * eps)
    return grad


def test_gradients_match_central_differences():
    # d(sum of random weights * [h, z, alpha]) w.r.t. every parameter (the
    # LSTM's, the attention's, beta's, the mean-region init Dense layers')
    # and both inputs, against central differences of the numpy reference.
    layer, inputs, inits = build_layer()
    x, regions, mask = data(seed=2)
    out = get_output(layer)
    rng = np.random.RandomState(3)
    weights = rng.randn(B, TIME, H + D + R)
    loss = (out * weights).sum()
    params = get_all_params(layer)
    assert len(params) == 4 + 4 * 4 + 3 + 6  # inits, gates, peepholes, attn
    f = theano.function(inputs, theano.grad(loss, params + inputs[:2]),
                        mode=PY)
    grads = f(x, regions, mask)

    p = all_values(layer, inits)

    def numpy_loss(**replaced):
        xx, rr = replaced.pop("x", x), replaced.pop("regions", regions)
        return (np.concatenate(reference(dict(p, **replaced), xx, rr, mask),
                               axis=2) * weights).sum()

    names = [("hid_init." if q in inits["hid_init"].get_params() else
              "cell_init." if q in inits["cell_init"].get_params() else "")
             + q.name.split(".")[-1] for q in params]
    checked = list(zip(names, params, grads))
    checked += [("x", None, grads[-2]), ("regions", None, grads[-1])]
    for name, param, grad in checked:
        value = {"x": x, "regions": regions}[name] if param is None \
            else param.get_value()
        expected = numeric_grad(lambda v: numpy_loss(**{name: v}),
                                np.asarray(value, np.float64))
        assert np.abs(expected).max() > 1e-3, name  # every weight matters
        np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=1e-7,
                                   err_msg=name)


def test_one_tick_step_equals_the_full_graph():
    layer, inputs, inits = build_layer(masked=False)
    x, regions, _ = data(seed=4)
    parts = get_output([AttentionPart(layer, p)
                        for p in ("hid", "context", "attention")])
    full = theano.function(inputs, parts, mode=PY)(x, regions)
    with theano.change_flags(floatX="float64"):
        x_t, c, h = T.matrix(), T.matrix(), T.matrix()
        r, proj = T.tensor3(), T.tensor3()
    tick = theano.function([x_t, c, h, r, proj],
                           layer.step(x_t, c, h, r, proj), mode=PY)
    start = theano.function(
        [inputs[1]], get_output([inits["cell_init"], inits["hid_init"]])
        + [layer.project_regions(inputs[1])], mode=PY)
    c, h, projected = start(regions)
    for t in range(TIME):
        c, h, alpha, z = tick(x[:, t], c, h, regions, projected)
        for name, got, expected in (("h", h, full[0]), ("z", z, full[1]),
                                    ("alpha", alpha, full[2])):
            np.testing.assert_allclose(got, expected[:, t], rtol=1e-12,
                                       atol=1e-14,
                                       err_msg="%s at tick %d" % (name, t))


def clipped(grad_clipping):
    layer, inputs, inits = build_layer(grad_clipping=grad_clipping)
    x, regions, mask = data(seed=5)
    out = get_output(layer)
    f = theano.function(inputs, [out, theano.grad(100 * out.sum(), inputs[0])],
                        mode=PY)
    return layer, f(x, regions, mask)


def test_grad_clipping_bounds_the_gate_messages():
    clip = 1e-4
    layer, (out, grad) = clipped(clip)
    _, (out_free, grad_free) = clipped(0)
    np.testing.assert_array_equal(out, out_free)  # the forward pass is kept
    # The words enter only through x W_in, whose product feeds the gate
    # pre-activations; each gets a message in [-clip, clip], so
    # |dL/dx[b, t, k]| <= clip * sum_j |W_in[k, j]| (the 4 gates stacked).
    W_in = np.concatenate([getattr(layer, "W_in_to_" + g).get_value()
                           for g in GATES], axis=1)
    bound = clip * np.abs(W_in).sum(axis=1) * (1 + 1e-9)
    assert np.all(np.abs(grad) <= bound)
    assert np.any(np.abs(grad_free) > 10 * bound)  # the bound bites
    assert np.abs(grad).max() > 0                  # clipped, not zeroed


# ------------------------------------------------------------ the model
def test_hidden_attention_layer_matches_numpy_and_its_step():
    # Lu et al.'s attention from h_t: all ticks at once against numpy's
    # tick-by-tick loop; weights a distribution; step() = the full graph.
    with theano.change_flags(floatX="float64"):
        l_h = InputLayer((None, None, H))
        l_regions = InputLayer((None, R, D))
        layer = HiddenAttentionLayer(l_h, l_regions, A, W_att=Normal(0.7),
                                     W_hid_att=Normal(0.7), b_att=Normal(0.5),
                                     w_att=Normal(1.0))
        assert layer.output_shape == (None, None, D + R)
        assert AttentionPart(layer, "attention").output_shape == (None, None, R)
        rng = np.random.RandomState(3)
        h, regions = rng.randn(B, TIME, H), rng.randn(B, R, D)
        out = theano.function([l_h.input_var, l_regions.input_var],
                              get_output(layer), mode=PY)(h, regions)
        context, alpha = numpy_hidden_attention(values(layer), h, regions)
        np.testing.assert_allclose(out[:, :, :D], context, rtol=1e-10)
        np.testing.assert_allclose(out[:, :, D:], alpha, rtol=1e-10)
        np.testing.assert_allclose(alpha.sum(axis=2), 1, rtol=1e-12)
        assert alpha.std(axis=2).mean() > 0.1   # far from uniform (0.25 each)
        hid, a = T.matrix(), T.tensor3()
        step = theano.function([hid, a], layer.step(hid, a, layer.project_regions(a)),
                               mode=PY)
        for t in range(TIME):
            c_t, alpha_t = step(h[:, t], regions)
            np.testing.assert_allclose(c_t, context[:, t], rtol=1e-10)
            np.testing.assert_allclose(alpha_t, alpha[:, t], rtol=1e-10)


WORDS = ["#UNK#", "#START#", "#END#"] + ["w%d" % i for i in range(8)]
MD, MR = 7, 5  # region features and regions of the model's tests


def tiny_model(seed=0, **hyper):
    hyper = dict(dict(embed_size=4, lstm_units=6, attention_units=3,
                      cnn_feature_size=MD, region_units=5), **hyper)
    model = AttentionCaptionModel(Vocabulary(WORDS), seed=seed, **hyper)
    rng = np.random.RandomState(seed + 100)
    # larger weights than the initialisers give: far-from-uniform outputs
    for param in model.params():
        value = param.get_value()
        param.set_value(np.asarray(rng.randn(*value.shape) * 0.7,
                                   value.dtype))
    return model


def sentences(model, *captions):
    return model.vocab.as_matrix([[START] + c.split() + [END]
                                  for c in captions])


def batch(model, seed=0):
    regions = np.random.RandomState(seed).randn(3, MR, MD).astype("float32")
    matrix = sentences(model, "w0 w1 w2 w3", "w4", "w5 w6 w7")  # padded
    return regions, matrix


def numpy_model(model, regions, matrix):
    """Xu et al.'s model in numpy: (cross-entropy per target word, the
    attention penalty per target word, the entropy of alpha per target word,
    probabilities (batch, time, V))."""
    p = {k: np.asarray(v, np.float64) for k, v in
         model.get_param_values().items()}
    layer = {k.split(".", 1)[1]: v for k, v in p.items()
             if k.startswith("decoder.")}
    words = np.maximum(matrix, 0)
    mask = (matrix != -1).astype(np.float64)
    x = p["embedding.W"][words]
    a = regions.astype(np.float64)
    if "region_dense.W" in p:   # the decoder sees the regions through it
        a = a @ p["region_dense.W"] + p["region_dense.b"]
    attend = model.hyper["attend"]
    if attend == "after":  # a plain LSTM: the attention LSTM, context-blind
        units = p["out_hid.W"].shape[0]
        layer.update({"W_ctx_to_" + g: np.zeros((a.shape[2], units))
                      for g in GATES})
        layer.update(W_att=np.zeros((a.shape[2], 1)), b_att=np.zeros(1),
                     W_hid_att=np.zeros((units, 1)), w_att=np.zeros(1),
                     w_beta=np.zeros(units), b_beta=0.0)
    h0 = mean_init(p["hid_init.W"], p["hid_init.b"], a)
    c0 = mean_init(p["cell_init.W"], p["cell_init.b"], a)
    if attend == "top_down":
        h, z, alpha = numpy_top_down(layer, x, a, mask, h0, c0)
    else:
        h, z, alpha = numpy_attention_lstm(layer, x, a, mask, h0, c0,
                                           peepholes=False)
    deep = x + h @ p["out_hid.W"] + p["out_hid.b"]
    if attend != "after":
        deep = deep + z @ p["out_context.W"]
    if attend in ("after", "both"):
        looker = {k.split(".", 1)[1]: v for k, v in p.items()
                  if k.startswith("look_after.")}
        context, alpha_after = numpy_hidden_attention(looker, h, a)
        deep = deep + context @ p["out_context_after.W"]
        if attend == "after":   # the regulariser's attention
            alpha = alpha_after
    if model.hyper["deep_output_nonlinearity"] == "tanh":
        deep = np.tanh(deep)
    probs = softmax(deep @ p["output.W"] + p["output.b"])
    # tick t predicts word t+1, where there is one
    target_mask = mask[:, 1:]
    n = target_mask.sum()
    picked = np.take_along_axis(probs[:, :-1], words[:, 1:, None], 2)[..., 0]
    xent = -(np.log(picked) * target_mask).sum() / n
    coverage = (alpha[:, :-1] * target_mask[:, :, None]).sum(axis=1)
    penalty = ((1 - coverage) ** 2).sum() / n
    weighed = target_mask
    if model.hyper["attention_entropy_words"] == "content":
        # only the ticks whose next word names something
        vocab = model.vocab.words
        weighed = target_mask * np.vectorize(
            lambda i: vocab[i] not in attention_model.FUNCTION_WORDS
            and vocab[i] != END)(words[:, 1:])
    entropy = (scipy.stats.entropy(alpha[:, :-1], axis=2) * weighed).sum() \
        / weighed.sum()
    return xent, penalty, entropy, probs


# the tiny vocabulary's stand-ins for "a", "the", "in"...: the entropy term
# of attention_entropy_words="content" leaves their ticks out
TINY_FUNCTION_WORDS = frozenset(["w1", "w5", "w6"])


@pytest.mark.parametrize("nonlinearity,region_units,attend,words",
                         [("linear", 0, "before", "all"),
                          ("tanh", 0, "before", "all"),
                          ("linear", 5, "before", "all"),
                          ("tanh", 0, "after", "all"),
                          ("linear", 5, "after", "all"),
                          ("linear", 5, "both", "all"),
                          ("linear", 5, "top_down", "all"),
                          ("tanh", 0, "top_down", "all"),
                          ("linear", 5, "before", "content"),
                          ("tanh", 0, "after", "content")])
def test_model_loss_and_regulariser_match_numpy(nonlinearity, region_units,
                                                attend, words, monkeypatch):
    monkeypatch.setattr(attention_model, "FUNCTION_WORDS", TINY_FUNCTION_WORDS)
    model = tiny_model(output_dropout=0, region_dropout=0, attention_penalty=0.7,
                       attention_entropy=0.3, deep_output_nonlinearity=nonlinearity,
                       region_units=region_units, attend=attend,
                       attention_entropy_words=words)
    regions, matrix = batch(model)
    xent, penalty, entropy, probs = numpy_model(model, regions, matrix)
    assert penalty > 0.1  # the regulariser is not negligible here
    assert entropy > 0.1
    reported, objective = model.training_losses()
    f = theano.function([model.regions, model.sentences],
                        [model.loss(deterministic=True), reported, objective],
                        mode=PY)
    val, train, total = f(regions, matrix)
    assert float(val) == pytest.approx(xent, rel=1e-5)
    assert float(train) == pytest.approx(xent, rel=1e-5)
    assert float(total) == pytest.approx(xent + 0.7 * penalty + 0.3 * entropy,
                                         rel=1e-5)
    got = theano.function([model.regions, model.sentences],
                          get_output(model.layers["probabilities"],
                                     deterministic=True), mode=PY)
    np.testing.assert_allclose(got(regions, matrix), probs, rtol=1e-4,
                               atol=1e-6)


class _Replaced:
    """A model for ``numpy_model`` with one weight replaced (float64)."""

    def __init__(self, model, name, value):
        self.hyper, self.values = model.hyper, model.get_param_values()
        self.vocab = model.vocab
        self.values[name] = value

    def get_param_values(self):
        return self.values


@pytest.mark.parametrize("probe,attend,words",
                         [(True, "before", "all"), (False, "before", "all"),
                          (True, "after", "all"), (True, "both", "all"),
                          (True, "top_down", "all"), (False, "top_down", "all"),
                          (True, "before", "content"),
                          (True, "after", "content")])
def test_training_gradients_match_central_differences(probe, attend, words,
                                                      monkeypatch):
    # The gradients Adam gets (training_gradients), against central
    # differences of the numpy model's objective: all weights with the
    # region Dense below the decoder, whose gradient through the attended
    # context is summed after the scan (probe, the default) or inside it.
    monkeypatch.setattr(AttentionCaptionModel, "probe_context_gradient", probe)
    monkeypatch.setattr(attention_model, "FUNCTION_WORDS", TINY_FUNCTION_WORDS)
    model = tiny_model(output_dropout=0, region_dropout=0, attention_penalty=0.7,
                       attention_entropy=0.3, attend=attend,
                       attention_entropy_words=words)
    regions, matrix = batch(model)
    weights = model.params(trainable=True)
    _, grads = model.training_gradients(weights)
    grads = theano.function([model.regions, model.sentences], grads,
                            mode=PY)(regions, matrix)
    names = {q: n for n, q in model.named_params().items()}
    values = model.get_param_values()
    assert "region_dense.W" in values
    for param, grad in zip(weights, grads):
        name = names[param]

        def objective(v):
            xent, penalty, entropy, _ = numpy_model(_Replaced(model, name, v),
                                                    regions, matrix)
            return xent + 0.7 * penalty + 0.3 * entropy

        expected = numeric_grad(objective, np.asarray(values[name], np.float64))
        scale = np.abs(expected).max()
        assert scale > 1e-3, name   # every weight matters
        np.testing.assert_allclose(grad, expected, rtol=1e-3, atol=1e-4 * scale,
                                   err_msg=name)


@pytest.mark.parametrize("region_units,attend", [(0, "before"), (5, "before"),
                                                (0, "after"), (5, "both"),
                                                (5, "top_down")])
def test_decoder_step_equals_the_full_graph(region_units, attend):
    model = tiny_model(seed=1, region_units=region_units, attend=attend)
    regions, matrix = batch(model, seed=1)
    matrix = sentences(model, "w0 w1 w2", "w3 w4 w5", "w6 w7 w0")  # no PAD
    full = model.get_probs(regions, matrix)
    alpha_full = theano.function(
        [model.regions, model.sentences],
        get_output(model.layers["attention"], deterministic=True))(
            regions, matrix)
    init_state, step = model.compile_step()
    cell, hid, seen, projected = init_state(regions)
    assert seen.shape == (len(regions), MR, region_units or MD)
    for t in range(matrix.shape[1]):
        log_probs, cell, hid, alpha = step(matrix[:, t], cell, hid, seen,
                                           projected)
        np.testing.assert_allclose(np.exp(log_probs), full[:, t], atol=2e-6,
                                   err_msg="tick %d" % t)
        np.testing.assert_allclose(alpha, alpha_full[:, t], atol=2e-6)
    # and a beam's rows: images repeated, state rows in any order
    order = [2, 0, 0, 1]
    cell, hid, seen, projected = init_state(regions)
    lp, *_ = step(matrix[order, 0], cell[order], hid[order], seen[order],
                  projected[order])
    np.testing.assert_allclose(np.exp(lp), full[order, 0], atol=2e-6)
    assert_float32(model.compile_step())


def assert_float32(functions):
    """No node computes in float64 (it would be slower and mean a wrong
    dtype somewhere in the graph)."""
    for fn in functions:
        wide = [node for node in fn.maker.fgraph.toposort()
                for out in node.outputs
                if getattr(out.type, "dtype", None) == "float64"]
        assert not wide, "%s computes in float64: %s" % (fn.name, wide[:3])


@pytest.mark.parametrize("train_embedding", [True, False])
def test_embedding_from_a_matrix_frozen_or_trained(train_embedding,
                                                   monkeypatch):
    monkeypatch.setattr(AttentionCaptionModel, "train_mode",
                        classmethod(lambda cls: PY))
    vectors = np.random.RandomState(7).randn(len(WORDS), 4)
    model = AttentionCaptionModel(Vocabulary(WORDS), seed=0, embedding=vectors,
                                  embed_size=4, lstm_units=6, attention_units=3,
                                  cnn_feature_size=MD, output_dropout=0, region_dropout=0,
                                  train_embedding=train_embedding)
    W = model.layers["embedding"].W
    np.testing.assert_array_equal(W.get_value(), vectors.astype("float32"))
    assert (W in model.params(trainable=True)) == train_embedding
    assert "embedding.W" in model.get_param_values()  # saved either way
    regions, matrix = batch(model, seed=2)
    before = {k: v.copy() for k, v in model.get_param_values().items()}
    val_before = float(model.val_step(regions, matrix))
    # with no dropout, the train step returns the cross-entropy before
    # its update (not the regularised objective)
    assert float(model.train_step(regions, matrix)) == \
        pytest.approx(val_before, rel=1e-5)
    for _ in range(20):
        model.train_step(regions, matrix)
    assert float(model.val_step(regions, matrix)) < val_before - 0.1
    after = model.get_param_values()
    assert np.array_equal(after["embedding.W"], before["embedding.W"]) \
        != train_embedding
    assert not np.array_equal(after["decoder.w_att"], before["decoder.w_att"])
    assert_float32(model.compile_train())


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="embedding"):
        AttentionCaptionModel(Vocabulary(WORDS), embedding=np.zeros((3, 4)),
                              embed_size=4)
    with pytest.raises(ValueError, match="deep_output_nonlinearity"):
        AttentionCaptionModel(Vocabulary(WORDS),
                              deep_output_nonlinearity="relu")
    with pytest.raises(ValueError, match="attend must be"):
        AttentionCaptionModel(Vocabulary(WORDS), attend="sideways")
    with pytest.raises(ValueError, match="unknown"):
        AttentionCaptionModel(Vocabulary(WORDS), dropout=0.5)


def test_prepare_codes_standardises_each_feature():
    model = AttentionCaptionModel(Vocabulary(WORDS), embed_size=4,
                                  lstm_units=6, cnn_feature_size=MD)
    rng = np.random.RandomState(8)
    model.code_mean = rng.randn(MD).astype("float32")
    model.code_std = rng.rand(MD).astype("float32") + 0.5
    codes = rng.randn(2, MR, MD).astype("float16")
    got = model.prepare_codes(codes)
    assert got.dtype == np.float32
    expected = (codes.astype(np.float64) - model.code_mean) / model.code_std
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    with pytest.raises(ValueError):
        model.prepare_codes(codes[:, 0])           # pooled, not regions
    with pytest.raises(ValueError):
        model.prepare_codes(codes[:, :, :-1])      # other features
    model.code_mean = codes.mean(axis=0)           # per region: refused
    with pytest.raises(ValueError, match="code_mean"):
        model.prepare_codes(codes)


def test_region_dropout_acts_in_training_only():
    with_dropout = tiny_model(output_dropout=0, region_dropout=0.5)
    without = tiny_model(output_dropout=0, region_dropout=0)
    regions, matrix = batch(with_dropout)
    import theano
    losses = [theano.function([m.regions, m.sentences], [m.loss(deterministic=True),
                                                         m.loss(deterministic=False)])
              for m in (with_dropout, without)]
    (val_a, train_a), (val_b, train_b) = [f(regions, matrix) for f in losses]
    # the same weights: no dropout at test time, and none to drop without it
    assert np.isclose(val_a, val_b, rtol=1e-5) and np.isclose(train_b, val_b, rtol=1e-5)
    assert not np.isclose(train_a, val_a, rtol=1e-3)
    assert "region_dropout" in with_dropout.layers and "region_dropout" not in without.layers


def test_feature_dropout_drops_the_same_features_in_every_region():
    from lasagne.layers import InputLayer, get_output
    from captioning.attention import FeatureDropoutLayer
    x = T.tensor3("x")
    layer = FeatureDropoutLayer(InputLayer((None, None, 300), x), p=0.25)
    train = theano.function([x], get_output(layer))
    test = theano.function([x], get_output(layer, deterministic=True))
    a = np.random.RandomState(0).rand(8, 49, 300).astype("float32") + 1  # no zeros
    out = train(a)
    kept = out != 0
    # one mask per (image, feature): a feature is kept in all regions or none
    assert (kept == kept[:, :1, :]).all()
    np.testing.assert_allclose(out[kept], (a / 0.75)[kept], rtol=1e-6)
    assert abs(1 - kept[:, 0, :].mean() - 0.25) < 0.03   # 2,400 draws
    assert not np.array_equal(kept[0, 0], kept[1, 0])   # images differ
    np.testing.assert_array_equal(test(a), a)


def test_feature_region_dropout_in_the_model():
    model = tiny_model(output_dropout=0, region_dropout=0.5,
                       region_dropout_mode="feature")
    assert type(model.layers["region_dropout"]).__name__ == "FeatureDropoutLayer"
    with pytest.raises(ValueError, match="region_dropout_mode"):
        tiny_model(region_dropout_mode="channel")


def test_backward_scan_reuses_the_forward_values():
    # Speed, not maths: the forward scan returns the gates' pre-activations,
    # alpha . a and the attention MLP's tanh, so the gradient's scan computes
    # only the gradient's own products per tick (d pre W_ctx^T, d pre W_hid^T,
    # the MLP's d W_hid_att^T and one batched dot for d alpha), not again
    # z W_ctx, h W_hid, h W_hid_att and alpha . a.
    model = tiny_model(output_dropout=0)
    train_step, _ = model.compile_train()
    scans = {node.op.name: node.op.fn.maker.fgraph.toposort()
             for node in train_step.maker.fgraph.toposort()
             if type(node.op).__name__ == "Scan"}
    assert sorted(scans) == ["grad_of_scan_fn", "scan_fn"]

    def products(nodes):
        names = [type(n.op).__name__ for n in nodes]
        return sum(names.count(k) for k in ("Gemm", "Dot22", "Dot")), \
            names.count("BatchedDot")

    assert products(scans["scan_fn"]) == (3, 1)   # z W_ctx, h W_hid, h W_hid_att; alpha . a
    assert products(scans["grad_of_scan_fn"]) == (3, 1)


def test_a_model_saved_before_region_units_loads_with_its_own_graph(tmp_path):
    # model directories written before region_units / region_dropout_mode
    # (and attend, attention_entropy) existed (e.g. session-12 models) had no region Dense and per-element
    # dropout: loading them must not switch to today's defaults
    import json
    from captioning.model_dir import load_model, save_model
    old = tiny_model(region_units=0, region_dropout_mode="element",
                     attention_entropy=0.0)
    old.encoder_record = {"cnn": "efficientnet_lite0", "feature_kind": "spatial",
                          "code_size": MD, "code_shape": [MR, MD]}
    save_model(old, str(tmp_path))
    config = json.loads((tmp_path / "model.json").read_text())
    for key in ("region_units", "region_dropout_mode", "attend",
                "attention_entropy"):
        del config["hyper_parameters"][key]
    (tmp_path / "model.json").write_text(json.dumps(config))
    loaded = load_model(str(tmp_path))
    assert loaded.hyper["region_units"] == 0
    assert loaded.hyper["region_dropout_mode"] == "element"
    assert loaded.hyper["attend"] == "before"
    assert loaded.hyper["attention_entropy"] == 0.0   # trained without it
    regions, matrix = batch(old)
    np.testing.assert_allclose(loaded.get_probs(regions, matrix),
                               old.get_probs(regions, matrix), rtol=1e-6)
