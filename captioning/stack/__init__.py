"""Shared code of the image-captioning seminar.

Importing this package configures and imports Theano (see ``theano_setup``)
and applies the Lasagne backport (see ``lasagne_compat``), in that order, so
it must be imported before ``theano`` and ``lasagne``. Then, unless
``CAPTION_SPEEDUPS=0`` (``theano_setup.SPEEDUPS``), it adds the speed-ups
that change Theano itself: graph rewrites (``theano_opt``) and parallel
compilation (``parallel_compile``).
"""
from .theano_setup import SPEEDUPS, configure_theano

configure_theano()

from . import lasagne_compat  # noqa: E402  (needs the flags above)

lasagne_compat.apply()

if SPEEDUPS:
    from . import theano_opt  # CPU speed rewrites, same math

    theano_opt.register()

    from . import parallel_compile  # g++ on all cores, same modules

    parallel_compile.install()
