"""The speed work, all of it, applied by ``captioning.stack`` unless
``CAPTION_SPEEDUPS=0``: graph rewrites and fused ops (``theano_opt``,
``xent_ops``), vectorised exp/log and a precompiled header (``fastmath``),
parallel C compilation (``parallel_compile``). Same maths, less time."""
