"""Theano is configured once, and a user's THEANO_FLAGS win."""
import os
import subprocess
import sys

import pytest

from captioning.theano_setup import DEFAULT_FLAGS, merge_flags


def parse(flags):
    return dict(item.split("=", 1) for item in flags.split(","))


def test_defaults_fill_an_empty_environment():
    assert parse(merge_flags(None)) == DEFAULT_FLAGS


def test_user_values_win_and_extra_flags_are_kept():
    flags = parse(merge_flags("floatX=float64, optimizer=fast_compile"))
    assert flags["floatX"] == "float64"
    assert flags["optimizer"] == "fast_compile"
    assert flags["blas.ldflags"] == DEFAULT_FLAGS["blas.ldflags"]


def test_malformed_entry_is_an_error():
    with pytest.raises(ValueError, match="key=value"):
        merge_flags("floatX")


def run_python(code, flags=None):
    env = dict(os.environ)
    env.pop("THEANO_FLAGS", None)
    if flags is not None:
        env["THEANO_FLAGS"] = flags
    return subprocess.run([sys.executable, "-c", code], env=env, text=True,
                          capture_output=True, check=True).stdout.split()


def test_import_configures_theano_in_a_fresh_process():
    out = run_python("import captioning, theano; "
                     "from captioning.theano_setup import DEFAULT_FLAGS as D; "
                     "print(theano.config.floatX, "
                     "theano.config.blas.ldflags == D['blas.ldflags'])")
    assert out == ["float32", "True"]


def test_blas_is_the_lp64_openblas_of_the_scipy_wheel():
    # Theano's C code calls sgemm_ & co. with 32-bit ints: numpy's own
    # OpenBLAS (ILP64, symbols suffixed 64_) would not do.
    flags = DEFAULT_FLAGS["blas.ldflags"].split()
    assert flags, "no OpenBLAS found in scipy.libs: BLAS goes through numpy"
    libdir = [f[2:] for f in flags if f.startswith("-L")][0]
    lib = [f[3:] for f in flags if f.startswith("-l:")][0]
    assert os.path.isfile(os.path.join(libdir, lib))
    assert "openblas64" not in lib


def test_fresh_process_keeps_the_users_flag():
    out = run_python("import captioning, theano; print(theano.config.floatX)",
                     flags="floatX=float64")
    assert out == ["float64"]
