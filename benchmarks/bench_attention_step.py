"""Side-by-side: one training step of the attention model, Theano vs PyTorch CPU.

    make bench                                   # after the seminar graph's bench
    .venv/bin/python benchmarks/bench_attention_step.py --threads 1
    .venv/bin/python benchmarks/bench_attention_step.py --profile

The Theano side is the project's own model,
:class:`captioning.attention_model.AttentionCaptionModel` (Xu et al. 2015:
soft attention over the regions, gate beta, LSTM, deep output, dropout, the
doubly stochastic regulariser, Adam), compiled by its ``compile_train()``.
The PyTorch side, :class:`TorchAttentionCaptioner`, is the same model
written by hand: the same equations (Lasagne's gate order i, f, c, o; no
peepholes, as the model builds its LSTM), the same gradient clipping of
each tick's gate pre-activations, the same loss, and Lasagne's Adam with its
hyper-parameters; it starts from the Theano model's weights.
``tests/test_attention_bench.py`` checks that both give the same losses,
gradients and Adam updates.

Sizes are the model's defaults (E=256, H=512, A=256, 7x7=49 regions of 1280
features) with ``caption train``'s batch of 64 and its Flickr8k vocabulary
(2,420 words: the train split less the selection photos, words seen 5
times). T=13 ticks: ``caption train`` batches captions of the same length
(sorted, so almost no padding) and most of a step's time is per tick, so
an epoch costs about as many steps of the *mean* length as it has batches;
the mean Flickr8k caption (cut at 22 tokens) is 12.75 tokens with
``#START#`` and ``#END#`` (median 12, 95th percentile 20).

Both frameworks run alternately, in blocks of steps (as in
``bench_train_step.py``), on the same batches; both use the same number of
threads. Printed: a check that both give the same loss on one batch, the
medians, the estimated epoch time (27,500 captions / 64 per batch = 430
steps) and, last, the ratio Theano/PyTorch. torch is a benchmark-only
extra (requirements-bench.txt).
"""
import argparse
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train_step import (blas_report, cpu_model, interleaved_times,  # noqa: E402
                              load_torch)

SIZE = dict(V=2420, E=256, H=512, A=256, R=49, D=1280, B=64, T=13)
EPOCH_CAPTIONS = 27500   # Flickr8k's train split less the 500 selection photos, 5 each
GATES = ("ingate", "forgetgate", "cell", "outgate")   # Lasagne's stacking order


# ---------------------------------------------------------------- data
def make_batches(size, n, seed=0):
    """``n`` (regions, sentences) batches: standardised region features
    (as ``prepare_codes`` gives) and captions of ``T`` tokens (START,
    words, END), all of one length as in ``caption train``'s batches."""
    import numpy as np
    rng = np.random.RandomState(seed)
    B, T, V, R, D = (size[k] for k in "BTVRD")
    batches = []
    for _ in range(n):
        regions = rng.randn(B, R, D).astype("float32")
        sentences = np.empty((B, T), dtype="int32")
        sentences[:, 0] = 1                           # #START#
        sentences[:, 1:-1] = rng.randint(3, V, size=(B, T - 2))
        sentences[:, -1] = 2                          # #END#
        batches.append((regions, sentences))
    return batches


def matmul_flops(size, region_units=0):
    """Matmul FLOPs of one train step (2 per multiply-add, elementwise work
    not counted): the forward products, and in the backward pass two
    products for each (the weight's gradient and the input's), or one where
    the input is the CNN's regions, which need no gradient. With
    ``region_units`` P the regions first pass a D x P Dense (one backward
    product) and the decoder sees P features per region, whose products
    (a W_att, the mean region's two Dense layers, alpha . a) then need both."""
    B, T, V, E, H, A, R, D = (size[k] for k in "BTVEHARD")
    P = region_units or D
    full = (T * (B * H * A + B * P * 4 * H + B * H * 4 * H)   # h W_hid_att, z W_ctx, h W_hid
            + B * T * (E * 4 * H + H * E + P * E + E * V))      # x W_in, deep output, L_o
    on_regions = B * R * P * A + 2 * B * P * H + T * B * R * P
    if region_units:
        return 2 * (3 * (full + on_regions) + 2 * B * R * D * P)
    return 2 * (3 * full + 2 * on_regions)


# ---------------------------------------------------------------- Theano
def build_theano(size, seed=0, **hyper):
    import captioning.stack  # noqa: F401  (flags first)
    from captioning.attention_model import AttentionCaptionModel
    from captioning.model import Vocabulary
    words = ["#UNK#", "#START#", "#END#"] + ["w%d" % i for i in range(size["V"] - 3)]
    return AttentionCaptionModel(
        Vocabulary(words), seed=seed, embed_size=size["E"], lstm_units=size["H"],
        attention_units=size["A"], cnn_feature_size=size["D"], **hyper)


# ---------------------------------------------------------------- PyTorch
class TorchAttentionCaptioner:
    """The attention model in PyTorch, from an AttentionCaptionModel's
    weights and hyper-parameters (a copy: the Theano model is not changed).

    The per-gate weights are stacked as the Theano graph stacks them
    (``[W_ingate | W_forgetgate | W_cell | W_outgate]``); Adam keeps its
    moments per stacked tensor, which is the same element-wise update.
    """

    def __init__(self, model):
        import numpy as np
        import torch
        hyper = model.hyper
        if hyper["deep_output_nonlinearity"] not in ("linear", "tanh"):
            raise ValueError(hyper["deep_output_nonlinearity"])
        arrays = theano_as_stacked(model)
        self.p = {k: torch.tensor(np.asarray(v, np.float32)) for k, v in arrays.items()}
        self.trainable = [k for k in self.p if k != "embedding" or hyper["train_embedding"]]
        for k in self.trainable:
            self.p[k].requires_grad_(True)
        self.clip = float(hyper["grad_clipping"])
        self.dropout = float(hyper["output_dropout"])
        self.region_dropout = float(hyper.get("region_dropout", 0))
        # "feature": one mask per (image, feature), shared by its regions
        self.feature_dropout = hyper.get("region_dropout_mode") == "feature"
        self.deep_tanh = hyper["deep_output_nonlinearity"] == "tanh"
        self.penalty_weight = float(hyper["attention_penalty"])
        self.entropy_weight = float(hyper.get("attention_entropy", 0))
        # 1 for the next words whose tick the entropy term weighs: every word,
        # or ("content") all but the function words and #END#
        self.entropy_flags = None
        if hyper.get("attention_entropy_words", "all") == "content":
            from captioning.attention_model import content_word_flags
            self.entropy_flags = torch.from_numpy(content_word_flags(model.vocab))
        # Lasagne's adam(learning_rate, beta1=0.9, beta2=0.999, epsilon=1e-8)
        self.lr = float(hyper["learning_rate"])
        self.beta1, self.beta2, self.epsilon = 0.9, 0.999, 1e-8
        self.t = 0
        self.m = [torch.zeros_like(self.p[k]) for k in self.trainable]
        self.v = [torch.zeros_like(self.p[k]) for k in self.trainable]
        # the clip of the Theano loss: min(xent, -log 1e-7) in float32
        self.max_xent = float(-np.log(np.float32(1e-7)))

    def losses(self, regions, sentences, dropout=True):
        """``(cross-entropy, attention penalty, attention entropy)``, each per
        target word; ``regions`` (B, R, D) float32 and ``sentences`` (B, T)
        int64 tensors."""
        import torch
        import torch.nn.functional as F
        p = self.p
        mask = sentences != -1
        words = sentences.clamp(min=0)
        x = F.embedding(words, p["embedding"])                         # (B, T, E)
        if dropout and self.region_dropout:   # as the model's region_dropout layer
            if self.feature_dropout:
                keep = 1 - self.region_dropout
                kept = torch.bernoulli(torch.full(
                    (regions.shape[0], 1, regions.shape[2]), keep))
                regions = regions * kept / keep
            else:
                regions = F.dropout(regions, self.region_dropout, training=True)
        if "region_W" in p:                   # region_dense, shared by the regions
            regions = torch.matmul(regions, p["region_W"]) + p["region_b"]
        mean = regions.mean(dim=1)
        h = torch.tanh(torch.addmm(p["hid_init_b"], mean, p["hid_init_W"]))
        c = torch.tanh(torch.addmm(p["cell_init_b"], mean, p["cell_init_W"]))
        # what does not depend on t, once: the word part and a W_att + b_att
        word_part = torch.matmul(x.transpose(0, 1), p["W_in"]) + p["b"]   # (T, B, 4H)
        projected = torch.matmul(regions, p["W_att"]) + p["b_att"]       # (B, R, A)
        hids, contexts, alphas = [], [], []
        for t in range(sentences.shape[1]):
            scores = torch.matmul(torch.tanh(projected + (h @ p["W_hid_att"]).unsqueeze(1)),
                                  p["w_att"])                           # (B, R)
            alpha = torch.softmax(scores, dim=1)
            beta = torch.sigmoid(h @ p["w_beta"] + p["b_beta"])
            z = beta.unsqueeze(1) * torch.bmm(alpha.unsqueeze(1), regions).squeeze(1)
            pre = torch.addmm(torch.addmm(word_part[t], z, p["W_ctx"]), h, p["W_hid"])
            if self.clip and pre.requires_grad:   # Theano's grad_clip on the same sum
                pre.register_hook(lambda g: g.clamp(-self.clip, self.clip))
            i, f, g, o = pre.chunk(4, dim=1)
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h_new = torch.sigmoid(o) * torch.tanh(c_new)
            m = mask[:, t].unsqueeze(1)            # padded ticks keep (c, h)
            c, h = torch.where(m, c_new, c), torch.where(m, h_new, h)
            hids.append(h)
            contexts.append(z)
            alphas.append(alpha)
        hids, contexts = torch.stack(hids, 1), torch.stack(contexts, 1)
        alphas = torch.stack(alphas, 1)                                   # (B, T, R)
        deep = (x + torch.matmul(hids, p["out_hid_W"]) + p["out_hid_b"]
                + torch.matmul(contexts, p["out_context_W"]))
        if self.deep_tanh:
            deep = torch.tanh(deep)
        if dropout and self.dropout:
            deep = F.dropout(deep, self.dropout, training=True)
        # every tick's row is scored, as in the Theano graph; tick t predicts
        # word t + 1, the last tick nothing (masked)
        logits = torch.addmm(p["output_b"], deep.reshape(-1, deep.shape[-1]), p["output_W"])
        next_words = torch.cat([words[:, 1:], torch.zeros_like(words[:, :1])], 1)
        out_mask = torch.cat([mask[:, 1:], torch.zeros_like(mask[:, :1])], 1).float()
        xent = F.cross_entropy(logits, next_words.reshape(-1), reduction="none")
        xent = xent.clamp(max=self.max_xent)
        n = out_mask.sum()
        loss = (xent * out_mask.reshape(-1)).sum() / n
        coverage = (alphas * out_mask.unsqueeze(2)).sum(dim=1)
        penalty = (1 - coverage).square().sum() / n
        entropy = torch.zeros(())   # as the Theano graph: computed only when weighed
        if self.entropy_weight:
            weighed = out_mask
            if self.entropy_flags is not None:
                weighed = out_mask * self.entropy_flags[next_words]
            entropy = ((torch.special.entr(alphas).sum(dim=2) * weighed).sum()
                       / weighed.sum().clamp(min=1))
        return loss, penalty, entropy

    def objective(self, regions, sentences, dropout=True):
        """``(cross-entropy, what Adam minimises)``."""
        loss, penalty, entropy = self.losses(regions, sentences, dropout)
        return loss, (loss + self.penalty_weight * penalty
                      + self.entropy_weight * entropy)

    def gradients(self, regions, sentences, dropout=True):
        """``{name: gradient}`` of the objective (for the tests)."""
        import torch
        _, objective = self.objective(regions, sentences, dropout)
        grads = torch.autograd.grad(objective, [self.p[k] for k in self.trainable])
        return dict(zip(self.trainable, grads))

    def train_step(self, regions, sentences):
        """Forward, backward, one Adam update; returns the cross-entropy."""
        import torch
        loss, objective = self.objective(regions, sentences)
        params = [self.p[k] for k in self.trainable]
        grads = torch.autograd.grad(objective, params)
        self.adam(params, list(grads))
        return loss.item()

    def adam(self, params, grads):
        """Lasagne's adam (Kingma & Ba's algorithm 1 with its efficient
        step: a_t = lr sqrt(1 - b2^t) / (1 - b1^t), epsilon added to
        sqrt(v_t)), on all tensors at once (torch._foreach_*)."""
        import torch
        b1, b2 = self.beta1, self.beta2
        self.t += 1
        a_t = self.lr * math.sqrt(1 - b2 ** self.t) / (1 - b1 ** self.t)
        with torch.no_grad():
            torch._foreach_mul_(self.m, b1)
            torch._foreach_add_(self.m, grads, alpha=1 - b1)
            torch._foreach_mul_(self.v, b2)
            torch._foreach_addcmul_(self.v, grads, grads, value=1 - b2)
            denominators = torch._foreach_sqrt(self.v)
            torch._foreach_add_(denominators, self.epsilon)
            torch._foreach_addcdiv_(params, self.m, denominators, value=-a_t)

    def stacked_values(self):
        """``{name: ndarray}`` of the current weights (PyTorch's names)."""
        return {k: v.detach().numpy().copy() for k, v in self.p.items()}


def theano_as_stacked(model):
    """The Theano model's weights under :class:`TorchAttentionCaptioner`'s
    names (per-gate weights stacked), for comparisons."""
    import numpy as np
    values = model.get_param_values()

    def stacked(kind):
        return np.concatenate([values["decoder.%s_%s" % (kind, g)] for g in GATES], -1)

    names = {"embedding": "embedding.W", "hid_init_W": "hid_init.W",
             "hid_init_b": "hid_init.b", "cell_init_W": "cell_init.W",
             "cell_init_b": "cell_init.b", "W_att": "decoder.W_att",
             "b_att": "decoder.b_att", "W_hid_att": "decoder.W_hid_att",
             "w_att": "decoder.w_att", "w_beta": "decoder.w_beta",
             "b_beta": "decoder.b_beta", "out_hid_W": "out_hid.W",
             "out_hid_b": "out_hid.b", "out_context_W": "out_context.W",
             "output_W": "output.W", "output_b": "output.b"}
    if "region_dense.W" in values:
        names.update(region_W="region_dense.W", region_b="region_dense.b")
    out = {k: values[v] for k, v in names.items()}
    out.update(W_in=stacked("W_in_to"), W_hid=stacked("W_hid_to"),
               W_ctx=stacked("W_ctx_to"), b=stacked("b"))
    return out


# ---------------------------------------------------------------- main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ticks", type=int, default=SIZE["T"],
                        help="caption length T in tokens with #START#/#END# "
                             "(default %d, Flickr8k's mean)" % SIZE["T"])
    parser.add_argument("--repeats", type=int, default=10,
                        help="timed steps per framework (median reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--block", type=int, default=2,
                        help="timed steps per framework before switching to the other")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--profile", action="store_true",
                        help="print Theano's profile of the train step")
    parser.add_argument("--baseline", action="store_true",
                        help="Theano without the speed changes (CAPTION_SPEEDUPS=0)")
    parser.add_argument("--threads", type=int, default=None,
                        help="BLAS/OpenMP threads for both sides (default: "
                             "$OPENBLAS_NUM_THREADS if set, else the libraries' own choice)")
    args = parser.parse_args(argv)
    if args.ticks < 3:
        parser.error("--ticks must be at least 3 (#START#, a word, #END#)")
    if args.baseline:  # before captioning is imported
        os.environ["CAPTION_SPEEDUPS"] = "0"
    threads = args.threads or (int(os.environ["OPENBLAS_NUM_THREADS"])
                               if os.environ.get("OPENBLAS_NUM_THREADS", "").isdigit()
                               else None)
    if threads:  # before OpenBLAS (Theano's, via scipy) or torch load
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
            os.environ[var] = str(threads)
    if args.profile:
        os.environ["THEANO_FLAGS"] = ",".join(filter(None, [
            os.environ.get("THEANO_FLAGS", ""), "profile=True",
            "profiling.n_apply=30", "profiling.n_ops=20"]))
    import captioning.stack  # noqa: F401
    import numpy as np
    import theano
    from captioning.stack.theano_setup import SPEEDUPS

    size = dict(SIZE, T=args.ticks)
    print("== attention model (Show, Attend and Tell): one train step ==")
    print("machine: %s, %d cores; Python %s, Theano %s, numpy %s"
          % (cpu_model(), os.cpu_count(), platform.python_version(),
             theano.__version__, np.__version__))
    print("sizes: %s" % ", ".join("%s=%d" % kv for kv in size.items()))
    print("speed-ups: %s" % ("on" if SPEEDUPS else
                             "off (CAPTION_SPEEDUPS=0: BASELINE, Theano's own behaviour)"))
    for line in blas_report():
        print(line)

    model = build_theano(size)
    print("regions through a Dense of %d units (region_units; 0: none), region dropout %s per %s"
          % (model.hyper["region_units"], model.hyper["region_dropout"],
             model.hyper["region_dropout_mode"]))
    print("objective: cross-entropy + %g x the attention penalty + %g x the entropy "
          "of alpha on %s words" % (model.hyper["attention_penalty"],
                                    model.hyper["attention_entropy"],
                                    model.hyper["attention_entropy_words"]))
    start = time.perf_counter()
    theano_step, val_step = model.compile_train()
    print("compile of train_step + val_step in this process: %.1f s"
          % (time.perf_counter() - start))

    batches = make_batches(size, 3)
    torch_step = None
    torch = None if args.no_torch else load_torch(threads)
    if torch:
        torch.manual_seed(0)
        torch_batches = [(torch.from_numpy(r), torch.from_numpy(s).long())
                         for r, s in batches]
        replica = TorchAttentionCaptioner(model)
        # same weights, dropout off: the same loss (float32 sums)
        with torch.no_grad():
            torch_loss = replica.losses(*torch_batches[0], dropout=False)[0].item()
        theano_loss = float(val_step(*batches[0]))
        print("same model: loss on one batch, dropout off: Theano %.6f, PyTorch %.6f "
              "(relative difference %.1e)" % (theano_loss, torch_loss,
                                              abs(theano_loss / torch_loss - 1)))
        torch_step = replica.train_step
        print("PyTorch %s, %d threads" % (torch.__version__, torch.get_num_threads()))
    print("BLAS threads: %s" % (threads or "the libraries' default"))

    steps = [(theano_step, batches)]
    if torch_step:
        steps.append((torch_step, torch_batches))
    for i in range(args.warmup):
        for step, data in steps:
            step(*data[i % len(data)])
    cpu = []
    times = interleaved_times(steps, args.repeats, args.block, cpu_times=cpu)

    flops = matmul_flops(size, model.hyper["region_units"])
    n_steps = math.ceil(EPOCH_CAPTIONS / size["B"])
    print()
    print("matmul FLOPs per train step (fwd+bwd): %.1f GFLOP" % (flops / 1e9))
    print("%-8s %10s %10s %10s %10s %16s %12s" % (
        "", "median s", "min s", "max s", "GFLOP/s", "epoch (%d steps)" % n_steps,
        "CPU s/step"))
    names = ["Theano", "PyTorch"][:len(steps)]
    for name, t, c in zip(names, times, cpu):
        med = statistics.median(t)
        print("%-8s %10.3f %10.3f %10.3f %10.1f %12.1f min %12.3f"
              % (name, med, min(t), max(t), flops / med / 1e9, med * n_steps / 60,
                 statistics.median(c)))
    print("(CPU s/step: median CPU time of the process, all its threads; with one "
          "thread it is the step's time on an otherwise idle core)")
    if args.profile:
        theano_step.profile.summary()
    if torch_step:
        print("Theano/PyTorch step-time ratio (attention model): %.2f"
              % (statistics.median(times[0]) / statistics.median(times[1])))
    else:
        print("Theano/PyTorch step-time ratio (attention model): n/a (no PyTorch)")


if __name__ == "__main__":
    sys.exit(main())
