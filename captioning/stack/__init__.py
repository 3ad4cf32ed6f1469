"""Layer 1: 2016's Theano + Lasagne, made to run today. Import it first.

Importing this package configures and imports Theano (``theano_setup``)
and applies the Lasagne backport (``lasagne_compat``), in that order, so it
must be imported before ``theano`` and ``lasagne``. Then, unless
``CAPTION_SPEEDUPS=0`` (``theano_setup.SPEEDUPS``), it adds the speed work
that changes Theano itself (``speed/``): graph rewrites, parallel
compilation and Scan's output-reuse check.
"""
from captioning.stack.theano_setup import SPEEDUPS, configure_theano

configure_theano()

from captioning.stack import lasagne_compat  # noqa: E402  (needs the flags above)

lasagne_compat.apply()

if SPEEDUPS:
    from captioning.stack.speed import theano_opt  # CPU speed rewrites, same math

    theano_opt.register()

    from captioning.stack.speed import parallel_compile  # g++ on all cores, same modules

    parallel_compile.install()

    from captioning.stack.speed import scan_reuse  # scan's reuse check by address, same results

    scan_reuse.install()
