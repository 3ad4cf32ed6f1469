"""Configure Theano once, before it is first imported; the speed switch.

Theano reads ``THEANO_FLAGS`` when it is imported, so this module must run
first: ``import captioning.stack`` does that for notebooks, tests and scripts.
A user's own ``THEANO_FLAGS`` entries win over these defaults, except
``gcc.cxxflags`` and ``optimizer_excluding``, which are added to them
(see :func:`merge_flags`).

``CAPTION_SPEEDUPS`` (read here, once: :data:`SPEEDUPS`) is the one switch
for the project's speed work. Unset or ``1``: on. ``0``: Theano's own
behaviour, i.e. only :data:`STACK_FLAGS` (what Theano 1.0.5 needs to run
here at all), no graph rewrites (``theano_opt``, and with them no
``xent_ops``), no patched Theano internals (``parallel_compile``), no
``lib.amdlibm``/precompiled header/vector maths (``fastmath``), no extra
``gcc.cxxflags`` or ``optimizer_excluding``, and in ``CaptionModel`` the
plain (unfused) loss and Theano's default ``allow_gc``. Linking BLAS
directly counts as speed: off, ``blas.ldflags`` is empty and Theano calls
BLAS through numpy's C-API (slower, same results).
"""
import importlib.util
import logging
import os
import sys
import warnings
from pathlib import Path

from captioning.errors import CaptionError
from captioning.stack.speed import fastmath

__all__ = ["SPEEDUPS", "SPEEDUPS_VARIABLE", "SpeedSwitchError", "speedups_enabled", "STACK_FLAGS",
           "SPEED_FLAGS", "DEFAULT_FLAGS", "blas_library", "merge_flags",
           "configure_theano"]

SPEEDUPS_VARIABLE = "CAPTION_SPEEDUPS"


class SpeedSwitchError(CaptionError, ValueError):
    """``$CAPTION_SPEEDUPS`` is neither 0 nor 1."""


def speedups_enabled(environ=os.environ):
    """``$CAPTION_SPEEDUPS``: True when unset, empty or ``1``; False for ``0``."""
    value = environ.get(SPEEDUPS_VARIABLE, "").strip()
    if value not in ("", "0", "1"):
        raise SpeedSwitchError("%s must be 1 (the speed-ups on, the default) or 0 (Theano's "
                         "own behaviour), not %r" % (SPEEDUPS_VARIABLE, value))
    return value != "0"


# Read once: the rewrites, patches and flags are chosen when captioning is
# imported, so later changes to the variable would only half apply.
SPEEDUPS = speedups_enabled()


def _default_compiledir():
    # Inside the project (git-ignored) when it is writable, else the user cache.
    project = Path(__file__).resolve().parents[2]
    if os.access(project, os.W_OK):
        return str(project / ".theano_cache")
    return str(Path.home() / ".cache" / "theano-captioning")


# Theano's C code calls the Fortran BLAS (sgemm_, sgemv_, ...) with 32-bit
# ints; these are the OpenBLAS builds of PyPI wheels that provide them.
BLAS_RENAMES = Path(__file__).resolve().parent / "scipy_openblas_names.h"


def _fits_in_flags(path):
    # THEANO_FLAGS splits on commas and g++'s arguments on spaces.
    return not any(c in str(path) for c in " ,'\"")


def _package_dir(name):
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin:
        return None
    return Path(spec.origin).resolve().parent


def _scipy_openblas32():
    """``(ldflags, cxxflags)`` for the OpenBLAS of ``scipy-openblas32``.

    A current OpenBLAS (0.3.34): it knows today's CPUs and picks their best
    kernels (AVX-512 where there is AVX-512: the seminar's big matrix
    products ~1.8x faster than with the AVX2 kernels), while honouring
    ``OPENBLAS_CORETYPE`` like any OpenBLAS. Its symbols are prefixed
    (``scipy_sgemm_``); :data:`BLAS_RENAMES`, included in every module,
    renames Theano's calls to them.
    """
    package = _package_dir("scipy_openblas32")
    if package is None:
        return None
    lib = package / "lib" / "libscipy_openblas.so"
    if not (lib.is_file() and BLAS_RENAMES.is_file()
            and _fits_in_flags(lib) and _fits_in_flags(BLAS_RENAMES)):
        return None
    return "-L%s -l:%s" % (lib.parent, lib.name), "-include %s" % BLAS_RENAMES


def _scipy_wheel_openblas():
    """``(ldflags, "")`` for the OpenBLAS inside the scipy wheel (0.3.18).

    ``scipy.libs/libopenblasp-*.so`` exports the plain LP64 Fortran names.
    numpy's own copy (``numpy.libs/libopenblas64_*``) is ILP64 with
    ``64_``-suffixed symbols, so it cannot be used. ``--disable-new-dtags``
    makes the rpath also find the library's own dependency (libgfortran)
    beside it (spelt with -Xlinker: THEANO_FLAGS cannot hold a comma).
    """
    package = _package_dir("scipy")
    if package is None:
        return None
    libs = package.parent / "scipy.libs"
    found = sorted(libs.glob("libopenblas*.so*")) if libs.is_dir() else []
    found = [f for f in found if "openblas64" not in f.name]
    if not found or not _fits_in_flags(libs):
        return None
    return "-L%s -l:%s -Xlinker --disable-new-dtags" % (libs, found[0].name), ""


def blas_library(ldflags):
    """Path of the library that ``blas.ldflags`` links (``-L<dir>
    -l:<file>``, as set here), or None (BLAS through numpy's C-API)."""
    flags = ldflags.split()
    dirs = [f[2:] for f in flags if f.startswith("-L")]
    names = [f[3:] for f in flags if f.startswith("-l:")]
    return os.path.join(dirs[0], names[0]) if dirs and names else None


def _blas_flags():
    """``(blas.ldflags, extra gcc.cxxflags)``: Theano's C ops link BLAS directly.

    scipy-openblas32 when installed (requirements.txt), else the scipy
    wheel's OpenBLAS, else ``("", "")``: Theano then calls BLAS through
    numpy's C-API (slower).
    """
    return _scipy_openblas32() or _scipy_wheel_openblas() or ("", "")


_BLAS_LDFLAGS, _BLAS_CXXFLAGS = _blas_flags()
_FASTMATH = fastmath.theano_flags()


# What Theano 1.0.5 needs on this stack, speed-ups on or off.
STACK_FLAGS = {
    "floatX": "float32",
    # Unset, Theano 1.0.5 asks numpy for `blas_opt_info` (gone in numpy >=
    # 1.22) and crashes on import; empty means BLAS through numpy's C-API.
    "blas.ldflags": "",
    "base_compiledir": _default_compiledir(),
    "device": "cpu",
}

# The speed-ups' flags (CAPTION_SPEEDUPS=1), on top of STACK_FLAGS.
SPEED_FLAGS = {
    # Theano's C ops call BLAS directly instead of through numpy's C-API.
    "blas.ldflags": _BLAS_LDFLAGS,
    # Theano folds `0.1 * dot(a, b)` into a second Dot22Scalar even when the
    # plain dot(a, b) is computed anyway: adam's 0.1*g next to g**2 made the
    # output layer's weight gradient (a third of all FLOPs) run twice.
    "optimizer_excluding": "local_dot22_to_dot22scalar",
    # Vectorised exp/log (softmax!) when `make setup` built captioning.stack.speed.fastmath
    # for this machine: lib.amdlibm=True and its include/lib path.
    **_FASTMATH,
    # After fastmath's: its precompiled header must be the first -include.
    "gcc.cxxflags": " ".join(filter(None, [_FASTMATH.get("gcc.cxxflags"),
                                            _BLAS_CXXFLAGS])),
}

DEFAULT_FLAGS = {**STACK_FLAGS, **SPEED_FLAGS} if SPEEDUPS else dict(STACK_FLAGS)

# Flags whose user value is added to the default instead of replacing it:
# the default gcc.cxxflags -include the header that renames Theano's BLAS
# calls to the library blas.ldflags links (and fastmath's include path), and
# a user's optimizer_excluding must not bring back the excluded rewrite.
JOINED = ("gcc.cxxflags", "optimizer_excluding")


def _join(key, default, user):
    if not default or not user:
        return user or default
    if key == "optimizer_excluding":  # names joined by ':', each once
        names = default.split(":")
        return ":".join(names + [n for n in user.split(":") if n not in names])
    # Already holds the default (merged flags passed on, e.g. the bench's
    # printed ones): keep it, else repeated flags would change the cache key
    # of every module.
    if user == default or user.startswith(default + " "):
        return user
    return default + " " + user


def merge_flags(user_flags, defaults=DEFAULT_FLAGS):
    """Return a THEANO_FLAGS string: ``defaults`` updated by ``user_flags``.

    A user's value replaces the default, except for the :data:`JOINED` keys,
    where it is added to it. A user's own ``blas.ldflags`` drops the
    default's BLAS renaming header (the renamed symbols are the default
    library's only).
    """
    user = {}
    for item in filter(None, (s.strip() for s in (user_flags or "").split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError("THEANO_FLAGS entry %r is not key=value" % item)
        user[key.strip()] = value.strip()
    merged = dict(defaults)
    if (_BLAS_CXXFLAGS and "gcc.cxxflags" in merged and "blas.ldflags" in user
            and user["blas.ldflags"] != merged.get("blas.ldflags")):
        merged["gcc.cxxflags"] = " ".join(
            merged["gcc.cxxflags"].replace(_BLAS_CXXFLAGS, "").split())
    for key, value in user.items():
        merged[key] = _join(key, merged.get(key, ""), value) if key in JOINED else value
    return ",".join("%s=%s" % kv for kv in merged.items())


def configure_theano():
    """Import Theano with the merged flags and the scan fallback; warn if
    Theano came first."""
    if "theano" in sys.modules:
        warnings.warn("Theano was imported before `captioning`; its flags "
                      "(floatX, blas.ldflags, compiledir) may be wrong. "
                      "Import captioning first.", stacklevel=3)
        return
    # With blas.ldflags empty Theano warns on every import that it calls BLAS
    # through numpy's C-API; that is expected here, so keep it out of outputs.
    logging.getLogger("theano.tensor.blas").setLevel(logging.ERROR)
    if sys.version_info >= (3, 11):
        # Theano's compiled scan loop includes `longintrepr.h`, gone in 3.11.
        # A None entry makes its import fail at once, so Scan uses its
        # pure-Python loop instead of trying (and failing) to compile.
        sys.modules.setdefault("theano.scan_module.scan_perform_ext", None)
    user_flags = os.environ.get("THEANO_FLAGS")
    os.environ["THEANO_FLAGS"] = merge_flags(user_flags)
    try:
        import theano  # noqa: F401  (reads THEANO_FLAGS now, and only now)
    finally:
        # Leave the environment as the user set it: a child process that
        # imports captioning merges the defaults of its own CAPTION_SPEEDUPS
        # (a child with CAPTION_SPEEDUPS=0 must not inherit the speed flags).
        if user_flags is None:
            del os.environ["THEANO_FLAGS"]
        else:
            os.environ["THEANO_FLAGS"] = user_flags
