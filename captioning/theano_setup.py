"""Configure Theano once, before it is first imported.

Theano reads ``THEANO_FLAGS`` when it is imported, so this module must run
first: ``import captioning`` does that for notebooks, tests and scripts.
A user's own ``THEANO_FLAGS`` entries always win over these defaults.
"""
import importlib.util
import logging
import os
import sys
import warnings
from pathlib import Path

from . import fastmath

__all__ = ["DEFAULT_FLAGS", "merge_flags", "configure_theano"]


def _default_compiledir():
    # Inside the project (git-ignored) when it is writable, else the user cache.
    project = Path(__file__).resolve().parent.parent
    if os.access(project, os.W_OK):
        return str(project / ".theano_cache")
    return str(Path.home() / ".cache" / "theano-captioning")


def _blas_ldflags():
    """Link Theano's C ops straight to the OpenBLAS inside the scipy wheel.

    ``scipy.libs/libopenblasp-*.so`` exports the plain LP64 Fortran names
    (``sgemm_``, ``sgemv_``, ...) that Theano's C code calls. numpy's own
    copy (``numpy.libs/libopenblas64_*``) is ILP64 with ``64_``-suffixed
    symbols, so it cannot be used. ``--disable-new-dtags`` makes the rpath
    also find the library's own dependency (libgfortran) beside it
    (spelt with -Xlinker: THEANO_FLAGS cannot hold a comma).
    Returns "" (Theano then calls BLAS through numpy's C-API, slower)
    when there is no such library.
    """
    try:
        spec = importlib.util.find_spec("scipy")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin:
        return ""
    libs = Path(spec.origin).resolve().parent.parent / "scipy.libs"
    found = sorted(libs.glob("libopenblas*.so*")) if libs.is_dir() else []
    found = [f for f in found if "openblas64" not in f.name]
    if not found or any(c in str(libs) for c in " ,'\""):
        return ""
    return "-L%s -l:%s -Xlinker --disable-new-dtags" % (libs, found[0].name)


DEFAULT_FLAGS = {
    "floatX": "float32",
    # Empty would make Theano 1.0.5 ask numpy for `blas_opt_info` (gone in
    # numpy >= 1.22, crash) and then use numpy's C-API for BLAS (slow).
    "blas.ldflags": _blas_ldflags(),
    "base_compiledir": _default_compiledir(),
    "device": "cpu",
    # Theano folds `0.1 * dot(a, b)` into a second Dot22Scalar even when the
    # plain dot(a, b) is computed anyway: adam's 0.1*g next to g**2 made the
    # output layer's weight gradient (a third of all FLOPs) run twice.
    "optimizer_excluding": "local_dot22_to_dot22scalar",
    # Vectorised exp/log (softmax!) when `make setup` built captioning.fastmath
    # for this machine: lib.amdlibm=True and its include/lib path.
    **fastmath.theano_flags(),
}


def merge_flags(user_flags, defaults=DEFAULT_FLAGS):
    """Return a THEANO_FLAGS string: ``defaults`` overridden by ``user_flags``."""
    merged = dict(defaults)
    for item in filter(None, (s.strip() for s in (user_flags or "").split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError("THEANO_FLAGS entry %r is not key=value" % item)
        merged[key.strip()] = value.strip()
    return ",".join("%s=%s" % kv for kv in merged.items())


def configure_theano():
    """Set THEANO_FLAGS and the scan fallback; warn if Theano came first."""
    if "theano" in sys.modules:
        warnings.warn("Theano was imported before `captioning`; its flags "
                      "(floatX, blas.ldflags, compiledir) may be wrong. "
                      "Import captioning first.", stacklevel=3)
        return
    os.environ["THEANO_FLAGS"] = merge_flags(os.environ.get("THEANO_FLAGS"))
    # With blas.ldflags empty Theano warns on every import that it calls BLAS
    # through numpy's C-API; that is expected here, so keep it out of outputs.
    logging.getLogger("theano.tensor.blas").setLevel(logging.ERROR)
    if sys.version_info >= (3, 11):
        # Theano's compiled scan loop includes `longintrepr.h`, gone in 3.11.
        # A None entry makes its import fail at once, so Scan uses its
        # pure-Python loop instead of trying (and failing) to compile.
        sys.modules.setdefault("theano.scan_module.scan_perform_ext", None)
