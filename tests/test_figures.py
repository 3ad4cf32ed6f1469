"""Attention figures: the lit region is the attended one."""
import matplotlib
matplotlib.use("Agg")

import numpy as np
import pytest

from captioning.notebook.figures import attention_overlay, show_attention


@pytest.mark.parametrize("row, col", [(0, 0), (3, 5), (6, 6), (2, 1)])
def test_one_attended_region_lights_its_own_cell(row, col):
    rgb = np.full((224, 224, 3), 200, np.uint8)
    weights = np.zeros((7, 7))
    weights[row, col] = 1.0
    lit = attention_overlay(rgb, weights)[..., 0].astype(float)
    # The brightest pixels lie in that region's 32 x 32 cell of the photo
    ys, xs = np.nonzero(lit == lit.max())
    assert (ys // 32 == row).all() and (xs // 32 == col).all()
    # and the far corner of the photo is dimmed to the floor (0.25 x 200)
    far = (0 if row > 3 else 223, 0 if col > 3 else 223)
    assert lit[far] == 50


def test_uniform_attention_leaves_the_photo_as_it_is():
    rgb = np.random.RandomState(0).randint(0, 256, (64, 96, 3)).astype(np.uint8)
    assert np.array_equal(attention_overlay(rgb, np.full((7, 7), 1 / 49)), rgb)


def test_bad_weights_are_refused():
    with pytest.raises(ValueError, match="non-negative"):
        attention_overlay(np.zeros((8, 8, 3), np.uint8), -np.ones((7, 7)))
    with pytest.raises(ValueError, match="do not match 2 words on a 7x7 grid"):
        show_attention(np.zeros((8, 8, 3), np.uint8), ["a", "dog"], np.ones((2, 48)),
                       (7, 7), show=False)


def test_the_figure_has_the_photo_and_one_panel_a_word(tmp_path):
    rgb = np.zeros((32, 32, 3), np.uint8)
    fig = show_attention(rgb, ["a", "dog", "runs"], np.ones((3, 49)) / 49, (7, 7),
                         save_path=tmp_path / "att.png", show=False)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["(photo)", "a", "dog", "runs"]
    assert (tmp_path / "att.png").stat().st_size > 1000
