"""Side-by-side: one training step of the seminar graph, Theano vs PyTorch CPU.

    make bench                                  # seminar sizes
    .venv/bin/python benchmarks/bench_train_step.py --sizes large
    .venv/bin/python benchmarks/bench_train_step.py --profile   # Theano profile

The Theano side is the project's own model (:class:`captioning.model.CaptionModel`:
Embedding, Dropout+Dense -> cell_init, LSTM with mask and grad clipping,
Broadcast/Dense softmax/Unbroadcast, masked cross-entropy, adam), compiled
with the project's flags. The PyTorch side is the same network written the
PyTorch way (nn.Embedding, nn.LSTM, fused cross-entropy, torch.optim.Adam);
nn.LSTM has no peepholes and no in-loop gradient clipping, both elementwise
and cheap. Both see the same batches and run alternately, in blocks of
steps (``--block``), so machine noise (other processes) hits both alike
while neither is timed right after the other's threads were busy.

Printed: both medians, the ratio, the step's matmul FLOPs and GFLOP/s,
cold (fresh compiledir, in a subprocess) and warm compile time of the train
function, what its compiled graph runs (fused loss or not, kept buffers),
tokens/s. The last line is the ratio Theano/PyTorch.
torch is a benchmark-only extra (requirements-bench.txt); nothing else
needs it.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIZES = {
    # the seminar's notebook: EMBED_SIZE=128, LSTM_UNITS=200, batch 50
    "seminar": dict(V=10373, E=128, H=200, C=1000, B=50, L=16),
    "large": dict(V=10373, E=512, H=512, C=1000, B=100, L=20),
}


# ---------------------------------------------------------------- data
def make_batches(size, n, seed=0):
    """``n`` (codes, sentences) batches: START, random words, END, PAD (-1).

    Lengths vary between L/2 and L like real captions; the longest is L so
    every batch has the same shape (the time axis is padded to L).
    """
    import numpy as np
    rng = np.random.RandomState(seed)
    V, B, L, C = size["V"], size["B"], size["L"], size["C"]
    batches = []
    for _ in range(n):
        codes = rng.randn(B, C).astype("float32")
        sentences = np.full((B, L), -1, dtype="int32")
        lengths = rng.randint(L // 2, L + 1, size=B)
        lengths[0] = L
        for i, k in enumerate(lengths):
            sentences[i, 0] = 1                      # #START#
            sentences[i, 1:k - 1] = rng.randint(3, V, size=k - 2)
            sentences[i, k - 1] = 2                  # #END#
        batches.append((codes, sentences))
    return batches


def matmul_flops(size):
    """Matmul FLOPs of one train step (forward + backward; 2 per multiply-add).

    Every tick's output layer is computed (as the graph does, the last one
    is then dropped by the loss). Elementwise work is not counted.
    """
    V, E, H, C, B, L = (size[k] for k in "VEHCBL")
    N = B * L
    forward = 2 * N * H * V + 2 * N * E * 4 * H + 2 * N * H * 4 * H
    # backward: gradient of the weights and of the input of each product
    # (none for the image codes: they are inputs)
    return 3 * forward + 2 * 2 * B * C * H


# ---------------------------------------------------------------- Theano
def build_theano(size):
    import captioning.stack  # noqa: F401  (flags first)
    from captioning.model import CaptionModel, Vocabulary
    words = ["#UNK#", "#START#", "#END#"] + ["w%d" % i for i in range(size["V"] - 3)]
    return CaptionModel(Vocabulary(words), embed_size=size["E"],
                        lstm_units=size["H"], cnn_feature_size=size["C"])


def timed_compile(model):
    """Compile the train functions; return ``{name: seconds}`` per function
    plus ``total`` (theano.function is wrapped to time each call)."""
    import theano
    times = {}
    original = theano.function

    def timing_function(*args, **kwargs):
        start = time.perf_counter()
        fn = original(*args, **kwargs)
        times[kwargs.get("name") or "function"] = time.perf_counter() - start
        return fn

    theano.function = timing_function
    try:
        start = time.perf_counter()
        model.compile_train()
        times["total"] = time.perf_counter() - start
    finally:
        theano.function = original
    return times


def describe_compiled(fn):
    """What a compiled train function runs, read from its graph rather than
    from the settings that asked for it: the cross-entropy op(s) (fused with
    the softmax or not) and whether its buffers are kept between calls."""
    ops = sorted({type(node.op).__name__ for node in fn.maker.fgraph.toposort()})
    xent = [op for op in ops if "Crossentropy" in op]
    fused = any("CrossentropySoftmax" in op for op in xent)
    return "loss %s (%s); buffers %s" % (
        "fused with the softmax" if fused else "not fused",
        ", ".join(xent) or "no cross-entropy op",
        "kept between calls" if fn.maker.linker.allow_gc is False
        else "freed after each call")


def compile_only(size_name):
    """Subprocess entry: build and compile, print the times as JSON."""
    start = time.perf_counter()
    model = build_theano(SIZES[size_name])
    build = time.perf_counter() - start
    times = timed_compile(model)
    times["import_and_build"] = build
    print("COMPILE_TIMES " + json.dumps(times))


def compile_in_subprocess(size_name, compiledir=None):
    env = dict(os.environ)
    if compiledir:
        flags = env.get("THEANO_FLAGS", "")
        env["THEANO_FLAGS"] = ",".join(filter(None, [flags, "base_compiledir=" + compiledir]))
    out = subprocess.run([sys.executable, __file__, "--compile-only", "--sizes", size_name],
                         env=env, text=True, capture_output=True)
    for line in out.stdout.splitlines():
        if line.startswith("COMPILE_TIMES "):
            return json.loads(line.split(" ", 1)[1])
    raise RuntimeError("compile subprocess failed:\n" + out.stderr[-3000:])


# ---------------------------------------------------------------- BLAS
OPENBLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

CORENAME = """
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
for prefix in ("scipy_", ""):
    fn = getattr(lib, prefix + "openblas_get_corename", None)
    if fn is not None:
        fn.restype = ctypes.c_char_p
        print(fn().decode())
        break
"""


def blas_report():
    """Lines on Theano's BLAS: library, kernels in use, OpenBLAS's own choice
    for this CPU, and a float64 check of one output-layer product.

    OPENBLAS_CORETYPE (set on some machines because old OpenBLAS builds
    misdetect new CPUs) makes every OpenBLAS use the kernels it names; the
    kernels OpenBLAS itself would pick are asked in a subprocess without it.
    """
    import numpy as np
    import theano
    import theano.tensor as T
    from captioning.stack.theano_setup import blas_library
    path = blas_library(theano.config.blas.ldflags)
    if path is None:
        return ["Theano's BLAS: numpy's C-API (blas.ldflags empty)"]

    def corename(env):
        out = subprocess.run([sys.executable, "-c", CORENAME, path], env=env,
                             text=True, capture_output=True)
        return out.stdout.strip() or "?"

    own_env = {k: v for k, v in os.environ.items() if k not in OPENBLAS_ENV}
    in_use, own = corename(dict(os.environ)), corename(own_env)
    forced = ", ".join("%s=%s" % (k, os.environ[k]) for k in OPENBLAS_ENV if k in os.environ)
    lines = ["Theano's BLAS: %s" % path,
             "OpenBLAS kernels in use: %s%s; OpenBLAS's own choice for this CPU: %s"
             % (in_use, " (forced by %s)" % forced if forced else "", own)]
    if forced and own != in_use:
        lines.append("  (to measure OpenBLAS's own choice: env -u OPENBLAS_CORETYPE "
                     "-u OPENBLAS_L2_SIZE make bench)")
    a, b = T.matrix(), T.matrix()
    product = theano.function([a, b], T.dot(a, b))
    rng = np.random.RandomState(0)
    x = rng.randn(800, 200).astype("float32")
    w = rng.randn(200, 10373).astype("float32")
    ref = x.astype("float64") @ w
    error = np.abs(product(x, w) - ref).max() / np.abs(ref).max()
    lines.append("BLAS check (800x200 @ 200x10373 vs float64 numpy): max error "
                 "%.1e of the largest entry%s" % (error, "" if error < 1e-5 else "  WRONG"))
    return lines


# ---------------------------------------------------------------- PyTorch
def build_torch(size, seed=0):
    import torch
    from torch import nn

    torch.manual_seed(seed)

    class Captioner(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(size["V"], size["E"])
            self.image_dropout = nn.Dropout(0.5)
            self.image_dense = nn.Linear(size["C"], size["H"])
            self.hid_init = nn.Parameter(torch.zeros(1, size["H"]))
            self.lstm = nn.LSTM(size["E"], size["H"], batch_first=True)
            self.output = nn.Linear(size["H"], size["V"])

        def loss(self, codes, sentences):
            mask = sentences != -1
            words = sentences.clamp(min=0)
            cell0 = self.image_dense(self.image_dropout(codes))
            hid0 = self.hid_init.expand(codes.shape[0], -1)
            hid, _ = self.lstm(self.embedding(words),
                               (hid0.unsqueeze(0).contiguous(), cell0.unsqueeze(0)))
            logits = self.output(hid.reshape(-1, hid.shape[-1]))   # every tick
            logits = logits.view(hid.shape[0], hid.shape[1], -1)[:, :-1]
            targets = words[:, 1:].masked_fill(~mask[:, 1:], -100)
            return nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                ignore_index=-100)

    model = Captioner()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def train_step(codes, sentences):
        optimizer.zero_grad(set_to_none=True)
        loss = model.loss(codes, sentences)
        loss.backward()
        optimizer.step()
        return loss.item()

    return train_step


# ---------------------------------------------------------------- timing
def load_torch(threads=None):
    """PyTorch with ``threads`` threads (if given), or None, said in one
    line, when it is not installed (`make bench` installs it)."""
    try:
        import torch
    except ImportError:
        print("torch is not installed: `make bench` installs it "
              "(requirements-bench.txt); PyTorch side skipped")
        return None
    if threads:
        torch.set_num_threads(threads)
    return torch


def interleaved_times(steps, repeats, block, cpu_times=None):
    """Seconds of ``repeats`` calls of each ``(step, batches)`` of ``steps``.

    Blocks of ``block`` steps, framework after framework: each library's
    threads spin for a while after their work (OpenBLAS's for up to ~0.1 s),
    which slows the *other* library's next step, so the first step of each
    block is not timed; machine noise (other processes) hits all alike.
    Returns one list of wall-clock times per entry of ``steps``; a list
    ``cpu_times`` receives the matching lists of the process's CPU times
    (all its threads), which other processes on the machine disturb less.
    """
    times = [[] for _ in steps]
    cpu = [[] for _ in steps]
    done = 0
    while done < repeats:
        n = min(block, repeats - done)
        for (step, data), spent, spent_cpu in zip(steps, times, cpu):
            step(*data[done % len(data)])
            for i in range(done, done + n):
                start, start_cpu = time.perf_counter(), time.process_time()
                step(*data[i % len(data)])
                spent.append(time.perf_counter() - start)
                spent_cpu.append(time.process_time() - start_cpu)
        done += n
    if cpu_times is not None:
        cpu_times.extend(cpu)
    return times


# ---------------------------------------------------------------- main
def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", choices=sorted(SIZES), default="seminar",
                        help="seminar (E=128, H=200, batch 50, L=16) or large "
                             "(E=H=512, batch 100, L=20)")
    parser.add_argument("--repeats", type=int, default=30,
                        help="timed steps per framework (median reported)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--block", type=int, default=5,
                        help="timed steps per framework before switching "
                             "to the other (default 5)")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--no-cold", action="store_true",
                        help="skip the cold compile (fresh compiledir) subprocess")
    parser.add_argument("--no-compile-times", action="store_true",
                        help="skip both compile-time subprocesses (quick runs)")
    parser.add_argument("--profile", action="store_true",
                        help="print Theano's profile of the train step")
    parser.add_argument("--baseline", action="store_true",
                        help="Theano without the speed changes, for before/after "
                             "(the same as CAPTION_SPEEDUPS=0)")
    parser.add_argument("--threads", type=int, default=None,
                        help="BLAS/OpenMP threads for both sides (default: "
                             "the libraries' own choice, all cores)")
    parser.add_argument("--compile-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.baseline:  # before captioning is imported; subprocesses inherit it
        os.environ["CAPTION_SPEEDUPS"] = "0"
    if args.threads:  # before OpenBLAS (Theano's, via scipy) or torch load
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
            os.environ[var] = str(args.threads)
    if args.compile_only:
        return compile_only(args.sizes)

    size = SIZES[args.sizes]
    if args.profile:
        os.environ["THEANO_FLAGS"] = ",".join(filter(None, [
            os.environ.get("THEANO_FLAGS", ""), "profile=True",
            "profiling.n_apply=25", "profiling.n_ops=15"]))
    import captioning.stack  # noqa: F401
    import numpy as np
    import theano
    from captioning.stack.theano_setup import SPEEDUPS, merge_flags

    print("machine: %s, %d cores; Python %s, Theano %s, numpy %s"
          % (cpu_model(), os.cpu_count(), platform.python_version(),
             theano.__version__, np.__version__))
    print("sizes: %s" % ", ".join("%s=%d" % kv for kv in size.items()))
    print("speed-ups: %s" % ("on" if SPEEDUPS else
                             "off (CAPTION_SPEEDUPS=0: BASELINE, Theano's own behaviour)"))
    print("theano flags: %s" % merge_flags(os.environ.get("THEANO_FLAGS")))
    for line in blas_report():
        print(line)

    # Warm compile: the project's compiledir, after making sure it holds
    # this graph (this process compiles it, a fresh one times it).
    model = build_theano(size)
    first = timed_compile(model)
    print("compile in this process: train_step %.1f s (train+val %.1f s)"
          % (first.get("train_step", float("nan")), first["total"]))
    print("compiled train step: %s" % describe_compiled(model.train_step))
    warm = cold = None
    if not args.no_compile_times:
        warm = compile_in_subprocess(args.sizes)
        print("warm compile (cached modules, fresh process): train_step %.1f s "
              "(train+val %.1f s; import+graph %.1f s)"
              % (warm.get("train_step", float("nan")), warm["total"],
                 warm["import_and_build"]))
    if not (args.no_cold or args.no_compile_times):
        with tempfile.TemporaryDirectory(prefix="bench_compiledir_") as tmp:
            cold = compile_in_subprocess(args.sizes, compiledir=tmp)
        print("cold compile (empty compiledir, fresh process): train_step %.1f s "
              "(train+val %.1f s)" % (cold.get("train_step", float("nan")), cold["total"]))

    batches = make_batches(size, 4)
    n_targets = [int((s[:, 1:] != -1).sum()) for _, s in batches]
    theano_step = model.train_step
    torch_step = None
    torch = None if args.no_torch else load_torch(args.threads)
    if torch:
        torch_batches = [(torch.from_numpy(c), torch.from_numpy(s).long())
                         for c, s in batches]
        torch_step = build_torch(size)
        print("PyTorch %s, %d threads" % (torch.__version__, torch.get_num_threads()))

    for i in range(args.warmup):
        theano_step(*batches[i % len(batches)])
        if torch_step:
            torch_step(*torch_batches[i % len(batches)])
    steps = [(theano_step, batches)]
    if torch_step:
        steps.append((torch_step, torch_batches))
    times = interleaved_times(steps, args.repeats, args.block)
    t_theano, t_torch = times[0], (times[1] if torch_step else [])

    flops = matmul_flops(size)
    tokens = statistics.mean(n_targets)
    print()
    print("matmul FLOPs per train step (fwd+bwd): %.2f GFLOP" % (flops / 1e9))
    print("target tokens per batch: %.0f (of %d x %d)" % (tokens, size["B"], size["L"] - 1))
    rows = [("Theano", t_theano)] + ([("PyTorch", t_torch)] if t_torch else [])
    print("%-8s %10s %10s %10s %10s %12s" % ("", "median s", "min s", "max s",
                                            "GFLOP/s", "tokens/s"))
    for name, t in rows:
        med = statistics.median(t)
        print("%-8s %10.4f %10.4f %10.4f %10.1f %12.0f"
              % (name, med, min(t), max(t), flops / med / 1e9, tokens / med))
    if cold:
        print("compile of train_step: cold %.1f s, warm %.1f s"
              % (cold.get("train_step", float("nan")), warm.get("train_step", float("nan"))))
    if args.profile:
        theano_step.profile.summary()
    if t_torch:
        print("Theano/PyTorch step-time ratio (seminar graph): %.2f"
              % (statistics.median(t_theano) / statistics.median(t_torch)))
    else:
        print("Theano/PyTorch step-time ratio (seminar graph): n/a (no PyTorch)")


if __name__ == "__main__":
    sys.exit(main())
