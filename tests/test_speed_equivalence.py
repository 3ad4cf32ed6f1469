"""The speed settings do not change what the model computes.

Two fresh processes train the same small model (same seed, same batch) for
one adam step:

* *fast*: the project's defaults (``CAPTION_SPEEDUPS`` on: BLAS linked
  directly, the optimizer settings and rewrites, the fused cross-entropy
  and kept buffers of CaptionModel) and ``warn_float64=raise``, so any
  float64 variable in the train or validation graph is an error;
* *baseline*: ``CAPTION_SPEEDUPS=0``: Theano's own behaviour (BLAS through
  numpy's C-API, Theano's own optimizer and exp/log loops), the unfused loss.

The loss and the parameters after the step must agree to float32 precision.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent

# Two fresh processes, each compiling the train graph with other settings.
pytestmark = pytest.mark.slow

RUN = textwrap.dedent("""
    import json, sys
    import captioning.stack
    import lasagne, numpy as np, theano
    from captioning.model import CaptionModel, Vocabulary
    lasagne.random.set_rng(np.random.RandomState(42))
    words = ["#UNK#", "#START#", "#END#"] + ["w%d" % i for i in range(57)]
    model = CaptionModel(Vocabulary(words), embed_size=8, lstm_units=12)
    rng = np.random.RandomState(0)
    codes = rng.randn(6, 1000).astype("float32")
    sentences = np.full((6, 7), -1, dtype="int32")
    for i, n in enumerate([7, 5, 4, 7, 3, 6]):
        sentences[i, :n] = [1] + list(rng.randint(3, 60, size=n - 2)) + [2]
    train_step, val_step = model.compile_train()
    val_before = val_step(codes, sentences)
    loss = train_step(codes, sentences)
    values = {name: p.get_value() for name, p in model.named_params().items()}
    np.savez(sys.argv[1], loss=loss, val_before=val_before,
             val_after=val_step(codes, sentences), **values)
    # What the compiled train step runs, read from its graph.
    ops = {type(node.op).__name__ for node in train_step.maker.fgraph.toposort()}
    print("REPORT " + json.dumps({
        "blas": theano.config.blas.ldflags,
        "loss_ops": sorted(op for op in ops if "Crossentropy" in op),
        "allow_gc": train_step.maker.linker.allow_gc}))
""")


def report(result):
    assert result.returncode == 0, result.stderr[-3000:]
    line = [l for l in result.stdout.splitlines() if l.startswith("REPORT ")][-1]
    return json.loads(line.split(" ", 1)[1])


def run(tmp_path, name, flags, speedups):
    env = dict(os.environ, THEANO_FLAGS=flags, CAPTION_SPEEDUPS=speedups)
    out = tmp_path / (name + ".npz")
    result = subprocess.run([sys.executable, "-c", RUN, str(out)], env=env,
                            cwd=ROOT, text=True, capture_output=True)
    return result, out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("speed")
    fast = run(tmp, "fast", "warn_float64=raise", speedups="1")
    base = run(tmp, "baseline", "", speedups="0")
    return fast, base


def test_no_float64_in_the_train_and_val_graphs(runs):
    (result, _), _ = runs
    # warn_float64=raise passed, on the fused loss (the project's own op)
    assert "VectorCrossentropySoftmaxArgmax1HotWithBias" in report(result)["loss_ops"]


def test_fast_settings_compute_what_the_baseline_computes(runs):
    (fast, fast_out), (base, base_out) = runs
    fast_report, base_report = report(fast), report(base)
    assert base_report["blas"] == "" and base_report["allow_gc"] is True
    assert base_report["loss_ops"], "no cross-entropy op in the baseline graph"
    assert not any("Softmax" in op for op in base_report["loss_ops"]), \
        "the baseline's loss is fused: %s" % base_report["loss_ops"]
    assert fast_report["blas"], "BLAS is not linked directly"
    assert fast_report["allow_gc"] is False
    with np.load(fast_out) as f, np.load(base_out) as b:
        assert set(f.files) == set(b.files)
        for key in ("loss", "val_before", "val_after"):
            np.testing.assert_allclose(f[key], b[key], rtol=2e-6, err_msg=key)
        for key in sorted(set(f.files) - {"loss", "val_before", "val_after"}):
            assert f[key].dtype == np.float32, key
            # one adam step moves a weight by at most ~learning rate (1e-3)
            np.testing.assert_allclose(f[key], b[key], rtol=1e-5, atol=1e-6,
                                       err_msg=key)
