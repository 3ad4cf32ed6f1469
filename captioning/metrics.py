"""Caption quality: corpus BLEU-1..4 and CIDEr-D, with coco-caption's conventions.

Both metrics take a list of candidate captions and, for each, a list of
reference captions (strings or token lists). Both are tokenised by
:func:`captioning.text.ptb_tokenize`, coco-caption's PTB rules (lower case,
clitics split off, its punctuation list dropped), the same tokens the
vocabulary of the data files and of ``caption train`` is built from.

* BLEU is corpus level (n-gram matches and lengths are summed over the whole
  corpus before the precisions are taken), with the brevity penalty computed
  from the reference length closest to each candidate (ties: the shorter).
  Unlike coco-caption we do not add its 1e-9/1e-15 guards to every precision,
  so a corpus without a single matching n-gram scores exactly 0 (coco-caption
  reports a tiny positive number there); otherwise the two agree.
* CIDEr-D follows coco-caption's ``CiderD``: TF-IDF n-gram vectors (n=1..4)
  whose document frequencies come from the references of the evaluated
  corpus, candidate counts clipped to the reference's, a Gaussian length
  penalty (sigma=6), averaged over n and references and scaled by 10.

Example
-------
>>> corpus_bleu(["a dog runs"], [["a dog runs", "the dog is running"]])[3]
0.0
>>> round(corpus_bleu(["a dog runs on grass"], [["a dog runs on the grass"]])[0], 4)
0.8187
"""
import math
from collections import Counter

from captioning.text import ptb_tokenize

__all__ = ["ngrams", "corpus_bleu", "CiderD", "cider_d", "score_captions"]


def ngrams(tokens, n):
    """Counter of the n-grams (tuples) of one token list."""
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _check_corpus(candidates, references):
    candidates = [ptb_tokenize(c) for c in candidates]
    references = [[ptb_tokenize(r) for r in refs] for refs in references]
    if len(candidates) != len(references):
        raise ValueError("%d candidates but %d reference lists"
                         % (len(candidates), len(references)))
    if not candidates:
        raise ValueError("cannot score an empty corpus")
    for i, refs in enumerate(references):
        if not refs:
            raise ValueError("candidate %d has no reference captions" % i)
    return candidates, references


def corpus_bleu(candidates, references, max_n=4):
    """Corpus BLEU-1..max_n.

    Parameters
    ----------
    candidates : list of str or list of token lists
        One generated caption per image.
    references : list of lists
        For each candidate, its reference captions.
    max_n : int
        Highest n-gram order.

    Returns
    -------
    list of float
        ``[BLEU-1, ..., BLEU-max_n]``; BLEU-n is the geometric mean of the
        modified 1..n-gram precisions times the brevity penalty.
    """
    candidates, references = _check_corpus(candidates, references)
    matches = [0] * max_n   # clipped n-gram matches, summed over the corpus
    totals = [0] * max_n    # candidate n-grams, summed over the corpus
    cand_len = ref_len = 0
    for cand, refs in zip(candidates, references):
        cand_len += len(cand)
        # closest reference length; a tie goes to the shorter reference
        ref_len += min((abs(len(r) - len(cand)), len(r)) for r in refs)[1]
        for n in range(1, max_n + 1):
            counts = ngrams(cand, n)
            max_ref = Counter()
            for r in refs:
                max_ref |= ngrams(r, n)     # element-wise max of the counts
            matches[n - 1] += sum(min(c, max_ref[g]) for g, c in counts.items())
            totals[n - 1] += sum(counts.values())

    if cand_len == 0:
        return [0.0] * max_n
    brevity = 1.0 if cand_len > ref_len else math.exp(1.0 - ref_len / cand_len)
    scores, log_sum = [], 0.0
    for n in range(max_n):
        if matches[n] == 0:
            # every higher order is 0 as well
            scores.extend([0.0] * (max_n - n))
            break
        log_sum += math.log(matches[n] / totals[n])
        scores.append(brevity * math.exp(log_sum / (n + 1)))
    return scores


def _tfidf(counts_by_n, doc_freq, log_n_docs):
    """TF-IDF vectors (one dict per n) and their norms, coco-caption style."""
    vectors, norms = [], []
    for counts in counts_by_n:
        vec = {g: tf * (log_n_docs - math.log(max(1.0, doc_freq[g])))
               for g, tf in counts.items()}
        vectors.append(vec)
        norms.append(math.sqrt(sum(v * v for v in vec.values())))
    return vectors, norms


class CiderD:
    """CIDEr-D of captions against fixed reference sets.

    The document frequencies are counted once, over ``references`` (one list
    of reference captions per image), and the IDF uses ``log(number of
    images)``, as coco-caption does for the corpus it scores; so
    ``CiderD(references).score(c, i)`` is candidate ``c``'s CIDEr-D against
    image ``i`` within that corpus (what self-critical training rewards,
    with the training captions as the corpus).
    """

    def __init__(self, references, max_n=4, sigma=6.0):
        self.max_n, self.sigma = max_n, sigma
        references = [[ptb_tokenize(r) for r in refs] for refs in references]
        if not references:
            raise ValueError("cannot score against no images")
        for i, refs in enumerate(references):
            if not refs:
                raise ValueError("image %d has no reference captions" % i)
        counts = [[self._counts(r) for r in refs] for refs in references]
        self.doc_freq = Counter()
        for refs in counts:
            self.doc_freq.update(set(g for ref in refs for by_n in ref
                                     for g in by_n))
        self.log_n_docs = math.log(float(len(references)))
        self.references = [
            [self._vector(ref, tokens) for ref, tokens in zip(refs, ref_tokens)]
            for refs, ref_tokens in zip(counts, references)]

    def __len__(self):
        return len(self.references)

    def _counts(self, tokens):
        return [ngrams(tokens, n) for n in range(1, self.max_n + 1)]

    def _vector(self, counts_by_n, tokens):
        """TF-IDF vectors (one dict per n), their norms, and the length the
        penalty compares (bigram count, as coco-caption's code does: the
        same as word count except for an empty caption)."""
        vectors, norms = _tfidf(counts_by_n, self.doc_freq, self.log_n_docs)
        return vectors, norms, max(len(tokens) - 1, 0)

    def score(self, candidate, image):
        """CIDEr-D of one candidate (string or tokens) against image ``image``."""
        tokens = ptb_tokenize(candidate)
        vec_c, norm_c, len_c = self._vector(self._counts(tokens), tokens)
        total = 0.0
        refs = self.references[image]
        for vec_r, norm_r, len_r in refs:
            delta = len_c - len_r
            penalty = math.exp(-delta * delta / (2.0 * self.sigma ** 2))
            for n in range(self.max_n):
                # clipping: the candidate cannot gain by repeating an n-gram
                dot = sum(min(v, vec_r[n].get(g, 0.0)) * vec_r[n].get(g, 0.0)
                          for g, v in vec_c[n].items())
                if norm_c[n] != 0 and norm_r[n] != 0:
                    dot /= norm_c[n] * norm_r[n]
                total += dot * penalty
        return 10.0 * total / self.max_n / len(refs)


def cider_d(candidates, references, max_n=4, sigma=6.0):
    """CIDEr-D of a corpus and of each candidate.

    Parameters
    ----------
    candidates, references
        As for :func:`corpus_bleu`.
    max_n : int
        Highest n-gram order (coco-caption: 4).
    sigma : float
        Width of the Gaussian length penalty (coco-caption: 6).

    Returns
    -------
    score : float
        Mean of the per-image scores.
    per_image : list of float
        Each candidate's CIDEr-D, in the corpus's order.

    Notes
    -----
    Document frequencies are counted over the reference sets of *this*
    corpus (an n-gram counts once per image whose references contain it),
    and the IDF uses ``log(number of images)``, exactly as coco-caption
    does, so the score of a caption depends on the corpus it is scored in
    (:class:`CiderD` holds one corpus's references).
    """
    candidates, references = _check_corpus(candidates, references)
    scorer = CiderD(references, max_n=max_n, sigma=sigma)
    per_image = [scorer.score(c, i) for i, c in enumerate(candidates)]
    return sum(per_image) / len(per_image), per_image


def score_captions(candidates, references):
    """All the metrics in one dict: bleu1..bleu4 and cider (floats)."""
    bleu = corpus_bleu(candidates, references)
    result = {"bleu%d" % (n + 1): b for n, b in enumerate(bleu)}
    result["cider"] = cider_d(candidates, references)[0]
    return result
