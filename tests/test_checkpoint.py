import captioning.stack  # noqa: F401

import numpy as np
import pytest
import theano

from captioning.checkpoint import (CheckpointMismatch, describe_mismatch,
                                   load_checkpoint, read_checkpoint,
                                   save_checkpoint)


def shared(*shape, value=0.0):
    return theano.shared(np.full(shape, value, "float32"), name="v%s" % (shape,))


def test_round_trip_restores_values_and_history(tmp_path):
    a, b = shared(2, 3, value=1.5), shared(4, value=-2.0)
    path = str(tmp_path / "ckpt.npz")
    save_checkpoint(path, [a, b], {"epoch": [0, 1], "val": [3.5, 3.25]})
    a.set_value(np.zeros((2, 3), "float32"))
    b.set_value(np.zeros(4, "float32"))
    history = load_checkpoint(path, [a, b])
    assert history == {"epoch": [0, 1], "val": [3.5, 3.25]}
    np.testing.assert_array_equal(a.get_value(), np.full((2, 3), 1.5))
    np.testing.assert_array_equal(b.get_value(), np.full(4, -2.0))


def test_mismatched_model_is_refused_and_left_untouched(tmp_path):
    path = str(tmp_path / "ckpt.npz")
    save_checkpoint(path, [shared(2, 3), shared(4)], {})
    a, b = shared(2, 3, value=7.0), shared(5, value=7.0)
    with pytest.raises(ValueError, match="does not fit"):
        load_checkpoint(path, [a, b])
    assert a.get_value()[0, 0] == 7.0  # nothing half-restored
    with pytest.raises(ValueError, match="holds 2 arrays"):
        load_checkpoint(path, [a])


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = str(tmp_path / "ckpt.npz")
    save_checkpoint(path, [shared(2, value=1.0)], {"epoch": [0]})

    def crash_halfway(f, **arrays):
        f.write(b"PK half an archive")
        raise KeyboardInterrupt  # e.g. the user stops the cell mid-write

    monkeypatch.setattr(np, "savez", crash_halfway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, [shared(2, value=9.0)], {"epoch": [1]})
    monkeypatch.undo()
    restored = shared(2)
    assert load_checkpoint(path, [restored]) == {"epoch": [0]}
    np.testing.assert_array_equal(restored.get_value(), [1.0, 1.0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.npz"]


# ------------------------------------------------------------ settings (meta)

def test_meta_round_trip_and_history_still_loads_without_it(tmp_path):
    path = str(tmp_path / "ckpt.npz")
    meta = {"batch_size": 64, "vocabulary": ["#UNK#", "a"], "nested": {"x": 1.5}}
    save_checkpoint(path, [shared(2, value=3.0)], [{"epoch": 1}], meta)
    assert read_checkpoint(path) == ([{"epoch": 1}], meta)
    restored = shared(2)
    # the notebook's call, without meta: meta is not taken for an array
    assert load_checkpoint(path, [restored]) == [{"epoch": 1}]
    np.testing.assert_array_equal(restored.get_value(), [3.0, 3.0])
    assert load_checkpoint(path, [restored], meta=meta) == [{"epoch": 1}]


def test_other_meta_is_refused_naming_the_difference_and_nothing_restored(tmp_path):
    path = str(tmp_path / "ckpt.npz")
    save_checkpoint(path, [shared(2, value=3.0)], [], {"batch_size": 64, "lr": 0.001})
    target = shared(2, value=7.0)
    with pytest.raises(CheckpointMismatch) as caught:
        load_checkpoint(path, [target], meta={"batch_size": 32, "lr": 0.001})
    assert caught.value.differences == ["batch_size: saved 64, now 32"]
    assert "batch_size: saved 64, now 32" in str(caught.value)
    np.testing.assert_array_equal(target.get_value(), [7.0, 7.0])


def test_checkpoint_without_meta_is_refused_when_meta_is_asked(tmp_path):
    path = str(tmp_path / "old.npz")
    save_checkpoint(path, [shared(2, value=3.0)], [])   # as older versions did
    assert read_checkpoint(path) == ([], None)
    target = shared(2, value=7.0)
    with pytest.raises(CheckpointMismatch, match="records no settings"):
        load_checkpoint(path, [target], meta={"batch_size": 64})
    np.testing.assert_array_equal(target.get_value(), [7.0, 7.0])


def test_describe_mismatch_against_hand_written_dicts():
    saved = {"batch_size": 64, "dropout": 0.5, "cnn": "efficientnet_lite0",
             "hyper": {"lstm_units": 512, "embed_size": 256},
             "vocabulary": ["#UNK#", "#START#", "#END#", "a", "dog", "runs"],
             "only_saved": True}
    assert describe_mismatch(saved, dict(saved)) == []
    current = {"batch_size": 32, "dropout": 0.5, "cnn": "googlenet",
               "hyper": {"lstm_units": 200, "embed_size": 256},
               "vocabulary": ["#UNK#", "#START#", "#END#", "a", "cat", "runs"],
               "only_now": 1}
    assert describe_mismatch(saved, current) == [
        "batch_size: saved 64, now 32",
        'cnn: saved "efficientnet_lite0", now "googlenet"',
        "hyper.lstm_units: saved 512, now 200",
        "only_now: saved (not recorded), now 1",
        "only_saved: saved true, now (not recorded)",
        'vocabulary: saved 6 items, now 6 items (item 4: "dog" vs "cat")',
    ]
    # a float that only looks the same as an int is a difference too
    assert describe_mismatch({"clip": 5.0}, {"clip": 5}) == ["clip: saved 5.0, now 5"]
