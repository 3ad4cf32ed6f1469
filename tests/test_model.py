"""The seminar graph: loss, padding, one-tick decoder, model dir."""
import json

import numpy as np
import pytest

from _caption_fakes import WORDS, fake_codes, tiny_model

import theano
from captioning.text import NORMALISER
# Vocabulary, PAD_ix, START, END through model.py: its re-exports still work
from captioning.model import (END, PAD_ix, START, CaptionModel,
                              ModelFileError, Vocabulary)
from captioning.model_dir import load_model, save_model


# what made the (fake) image codes of the tiny model: 12 values each
RECORD = {"cnn": "fake", "feature_kind": "logits", "preprocessing": "none",
          "code_size": 12}


@pytest.fixture(scope="module")
def model():
    model = tiny_model()
    model.encoder_record = RECORD
    return model


def sentences(vocab, *captions):
    return vocab.as_matrix([[START] + c.split() + [END] for c in captions])


# ---------------------------------------------------------------- graph
def test_graph_is_the_seminars(model):
    layers = model.layers
    assert layers["probabilities"].output_shape == (None, None, len(WORDS))
    assert layers["embedding"].output_shape == (None, None, 8)
    assert layers["image_dense"].output_shape == (None, 16)
    # the image code sets the LSTM's initial cell, the mask its lengths
    assert layers["image_dense"] in layers["decoder"].input_layers
    assert layers["mask"] in layers["decoder"].input_layers
    assert layers["decoder"].grad_clipping == 5


def test_layers_and_parameters_keep_the_seminar_graphs_order(model):
    # The order get_all_layers / get_all_params give (checkpoints and
    # Lasagne's get/set_all_param_values rely on it) and the names saved in
    # params.npz. The decoder's incomings are the words, the mask, then the
    # image (cell_init), as in Lasagne master.
    from lasagne.layers import get_all_layers
    assert [l.name for l in get_all_layers(model.layers["probabilities"])] == [
        "words", "embedding", "mask", "image", "image_dropout", "image_dense",
        "decoder", "broadcast", "output_dropout", "output", "probabilities"]
    decoder = ["decoder.W_in_to_ingate", "decoder.W_hid_to_ingate", "decoder.b_ingate",
               "decoder.W_in_to_forgetgate", "decoder.W_hid_to_forgetgate",
               "decoder.b_forgetgate",
               "decoder.W_in_to_cell", "decoder.W_hid_to_cell", "decoder.b_cell",
               "decoder.W_in_to_outgate", "decoder.W_hid_to_outgate", "decoder.b_outgate",
               "decoder.W_cell_to_ingate", "decoder.W_cell_to_forgetgate",
               "decoder.W_cell_to_outgate", "decoder.hid_init"]
    names = (["embedding.W", "image_dense.W", "image_dense.b"] + decoder
             + ["output.W", "output.b"])
    assert [p.name for p in model.params()] == names
    assert sorted(model.get_param_values()) == sorted(names + ["codes.mean", "codes.std"])


def reference_loss(probs, matrix):
    """Mean cross-entropy over the non-PAD next tokens, in numpy."""
    total, count = 0.0, 0
    for i, row in enumerate(matrix):
        for t in range(1, len(row)):
            if row[t] != PAD_ix:
                total -= np.log(probs[i, t - 1, row[t]])
                count += 1
    return total / count


def test_val_loss_is_the_masked_mean_cross_entropy(model):
    codes = model.prepare_codes(fake_codes(3))
    matrix = sentences(model.vocab, "w0 w1 w2", "w3", "w4 w5 w6 w7 w8")
    probs = model.get_probs(codes, matrix)
    assert probs.shape == (3, matrix.shape[1], len(WORDS))
    np.testing.assert_allclose(probs.sum(axis=2), 1, rtol=1e-5)
    assert float(model.val_step(codes, matrix)) == pytest.approx(
        reference_loss(probs, matrix), rel=1e-5)


def test_padding_changes_nothing(model):
    codes = model.prepare_codes(fake_codes(2))
    matrix = sentences(model.vocab, "w0 w1", "w2")
    padded = np.hstack([matrix, np.full((2, 4), PAD_ix, np.int32)])
    assert float(model.val_step(codes, padded)) == pytest.approx(
        float(model.val_step(codes, matrix)), rel=1e-6)
    # PAD (-1) must not read the embedding's last row: changing that row
    # (a word no sentence here uses) leaves the padded loss as it was.
    W = model.layers["embedding"].W
    saved = W.get_value()
    try:
        changed = saved.copy()
        changed[-1] += 10
        W.set_value(changed)
        assert float(model.val_step(codes, padded)) == pytest.approx(
            float(model.val_step(codes, matrix)), rel=1e-6)
    finally:
        W.set_value(saved)


def test_compiled_functions_stay_float32(model):
    model.compile_step()
    functions = list(model.compile_train()) + list(model.compile_step())
    for fn in functions:
        wide = [node for node in fn.maker.fgraph.toposort()
                for out in node.outputs
                if getattr(out.type, "dtype", None) == "float64"]
        assert not wide, "%s computes in float64: %s" % (fn.name, wide[:3])


def test_one_tick_decoder_equals_the_full_graph(model):
    codes = fake_codes(4, seed=1)
    matrix = sentences(model.vocab, "w0 w1 w2 w3", "w4 w5 w6 w7",
                       "w8 w9 w10 w11", "w0 w0 w0 w0")
    full = model.get_probs(model.prepare_codes(codes), matrix)
    init_state, step = model.compile_step()
    cell, hid = init_state(model.prepare_codes(codes))
    for t in range(matrix.shape[1]):
        log_probs, cell, hid = step(matrix[:, t], cell, hid)
        np.testing.assert_allclose(np.exp(log_probs), full[:, t], atol=2e-6,
                                   err_msg="tick %d differs" % t)


def test_train_step_lowers_the_loss(model):
    codes = model.prepare_codes(fake_codes(4, seed=2))
    matrix = sentences(model.vocab, "w0 w1", "w2 w3 w4", "w5", "w6 w7 w8 w9")
    before = float(model.val_step(codes, matrix))
    for _ in range(30):
        loss = model.train_step(codes, matrix)
    assert np.isfinite(loss)
    assert float(model.val_step(codes, matrix)) < before - 0.1


# ---------------------------------------------------------------- model dir
def test_save_and_load_round_trip(model, tmp_path):
    model.code_mean = np.arange(12, dtype="float32")
    save_model(model, tmp_path / "m", extra={"note": "x"})
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "model.json", "params.npz"]
    config = json.loads((tmp_path / "m" / "model.json").read_text())
    assert config["vocabulary"] == WORDS and config["note"] == "x"
    assert config["encoder"] == RECORD and config["format_version"] == 3 and config["arch"] == "seminar"
    assert config["text_normaliser"] == NORMALISER
    with np.load(tmp_path / "m" / "params.npz", allow_pickle=False) as saved:
        assert "decoder.W_in_to_cell" in saved.files
    loaded = load_model(tmp_path / "m")
    assert loaded.encoder_record == RECORD
    codes = fake_codes(2)
    matrix = sentences(model.vocab, "w0 w1", "w2")
    np.testing.assert_allclose(loaded.get_probs(loaded.prepare_codes(codes), matrix),
                               model.get_probs(model.prepare_codes(codes), matrix),
                               rtol=1e-6)
    model.code_mean = np.zeros(12, "float32")


def test_load_says_what_does_not_fit(model, tmp_path):
    save_model(model, tmp_path / "m")
    config_path = tmp_path / "m" / "model.json"
    config = json.loads(config_path.read_text())
    config["vocabulary"] = config["vocabulary"] + ["extra"]
    config_path.write_text(json.dumps(config))
    with pytest.raises(ModelFileError,
                       match=r"embedding\.W has shape \(15, 8\), the model needs \(16, 8\)"):
        load_model(tmp_path / "m")

    config["vocabulary"] = WORDS
    config["hyper_parameters"]["lstm_units"] = 32
    config_path.write_text(json.dumps(config))
    with pytest.raises(ModelFileError, match="decoder.W_hid_to_cell has shape"):
        load_model(tmp_path / "m")


def test_a_model_is_not_saved_without_saying_what_it_was_trained_on(tmp_path):
    model = CaptionModel(Vocabulary(WORDS), embed_size=8, lstm_units=16,
                         cnn_feature_size=12)
    with pytest.raises(ValueError, match="encoder_record must describe codes "
                                         "of 12 values"):
        save_model(model, tmp_path / "m")
    model.encoder_record = dict(RECORD, code_size=1000)
    with pytest.raises(ValueError, match="encoder_record"):
        save_model(model, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_a_model_directory_of_format_1_loads_without_a_record(model, tmp_path):
    save_model(model, tmp_path / "m")
    config_path = tmp_path / "m" / "model.json"
    config = json.loads(config_path.read_text())
    config["format_version"] = 1
    del config["encoder"], config["text_normaliser"]
    config_path.write_text(json.dumps(config))
    assert load_model(tmp_path / "m").encoder_record is None
    config["format_version"] = 2          # format 2 must say it
    config_path.write_text(json.dumps(config))
    with pytest.raises(ModelFileError, match="has no 'encoder'"):
        load_model(tmp_path / "m")


def test_a_model_of_another_caption_normaliser_is_refused(model, tmp_path):
    save_model(model, tmp_path / "m")
    config_path = tmp_path / "m" / "model.json"
    config = json.loads(config_path.read_text())
    config["text_normaliser"] = "split-on-spaces-0"
    config_path.write_text(json.dumps(config))
    with pytest.raises(ModelFileError, match="normalised by 'split-on-spaces-0'; "
                                             "this version normalises them by "
                                             "'ptb-coco-1': retrain"):
        load_model(tmp_path / "m")


@pytest.mark.parametrize("damage", ["truncated", "zeroed", "not a zip"])
def test_a_damaged_params_file_is_a_model_file_error(model, tmp_path, damage):
    save_model(model, tmp_path / "m")
    path = tmp_path / "m" / "params.npz"
    data = path.read_bytes()
    if damage == "truncated":
        data = data[:len(data) // 2]
    elif damage == "zeroed":     # the members' bytes, not the zip directory
        data = data[:200] + bytes(len(data) - 400) + data[-200:]
    else:
        data = b"just some text"
    path.write_bytes(data)
    with pytest.raises(ModelFileError, match="cannot read .*params.npz"):
        load_model(tmp_path / "m")


def test_load_missing_files(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFileError, match="model.json is missing"):
        load_model(tmp_path / "empty")


def test_unknown_hyper_parameter():
    with pytest.raises(ValueError, match="unknown hyper-parameters"):
        CaptionModel(Vocabulary(WORDS), hidden=3)


def test_a_seed_makes_the_initial_weights_repeatable():
    import lasagne
    before = lasagne.random.get_rng()
    vocab = Vocabulary(WORDS)

    def weights(seed):
        model = CaptionModel(vocab, seed=seed, embed_size=4, lstm_units=6)
        return [p.get_value() for p in model.named_params().values()]

    first, again, other = weights(3), weights(3), weights(4)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other))
    assert lasagne.random.get_rng() is before     # the global one is restored


def test_train_functions_are_compiled_with_the_speed_settings(model):
    from captioning.stack.speed.xent_ops import VectorCrossentropySoftmaxArgmax1HotWithBias
    train_step, val_step = model.compile_train()
    for fn in (train_step, val_step):
        assert fn.maker.linker.allow_gc is False     # buffers reused between steps
        ops = {type(node.op).__name__ for node in fn.maker.fgraph.toposort()}
        assert VectorCrossentropySoftmaxArgmax1HotWithBias.__name__ in ops
        assert "Dot22Scalar" not in ops
