"""Backport of the Lasagne master API onto PyPI Lasagne 0.1 + Theano 1.0.5.

Written from Lasagne's documented behaviour (not its code). Each fix is
applied only where the installed Lasagne lacks the feature, so with a newer
Lasagne ``apply()`` changes nothing.
"""
import sys
import types

__all__ = ["apply"]

_applied = False


def _install_downsample_shim():
    """Lasagne 0.1 imports `theano.tensor.signal.downsample`, removed in
    Theano 0.9; provide its `max_pool_2d` on top of `pool.pool_2d`."""
    import theano.tensor.signal
    from theano.tensor.signal import pool

    name = "theano.tensor.signal.downsample"
    if name in sys.modules or hasattr(theano.tensor.signal, "downsample"):
        return

    def max_pool_2d(input, ds, ignore_border=None, st=None, padding=(0, 0),
                    mode="max"):
        return pool.pool_2d(input, ws=ds, ignore_border=ignore_border,
                            stride=st, pad=padding, mode=mode)

    module = types.ModuleType(name, "Shim of the old Theano pooling module.")
    module.max_pool_2d = max_pool_2d
    sys.modules[name] = module
    theano.tensor.signal.downsample = module


def apply():
    """Patch the installed Lasagne in place (idempotent)."""
    global _applied
    if _applied:
        return
    _install_downsample_shim()
    import lasagne  # noqa: F401  (imports now succeed)
    # Each fix below checks the installed Lasagne and does nothing if it
    # already has the feature.
    # [LSTM section: calls]
    # [Conv/pool section: calls]
    _applied = True


# ---------------------------------------------------------------- LSTM section


# ---------------------------------------------------------------- Conv/pool section
