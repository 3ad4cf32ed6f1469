"""BLEU against nltk's corpus_bleu; CIDEr-D against a hand-worked example."""
import math
import warnings

import pytest
from nltk.translate import bleu_score as nltk_bleu

from captioning.metrics import cider_d, corpus_bleu, score_captions
from captioning.text import ptb_tokenize

CORPORA = {
    "typical": (
        ["A dog runs on the grass .", "two men are playing soccer",
         "a woman in a red dress"],
        [["A brown dog is running through the grass .", "The dog runs .",
          "a dog on the grass"],
         ["Two men play soccer on a field .", "Men playing football ."],
         ["A woman wearing a red dress .", "a lady in red stands ."]]),
    "short candidates (brevity penalty)": (
        ["a dog", "men playing"],
        [["a dog runs in a field", "a dog"], ["two men playing soccer outside"]]),
    "long candidates": (
        ["a dog is running very fast through the green grass of the park "
         "near the lake", "a man"],
        [["a dog runs through the grass", "a dog in a park"],
         ["a man", "a man on a bike"]]),
    "tie between reference lengths": (
        ["a b c d e"],
        [["a b c d", "a b c d e f"]]),           # |4-5| == |6-5|: the shorter
    "clipping of repeated words": (
        ["the the the the the the the", "a cat sits on the mat"],
        [["the cat is on the mat", "there is a cat on the mat"],
         ["a cat sits on the mat"]]),
    "exact match": (
        ["a cat sits on the mat"], [["a cat sits on the mat", "a cat"]]),
    "single image, many references": (
        ["a black and white dog jumps over a log"],
        [["a black and white dog jumps over a fallen log",
          "a dog leaps over a log", "black dog jumping", "the dog jumps",
          "a dog in the woods jumps a log"]]),
}


def nltk_reference(candidates, references, n):
    """nltk's corpus BLEU-n on our tokenisation (closest ref length too)."""
    refs = [[ptb_tokenize(r) for r in rs] for rs in references]
    cands = [ptb_tokenize(c) for c in candidates]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nltk warns on zero n-gram matches
        return nltk_bleu.corpus_bleu(refs, cands, weights=(1.0 / n,) * n)


@pytest.mark.parametrize("name", sorted(CORPORA))
def test_bleu_matches_nltk(name):
    candidates, references = CORPORA[name]
    ours = corpus_bleu(candidates, references)
    for n in range(1, 5):
        expected = nltk_reference(candidates, references, n)
        # nltk returns ~1e-300 instead of 0 when an order has no match
        assert ours[n - 1] == pytest.approx(expected, rel=1e-9, abs=1e-12), \
            "BLEU-%d on %r: ours %r, nltk %r" % (n, name, ours[n - 1], expected)


def test_bleu_is_corpus_level_not_an_average():
    candidates, references = CORPORA["typical"]
    whole = corpus_bleu(candidates, references)[1]
    mean = sum(corpus_bleu([c], [r])[1]
               for c, r in zip(candidates, references)) / len(candidates)
    assert whole != pytest.approx(mean)


def test_bleu_by_hand():
    # candidate "a dog runs on grass" (5 words), reference 6 words:
    # p1 = 5/5; p2 = 3/4 ("a dog", "dog runs", "runs on"; not "on grass");
    # BP = exp(1 - 6/5); BLEU-2 = BP * sqrt(1 * 3/4)
    b = corpus_bleu(["a dog runs on grass"], [["a dog runs on the grass"]])
    assert b[0] == pytest.approx(math.exp(-0.2))
    assert b[1] == pytest.approx(math.exp(-0.2) * math.sqrt(0.75))


def test_bleu_normalises_case_and_punctuation():
    assert corpus_bleu(["A Dog , runs ."], [["a dog runs"]]) == [1.0, 1.0, 1.0, 0.0]


def test_bleu_edge_cases():
    assert corpus_bleu([""], [["a dog"]]) == [0.0] * 4
    assert corpus_bleu(["zebra"], [["a dog"]]) == [0.0] * 4
    with pytest.raises(ValueError, match="empty corpus"):
        corpus_bleu([], [])
    with pytest.raises(ValueError, match="2 reference lists"):
        corpus_bleu(["a"], [["a"], ["b"]])
    with pytest.raises(ValueError, match="no reference"):
        corpus_bleu(["a"], [[]])


# ---------------------------------------------------------------- CIDEr-D
def test_cider_d_by_hand():
    # Two images, so IDF = log(2) - log(df):
    #   image 1: refs "a b", "a c"; candidate "a b"
    #   image 2: ref  "a d";        candidate "d"
    # document frequencies over the reference sets: "a" in both images
    # (df 2 -> idf 0), "b", "c", "d" and every bigram in one (idf log 2).
    L = math.log(2)
    # Image 1, n=1: cand {a:0, b:L}; ref1 "a b" same vector -> cos 1;
    #   ref2 {a:0, c:L} -> 0.  n=2: cand {ab:L}; ref1 {ab:L} -> 1;
    #   ref2 {ac:L} -> 0.  n=3, 4: no n-grams -> 0.
    #   Lengths (bigram counts) 1 vs 1: no penalty.
    #   score = 10 * (sum over refs of mean over n) / n_refs
    #         = 10 * ((1 + 1 + 0 + 0) / 4 + 0) / 2 = 2.5
    # Image 2, n=1: cand {d:L}; ref {a:0, d:L}; clipped dot L*L, norms L, L
    #   -> 1. n=2: cand has no bigram (norm 0) -> 0. Lengths: 0 vs 1 bigram,
    #   delta = -1 -> penalty exp(-1 / 72).
    #   score = 10 * (1 / 4) * exp(-1/72)
    expected_2 = 2.5 * math.exp(-1.0 / 72)
    score, per_image = cider_d(["a b", "d"], [["a b", "a c"], ["a d"]])
    assert per_image == pytest.approx([2.5, expected_2])
    assert score == pytest.approx((2.5 + expected_2) / 2)


def test_cider_d_clipping():
    # Repeating a matching word cannot raise the score: with clipping the
    # repeated candidate's dot product stays that of the single word, while
    # its norm grows.
    refs = [["a dog runs", "a dog sits"], ["two cats"]]
    once = cider_d(["dog", "two cats"], refs)[1][0]
    thrice = cider_d(["dog dog dog", "two cats"], refs)[1][0]
    assert thrice < once


def test_cider_d_identical_candidate_scores_highest():
    references = [["a dog runs on the grass"] * 3,
                  ["two men play soccer"] * 3,
                  ["a woman in a red dress"] * 3]
    perfect = [refs[0] for refs in references]
    score, per_image = cider_d(perfect, references)
    # every n-gram order has cosine 1 and no length penalty: 10 per image
    assert per_image == pytest.approx([10.0] * 3)
    for worse in (["a dog runs on grass", "two men play soccer",
                   "a woman in a red dress"],
                  ["a dog", "men", "a woman in red"]):
        assert cider_d(worse, references)[0] < score


def test_cider_d_length_penalty():
    refs = [["a dog runs on the grass"], ["a cat"]]
    short = cider_d(["a dog runs", "a cat"], refs)[1][0]
    padded = cider_d(["a dog runs zebra zebra zebra", "a cat"], refs)[1][0]
    # Same matching n-grams; the padded one is as long as the reference, so
    # it loses less to the length penalty but more to its norm.
    assert 0 < short < 10 and 0 < padded < 10
    assert short != pytest.approx(padded)


def test_score_captions_keys():
    candidates, references = CORPORA["typical"]
    scores = score_captions(candidates, references)
    assert sorted(scores) == ["bleu1", "bleu2", "bleu3", "bleu4", "cider"]
    assert scores["bleu1"] >= scores["bleu4"]
