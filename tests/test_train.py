"""`caption train`: the selection slice, the learning-rate schedule, early
stopping, the kept epoch and refused resumes.

Runs on the tiny fake Flickr8k of ``_flickr8k_fakes`` (8 train photos, 3
dev photos, a fake CNN); the expected values are worked out by hand here.
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import captioning.training as train_module
from _flickr8k_fakes import DEV, TRAIN, fake_encoder, make_fake_flickr8k
from captioning.commands import main as caption
from captioning.training import (next_learning_rate, selection_split,
                              stale_epochs, stop_reason)

TINY = ["--embed-size", "8", "--lstm-units", "16", "--batch-size", "8"]


def losses(*values):
    return [{"epoch": i + 1, "selection_loss": v} for i, v in enumerate(values)]


# ------------------------------------------------------------ pure rules

def test_selection_split_holds_out_a_tenth_up_to_500_photos_by_name():
    names = ["%06d.jpg" % i for i in range(6000)]
    train, held = selection_split(names)
    assert len(held) == 500 and len(train) == 5500
    assert not set(train) & set(held) and set(train) | set(held) == set(names)
    # the same photos whatever the order of the list
    assert sorted(selection_split(names[::-1])[1]) == sorted(held)
    assert len(selection_split(names[:300])[1]) == 30
    assert len(selection_split(names[:8])[1]) == 1


@pytest.mark.slow
def test_selection_split_is_the_same_in_another_process():
    names = ["photo%d.jpg" % i for i in range(200)]
    code = ("import captioning.training as t; print(' '.join(t.selection_split("
            "['photo%d.jpg' % i for i in range(200)])[1]))")
    env = dict(os.environ, PYTHONHASHSEED="12345")
    other = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                           capture_output=True, text=True).stdout.split()
    assert other == selection_split(names)[1]


def test_stale_epochs_counts_epochs_since_the_last_real_improvement():
    assert stale_epochs(losses(3.0)) == 0
    assert stale_epochs(losses(3.0, 2.5)) == 0
    assert stale_epochs(losses(3.0, 2.5, 2.6)) == 1
    assert stale_epochs(losses(3.0, 2.5, 2.6, 2.7, 2.4)) == 0
    # gains below MIN_DELTA (0.001 nats) are no improvement
    assert stale_epochs(losses(3.0, 2.9995, 2.9991)) == 2
    assert stale_epochs(losses(3.0, 2.998)) == 0


def test_learning_rate_is_halved_without_improvement_down_to_the_floor():
    assert next_learning_rate(losses(3.0, 2.5), 1e-3, 1e-4) == 1e-3
    assert next_learning_rate(losses(3.0, 3.1), 1e-3, 1e-4) == 5e-4
    assert next_learning_rate(losses(3.0, 3.1), 1.5e-4, 1e-4) == 1e-4
    assert next_learning_rate(losses(3.0, 3.1), 1e-4, 1e-4) == 1e-4


def test_stop_reason():
    three_stale = losses(3.0, 2.5, 2.6, 2.6, 2.6)
    assert stop_reason(three_stale, 60, epochs=40, minutes=55, patience=3) == "plateau"
    assert stop_reason(three_stale, 60, epochs=40, minutes=55, patience=4) is None
    assert stop_reason(three_stale, 60, epochs=5, minutes=55, patience=4) == "epochs"
    assert stop_reason(three_stale, 55 * 60, epochs=40, minutes=55, patience=4) == "minutes"
    assert stop_reason([], 0, epochs=40, minutes=55, patience=3) is None


# ------------------------------------------------------------ end to end

def main(argv, encoder=None):
    """``caption ARGV`` with a fake CNN: no real CNN in these tests (fake
    photos); each test's own CAPTION_CACHE_DIR comes from conftest.py."""
    return caption(argv, encoder=encoder or fake_encoder())


def train_args(folder, out, *extra):
    return ["train", "--flickr8k", str(folder), "--out", str(out)] + TINY + list(extra)


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory):
    """A finished one-epoch run, to resume from (copy it before changing it)."""
    root = tmp_path_factory.mktemp("base")
    with pytest.MonkeyPatch.context() as patch:
        encoder = fake_encoder()
        patch.setenv("CAPTION_CACHE_DIR", str(root / "cache"))
        folder = make_fake_flickr8k(root / "flickr8k")
        assert main(train_args(folder, root / "model", "--epochs", "1"),
                    encoder) == 0
    return folder, root / "model", encoder.loaded


def copy_run(one_epoch, tmp_path):
    folder, model, _ = one_epoch
    shutil.copytree(model, tmp_path / "model")
    return folder, tmp_path / "model"


def files_of(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_train_holds_out_train_photos_and_never_reads_dev(one_epoch):
    folder, model, calls = one_epoch
    encoded = {os.path.basename(p) for p in calls}
    assert encoded == set(TRAIN)          # dev photos are never even encoded
    training = json.loads((model / "model.json").read_text())["training"]
    held = training["selection_images"]
    assert len(held) == 1 and set(held) < set(TRAIN) and not set(held) & set(DEV)
    # 8 train photos, 1 held out: 7 photos (35 captions) to train on
    state = np.load(model / "train_state.npz")
    meta = json.loads(state["meta"].tobytes().decode())
    assert meta["train_data"].startswith("7 photos, 35 captions, sha256 ")
    assert meta["selection_data"].startswith("1 photos, 5 captions, sha256 ")
    assert training["stopped"]["reason"] == "epochs"


def test_plateau_stops_training_and_the_lowest_selection_loss_is_kept(
        tmp_path, monkeypatch, capsys, one_epoch):
    folder = make_fake_flickr8k(tmp_path / "flickr8k")
    out = tmp_path / "model"
    # best loss at epoch 2; greedy BLEU-4 best at epoch 3; 2.5005 is no gain
    script = {"loss": [3.0, 2.5, 2.6, 2.5005, 2.7, 2.0, 2.0, 2.0, 2.0, 2.0],
              "bleu4": [0.1, 0.1, 0.5, 0.2, 0.1, 0.9, 0.9, 0.9, 0.9, 0.9]}
    weights = []

    def scripted(model, *args, **kwargs):
        epoch = len(weights)
        weights.append({k: v.copy() for k, v in model.get_param_values().items()})
        bleu = script["bleu4"][epoch]
        return script["loss"][epoch], {"bleu1": bleu, "bleu4": bleu, "cider": bleu}

    monkeypatch.setattr(train_module, "evaluate_selection", scripted)
    assert main(train_args(folder, out, "--epochs", "10")) == 0
    err = capsys.readouterr().err
    # epochs 3, 4, 5 did not improve on 2.5: patience 3 stops after epoch 5
    assert len(weights) == 5
    assert "stopping after epoch 5: the selection loss has not improved by " \
           "0.001 for 3 epochs" in err and "saved ~" in err
    training = json.loads((out / "model.json").read_text())["training"]
    assert training["stopped"]["reason"] == "plateau"
    assert training["stopped"]["after_epoch"] == 5
    assert training["epoch"] == 2
    # learning rate used in each epoch: halved after epochs 3 and 4
    assert [h["learning_rate"] for h in training["history"]] == pytest.approx(
        [1e-3, 1e-3, 1e-3, 5e-4, 2.5e-4])
    with np.load(out / "params.npz") as kept:
        for name, value in weights[1].items():
            np.testing.assert_array_equal(kept[name], value)
        assert any(not np.array_equal(kept[k], v) for k, v in weights[2].items())
    # the same photos are held out as in another run on the same data
    base = json.loads((one_epoch[1] / "model.json").read_text())["training"]
    assert training["selection_images"] == base["selection_images"]


def test_a_finished_run_says_so_and_changes_nothing(one_epoch, tmp_path, capsys):
    folder, model = copy_run(one_epoch, tmp_path)
    before = files_of(model)
    assert main(train_args(folder, model, "--epochs", "1")) == 0
    err = capsys.readouterr().err
    assert "is finished after epoch 1: 1 epochs done (--epochs 1)" in err
    assert "rerun with a larger --epochs" in err
    assert files_of(model) == before


@pytest.mark.parametrize("option, old, new", [
    ("--batch-size", "8", "4"), ("--lstm-units", "16", "12")])
def test_a_resume_with_another_option_is_refused_naming_it(
        one_epoch, tmp_path, capsys, option, old, new):
    folder, model = copy_run(one_epoch, tmp_path)
    before = files_of(model)
    args = train_args(folder, model, "--epochs", "2")
    args[args.index(option) + 1] = new
    assert main(args) == 2
    err = capsys.readouterr().err
    key = option[2:].replace("-", "_")
    error, = [line for line in err.splitlines() if "error:" in line]
    assert "%s: saved %s, now %s" % (key, old, new) in error
    assert "Use the same options, or --out a new directory" in error
    assert files_of(model) == before


def test_a_resume_with_other_captions_is_refused(one_epoch, tmp_path, capsys):
    folder, model = copy_run(one_epoch, tmp_path)
    held = json.loads((model / "model.json").read_text())["training"]["selection_images"]
    trained_on = next(n for n in TRAIN if n not in held)
    changed = tmp_path / "flickr8k"
    shutil.copytree(folder, changed)
    tokens = changed / "Flickr8k.token.txt"
    tokens.write_text(tokens.read_text().replace(
        "%s#0\t" % trained_on, "%s#0\ta dog and " % trained_on))
    before = files_of(model)
    assert main(train_args(changed, model, "--epochs", "2")) == 2
    err = capsys.readouterr().err
    assert 'train_data: saved "7 photos, 35 captions, sha256 ' in err
    assert "selection_data" not in err
    assert files_of(model) == before


def test_a_checkpoint_without_settings_is_refused(one_epoch, tmp_path, capsys):
    folder, model = copy_run(one_epoch, tmp_path)
    state = model / "train_state.npz"
    with np.load(state) as saved:
        arrays = {k: saved[k] for k in saved.files if k != "meta"}
    with open(state, "wb") as f:
        np.savez(f, **arrays)                 # as older versions wrote it
    assert main(train_args(folder, model, "--epochs", "2")) == 2
    err = capsys.readouterr().err
    error, = [line for line in err.splitlines() if "error:" in line]
    assert "records no settings" in error and "--out a new directory" in error


def test_an_unreadable_selection_set_is_refused(tmp_path, capsys):
    folder = make_fake_flickr8k(tmp_path / "flickr8k")
    held, = selection_split(TRAIN)[1]
    (folder / "images" / held).write_bytes(b"not a jpeg")
    assert main(train_args(folder, tmp_path / "model", "--epochs", "1")) == 2
    err = capsys.readouterr().err
    assert "skipping" in err and held in err
    assert "no readable photo left to choose the epoch" in err
    assert not (tmp_path / "model").exists()
