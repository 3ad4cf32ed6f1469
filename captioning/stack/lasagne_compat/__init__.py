"""Backport of the Lasagne master API onto PyPI Lasagne 0.1 + Theano 1.0.5.

Written from Lasagne's documented behaviour, one module per idea:

* ``pool``: the old ``theano.tensor.signal.downsample`` module, without
  which Lasagne 0.1 does not import (pooling itself needs no patch);
* ``lstm``: ``LSTMLayer`` with a Layer as ``hid_init``/``cell_init`` (in
  master's incomings order), master's output-gate peephole,
  ``grad_clipping=0`` meaning no clipping, ``only_return_final``;
* ``conv``: ``Conv2DLayer`` with ``flip_filters`` and ``num_groups``.

Each fix is applied only where the installed Lasagne lacks the feature, so
with a newer Lasagne :func:`apply` changes nothing.
"""
__all__ = ["apply"]

_applied = False


def apply():
    """Patch the installed Lasagne in place (idempotent)."""
    global _applied
    if _applied:
        return
    from . import pool
    pool.install_downsample_shim()
    # These import lasagne, which now succeeds; each backport checks the
    # installed class and does nothing if it already has the feature.
    from . import conv, lstm
    lstm.backport()
    conv.backport()
    _applied = True
