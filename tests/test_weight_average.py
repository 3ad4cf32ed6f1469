"""The weights' moving average (captioning.weight_average) against numpy.

The reference is written out here in float64: ``a_t = d_t a_(t-1) + (1 -
d_t) w_t`` from ``a_0 = w_0``, with ``d_t = min(decay, (1 + t) / (10 + t))``
under warm-up. End to end, ``caption train --arch attention`` must keep in
params.npz that average of the weights after each of its train steps, at
the end of the kept epoch.
"""
import json

import numpy as np
import pytest
import theano

from captioning.checkpoint import load_checkpoint, save_checkpoint
from captioning.weight_average import WeightAverage, applied


def shared_weights(rng):
    return [theano.shared(rng.standard_normal((3, 4)).astype("float32"), name="W"),
            theano.shared(rng.standard_normal(5).astype("float32"), name="b")]


def numpy_average(snapshots, decay, warmup):
    """float64 moving average of a list of weight lists (snapshots[0]: start)."""
    average = [np.array(w, np.float64) for w in snapshots[0]]
    for t, weights in enumerate(snapshots[1:], start=1):
        d = min(decay, (1.0 + t) / (10.0 + t)) if warmup else decay
        average = [d * a + (1 - d) * w for a, w in zip(average, weights)]
    return average


@pytest.mark.parametrize("warmup", [True, False])
def test_the_average_follows_the_numpy_reference(warmup):
    rng = np.random.RandomState(0)
    params = shared_weights(rng)
    # warm-up: d_t = (1 + t) / (10 + t) up to t = 35, then the decay, 0.8
    average = WeightAverage(params, 0.8, warmup=warmup)
    snapshots = [[p.get_value() for p in params]]
    for _ in range(60):
        for p in params:   # a "training step": the weights move
            p.set_value(p.get_value() + rng.standard_normal(
                p.get_value().shape).astype("float32"))
        snapshots.append([p.get_value() for p in params])
        average.update()
    expected = numpy_average(snapshots, 0.8, warmup)
    for got, want in zip(average.averages, expected):
        np.testing.assert_allclose(got.get_value(), want, rtol=1e-5, atol=1e-5)
    assert int(average.updates_done.get_value()) == 60
    # the weights themselves are not touched by update()
    for p, w in zip(params, snapshots[-1]):
        np.testing.assert_array_equal(p.get_value(), w)


def test_in_place_lends_the_average_and_gives_the_weights_back():
    rng = np.random.RandomState(1)
    params = shared_weights(rng)
    average = WeightAverage(params, 0.5, warmup=False)
    raw = [p.get_value() for p in params]
    for p in params:
        p.set_value(p.get_value() * 3)
    average.update()     # average = (raw + 3 raw) / 2 = 2 raw
    moved = [p.get_value() for p in params]
    with applied(average):
        for p, w in zip(params, raw):
            np.testing.assert_allclose(p.get_value(), 2 * w, rtol=1e-6)
    for p, w in zip(params, moved):
        np.testing.assert_array_equal(p.get_value(), w)
    with pytest.raises(RuntimeError):
        with applied(average):
            raise RuntimeError("the block fails")
    for p, w in zip(params, moved):
        np.testing.assert_array_equal(p.get_value(), w)
    with applied(None):    # no average: nothing changes
        for p, w in zip(params, moved):
            np.testing.assert_array_equal(p.get_value(), w)


def test_reset_starts_from_the_weights_as_they_are():
    rng = np.random.RandomState(2)
    params = shared_weights(rng)
    average = WeightAverage(params, 0.9)
    for p in params:
        p.set_value(p.get_value() + 1)
    average.update()
    average.reset()
    for p, a in zip(params, average.averages):
        np.testing.assert_array_equal(a.get_value(), p.get_value())
    assert int(average.updates_done.get_value()) == 0


def test_a_resumed_average_goes_on_as_the_uninterrupted_one(tmp_path):
    rng = np.random.RandomState(3)
    steps = [rng.standard_normal(17).astype("float32") for _ in range(10)]

    def run(average, params, chunk):
        for delta in chunk:
            params[0].set_value(params[0].get_value() + delta[:12].reshape(3, 4))
            params[1].set_value(params[1].get_value() + delta[12:])
            average.update()

    start = shared_weights(np.random.RandomState(4))
    whole = WeightAverage(start, 0.99)
    run(whole, start, steps)

    first = shared_weights(np.random.RandomState(4))
    half = WeightAverage(first, 0.99)
    run(half, first, steps[:5])
    save_checkpoint(str(tmp_path / "state.npz"), first + half.state_variables(), [])
    again = shared_weights(np.random.RandomState(9))
    resumed = WeightAverage(again, 0.99)
    load_checkpoint(str(tmp_path / "state.npz"), again + resumed.state_variables())
    run(resumed, again, steps[5:])
    for a, b in zip(whole.averages, resumed.averages):
        np.testing.assert_allclose(a.get_value(), b.get_value(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("decay", [0, 1, 1.5, -0.1])
def test_a_decay_outside_zero_one_is_refused(decay):
    with pytest.raises(ValueError, match="decay must be in"):
        WeightAverage(shared_weights(np.random.RandomState(0)), decay)


def test_train_keeps_the_average_of_the_kept_epoch(tmp_path, monkeypatch):
    """params.npz = the numpy average of the weights after every train step
    up to the end of the kept epoch (recorded from outside the loop)."""
    from _flickr8k_fakes import fake_spatial_encoder, make_fake_flickr8k
    import captioning.training as training
    from captioning.attention_model import ATTENTION_HYPER, AttentionCaptionModel
    from captioning.commands import main as caption

    env = make_fake_flickr8k(tmp_path / "flickr8k")
    monkeypatch.setenv("CAPTION_CACHE_DIR", str(tmp_path / "cache"))
    snapshots, ends = [], []
    compile_train = AttentionCaptionModel.compile_train

    def recording_compile(model):
        step, val = compile_train(model)

        def recorded(*args):
            loss = step(*args)
            snapshots.append({k: v.get_value() for k, v in
                              model.named_params().items()})
            return loss
        if not snapshots:   # the weights before the first step
            snapshots.append({k: v.get_value() for k, v in
                              model.named_params().items()})
        return recorded, val

    evaluate = training.evaluate_selection

    def recording_evaluate(*args, **kwargs):
        ends.append(len(snapshots) - 1)   # steps done when the epoch ends
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(AttentionCaptionModel, "compile_train", recording_compile)
    monkeypatch.setattr(training, "evaluate_selection", recording_evaluate)
    out = tmp_path / "m"
    rc = caption(["train", "--flickr8k", str(env), "--out", str(out), "--arch",
                  "attention", "--epochs", "3", "--self-critical-rounds", "0",
                  "--word-vectors", "none", "--embed-size", "8",
                  "--lstm-units", "16", "--batch-size", "8"],
                 encoder=fake_spatial_encoder())
    assert rc == 0
    config = json.loads((out / "model.json").read_text())
    decay = config["hyper_parameters"]["weight_average"]
    assert decay == ATTENTION_HYPER["weight_average"] > 0
    kept = config["training"]["epoch"]
    assert len(ends) == 3
    names = sorted(snapshots[0])
    upto = snapshots[:ends[kept - 1] + 1]
    expected = numpy_average([[s[k] for k in names] for s in upto], decay, True)
    with np.load(out / "params.npz") as saved:
        for name, want in zip(names, expected):
            np.testing.assert_allclose(saved[name], want, rtol=1e-4, atol=1e-5)
        # and it is not the weights themselves
        assert any(not np.allclose(saved[k], upto[-1][k], atol=1e-5) for k in names)
