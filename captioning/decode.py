"""Turn image codes into captions: greedy, sampling, beam search.

All three drive the model's one-tick decoder (:meth:`CaptionModel.compile_step`),
which is compiled once and shared: each call feeds one word per row and gets
the next word's log-probabilities and the new LSTM state, so a caption of
``L`` words costs ``L`` ticks (the seminar's ``generate_caption`` re-ran the
whole prefix for every word). Every function decodes a whole batch of images
at once, one row per image (per beam, in beam search).

By default ``#UNK#`` is never produced (a caption with an unknown-word
marker is worth less than one without) and ``#START#`` never is either.
"""
import numpy as np

__all__ = ["greedy", "sample", "beam_search", "caption"]

MAX_LEN = 30  # words; Flickr8k captions average ~11 and rarely pass 30


def _start(model, codes, allow_unk):
    init_state, step = model.compile_step()
    cell, hid = init_state(model.prepare_codes(codes))
    banned = [model.vocab.start_ix] + ([] if allow_unk else [model.vocab.unk_ix])
    return step, cell, hid, banned


def _next_log_probs(step, words, cell, hid, banned):
    log_probs, cell, hid = step(np.asarray(words, dtype="int32"), cell, hid)
    log_probs[:, banned] = -np.inf
    return log_probs, cell, hid


def _run(model, codes, choose, max_len, allow_unk):
    """Feed back ``choose(log_probs)`` until every row said ``#END#``."""
    step, cell, hid, banned = _start(model, codes, allow_unk)
    end = model.vocab.end_ix
    words = np.full(len(cell), model.vocab.start_ix, dtype="int32")
    out = np.zeros((len(cell), max_len), dtype="int32")
    done = np.zeros(len(cell), dtype=bool)
    for t in range(max_len):
        log_probs, cell, hid = _next_log_probs(step, words, cell, hid, banned)
        words = np.where(done, end, choose(log_probs)).astype("int32")
        out[:, t] = words
        done |= words == end
        if done.all():
            break
    return [model.vocab.decode(row) for row in out]


def greedy(model, codes, max_len=MAX_LEN, allow_unk=False):
    """The most likely next word at every tick.

    Parameters
    ----------
    model : CaptionModel
    codes : ndarray (n_images, cnn_feature_size)
        Raw CNN codes (standardised here with the model's statistics).
    max_len : int
        Words per caption at most (``#END#`` not counted).
    allow_unk : bool
        Let the caption contain ``#UNK#``.

    Returns
    -------
    list of list of str
        One caption (words, without ``#START#``/``#END#``) per image.
    """
    return _run(model, codes, lambda lp: lp.argmax(axis=1), max_len, allow_unk)


def sample(model, codes, temperature=1.0, max_len=MAX_LEN, allow_unk=False,
           rng=None):
    """Draw each word from ``softmax(log_probs / temperature)``.

    ``temperature`` -> 0 gives :func:`greedy`; 1 samples from the model;
    above 1 flattens the distribution. ``rng`` is a ``np.random.RandomState``
    (default: a fresh unseeded one). Other parameters as :func:`greedy`.
    """
    if temperature <= 0:
        raise ValueError("temperature must be > 0, got %r" % temperature)
    rng = rng or np.random.RandomState()

    def choose(log_probs):
        z = log_probs / temperature
        z -= z.max(axis=1, keepdims=True)   # the argmax gets exp(0) = 1
        p = np.exp(z)
        cumulative = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
        u = rng.random_sample((len(z), 1))
        # first index whose cumulative probability passes u
        return np.minimum((cumulative < u).sum(axis=1), z.shape[1] - 1)

    return _run(model, codes, choose, max_len, allow_unk)


def beam_search(model, codes, k=3, max_len=MAX_LEN, allow_unk=False):
    """Keep the ``k`` best prefixes per image; return the best caption.

    Hypotheses are ranked, once finished (``#END#`` emitted), by their total
    log-probability divided by their length in tokens (``#END#`` included),
    so that short captions are not favoured just for having fewer factors.
    An image stops when it has ``k`` finished hypotheses; one that reaches
    ``max_len`` without any returns its best unfinished prefix. With
    ``k=1`` this is exactly :func:`greedy`.

    Other parameters and the result as for :func:`greedy`.
    """
    if k < 1:
        raise ValueError("beam width k must be >= 1, got %r" % k)
    step, cell, hid, banned = _start(model, codes, allow_unk)
    n, units = cell.shape
    end = model.vocab.end_ix
    # rows are image-major: row i*k + j is beam j of image i
    cell, hid = np.repeat(cell, k, axis=0), np.repeat(hid, k, axis=0)
    words = np.full(n * k, model.vocab.start_ix, dtype="int32")
    scores = np.full((n, k), -np.inf, dtype="float64")
    scores[:, 0] = 0.0          # all beams start equal: expand only one
    prefixes = np.zeros((n, k, 0), dtype="int32")
    finished = [[] for _ in range(n)]  # (normalised score, word ids)
    active = np.ones(n, dtype=bool)

    for t in range(max_len):
        log_probs, cell, hid = _next_log_probs(step, words, cell, hid, banned)
        vocab_size = log_probs.shape[1]
        flat = (scores[:, :, None]
                + log_probs.reshape(n, k, vocab_size)).reshape(n, k * vocab_size)
        # The 2k best candidates, best first: enough to refill k beams even
        # if up to k of them end here (as in fairseq's beam search).
        m = min(2 * k, flat.shape[1])
        best = np.argpartition(-flat, m - 1, axis=1)[:, :m]
        best = np.take_along_axis(
            best, np.argsort(-np.take_along_axis(flat, best, axis=1), axis=1),
            axis=1)
        beam = np.zeros((n, k), dtype=int)
        word = np.full((n, k), end, dtype=int)
        new_scores = np.full((n, k), -np.inf)
        for i in range(n):
            filled = 0
            for rank, index in enumerate(best[i]):
                score = flat[i, index]
                if not active[i] or not np.isfinite(score) or filled == k:
                    break
                j, w = divmod(int(index), vocab_size)
                if w == end:
                    # a finished hypothesis counts only if it is in the top k
                    if rank < k:
                        finished[i].append((score / (t + 1),
                                            list(prefixes[i, j])))
                    continue
                beam[i, filled], word[i, filled] = j, w
                new_scores[i, filled] = score
                filled += 1
            if len(finished[i]) >= k or filled == 0:
                active[i] = False
        scores = new_scores
        prefixes = np.concatenate(
            [np.take_along_axis(prefixes, beam[:, :, None], axis=1),
             word[:, :, None]], axis=2)
        rows = (np.arange(n)[:, None] * k + beam).ravel()
        cell, hid = cell[rows], hid[rows]
        words = word.ravel().astype("int32")
        if not active.any():
            break

    captions = []
    for i in range(n):
        if finished[i]:
            # best normalised score; among equals the earliest found
            ids = max(finished[i], key=lambda f: f[0])[1]
        else:
            ids = list(prefixes[i, 0])
        captions.append(model.vocab.decode(ids))
    return captions


def caption(model, codes, beam=1, max_len=MAX_LEN, batch_size=250,
            progress=False):
    """Captions as strings: greedy for ``beam <= 1``, else beam search.

    Images are decoded ``batch_size`` at a time (one tick per word for the
    whole batch), with a progress bar on stderr if ``progress``.
    """
    import sys
    from tqdm import tqdm
    starts = range(0, len(codes), batch_size)
    captions = []
    for start in tqdm(starts, desc="captioning", unit="batch",
                      disable=not progress, file=sys.stderr):
        part = codes[start:start + batch_size]
        if beam <= 1:
            found = greedy(model, part, max_len=max_len)
        else:
            found = beam_search(model, part, k=beam, max_len=max_len)
        captions.extend(" ".join(words) for words in found)
    return captions
