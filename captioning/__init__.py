"""The image-captioning seminar's shared code, by layer (imports only go down).

====  ============  =========================================================
 0    base          ``errors``, ``text`` (the one caption normaliser and the
                    vocabulary), ``io/`` (atomic writes, list files, the
                    restricted unpickler, downloads)
 1    ``stack/``    2016's Theano + Lasagne made to run today; ``speed/``
                    on top unless ``CAPTION_SPEEDUPS=0``
 2    ``cnn/``      photos -> CNN codes: images, EfficientNet-Lite0,
                    GoogLeNet's reader, the one encoder with its cache
 3    ``datasets/`` the seminar's data formats and their three sources
 4    learning      ``model``, ``checkpoint``, ``decode``, ``metrics``,
                    ``training``
 5    top           ``commands/`` (the ``caption`` command),
                    ``notebook/`` (headless runner, figures)
====  ============  =========================================================

Importing this package imports nothing, so ``caption --help`` starts
without Theano. Code that uses Theano or Lasagne imports
``captioning.stack`` first: it sets Theano's flags before Theano is
imported and backports Lasagne master. ``ARCHITECTURE.md`` has one line per
module; ``tests/test_layers.py`` keeps both true.
"""
