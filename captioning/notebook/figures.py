"""Figures the notebooks show: photos titled with the captions a model gives."""
import textwrap

import matplotlib.pyplot as plt

__all__ = ["show_captioned"]


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
