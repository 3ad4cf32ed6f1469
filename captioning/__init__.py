"""Shared code of the image-captioning seminar.

Importing this package configures Theano (see ``theano_setup``) and applies
the Lasagne backport (see ``lasagne_compat``), in that order, so it must be
imported before ``theano`` and ``lasagne``.
"""
from .theano_setup import configure_theano

configure_theano()

from . import lasagne_compat  # noqa: E402  (needs the flags above)

lasagne_compat.apply()

from . import theano_opt  # noqa: E402  (CPU speed rewrites, same math)

theano_opt.register()

from . import parallel_compile  # noqa: E402  (g++ on all cores, same modules)

parallel_compile.install()
