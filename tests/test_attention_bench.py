"""The PyTorch replica of the attention model in benchmarks/bench_attention_step.py
computes what AttentionCaptionModel computes (so `make bench` compares the
same work): the same losses, the same gradients (with the gate clipping
biting) and the same Adam updates, from the same weights, dropout off.

The Theano model is itself checked against a numpy Show, Attend and Tell in
tests/test_attention.py; here it is the reference for the replica. Small
sizes, float32 on both sides: tolerances are float32's (relative 1e-5 on
the losses, 1e-4 on gradients and weights). torch is a bench-only extra
(requirements-bench.txt), not installed in CI: there these tests skip.
"""
import importlib.util
from pathlib import Path

import captioning.stack  # noqa: F401  (before theano/lasagne)

import numpy as np
import pytest
import theano

from captioning.attention_model import AttentionCaptionModel

torch = pytest.importorskip(
    "torch", reason="torch is a bench-only extra (requirements-bench.txt, "
                    "installed by `make bench`): the replica is checked where it is")

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_attention_step.py"
SIZE = dict(V=30, E=6, H=8, A=5, R=4, D=7, B=3, T=6)


def bench_module():
    spec = importlib.util.spec_from_file_location("bench_attention_step", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = bench_module()


def small_model(**hyper):
    """A small model with weights large enough that every part matters
    (attention far from uniform, beta away from 0.5)."""
    hyper = dict(dict(region_units=7), **hyper)   # the default's 512 would dwarf SIZE
    model = bench.build_theano(SIZE, seed=0, output_dropout=0, region_dropout=0, **hyper)
    rng = np.random.RandomState(1)
    for param in model.params():
        value = param.get_value()
        param.set_value(np.asarray(rng.randn(*value.shape) * 0.7, value.dtype))
    return model


def batch(seed=0):
    rng = np.random.RandomState(seed)
    regions = rng.randn(SIZE["B"], SIZE["R"], SIZE["D"]).astype("float32")
    sentences = np.full((SIZE["B"], SIZE["T"]), -1, dtype="int32")
    for row, length in enumerate((SIZE["T"], 4, 3)):   # padded rows
        sentences[row, :length] = [1] + list(rng.randint(3, SIZE["V"], length - 2)) + [2]
    return regions, sentences


def as_torch(regions, sentences):
    return torch.from_numpy(regions), torch.from_numpy(sentences).long()


@pytest.mark.parametrize("nonlinearity,region_units,words",
                         [("linear", 0, "all"), ("tanh", 0, "all"),
                          ("linear", 7, "all"), ("linear", 0, "content")])
def test_same_losses(nonlinearity, region_units, words):
    # "content": the entropy of the ticks that predict #END# is left out
    model = small_model(deep_output_nonlinearity=nonlinearity, attention_penalty=0.7,
                        attention_entropy=0.3, attention_entropy_words=words,
                        region_units=region_units)
    regions, sentences = batch()
    xent, penalty, entropy = model._losses(deterministic=True)
    theano_xent, theano_penalty, theano_entropy = theano.function(
        [model.regions, model.sentences], [xent, penalty, entropy])(regions, sentences)
    replica = bench.TorchAttentionCaptioner(model)
    with torch.no_grad():
        loss, pen, ent = replica.losses(*as_torch(regions, sentences), dropout=False)
        _, objective = replica.objective(*as_torch(regions, sentences), dropout=False)
    assert theano_penalty > 0.1   # the regulariser counts here
    assert theano_entropy > 0.1
    assert loss.item() == pytest.approx(float(theano_xent), rel=1e-5)
    assert pen.item() == pytest.approx(float(theano_penalty), rel=1e-5)
    assert ent.item() == pytest.approx(float(theano_entropy), rel=1e-5)
    assert objective.item() == pytest.approx(
        float(theano_xent) + 0.7 * float(theano_penalty)
        + 0.3 * float(theano_entropy), rel=1e-5)


@pytest.mark.parametrize("region_units,probe", [(0, True), (7, True), (7, False)])
def test_same_gradients_with_clipping(region_units, probe, monkeypatch):
    # probe: region_dense's gradient through the context summed after the
    # scan (the default), or inside it (CAPTION_SPEEDUPS=0)
    monkeypatch.setattr(AttentionCaptionModel, "probe_context_gradient", probe)
    # a clip small enough to bite on some gate pre-activations
    model = small_model(grad_clipping=0.02, region_units=region_units)
    regions, sentences = batch(seed=1)
    params = model.params(trainable=True)
    # the gradients Adam gets (compile_train's)
    _, gradients = model.training_gradients(params)
    grads = theano.function([model.regions, model.sentences],
                            gradients)(regions, sentences)
    names = {q: n for n, q in model.named_params().items()}
    by_name = {names[q]: g for q, g in zip(params, grads)}
    expected = bench.theano_as_stacked(_ValuesOnly(by_name))
    replica = bench.TorchAttentionCaptioner(model)
    got = replica.gradients(*as_torch(regions, sentences), dropout=False)
    assert set(got) == set(expected)
    for name, g in got.items():
        scale = np.abs(expected[name]).max()
        assert scale > 0, name
        np.testing.assert_allclose(g.numpy(), expected[name], rtol=1e-4,
                                   atol=1e-5 * scale, err_msg=name)
    # the clip bites: without it the replica's gradients differ
    replica.clip = 0.0
    free = replica.gradients(*as_torch(regions, sentences), dropout=False)
    assert not np.allclose(free["W_in"].numpy(), expected["W_in"], rtol=1e-3)


class _ValuesOnly:
    """Stands in for a model in ``theano_as_stacked``: ``{name: array}``."""

    def __init__(self, values):
        self.values = values

    def get_param_values(self):
        return self.values


def test_same_adam_updates():
    model = small_model()
    replica = bench.TorchAttentionCaptioner(model)
    train_step, _ = model.compile_train()
    for seed in range(3):
        regions, sentences = batch(seed)
        theano_loss = float(train_step(regions, sentences))
        torch_loss = replica.train_step(*as_torch(regions, sentences))
        assert torch_loss == pytest.approx(theano_loss, rel=1e-5), seed
    expected = bench.theano_as_stacked(model)
    got = replica.stacked_values()
    start = bench.theano_as_stacked(small_model())
    for name in expected:
        moved = np.abs(expected[name] - start[name]).max()
        assert moved > 1e-4, name       # three steps of ~lr = 1e-3 each
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5,
                                   atol=1e-6, err_msg=name)


@pytest.mark.parametrize("mode", ["element", "feature"])
def test_replica_trains_with_region_dropout(mode):
    # the equivalence tests run without dropout; this runs the replica's
    # dropout branch of each mode (a name clash once broke the feature one)
    model = bench.build_theano(SIZE, seed=0, region_units=7, region_dropout=0.5,
                               region_dropout_mode=mode)
    replica = bench.TorchAttentionCaptioner(model)
    regions, sentences = batch()
    torch.manual_seed(0)
    with torch.no_grad():
        dropped = replica.losses(*as_torch(regions, sentences), dropout=True)[0]
        plain = replica.losses(*as_torch(regions, sentences), dropout=False)[0]
    assert np.isfinite(dropped.item()) and dropped.item() != plain.item()
