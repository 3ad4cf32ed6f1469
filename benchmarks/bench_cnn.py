"""Images per second of the CNN encoders, same batch for all.

Runs, on random 224x224 inputs:

* the Lasagne EfficientNet-Lite0 (``captioning.cnn.efficientnet``, pretrained)
  as the encoder compiles it (its intermediate tensors kept from call to
  call) and as Theano compiles a function by default (``allow_gc=True``:
  freed after each call), both fed the encoder's calls of
  ``images_per_call`` photos, with the ratio; ``--image-size 448`` runs these
  two at 448 px;
* the Lasagne GoogLeNet (``pretrained_lenet``; random weights unless
  ``data/blvc_googlenet.pkl`` exists; skipped if the module is absent);
* onnxruntime on ONNX's test GoogLeNet graph
  ``onnx/backend/test/data/light/light_inception_v1.onnx`` (skipped if
  onnx/onnxruntime are not installed).

Usage: ``python benchmarks/bench_cnn.py [--batch-size 16] [--batches 4] [--image-size 224]``
(or ``make bench-cnn``). Theano's threads follow OMP_NUM_THREADS / the
BLAS defaults; onnxruntime gets ``--threads`` (default: all cores).
"""
import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import captioning.stack  # noqa: E402,F401  (Theano flags before theano)


def time_batches(fn, batch, batches):
    """Images/s of ``fn(batch)`` over ``batches`` calls after one warm-up."""
    fn(batch)
    start = time.perf_counter()
    for _ in range(batches):
        fn(batch)
    return batches * len(batch) / (time.perf_counter() - start)


def efficientnet_fn(image_size):
    from captioning.cnn.encode import Encoder
    return Encoder("efficientnet_lite0", image_size=image_size).batch_function


def efficientnet_gc_fn(image_size):
    """The same network compiled with Theano's default mode (allow_gc), fed
    in the encoder's calls (``images_per_call``), so that the ratio compares
    the modes alone."""
    import lasagne
    import theano
    from captioning.cnn import efficientnet
    from captioning.cnn.encode import _in_calls, images_per_call
    model = efficientnet.build_model(input_size=image_size)
    efficientnet.load_weights(model)
    out = lasagne.layers.get_output(model["logits"], deterministic=True)
    fn = theano.function([model["input"].input_var], [out])
    return lambda batch: _in_calls(fn, batch, images_per_call(image_size))[0]


def googlenet_fn():
    try:
        import pretrained_lenet
    except ImportError:
        return None, "pretrained_lenet.py not found"
    import lasagne
    import theano
    model = pretrained_lenet.build_model()
    weights = Path("data/blvc_googlenet.pkl")
    note = "random weights"
    if weights.is_file():
        pretrained_lenet.load_weights(model, str(weights))
        note = "pretrained weights"
    out = lasagne.layers.get_output(model["loss3/classifier"], deterministic=True)
    return theano.function([model["input"].input_var], out), note


def onnx_fn(threads):
    try:
        import onnx
        import onnxruntime
    except ImportError as error:
        return None, "not installed (%s)" % error.name
    path = (Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
            / "light_inception_v1.onnx")
    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), options,
                                           providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    # The graph is fixed to batch 1 (its Reshape before the classifier has
    # the batch size baked in), so a batch is fed one image per call.
    return (lambda x: [session.run(None, {name: x[i:i + 1]})[0]
                       for i in range(len(x))]), "one image per call"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=4,
                        help="timed batches per model (after one warm-up)")
    parser.add_argument("--threads", type=int, default=0,
                        help="onnxruntime intra-op threads (0: its default)")
    parser.add_argument("--image-size", type=int, default=224,
                        help="EfficientNet's input side in px (the GoogLeNets: 224 only)")
    args = parser.parse_args(argv)

    rng = np.random.RandomState(0)
    batch = rng.uniform(-1, 1, (args.batch_size, 3, 224, 224)).astype(np.float32)
    print("batch %d, %d timed batches, %d CPU cores"
          % (args.batch_size, args.batches, os.cpu_count()))

    size = args.image_size
    big = rng.uniform(-1, 1, (args.batch_size, 3, size, size)).astype(np.float32)
    kept = time_batches(efficientnet_fn(size), big, args.batches)
    freed = time_batches(efficientnet_gc_fn(size), big, args.batches)
    print("%-34s %7.1f images/s   (%d px, as the encoder compiles it)"
          % ("Lasagne EfficientNet-Lite0", kept, size))
    print("%-34s %7.1f images/s   (%d px, Theano's default allow_gc=True)"
          % ("Lasagne EfficientNet-Lite0", freed, size))
    print("%-34s %7.2f" % ("encoder / Theano's default", kept / freed))
    if size != 224:
        return 0

    start = time.perf_counter()
    fn, note = googlenet_fn()
    if fn is None:
        print("%-34s skipped: %s" % ("Lasagne GoogLeNet", note))
    else:
        print("%-34s %7.1f images/s   (%s; build+compile %.0f s)"
              % ("Lasagne GoogLeNet", time_batches(fn, batch, args.batches),
                 note, time.perf_counter() - start))

    fn, note = onnx_fn(args.threads)
    if fn is None:
        print("%-34s skipped: %s" % ("onnxruntime GoogLeNet", note))
    else:
        print("%-34s %7.1f images/s   (%s)"
              % ("onnxruntime GoogLeNet (light)",
                 time_batches(fn, batch, args.batches), note))
    return 0


if __name__ == "__main__":
    sys.exit(main())
