"""Greedy, sampling and beam search on a tiny random model."""
import itertools

import numpy as np
import pytest

from _caption_fakes import fake_codes, tiny_model

from captioning import decode


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def codes():
    return fake_codes(16, seed=3)


def test_greedy_gives_words_without_special_tokens(model, codes):
    captions = decode.greedy(model, codes, max_len=8)
    assert len(captions) == len(codes)
    for words in captions:
        assert len(words) <= 8
        assert not {"#START#", "#END#", "#UNK#"} & set(words)


def test_greedy_follows_the_full_graph(model, codes):
    # Feeding the greedy caption back through the full graph, each word
    # must be the argmax of the full graph's next-word probabilities.
    vocab = model.vocab
    for i, words in enumerate(decode.greedy(model, codes[:4], max_len=8)):
        ids = [vocab.start_ix] + [vocab.index[w] for w in words]
        probs = model.get_probs(model.prepare_codes(codes[i:i + 1]),
                                np.array([ids], dtype="int32"))[0]
        probs[:, [vocab.start_ix, vocab.unk_ix]] = 0
        chosen = ids[1:] + ([vocab.end_ix] if len(words) < 8 else [])
        assert probs[:len(chosen)].argmax(axis=1).tolist() == chosen


def test_beam_of_one_is_greedy(model, codes):
    assert decode.beam_search(model, codes, k=1, max_len=10) == \
        decode.greedy(model, codes, max_len=10)


def test_sampling_at_low_temperature_is_greedy(model, codes):
    rng = np.random.RandomState(0)
    assert decode.sample(model, codes, temperature=1e-4, max_len=10, rng=rng) \
        == decode.greedy(model, codes, max_len=10)


def test_sampling_is_random_at_temperature_one(model, codes):
    a = decode.sample(model, codes, rng=np.random.RandomState(1))
    b = decode.sample(model, codes, rng=np.random.RandomState(2))
    assert a != b
    assert a == decode.sample(model, codes, rng=np.random.RandomState(1))


def score(model, code, words):
    """Length-normalised log-probability of ``words + #END#``, full graph."""
    vocab = model.vocab
    ids = [vocab.start_ix] + [vocab.index[w] for w in words] + [vocab.end_ix]
    probs = model.get_probs(model.prepare_codes(code[None]),
                            np.array([ids], dtype="int32"))[0]
    return sum(np.log(probs[t, ids[t + 1]]) for t in range(len(ids) - 1)) / (len(ids) - 1)


def test_wide_beam_finds_the_best_normalised_caption(model, codes):
    # With a beam wider than the number of candidates at any tick (12 words
    # x 12 words x 15 tokens at the third), beam search is exhaustive:
    # compare with brute force over every caption of <= 2 words
    # (#START# and #UNK# excluded, as the decoder does).
    words = model.vocab.words[3:]
    candidates = [list(c) for n in range(3)
                  for c in itertools.product(words, repeat=n)]
    for i in range(3):
        best = max(candidates, key=lambda c: score(model, codes[i], c))
        found = decode.beam_search(model, codes[i:i + 1], k=2500, max_len=3)[0]
        assert score(model, codes[i], found) == pytest.approx(
            score(model, codes[i], best), abs=1e-5)


def test_beam_search_batches_like_single_images(model, codes):
    together = decode.beam_search(model, codes[:5], k=3)
    alone = [decode.beam_search(model, codes[i:i + 1], k=3)[0] for i in range(5)]
    assert together == alone


def test_caption_strings_and_bad_arguments(model, codes):
    texts = decode.caption(model, codes[:3], beam=2, batch_size=2)
    assert texts == [" ".join(w) for w in decode.beam_search(model, codes[:3], k=2)]
    with pytest.raises(ValueError, match="temperature"):
        decode.sample(model, codes, temperature=0)
    with pytest.raises(ValueError, match="beam width"):
        decode.beam_search(model, codes, k=0)


def reference_greedy_without_repeats(model, code, n, max_len):
    """Greedy on the full graph's probabilities, re-run on the whole prefix
    at every tick, banning by brute force each word that would close an
    n-gram (over #START# and the words so far) already in the caption."""
    vocab = model.vocab
    ids = [vocab.start_ix]
    while len(ids) <= max_len:
        probs = model.get_probs(model.prepare_codes(code[None]),
                                np.array([ids], dtype="int32"))[0][-1]
        probs[[vocab.start_ix, vocab.unk_ix]] = 0
        seen = {tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)}
        for w in range(len(probs)):
            if tuple(ids[len(ids) - n + 1:] + [w]) in seen:
                probs[w] = 0
        word = int(probs.argmax())
        if word == vocab.end_ix:
            break
        ids.append(word)
    return [vocab.words[i] for i in ids[1:]]


def repeats(words, n):
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return len(grams) != len(set(grams))


@pytest.mark.parametrize("n", [1, 2, 3])
def test_greedy_never_repeats_an_ngram_when_asked(model, codes, n):
    plain = decode.greedy(model, codes[:6], max_len=12)
    assert any(repeats(words, n) for words in plain)   # the test can fail
    found = decode.greedy(model, codes[:6], max_len=12, no_repeat_ngram=n)
    for i, words in enumerate(found):
        assert not repeats(words, n)
        assert words == reference_greedy_without_repeats(model, codes[i], n, 12)
    assert decode.beam_search(model, codes[:6], k=1, max_len=12,
                              no_repeat_ngram=n) == found


def test_wide_beam_without_repeated_words_finds_the_best_such_caption(model, codes):
    # as the exhaustive test above, over the captions of <= 2 words that do
    # not use a word twice (no_repeat_ngram=1)
    words = model.vocab.words[3:]
    candidates = [list(c) for n in range(3)
                  for c in itertools.product(words, repeat=n)
                  if len(set(c)) == len(c)]
    unbanned = decode.beam_search(model, codes[:3], k=2500, max_len=3)
    assert any(repeats(c, 1) for c in unbanned)        # the test can fail
    for i in range(3):
        best = max(candidates, key=lambda c: score(model, codes[i], c))
        found = decode.beam_search(model, codes[i:i + 1], k=2500, max_len=3,
                                   no_repeat_ngram=1)[0]
        assert not repeats(found, 1)
        assert score(model, codes[i], found) == pytest.approx(
            score(model, codes[i], best), abs=1e-5)


def test_beams_without_repeats_batch_like_single_images(model, codes):
    together = decode.beam_search(model, codes[:5], k=3, max_len=12,
                                  no_repeat_ngram=2)
    alone = [decode.beam_search(model, codes[i:i + 1], k=3, max_len=12,
                                no_repeat_ngram=2)[0] for i in range(5)]
    assert together == alone
    assert not any(repeats(words, 2) for words in together)
    with pytest.raises(ValueError, match="no_repeat_ngram"):
        decode.greedy(model, codes, no_repeat_ngram=-1)


# ------------------------------------------------------------ attention model

@pytest.fixture(scope="module")
def attention_model():
    from _caption_fakes import tiny_attention_model
    return tiny_attention_model()


@pytest.fixture(scope="module")
def regions():
    from _caption_fakes import fake_regions
    return fake_regions(6, seed=5)


def full_graph_attention(model, regions, words):
    """Teacher-forced through the full graph: (next-word probabilities,
    attention) at every tick of ``#START# words``."""
    import theano
    from lasagne.layers import get_output
    fn = getattr(model, "_test_probs_attention", None)
    if fn is None:
        fn = theano.function([model.regions, model.sentences], get_output(
            [model.layers["probabilities"], model.layers["attention"]],
            deterministic=True))
        model._test_probs_attention = fn
    vocab = model.vocab
    ids = np.array([[vocab.start_ix] + [vocab.index[w] for w in words]], "int32")
    probs, alpha = fn(model.prepare_codes(regions[None]), ids)
    return probs[0], alpha[0]


def test_attention_greedy_follows_the_full_graph_and_shows_where_it_looked(
        attention_model, regions):
    vocab = attention_model.vocab
    found = decode.greedy(attention_model, regions, max_len=8, with_attention=True)
    assert [w for w, _ in found] == decode.greedy(attention_model, regions, max_len=8)
    for i, (words, weights) in enumerate(found):
        probs, alpha = full_graph_attention(attention_model, regions[i], words)
        probs[:, [vocab.start_ix, vocab.unk_ix]] = 0
        chosen = [vocab.index[w] for w in words] + ([vocab.end_ix] if len(words) < 8 else [])
        assert probs[:len(chosen)].argmax(axis=1).tolist() == chosen
        assert weights.shape == (len(words), 5)
        np.testing.assert_allclose(weights, alpha[:len(words)], rtol=1e-4, atol=1e-6)


def test_attention_beam_of_one_is_greedy_and_beams_keep_their_attention(
        attention_model, regions):
    assert decode.beam_search(attention_model, regions, k=1, max_len=8) == \
        decode.greedy(attention_model, regions, max_len=8)
    found = decode.beam_search(attention_model, regions, k=3, max_len=8,
                               with_attention=True)
    for i, (words, weights) in enumerate(found):
        # the weights that came with the winning beam are the ones the full
        # graph gives on that caption: beams were reordered consistently
        _, alpha = full_graph_attention(attention_model, regions[i], words)
        np.testing.assert_allclose(weights, alpha[:len(words)], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(weights.sum(axis=1), 1, rtol=1e-5)


def test_a_seminar_model_has_no_attention_to_show(model, codes):
    with pytest.raises(ValueError, match="no attention to show"):
        decode.greedy(model, codes[:2], with_attention=True)
    with pytest.raises(ValueError, match="no attention to show"):
        decode.beam_search(model, codes[:2], k=2, with_attention=True)
