"""Configure Theano once, before it is first imported.

Theano reads ``THEANO_FLAGS`` when it is imported, so this module must run
first: ``import captioning`` does that for notebooks, tests and scripts.
A user's own ``THEANO_FLAGS`` entries always win over these defaults.
"""
import logging
import os
import sys
import warnings
from pathlib import Path

__all__ = ["DEFAULT_FLAGS", "merge_flags", "configure_theano"]


def _default_compiledir():
    # Inside the project (git-ignored) when it is writable, else the user cache.
    project = Path(__file__).resolve().parent.parent
    if os.access(project, os.W_OK):
        return str(project / ".theano_cache")
    return str(Path.home() / ".cache" / "theano-captioning")


DEFAULT_FLAGS = {
    "floatX": "float32",
    # Empty: Theano 1.0.5 otherwise asks numpy for `blas_opt_info`, which
    # numpy >= 1.22 no longer has, and crashes on import.
    "blas.ldflags": "",
    "base_compiledir": _default_compiledir(),
    "device": "cpu",
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
