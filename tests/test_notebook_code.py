"""The seminar notebook's own code cells, run outside Jupyter.

The cells are taken from the committed notebook by their tags (``graph``:
the Lasagne graph and its loss; ``generate``: temperature and generation) or
by their first line, and executed in a namespace with small fake data, so
what students read is what is tested.
"""
import os

import nbformat
import numpy as np
import pytest

NOTEBOOK = os.path.join(os.path.dirname(__file__), "..", "notebooks",
                        "image_captioning_seminar.ipynb")


def code_cells(tag=None, first_line=None):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code"]
    if tag is not None:
        cells = [c for c in cells if tag in c.metadata.get("tags", [])]
    if first_line is not None:
        cells = [c for c in cells if c.source.startswith(first_line)]
    assert cells, "no notebook cell tagged %r / starting %r" % (tag, first_line)
    return [c.source for c in cells]


def run_cells(sources, namespace):
    for source in sources:
        exec(compile(source, "<notebook cell>", "exec"), namespace)
    return namespace


# ------------------------------------------------------------------ the loss
N_TOKENS = 23


@pytest.fixture(scope="module")
def notebook_graph():
    """The notebook's graph and loss, built by its own cells."""
    import lasagne
    lasagne.random.set_rng(np.random.RandomState(3))
    namespace = {"img_codes": np.zeros((4, 1000), "float32"), "PAD_ix": -1,
                 "n_tokens": N_TOKENS}
    return run_cells(code_cells(tag="graph"), namespace)


def batch(rng):
    """Image codes and a padded caption matrix (PAD = -1) with varied lengths."""
    lengths = [7, 3, 5, 2]
    sentences = np.full((len(lengths), max(lengths)), -1, "int32")
    for row, n in enumerate(lengths):
        sentences[row, :n] = np.r_[1, rng.randint(3, N_TOKENS, size=n - 2), 2]
    return rng.normal(0, 1, (len(lengths), 1000)).astype("float32"), sentences


def loss_and_grads(loss, weights, inputs, values):
    import theano
    f = theano.function(inputs, [loss] + theano.grad(loss, weights))
    out = f(*values)
    return float(out[0]), out[1:]


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("starved_pad_column", [False, True])
def test_notebook_loss_equals_caption_model_loss(notebook_graph, fused,
                                                 starved_pad_column,
                                                 monkeypatch):
    """Same weights, same batch: the notebook's masked loss and CaptionModel's
    loss agree in value and in every gradient, also when the PAD target's
    column (the last word) has probability 0."""
    from lasagne.layers import get_output
    from captioning.model import CaptionModel, Vocabulary
    ns = notebook_graph
    vocab = Vocabulary(["#UNK#", "#START#", "#END#"]
                       + ["w%d" % i for i in range(N_TOKENS - 3)])
    monkeypatch.setattr(CaptionModel, "fused_loss", fused)
    model = CaptionModel(vocab, seed=0, embed_size=ns["EMBED_SIZE"],
                         lstm_units=ns["LSTM_UNITS"], image_nonlinearity="tanh",
                         output_dropout=0)
    pairs = [(ns["l_word_embeddings"], model.layers["embedding"]),
             (ns["l_image_features_small"], model.layers["image_dense"]),
             (ns["decoder"], model.layers["decoder"]),
             (ns["predicted_probabilities_each_tick"], model.layers["output"])]
    for nb_layer, model_layer in pairs:
        nb_params, model_params = nb_layer.get_params(), model_layer.get_params()
        assert [p.get_value().shape for p in nb_params] == \
            [p.get_value().shape for p in model_params]
        for a, b in zip(nb_params, model_params):
            b.set_value(a.get_value())
    if starved_pad_column:
        # the last word's probability underflows to 0 everywhere
        out_b = ns["predicted_probabilities_each_tick"].b
        value = out_b.get_value()
        value[-1] = -1e4
        out_b.set_value(value)
        model.layers["output"].b.set_value(value)

    codes, sentences = batch(np.random.RandomState(0))
    nb_weights = [p for layer, _ in pairs for p in layer.get_params()]
    model_weights = [p for _, layer in pairs for p in layer.get_params()]
    nb_loss = ns["masked_loss"](get_output(ns["predicted_probabilities"],
                                           deterministic=True))
    value_nb, grads_nb = loss_and_grads(
        nb_loss, nb_weights, [ns["image_vectors"], ns["sentences"]],
        [codes, sentences])
    value_model, grads_model = loss_and_grads(
        model.loss(deterministic=True), model_weights,
        [model.image_vectors, model.sentences], [codes, sentences])

    assert np.isfinite(value_nb) and all(np.isfinite(g).all() for g in grads_nb)
    np.testing.assert_allclose(value_nb, value_model, rtol=1e-5)
    for param, g_nb, g_model in zip(nb_weights, grads_nb, grads_model):
        np.testing.assert_allclose(g_nb, g_model, rtol=1e-4, atol=1e-6,
                                   err_msg=str(param))


def test_notebook_loss_is_float32_and_masked(notebook_graph):
    """The mask is cast (an int8 sum would upcast the loss to float64), and a
    change at a padded position does not change the loss."""
    import theano
    from lasagne.layers import get_output
    ns = notebook_graph
    loss = ns["masked_loss"](get_output(ns["predicted_probabilities"],
                                        deterministic=True))
    assert loss.dtype == "float32"
    f = theano.function([ns["image_vectors"], ns["sentences"]], loss)
    codes, sentences = batch(np.random.RandomState(1))
    assert sentences[1, -1] == -1
    # a PAD target read as the last word: the reference that numpy computes
    # over the non-PAD targets only
    probs = theano.function([ns["image_vectors"], ns["sentences"]],
                            get_output(ns["predicted_probabilities"],
                                       deterministic=True))(codes, sentences)
    targets = sentences[:, 1:]
    picked = np.take_along_axis(probs[:, :-1], np.maximum(targets, 0)[..., None],
                                axis=2)[..., 0]
    expected = -np.log(picked.astype("float64"))[targets != -1].mean()
    np.testing.assert_allclose(f(codes, sentences), expected, rtol=1e-5)


# ------------------------------------------------------------------ generation
VOCAB = ["#UNK#", "#START#", "#END#", "a", "dog", "runs"]


def generation_namespace(probs_for_length):
    """The notebook's generation cell with a fake network: the next-word
    distribution depends only on the caption's length so far."""
    def as_matrix(sequences):
        index = {w: i for i, w in enumerate(VOCAB)}
        return np.array([[index[w] for w in seq] for seq in sequences])

    def get_probs(features, matrix):
        return np.asarray(probs_for_length(matrix.shape[1]), "float32")[None]

    namespace = {"np": np, "vocab": VOCAB, "as_matrix": as_matrix,
                 "get_probs": get_probs, "get_cnn_features": lambda x: x}
    return run_cells(code_cells(tag="generate"), namespace)


def peaked(length):
    """A favourite next word (0.6) and the rest shared by the others: at a
    small t, p ** (1/t) underflows to 0 for every word."""
    favourite = {1: 3, 2: 4, 3: 5}.get(length, 2)
    p = np.full(len(VOCAB), 0.4 / (len(VOCAB) - 1))
    p[favourite] = 0.6
    return p


def test_temperature_is_p_to_the_one_over_t():
    ns = generation_namespace(peaked)
    p = np.array([0.5, 0.3, 0.15, 0.05])
    for t in (0.5, 1.0, 2.0):
        expected = p ** (1 / t) / (p ** (1 / t)).sum()
        np.testing.assert_allclose(ns["apply_temperature"](p, t), expected,
                                   rtol=1e-12)


@pytest.mark.parametrize("t", [1e-2, 1e-3, 1e-6])
def test_small_temperature_equals_greedy(t):
    ns = generation_namespace(peaked)
    p = peaked(1)
    sharpened = ns["apply_temperature"](p, t)
    assert np.isfinite(sharpened).all()
    np.testing.assert_allclose(sharpened, np.eye(len(VOCAB))[p.argmax()],
                               atol=1e-12)
    greedy = ns["generate_caption"](None, sample=False)
    assert greedy == ["#START#", "a", "dog", "runs", "#END#"]
    np.random.seed(0)
    assert ns["generate_caption"](None, t=t) == greedy


def test_generation_starts_at_start_and_stops_at_end():
    ns = generation_namespace(peaked)
    caption = ns["generate_caption"](None, sample=False, max_len=50)
    assert caption[0] == "#START#" and caption[-1] == "#END#"


# ------------------------------------------------------------------ tokenising
def test_tokenising_cell_can_be_run_twice():
    source = code_cells(first_line="# split descriptions into tokens")
    ns = {"captions": [["a dog runs", "the dog"], ["a cat"]]}
    run_cells(source, ns)
    once = [[list(c) for c in caps] for caps in ns["captions"]]
    assert once[0][0] == ["#START#", "a", "dog", "runs", "#END#"]
    run_cells(source, ns)
    assert ns["captions"] == once


# ------------------------------------------------------------------ resuming
class FakeDataset:
    source = "synthetic"


def training_namespace(run_dir, dropout=0.5, learning_rate=1e-3, n_epochs=2,
                       codes_offset=0.0):
    """The training cell's inputs, with a tiny graph and fake steps."""
    import theano
    from lasagne.layers import DenseLayer, DropoutLayer, InputLayer
    from lasagne.layers import get_all_params
    l_out = DenseLayer(DropoutLayer(InputLayer((None, 3)), p=dropout), 2)
    weights = get_all_params(l_out)
    updates = {w: w for w in weights}
    updates[theano.shared(np.float32(0), name="t")] = None
    steps = []
    captions = np.empty(2, dtype=object)
    captions[:] = [[["#START#", "a", "#END#"]], [["#START#", "b", "#END#"]]]
    return {"np": np, "os": os, "RUN_DIR": str(run_dir), "updates": updates,
            "predicted_probabilities": l_out, "LEARNING_RATE": learning_rate,
            "batch_size": 2, "n_batches_per_epoch": 2, "n_validation_batches": 1,
            "n_epochs": n_epochs, "vocab": ["#UNK#", "#START#", "#END#", "a", "b"],
            "dataset": FakeDataset(),
            "img_codes": np.arange(6, dtype="float32").reshape(2, 3) + codes_offset,
            "captions": captions, "train_ix": np.array([0]), "val_ix": np.array([1]),
            "generate_batch": lambda *args, **kwargs: (None, None),
            "train_step": lambda *args: steps.append("train") or 2.0,
            "val_step": lambda *args: 1.5, "steps": steps}


def test_training_cell_resumes_only_the_same_run(tmp_path, capsys):
    from captioning.checkpoint import CheckpointMismatch
    cell = code_cells(tag="training-loop")
    first = run_cells(cell, training_namespace(tmp_path))
    assert first["history"]["epoch"] == [0, 1] and len(first["steps"]) == 4
    capsys.readouterr()

    again = run_cells(cell, training_namespace(tmp_path))
    assert again["steps"] == []
    assert "already holds 2 epochs: nothing to train" in capsys.readouterr().out

    more = run_cells(cell, training_namespace(tmp_path, n_epochs=3))
    assert more["history"]["epoch"] == [0, 1, 2] and len(more["steps"]) == 2

    changes = [({"learning_rate": 1e-2}, "LEARNING_RATE: saved 0.001, now 0.01"),
               ({"dropout": 0.3}, "DropoutLayer.p: saved 0.5, now 0.3"),
               ({"codes_offset": 1.0}, "data: saved")]
    for change, named in changes:
        with pytest.raises(CheckpointMismatch) as error:
            run_cells(cell, training_namespace(tmp_path, n_epochs=3, **change))
        assert named in str(error.value)
        assert "CAPTION_RUN_DIR" in str(error.value)
