"""Turn image codes into captions: greedy, sampling, beam search.

All three drive the model's one-tick decoder (:meth:`CaptionModel.compile_step`,
or :meth:`AttentionCaptionModel.compile_step`), which is compiled once and
shared: each call feeds one word per row and gets the next word's
log-probabilities and the new LSTM state, so a caption of ``L`` words costs
``L`` ticks (the seminar's ``generate_caption`` re-ran the whole prefix for
every word). Every function decodes a whole batch of images at once, one row
per image (per beam, in beam search). An attention model's decoder also
takes the image's regions every tick and gives where it looked
(:func:`greedy` and :func:`beam_search` return those weights on request).

By default ``#UNK#`` is never produced (a caption with an unknown-word
marker is worth less than one without) and ``#START#`` never is either.
``no_repeat_ngram=n`` (greedy and beam search; off by default) also bans
every word that would repeat an n-word phrase of the caption so far (as
fairseq's ``--no-repeat-ngram-size``, Paulus et al. 2017): with 3, "a man
on a bike is on a bike" cannot be produced ("on a bike" twice), "a man
riding a bike on a road" can.
"""
import numpy as np

__all__ = ["greedy", "sample", "beam_search", "caption"]

MAX_LEN = 30  # words; Flickr8k captions average ~11 and rarely pass 30


class _Decoder:
    """One row per image (or beam): the LSTM state, which beam search
    reorders, and what stays with the image (an attention model's regions
    and their projection, the same for all beams of one image)."""

    def __init__(self, model, codes, allow_unk, no_repeat_ngram=0):
        if no_repeat_ngram < 0:
            raise ValueError("no_repeat_ngram must be >= 0, got %r"
                             % no_repeat_ngram)
        init_state, self._step = model.compile_step()
        prepared = model.prepare_codes(codes)
        first = init_state(prepared)
        # attention: (cell, hid, the decoder's regions, their projection)
        self.attends = len(first) == 4
        self.state = list(first[:2])
        self.fixed = list(first[2:])
        self.banned = [model.vocab.start_ix] + (
            [] if allow_unk else [model.vocab.unk_ix])
        self.no_repeat_ngram = no_repeat_ngram
        self.fed = np.zeros((len(self), 0), dtype="int32")  # words so far, per row

    def __len__(self):
        return len(self.state[0])

    def repeat(self, k):
        """``k`` rows per image, image-major (row i*k + j: beam j of image i)."""
        self.state = [np.repeat(a, k, axis=0) for a in self.state]
        self.fixed = [np.repeat(a, k, axis=0) for a in self.fixed]
        self.fed = np.repeat(self.fed, k, axis=0)

    def reorder(self, rows):
        """Take the state of ``rows`` (always rows of the same image)."""
        self.state = [a[rows] for a in self.state]
        self.fed = self.fed[rows]

    def step(self, words):
        """``(log_probs, attention or None)`` of the next word, one row each."""
        words = np.asarray(words, dtype="int32")
        out = self._step(words, *self.state, *self.fixed)
        log_probs, self.state = out[0], list(out[1:3])
        log_probs[:, self.banned] = -np.inf
        if self.no_repeat_ngram:
            self.fed = np.concatenate([self.fed, words[:, None]], axis=1)
            self._ban_repeats(log_probs)
        return log_probs, (out[3] if self.attends else None)

    def _ban_repeats(self, log_probs):
        """-inf for each row's words that would end an n-gram it has fed
        already (``#START#`` included: it is never fed again)."""
        n, fed = self.no_repeat_ngram, self.fed
        windows = fed.shape[1] - n + 1     # earlier n-grams: start 0..windows-1
        if windows < 1:
            return
        # an earlier n-gram whose first n-1 words are the last n-1 fed
        same = np.ones((len(fed), windows), dtype=bool)
        for j in range(n - 1):
            same &= fed[:, j:j + windows] == fed[:, [windows + j]]
        rows, starts = np.nonzero(same)
        log_probs[rows, fed[rows, starts + n - 1]] = -np.inf


def _run(model, codes, choose, max_len, allow_unk, with_attention=False,
         no_repeat_ngram=0):
    """Feed back ``choose(log_probs)`` until every row said ``#END#``."""
    decoder = _Decoder(model, codes, allow_unk, no_repeat_ngram)
    end = model.vocab.end_ix
    n = len(decoder)
    words = np.full(n, model.vocab.start_ix, dtype="int32")
    out = np.zeros((n, max_len), dtype="int32")
    looked = []
    done = np.zeros(n, dtype=bool)
    for t in range(max_len):
        log_probs, alpha = decoder.step(words)
        looked.append(alpha)
        words = np.where(done, end, choose(log_probs)).astype("int32")
        out[:, t] = words
        done |= words == end
        if done.all():
            break
    captions = [model.vocab.decode(row) for row in out]
    if not with_attention:
        return captions
    _needs_attention(decoder)
    looked = np.stack(looked, axis=1)          # (n, ticks, regions)
    return [(c, looked[i, :len(c)]) for i, c in enumerate(captions)]


def _needs_attention(decoder):
    if not decoder.attends:
        raise ValueError("this model has no attention to show (arch seminar)")


def greedy(model, codes, max_len=MAX_LEN, allow_unk=False, with_attention=False,
           no_repeat_ngram=0):
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

    with_attention : bool
        Also return, for an attention model, where it looked for each word.
    no_repeat_ngram : int
        If > 0, never repeat a phrase of that many words within a caption
        (see the module's docstring); 0: off.

    Returns
    -------
    list of list of str
        One caption (words, without ``#START#``/``#END#``) per image; with
        ``with_attention``, ``(words, weights)`` pairs, ``weights`` of shape
        (len(words), n_regions): row t is the attention that chose word t.
    """
    return _run(model, codes, lambda lp: lp.argmax(axis=1), max_len, allow_unk,
                with_attention, no_repeat_ngram)


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


def beam_search(model, codes, k=3, max_len=MAX_LEN, allow_unk=False,
                with_attention=False, no_repeat_ngram=0):
    """Keep the ``k`` best prefixes per image; return the best caption.

    Hypotheses are ranked, once finished (``#END#`` emitted), by their total
    log-probability divided by their length in tokens (``#END#`` included),
    so that short captions are not favoured just for having fewer factors.
    An image stops when it has ``k`` finished hypotheses; one that reaches
    ``max_len`` without any returns its best unfinished prefix. With
    ``k=1`` this is exactly :func:`greedy` (with the same
    ``no_repeat_ngram``).

    Other parameters and the result as for :func:`greedy`.
    """
    if k < 1:
        raise ValueError("beam width k must be >= 1, got %r" % k)
    decoder = _Decoder(model, codes, allow_unk, no_repeat_ngram)
    if with_attention:
        _needs_attention(decoder)
    n = len(decoder)
    end = model.vocab.end_ix
    # rows are image-major: row i*k + j is beam j of image i
    decoder.repeat(k)
    words = np.full(n * k, model.vocab.start_ix, dtype="int32")
    scores = np.full((n, k), -np.inf, dtype="float64")
    scores[:, 0] = 0.0          # all beams start equal: expand only one
    prefixes = np.zeros((n, k, 0), dtype="int32")
    looked = np.zeros((n, k, 0, 0), dtype="float32")   # attention per prefix word
    finished = [[] for _ in range(n)]  # (normalised score, word ids, attention)
    active = np.ones(n, dtype=bool)

    for t in range(max_len):
        log_probs, alpha = decoder.step(words)
        if with_attention:
            alpha = alpha.reshape(n, k, 1, -1)
            if t == 0:
                looked = np.zeros((n, k, 0, alpha.shape[-1]), dtype="float32")
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
                                            list(prefixes[i, j]), looked[i, j]))
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
        if with_attention:     # the attention that chose each new word
            looked = np.concatenate(
                [np.take_along_axis(looked, beam[:, :, None, None], axis=1),
                 np.take_along_axis(alpha, beam[:, :, None, None], axis=1)], axis=2)
        rows = (np.arange(n)[:, None] * k + beam).ravel()
        decoder.reorder(rows)
        words = word.ravel().astype("int32")
        if not active.any():
            break

    captions = []
    for i in range(n):
        if finished[i]:
            # best normalised score; among equals the earliest found
            _, ids, weights = max(finished[i], key=lambda f: f[0])
        else:
            ids, weights = list(prefixes[i, 0]), looked[i, 0]
        words = model.vocab.decode(ids)
        captions.append((words, weights[:len(words)]) if with_attention else words)
    return captions


def caption(model, codes, beam=1, max_len=MAX_LEN, batch_size=250,
            progress=False, no_repeat_ngram=0):
    """Captions as strings: greedy for ``beam <= 1``, else beam search
    (``no_repeat_ngram`` as for :func:`greedy`).

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
            found = greedy(model, part, max_len=max_len,
                           no_repeat_ngram=no_repeat_ngram)
        else:
            found = beam_search(model, part, k=beam, max_len=max_len,
                                no_repeat_ngram=no_repeat_ngram)
        captions.extend(" ".join(words) for words in found)
    return captions
