"""captioning.stack.speed.fastmath's vector maths header: loops that GCC vectorises call
glibc's libmvec, whose results agree with numpy's float64 maths."""
import re

import numpy as np
import pytest

import captioning.stack  # noqa: F401  (Theano flags first)
import theano
import theano.tensor as T
from captioning.stack.speed import fastmath

needs_header = pytest.mark.skipif(
    not fastmath.SIMD_MATH.is_file(),
    reason="no vector maths header: `make setup` did not build it here "
           "(needs glibc's libmvec with tanhf, glibc >= 2.35)")


def declared(header_text):
    return re.findall(r"float (\w+)\(float\)", header_text)


@needs_header
def test_installed_header_makes_loops_call_libmvec_and_agree_with_numpy(tmp_path):
    names = declared(fastmath.SIMD_MATH.read_text())
    assert names and set(names) <= set(fastmath.SIMD_FUNCTIONS), names
    for name in names:
        fastmath._check_simd_function(tmp_path, fastmath.SIMD_MATH, name)


@needs_header
def test_header_declares_exactly_the_functions_that_pass(tmp_path, monkeypatch):
    # A function whose check fails (here: pretend libmvec lacks tanhf, as
    # before glibc 2.35) is left out; the others still make the header.
    real_check = fastmath._check_simd_function

    def check(tmp, header, name, **kwargs):
        if name == "tanhf":
            raise RuntimeError("tanhf: the loop does not call libmvec")
        return real_check(tmp, header, name, **kwargs)

    monkeypatch.setattr(fastmath, "_check_simd_function", check)
    monkeypatch.setattr(fastmath, "SIMD_MATH", tmp_path / "simd_math.h")
    fastmath._build_simd_math(tmp_path)
    assert declared((tmp_path / "simd_math.h").read_text()) == ["expf", "logf"]


@needs_header
def test_theano_compiles_with_the_header_and_libmvec():
    assert "-include %s -lmvec" % fastmath.SIMD_MATH in theano.config.gcc.cxxflags


@needs_header
def test_lstm_gate_maths_agrees_with_numpy():
    # sigmoid and tanh on column slices of one gate matrix, as in the LSTM
    gates = T.matrix()
    cell = T.matrix()
    i, f, g = (gates[:, k * 40:(k + 1) * 40] for k in range(3))
    new_cell = T.nnet.sigmoid(f) * cell + T.nnet.sigmoid(i) * T.tanh(g)
    fn = theano.function([gates, cell], [new_cell, T.log(T.exp(cell) + 1)])
    rng = np.random.RandomState(0)
    z = (rng.randn(50, 120) * 6).astype("float32")
    c = rng.randn(50, 40).astype("float32")
    got_cell, got_softplus = fn(z, c)
    z64, c64 = z.astype("f8"), c.astype("f8")

    def sig(x):
        return 1 / (1 + np.exp(-x))
    expected = sig(z64[:, 40:80]) * c64 + sig(z64[:, :40]) * np.tanh(z64[:, 80:])
    np.testing.assert_allclose(got_cell, expected, rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(got_softplus, np.log(np.exp(c64) + 1), rtol=2e-6)


def test_flags_name_the_header_only_when_it_was_built():
    # The header exists only after its self-check passed; theano_flags()
    # adds it only then (no header, no -lmvec).
    flags = fastmath.theano_flags().get("gcc.cxxflags", "")
    assert ("-lmvec" in flags) == fastmath.SIMD_MATH.is_file()
