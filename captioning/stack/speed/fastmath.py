"""Native helpers for Theano's C code: vectorised exp/log, precompiled headers.

:func:`build` also writes :data:`SIMD_MATH`, a header that declares glibc's
vector maths (libmvec: ``expf``, ``logf``, ``tanhf`` on 8 or 16 floats at
once; each only if a loop compiled with it calls libmvec and agrees with
numpy) the way ``math.h`` does only under ``-ffast-math``; with it, the loops
GCC vectorises (``captioning.stack.speed.theano_opt``'s ``#pragma omp simd`` loops: the
LSTM's sigmoid and tanh gates) call those instead of one scalar call per
element.

:func:`build_pch` precompiles the headers every Theano module starts with
(cold compiles about twice as fast). :func:`build` makes the vectorised
exp/log library, through Theano's ``lib.amdlibm`` hook:

Theano calls ``exp`` one element at a time (glibc's scalar ``expf``), which
made the output softmax (batch*time x 10,373 exponentials per step) the
slowest op after the matrix products. With ``lib.amdlibm=True`` Theano
instead calls ``amd_vrsa_expf(n, x, y)`` & co. on whole contiguous arrays
(in the softmax, the cross-entropy and contiguous Elemwise exp/log/sin/cos/
pow). AMD's libm is not on PyPI, so :func:`build` compiles a small library
with that API here, on this machine (``make setup``): each function is a
plain loop over the C library's function, compiled with ``-O3 -ffast-math
-march=native`` so that GCC calls glibc's SIMD versions (libmvec,
``_ZGV*_expf``, within a few ulp of the scalar ones) -- nothing AMD-specific
runs. It lives in the virtualenv (``<venv>/lib/captioning-fastmath``), so
a copied compile cache never carries it to another CPU; Theano's own
``-march`` flags already keep compiled modules apart per CPU.

:func:`theano_flags` gives the flags ``captioning.stack.theano_setup`` adds when
the library is built and passed its self-check (and ``CAPTION_SPEEDUPS`` is
not ``0``); otherwise nothing changes.
"""
import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["LIBDIR", "SIMD_MATH", "build", "theano_flags", "is_built"]

LIBDIR = Path(sys.prefix) / "lib" / "captioning-fastmath"
LIBRARY = LIBDIR / "libamdlibm.so"

_UNARY = ["exp", "log", "log2", "log10", "sin", "cos"]

HEADER = """\
/* amdlibm's array API, implemented by captioning/stack/speed/fastmath.py (see there). */
#ifndef CAPTIONING_FASTMATH_AMDLIBM_H
#define CAPTIONING_FASTMATH_AMDLIBM_H
#ifdef __cplusplus
extern "C" {
#endif
%s
void amd_vrsa_powf(long n, const float *x, const float *y, float *z);
void amd_vrsa_powxf(long n, const float *x, float y, float *z);
#ifdef __cplusplus
}
#endif
#endif
""" % "\n".join("void amd_vrsa_%sf(long n, const float *x, float *y);\n"
                "void amd_vrda_%s(long n, const double *x, double *y);" % (f, f)
                for f in _UNARY)

SOURCE = """\
#include <math.h>
#include "amdlibm.h"
%s
void amd_vrsa_powf(long n, const float *x, const float *y, float *z)
{ for (long i = 0; i < n; ++i) z[i] = powf(x[i], y[i]); }
void amd_vrsa_powxf(long n, const float *x, float y, float *z)
{ for (long i = 0; i < n; ++i) z[i] = powf(x[i], y); }
""" % "\n".join(
    "void amd_vrsa_%sf(long n, const float *x, float *y)\n"
    "{ for (long i = 0; i < n; ++i) y[i] = %sf(x[i]); }\n"
    "void amd_vrda_%s(long n, const double *x, double *y)\n"
    "{ for (long i = 0; i < n; ++i) y[i] = %s(x[i]); }" % (f, f, f, f)
    for f in _UNARY)

# Allowed relative error against numpy (float32 ulp is 6e-8; libmvec's
# float functions are within ~4 ulp).
TOLERANCE = 1e-6


# libmvec's float functions that Theano's loops use (tanhf: glibc >= 2.35).
SIMD_FUNCTIONS = ["expf", "logf", "tanhf"]
SIMD_MATH = LIBDIR / "simd_math.h"
SIMD_MATH_TEMPLATE = """\
/* glibc's vector maths (libmvec) for the loops GCC vectorises; written by
   captioning/stack/speed/fastmath.py. math.h declares these SIMD variants only under
   -ffast-math, which Theano's modules are not compiled with. */
#ifndef CAPTIONING_FASTMATH_SIMD_MATH_H
#define CAPTIONING_FASTMATH_SIMD_MATH_H
#include <math.h>
#ifdef __cplusplus
extern "C" {
#endif
%s
#ifdef __cplusplus
}
#endif
#endif
"""
SIMD_DECLARATION = '__attribute__((simd("notinbranch"))) float %s(float) __THROW;'

# A loop as Theano writes it (C++, the float overload of exp/log/tanh).
SIMD_CHECK_SOURCE = """\
#include <math.h>
#include <cmath>
extern "C" void check(long n, const float *x, float *y)
{
#pragma omp simd
  for (long i = 0; i < n; ++i) y[i] = %s(x[i]);
}
"""


def simd_math_header(functions):
    """The text of :data:`SIMD_MATH` declaring ``functions``."""
    return SIMD_MATH_TEMPLATE % "\n".join(SIMD_DECLARATION % f for f in functions)


def is_built():
    return LIBRARY.is_file() and (LIBDIR / "amdlibm.h").is_file()


PCH = LIBDIR / "theano_pch.h"
# What every module Theano compiles starts with (theano.gof.cc), in order.
PCH_HEADERS = ["<Python.h>", "<iostream>", '"theano_mod_helper.h"', "<math.h>",
               "<numpy/arrayobject.h>", "<numpy/arrayscalars.h>"]


def theano_flags():
    """``{flag: value}`` for THEANO_FLAGS from what :func:`build` and
    :func:`build_pch` made (at least -g0)."""
    if any(c in str(LIBDIR) for c in " ,'\""):
        return {}
    d = str(LIBDIR)
    # -g0: Theano compiles every module with -g; the debug info is ~20% of
    # g++'s time and only useful to whoever debugs Theano's C code in gdb.
    flags, cxxflags = {}, ["-g0"]
    if is_built():
        flags["lib.amdlibm"] = "True"
        cxxflags += ["-I%s -L%s -Xlinker -rpath -Xlinker %s" % (d, d, d)]
    if PCH.is_file() and PCH.with_suffix(".h.gch").is_file():
        # gcc uses the .gch when it fits the module's flags, else reads the
        # header (same code, slower): never wrong, at worst not faster.
        cxxflags += ["-include %s" % PCH]
    if SIMD_MATH.is_file():
        # After the precompiled header, which must be the first -include.
        cxxflags += ["-include %s -lmvec" % SIMD_MATH]
    flags["gcc.cxxflags"] = " ".join(cxxflags)
    return flags


def build_pch(compiler="g++"):
    """Precompile the headers every Theano C module starts with.

    Parsing Python.h, numpy and <iostream> is most of the ~1.5 s that g++
    takes per module; a cold compile of the train graph builds ~100 modules.
    The header is precompiled with the flags Theano passes (-O3, -g0, its
    -march/-m flags for this CPU, -fPIC, ...), so gcc accepts it; Theano
    then passes ``-include theano_pch.h`` (see :func:`theano_flags`).
    Needs Theano: run as ``python -m captioning.stack.speed.fastmath --pch``,
    which imports ``captioning.stack`` (Theano's flags) first. Returns True on success.
    """
    import sysconfig
    import numpy
    import theano
    from theano.gof.cmodule import GCC_compiler

    raw = ["-O3", "-fno-math-errno"] + GCC_compiler.compile_args()
    args, i = ["-g0"], 0  # as theano_flags() passes
    while i < len(raw):
        if raw[i] == "--param":
            args += raw[i:i + 2]
            i += 2
            continue
        if raw[i].startswith(("-m", "-D", "-f", "-O")):
            args.append(raw[i])
        i += 1
    includes = ["-I" + sysconfig.get_paths()["include"], "-I" + numpy.get_include(),
                "-I" + os.path.join(os.path.dirname(theano.__file__), "gof", "c_code")]
    LIBDIR.mkdir(parents=True, exist_ok=True)
    # Guarded: Theano also passes gcc.cxxflags to small test programs
    # compiled without Python's include path (its -march detection).
    header = ("#if defined(__has_include)\n"
              "#if __has_include(<Python.h>) && __has_include(<numpy/arrayobject.h>)"
              " && __has_include(\"theano_mod_helper.h\")\n"
              + "".join("#include %s\n" % h for h in PCH_HEADERS)
              + "#endif\n#endif\n")
    gch = PCH.with_suffix(".h.gch")
    tmp = gch.with_suffix(".tmp")
    try:
        PCH.write_text(header)
        subprocess.run([compiler] + args + includes + ["-x", "c++-header", str(PCH),
                                                       "-o", str(tmp)],
                       check=True, capture_output=True, text=True)
        os.replace(tmp, gch)
    except (OSError, subprocess.CalledProcessError) as error:
        for f in (PCH, gch, tmp):
            if f.exists():
                f.unlink()
        print("captioning.stack.speed.fastmath: no precompiled header (%s)"
              % str(getattr(error, "stderr", "") or error).strip()[-500:], file=sys.stderr)
        return False
    print("captioning.stack.speed.fastmath: precompiled %s" % gch)
    return True


def _check_inputs():
    """``{numpy function name: float64 inputs}`` for the self-checks: the
    ranges the float functions see in softmax, log-likelihoods and gates."""
    import numpy as np
    rng = np.random.RandomState(0)
    return {"exp": rng.uniform(-80, 10, 4099), "log": rng.uniform(1e-30, 1e4, 4099),
            "sin": rng.uniform(-10, 10, 4099), "cos": rng.uniform(-10, 10, 4099),
            "tanh": np.concatenate([rng.uniform(-10, 10, 4000), [0, -0.0, 1e-8, 20, -20]])}


def _self_check(path):
    import numpy as np
    lib = ctypes.CDLL(str(path))
    tiny = np.array([1e-38], np.float32) / np.float32(1e3)
    if tiny[0] == 0:
        raise RuntimeError("loading it turned on flush-to-zero")
    cases = _check_inputs()
    for name in ("exp", "log", "sin", "cos"):
        x = cases[name]
        for suffix, dtype, tol in (("f", np.float32, TOLERANCE), ("", np.float64, 1e-13)):
            xs = x.astype(dtype)
            ys = np.empty_like(xs)
            fn = getattr(lib, ("amd_vrsa_%sf" if suffix else "amd_vrda_%s") % name)
            fn(ctypes.c_long(xs.size), xs.ctypes.data_as(ctypes.c_void_p),
               ys.ctypes.data_as(ctypes.c_void_p))
            ref = getattr(np, name)(xs.astype(np.float64))
            err = np.abs(ys - ref) / np.maximum(np.abs(ref), np.finfo(dtype).tiny)
            if not np.all(err <= tol) and not np.allclose(ys, ref, rtol=tol, atol=1e-7):
                raise RuntimeError("%s%s differs from numpy by %.3g" % (name, suffix, err.max()))


def _check_simd_function(tmp, header, name, compiler="g++"):
    """A loop over ``name`` (e.g. ``"tanhf"``) compiled with ``header`` must
    call libmvec (a ``_ZGV*`` symbol) and agree with numpy. Raises
    RuntimeError, OSError or CalledProcessError."""
    import numpy as np
    source = tmp / ("check_%s.cpp" % name)
    source.write_text(SIMD_CHECK_SOURCE % name[:-1])
    lib = tmp / ("libcheck_%s.so" % name)
    subprocess.run([compiler, "-O3", "-fno-math-errno", "-fopenmp-simd", "-march=native",
                    "-fPIC", "-shared", "-include", str(header), "-o", str(lib),
                    str(source), "-lmvec"], check=True, capture_output=True, text=True)
    undefined = subprocess.run(["nm", "-D", "--undefined-only", str(lib)], check=True,
                               capture_output=True, text=True).stdout.split()
    # e.g. _ZGVeN16v_expf@GLIBC_2.22
    if not any(s.startswith("_ZGV") and s.split("@")[0].endswith("_" + name)
               for s in undefined):
        raise RuntimeError("%s: the loop does not call libmvec" % name)
    x = _check_inputs()[name[:-1]].astype(np.float32)
    y = np.empty_like(x)
    ctypes.CDLL(str(lib)).check(ctypes.c_long(x.size), x.ctypes.data_as(ctypes.c_void_p),
                                y.ctypes.data_as(ctypes.c_void_p))
    ref = getattr(np, name[:-1])(x.astype(np.float64))
    if not np.allclose(y, ref, rtol=TOLERANCE, atol=1e-7):
        raise RuntimeError("%s differs from numpy by %.3g" % (name, np.abs(y - ref).max()))


def _build_simd_math(tmp):
    """Write :data:`SIMD_MATH` with the functions that pass their check
    (none: no header, and Theano's loops keep the scalar calls)."""
    working = []
    for name in SIMD_FUNCTIONS:
        header = tmp / ("simd_%s.h" % name)
        header.write_text(simd_math_header([name]))
        try:
            _check_simd_function(tmp, header, name)
            working.append(name)
        except (OSError, subprocess.CalledProcessError, RuntimeError) as error:
            detail = getattr(error, "stderr", "") or error
            print("captioning.stack.speed.fastmath: no vector %s (%s); its loops stay scalar"
                  % (name, str(detail).strip()[-300:]), file=sys.stderr)
    if not working:
        if SIMD_MATH.exists():
            SIMD_MATH.unlink()
        return
    tmp_header = Path(str(SIMD_MATH) + ".tmp")
    tmp_header.write_text(simd_math_header(working))
    os.replace(tmp_header, SIMD_MATH)


def build(compiler=None, quiet=False):
    """Compile and self-check the library into :data:`LIBDIR`.

    Returns True on success. On any failure nothing is installed (Theano
    keeps its own scalar loops) and the reason is printed.
    """
    compiler = compiler or os.environ.get("CC") or shutil.which("gcc") or "cc"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "amdlibm.h").write_text(HEADER)
        (tmp / "fastmath.c").write_text(SOURCE)
        lib = tmp / "libamdlibm.so"
        obj = tmp / "fastmath.o"
        # Compile with -ffast-math (what lets GCC use libmvec), but link
        # without it: linking with it adds crtfastmath.o, which would turn
        # on flush-to-zero for the whole process when the library loads.
        compile_cmd = [compiler, "-O3", "-ffast-math", "-march=native", "-fPIC",
                       "-c", "-o", str(obj), str(tmp / "fastmath.c")]
        link_cmd = [compiler, "-shared", "-o", str(lib), str(obj), "-lm"]
        try:
            for cmd in (compile_cmd, link_cmd):
                subprocess.run(cmd, check=True, capture_output=True, text=True)
            _self_check(lib)
        except (OSError, subprocess.CalledProcessError, RuntimeError) as error:
            detail = getattr(error, "stderr", "") or error
            print("captioning.stack.speed.fastmath: not built (%s); Theano keeps its scalar "
                  "exp/log" % str(detail).strip()[-500:], file=sys.stderr)
            return False
        LIBDIR.mkdir(parents=True, exist_ok=True)
        for name in ("amdlibm.h", "libamdlibm.so"):
            shutil.copyfile(tmp / name, LIBDIR / (name + ".tmp"))
            os.replace(LIBDIR / (name + ".tmp"), LIBDIR / name)
        _build_simd_math(tmp)
    if not quiet:
        print("captioning.stack.speed.fastmath: built %s%s" % (
            LIBRARY, " and %s" % SIMD_MATH if SIMD_MATH.is_file() else ""))
    return True


if __name__ == "__main__":
    if "--pch" in sys.argv:
        sys.exit(0 if build_pch() else 1)
    sys.exit(0 if build() else 1)
