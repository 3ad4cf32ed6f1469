"""Theano is configured once, and a user's THEANO_FLAGS win (or, for
gcc.cxxflags and optimizer_excluding, are added to the defaults)."""
import ctypes
import os
import re
import subprocess
import sys
import textwrap

import pytest

from captioning.stack.speed import fastmath
from captioning.stack.theano_setup import (BLAS_RENAMES, DEFAULT_FLAGS, SPEED_FLAGS, STACK_FLAGS,
                                     blas_library, merge_flags)

# The defaults with the speed-ups on, whatever this process's CAPTION_SPEEDUPS.
ON = {**STACK_FLAGS, **SPEED_FLAGS}
RENAMES = "-include %s" % BLAS_RENAMES


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


def test_users_cxxflags_are_added_after_the_defaults():
    defaults = {"floatX": "float32", "gcc.cxxflags": "-g0 -include /x/names.h"}
    flags = parse(merge_flags("gcc.cxxflags=-O2 -DX=1", defaults))
    assert flags["gcc.cxxflags"] == "-g0 -include /x/names.h -O2 -DX=1"


def test_users_optimizer_excluding_is_joined_with_the_default():
    defaults = {"optimizer_excluding": "local_dot22_to_dot22scalar"}
    flags = parse(merge_flags("optimizer_excluding=a:local_dot22_to_dot22scalar:b", defaults))
    assert flags["optimizer_excluding"] == "local_dot22_to_dot22scalar:a:b"


def test_merging_merged_flags_again_changes_nothing():
    once = merge_flags("gcc.cxxflags=-DX,optimizer_excluding=a,floatX=float64", ON)
    assert merge_flags(once, ON) == once


def test_users_own_blas_library_drops_the_renaming_header():
    # The header renames sgemm_ & co. to the symbols of the default library
    # only; another library keeps the plain names.
    if RENAMES not in ON["gcc.cxxflags"]:
        pytest.skip("no scipy-openblas32 here: nothing is renamed")
    flags = parse(merge_flags("blas.ldflags=-lblas", ON))
    assert flags["blas.ldflags"] == "-lblas"
    assert flags["gcc.cxxflags"] == fastmath.theano_flags().get("gcc.cxxflags", "")


def run_python(code, flags=None):
    env = dict(os.environ)
    env.pop("THEANO_FLAGS", None)
    env.pop("CAPTION_SPEEDUPS", None)
    if flags is not None:
        env["THEANO_FLAGS"] = flags
    return subprocess.run([sys.executable, "-c", code], env=env, text=True,
                          capture_output=True, check=True).stdout.split()


@pytest.mark.slow
def test_import_configures_theano_in_a_fresh_process():
    out = run_python("import captioning.stack, theano; "
                     "from captioning.stack.theano_setup import DEFAULT_FLAGS as D; "
                     "print(theano.config.floatX, "
                     "theano.config.blas.ldflags == D['blas.ldflags'])")
    assert out == ["float32", "True"]


def test_blas_is_the_current_openblas_of_scipy_openblas32():
    # Theano's C code calls sgemm_ & co. with 32-bit ints: numpy's own
    # OpenBLAS (ILP64, symbols suffixed 64_) would not do; scipy-openblas32
    # is LP64 with prefixed symbols, renamed by an -include'd header.
    path = blas_library(DEFAULT_FLAGS["blas.ldflags"])
    assert path, "no OpenBLAS found: BLAS goes through numpy"
    assert os.path.basename(path) == "libscipy_openblas.so", path
    assert os.path.isfile(path)
    assert "-include %s" % BLAS_RENAMES in DEFAULT_FLAGS["gcc.cxxflags"]


def test_every_blas_function_theano_declares_is_renamed_to_the_library():
    import captioning.stack  # noqa: F401
    from theano.tensor import blas_headers
    library = ctypes.CDLL(blas_library(DEFAULT_FLAGS["blas.ldflags"]))
    declared = set(re.findall(r"\b([a-z][a-z0-9_]*_)\s*\(",
                              blas_headers.blas_header_text()))
    renames = dict(re.findall(r"^#define (\w+) (\w+)$", BLAS_RENAMES.read_text(), re.M))
    provided = {name for name in declared if hasattr(library, "scipy_" + name)}
    assert {"sgemm_", "sgemv_", "sger_", "sdot_", "dgemm_"} <= provided
    assert provided <= set(renames), sorted(provided - set(renames))
    for name, target in renames.items():
        assert target == "scipy_" + name and hasattr(library, target), name
    # What is declared but not provided must never be called by Theano's ops.
    unprovided = declared - provided
    for module in ("blas", "blas_c", "blas_scipy"):
        source = open(os.path.join(os.path.dirname(blas_headers.__file__),
                                   module + ".py")).read()
        called = set(re.findall(r"\b([a-z][a-z0-9_]*_)\s*\(", source))
        assert not (called & unprovided), (module, called & unprovided)


@pytest.mark.slow
def test_theano_products_run_on_that_library_and_equal_numpy():
    code = textwrap.dedent("""
        import captioning.stack, numpy as np, theano, theano.tensor as T
        a, b, v = T.matrix(), T.matrix(), T.vector()
        f = theano.function([a, b, v], [T.dot(a, b), T.dot(a, v)])
        rng = np.random.RandomState(0)
        x, y, z = (rng.randn(*s).astype("float32") for s in [(70, 90), (90, 50), (90,)])
        m, g = f(x, y, z)
        ops = {type(n.op).__name__ for n in f.maker.fgraph.toposort()}
        err = max(abs(m - x.astype("f8") @ y).max(), abs(g - x.astype("f8") @ z).max())
        maps = open("/proc/self/maps").read()
        print(sorted(ops), "libscipy_openblas.so" in maps, err < 1e-4)
    """)
    out = run_python(code)
    assert out[-2:] == ["True", "True"], out
    assert "'CGemv'," in out or "['CGemv'," in out, out
    assert any("Dot22" in word for word in out), out


@pytest.mark.slow
def test_fresh_process_keeps_the_users_flag():
    out = run_python("import captioning.stack, theano; print(theano.config.floatX)",
                     flags="floatX=float64")
    assert out == ["float64"]


@pytest.mark.slow
def test_users_cxxflags_and_exclusions_keep_blas_and_the_defaults_working():
    # A user's gcc.cxxflags used to replace the default ones, and with them
    # the header that renames Theano's BLAS calls to the library that
    # blas.ldflags links (and fastmath's include path): no module compiled.
    code = textwrap.dedent("""
        import captioning.stack, numpy as np, theano, theano.tensor as T
        a, b = T.matrix(), T.matrix()
        f = theano.function([a, b], T.dot(a, b))
        rng = np.random.RandomState(0)
        x, y = rng.randn(70, 90).astype("float32"), rng.randn(90, 50).astype("float32")
        err = abs(f(x, y) - x.astype("f8") @ y).max()
        ops = [type(n.op).__name__ for n in f.maker.fgraph.toposort()]
        excluded = theano.compile.get_default_mode()._optimizer.exclude
        print(ops == ["Dot22"], err < 1e-4, "libscipy_openblas.so" in open("/proc/self/maps").read(),
              theano.config.gcc.cxxflags.endswith(" -DCAPTIONING_USER_FLAG"),
              {"local_dot22_to_dot22scalar", "captioning_sum0_to_gemv"} <= set(excluded))
    """)
    out = run_python(code, flags="gcc.cxxflags=-DCAPTIONING_USER_FLAG,"
                                 "optimizer_excluding=captioning_sum0_to_gemv")
    assert out == ["True"] * 5, out
