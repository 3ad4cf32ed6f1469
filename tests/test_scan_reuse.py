"""captioning.stack.speed.scan_reuse: Scan's Python loop decides whether to copy
an output by the data address; the results are those of Theano's own loop.

The reference is numpy (each scan below written as a Python loop) and, for
the same graphs, Theano's own ``Scan.execute`` (the unpatched method, kept
by the module). Outputs that the inner function writes into the buffer it
is given (in-place ops), outputs it allocates, recurrent states, a
gradient scan (mit-mot states) and NaN contents (where Theano's content
comparison said "not reused" and copied) are all covered.
"""
import numpy as np
import pytest

import captioning.stack  # noqa: F401  (Theano flags first)
import theano
import theano.tensor as T
from theano.scan_module import scan_op

from captioning.stack.speed import scan_reuse


def test_installed_by_the_speed_switch():
    assert scan_op.Scan.execute.__module__ == "captioning.stack.speed.scan_reuse"
    assert scan_reuse._original.__module__ == "theano.scan_module.scan_op"


def build(execute):
    """A scan with a recurrent state, an allocated output and an in-place
    one, and its gradient (another scan), compiled with ``execute``."""
    saved = scan_op.Scan.execute
    scan_op.Scan.execute = execute
    try:
        x, h0, w = T.matrix("x"), T.vector("h0"), T.matrix("w")

        def tick(row, h, w):
            new = T.tanh(T.dot(h, w) + row)
            return new, new * 2 + row, T.exp(row)

        (hs, doubled, exps), _ = theano.scan(tick, sequences=x, outputs_info=[h0, None, None],
                                             non_sequences=w)
        cost = (hs ** 2).sum() + doubled.sum()
        return theano.function([x, h0, w], [hs, doubled, exps, theano.grad(cost, w)])
    finally:
        scan_op.Scan.execute = saved


def numpy_reference(x, h0, w):
    h, hs, doubled = h0.astype("f8"), [], []
    for row in x.astype("f8"):
        h = np.tanh(h @ w + row)
        hs.append(h)
        doubled.append(h * 2 + row)
    return np.array(hs), np.array(doubled), np.exp(x.astype("f8"))


@pytest.mark.parametrize("with_nan", [False, True])
def test_same_results_as_numpy_and_theanos_own_loop(with_nan, monkeypatch):
    rng = np.random.RandomState(0)
    x = rng.randn(7, 5).astype("float32")
    h0 = rng.randn(5).astype("float32")
    w = (rng.randn(5, 5) * 0.5).astype("float32")
    if with_nan:
        x[3, 1] = np.nan
    calls = []
    address = scan_reuse._data_address
    monkeypatch.setitem(scan_op.Scan.execute.__globals__, "_data_address",
                        lambda array: calls.append(1) or address(array))
    patched = build(scan_op.Scan.execute)(x, h0, w)
    assert len(calls) > 2 * len(x)   # the check ran every tick, by address
    own = build(scan_reuse._original)(x, h0, w)
    for got, expected in zip(patched, own):
        np.testing.assert_array_equal(got, expected)
    for got, expected in zip(patched[:3], numpy_reference(x, h0, w)):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert np.isnan(patched[0][4:]).all() == with_nan   # NaN spreads through h
