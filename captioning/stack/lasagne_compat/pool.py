"""Pooling: the old Theano module Lasagne 0.1 imports, nothing else.

Lasagne 0.1's ``lasagne.layers.pool`` does ``from theano.tensor.signal import
downsample``, a module removed in Theano 0.9, so ``import lasagne`` fails
without it. :func:`install_downsample_shim` provides its one function used
there, ``max_pool_2d``, on top of ``theano.tensor.signal.pool.pool_2d``.

The layers themselves need no patch: with the shim, Pool2DLayer and
MaxPool2DLayer give master's documented shapes (``ignore_border=False``
appends one partial region, i.e. rounds up like Caffe when pad=0; a pad
requires ``ignore_border=True``, as master documents).
tests/test_lasagne_compat_pool.py checks that against numpy.
"""
import sys
import types

import theano.tensor.signal
from theano.tensor.signal import pool

__all__ = ["install_downsample_shim"]

SHIM_NAME = "theano.tensor.signal.downsample"


def max_pool_2d(input, ds, ignore_border=None, st=None, padding=(0, 0),
                mode="max"):
    """The removed ``downsample.max_pool_2d`` (old argument names)."""
    return pool.pool_2d(input, ws=ds, ignore_border=ignore_border,
                        stride=st, pad=padding, mode=mode)


def install_downsample_shim():
    """Make ``theano.tensor.signal.downsample`` importable (idempotent; does
    nothing where the module exists)."""
    if SHIM_NAME in sys.modules or hasattr(theano.tensor.signal, "downsample"):
        return
    module = types.ModuleType(SHIM_NAME, "Shim of the old Theano pooling module.")
    module.max_pool_2d = max_pool_2d
    sys.modules[SHIM_NAME] = module
    theano.tensor.signal.downsample = module
