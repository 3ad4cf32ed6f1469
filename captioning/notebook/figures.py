"""Figures the notebooks show: photos titled with the captions a model gives,
and where an attention model looked for each word."""
import textwrap

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["show_captioned", "attention_overlay", "show_attention"]


def show_captioned(photos, caption_fn, save_path=None, columns=3, width=30):
    """Show each photo with its captions as the title.

    Parameters
    ----------
    photos : dict of name -> HxWx3 uint8 array
    caption_fn : callable(rgb) -> list of str
        Captions for one photo (e.g. greedy and sampled).
    save_path : str, optional
        Also write the figure there (PNG).

    Returns
    -------
    dict of name -> list of str: the captions shown (also printed, so the
    notebook's text output carries them too).
    """
    names = list(photos)
    if not names:
        print("no photos to show")
        return {}
    rows = -(-len(names) // columns)
    # constrained layout leaves room for multi-line titles above every row
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 5.0 * rows),
                             squeeze=False, layout="constrained")
    shown = {}
    for ax, name in zip(axes.flat, names):
        captions = caption_fn(photos[name])
        shown[name] = captions
        print("%s:\n  %s" % (name, "\n  ".join(captions)))
        ax.imshow(photos[name])
        ax.set_title("\n".join(textwrap.fill(c, width) for c in captions), fontsize=9)
        ax.set_xlabel(name, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    if save_path:
        fig.savefig(save_path, dpi=90, bbox_inches="tight")
    plt.show()
    return shown


def attention_overlay(rgb, weights, floor=0.25):
    """The photo lit by one word's attention ("Show, Attend and Tell", fig. 2).

    Parameters
    ----------
    rgb : (H, W, 3) uint8
        The photo as the CNN saw it (the centre crop).
    weights : (rows, cols) array
        Attention over the CNN's grid of regions (row-major, as the spatial
        features are ordered); any non-negative scale.
    floor : float
        Brightness of the regions not attended to (0 = black).

    Returns
    -------
    (H, W, 3) uint8: each pixel scaled by ``floor + (1 - floor) * a``, where
    ``a`` is the weights upsampled smoothly to the photo's size and scaled to
    a maximum of 1.
    """
    from PIL import Image

    rgb = np.asarray(rgb)
    weights = np.asarray(weights, dtype=np.float32)
    if weights.ndim != 2 or weights.min() < 0:
        raise ValueError("weights must be a non-negative (rows, cols) grid, got "
                         "shape %s" % (weights.shape,))
    h, w = rgb.shape[:2]
    # bilinear on the region centres: a smooth map, as the paper upsamples
    up = np.asarray(Image.fromarray(weights, mode="F").resize((w, h), Image.BILINEAR))
    up = up / up.max() if up.max() > 0 else up
    lit = rgb.astype(np.float32) * (floor + (1 - floor) * up[..., None])
    return np.clip(np.round(lit), 0, 255).astype(np.uint8)


def show_attention(rgb, words, weights, grid, save_path=None, columns=5, show=True):
    """The photo, then one panel per word lit where the model attended.

    Parameters
    ----------
    rgb : (H, W, 3) uint8, the centre crop the CNN saw
    words : list of str, the caption's words (and ``#END#`` if wanted)
    weights : (len(words), rows * cols) array, each row one word's attention
    grid : (rows, cols) of the CNN's spatial map (7 x 7 for Lite0 at 224 px)
    save_path : str, optional: also write the figure there (PNG)
    show : bool: ``plt.show()`` (notebooks); False closes it (commands)
    """
    weights = np.asarray(weights)
    if weights.shape != (len(words), grid[0] * grid[1]):
        raise ValueError("weights of shape %s do not match %d words on a %dx%d grid"
                         % (weights.shape, len(words), grid[0], grid[1]))
    panels = [("(photo)", np.asarray(rgb))] + [
        (word, attention_overlay(rgb, row.reshape(grid)))
        for word, row in zip(words, weights)]
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.6 * rows),
                             squeeze=False, layout="constrained")
    for ax, (title, image) in zip(axes.flat, panels):
        ax.imshow(image)
        ax.set_title(title, fontsize=11)
        ax.axis("off")
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    if save_path:
        fig.savefig(save_path, dpi=90, bbox_inches="tight")
    if show:
        plt.show()
    else:
        plt.close(fig)
    return fig
