import captioning  # noqa: F401

import numpy as np
import pytest
import theano

from captioning.checkpoint import load_checkpoint, save_checkpoint


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
