"""Self-critical training: the reward (CIDEr-D against a fixed corpus), the
baseline, the sampled captions' matrix, each caption's loss (against numpy
on the model's probabilities) and the direction of one update."""
import math

import numpy as np
import pytest

from _caption_fakes import (WORDS, fake_codes, fake_regions,
                            tiny_attention_model, tiny_model)

import theano
from captioning.metrics import CiderD, cider_d
from captioning.model import CaptionModel, Vocabulary
from captioning.self_critical import (SAMPLES, SelfCritical, advantages,
                                      sampled_matrix)
from captioning.text import END, START
from captioning.training import (round_chunks, self_critical_kept,
                                 self_critical_stale)


# ---------------------------------------------------------------- reward
def test_cider_d_scorer_by_hand():
    # the corpus of tests/test_metrics.py::test_cider_d_by_hand, scored one
    # candidate at a time: 2.5 for "a b" on image 0, 2.5 exp(-1/72) for "d"
    scorer = CiderD([["a b", "a c"], ["a d"]])
    assert len(scorer) == 2
    assert scorer.score("a b", 0) == pytest.approx(2.5)
    assert scorer.score(["d"], 1) == pytest.approx(2.5 * math.exp(-1.0 / 72))
    # "a" is in every image's references: IDF 0, so it earns nothing
    assert scorer.score("a", 1) == 0.0


def test_cider_d_scorer_counts_documents_over_its_whole_corpus():
    # In a corpus of 3 images, "d" is in 1 of them: IDF log 3, not log 2,
    # and "a" (in 2 of 3) now earns something. By hand, image 1 ("a d"):
    # n=1 candidate "a d" equals the reference vector -> cosine 1; n=2 its
    # only bigram matches -> 1; n=3, 4 empty -> 0; same length: 10 * 2/4.
    scorer = CiderD([["a b", "a c"], ["a d"], ["e f"]])
    assert scorer.score("a d", 1) == pytest.approx(5.0)
    # one word of two: n=1 cosine = idf(d) / sqrt(idf(a)^2 + idf(d)^2)
    idf_a, idf_d = math.log(3 / 2), math.log(3)
    cosine = idf_d / math.sqrt(idf_a ** 2 + idf_d ** 2)
    assert scorer.score("d", 1) == pytest.approx(
        10 * cosine / 4 * math.exp(-1.0 / 72))
    # cider_d of a corpus is its own scorer's mean
    per_image = cider_d(["a b", "d"], [["a b", "a c"], ["a d"]])[1]
    assert per_image == pytest.approx([2.5, 2.5 * math.exp(-1.0 / 72)])


def test_cider_d_scorer_refuses_empty_references():
    with pytest.raises(ValueError, match="no images"):
        CiderD([])
    with pytest.raises(ValueError, match="image 1 has no reference"):
        CiderD([["a"], []])


# ---------------------------------------------------------------- baseline
def test_advantages_subtract_the_mean_of_the_other_samples():
    rewards = np.random.RandomState(0).rand(4, 5)
    expected = np.array([[r[j] - np.mean(np.delete(r, j)) for j in range(5)]
                         for r in rewards])
    assert np.allclose(advantages(rewards), expected)
    # equal rewards: nothing to learn
    assert np.allclose(advantages(np.full((2, 3), 0.7)), 0, atol=1e-12)
    with pytest.raises(ValueError, match="samples >= 2"):
        advantages(np.ones((3, 1)))


def test_sampled_matrix_ends_only_the_captions_the_model_ended():
    vocab = Vocabulary(WORDS)
    matrix = sampled_matrix(vocab, [["w1", "w2"], ["w3"] * 4], max_words=4)
    assert matrix.tolist() == vocab.as_matrix(
        [[START, "w1", "w2", END], [START] + ["w3"] * 4]).tolist()


def test_the_round_kept_beats_the_cross_entropy_model():
    history = [{"round": 1, "selection_bleu4": 0.20},
               {"round": 2, "selection_bleu4": 0.23},
               {"round": 3, "selection_bleu4": 0.23}]
    assert self_critical_kept(history, 0.21) == 2
    assert self_critical_kept(history, 0.23) is None
    assert self_critical_kept([], 0.1) is None
    # rounds since the last new best, the start's score counting as one
    assert self_critical_stale(history, 0.21) == 1
    assert self_critical_stale(history, 0.25) == 3
    assert self_critical_stale([], 0.25) == 0


def test_rounds_take_every_photo_once_per_pass_and_repeat_on_resume():
    # 10 photos in batches of 3: 4 batches a pass; rounds of 3 batches
    rounds = [round_chunks(10, r, steps=3, size=3) for r in (1, 2, 3)]
    flat = [chunk for r in rounds for chunk in r]
    assert [len(c) for c in flat] == [3, 3, 3, 1, 3, 3, 3, 1, 3]
    for first in (0, 4):
        assert sorted(np.concatenate(flat[first:first + 4])) == list(range(10))
    # a new pass, a new order
    assert not all(np.array_equal(a, b) for a, b in zip(flat[:4], flat[4:8]))
    assert all(np.array_equal(a, b) for a, b in
               zip(rounds[1], round_chunks(10, 2, steps=3, size=3)))


# ---------------------------------------------------------------- the loss
def _numpy_caption_losses(probs, sentences):
    """Minus each caption's log-probability, from (batch, time, tokens),
    each word's term at most -log 1e-7 (the training loss's clip)."""
    losses = []
    for p, row in zip(probs, sentences):
        words = [w for w in row if w != -1]
        losses.append(sum(min(-math.log(max(p[t, w], 1e-30)), -math.log(1e-7))
                          for t, w in enumerate(words[1:])))
    return np.array(losses)


@pytest.mark.parametrize("arch", ["seminar", "attention"])
def test_caption_losses_are_minus_the_log_probabilities(arch):
    model = tiny_model() if arch == "seminar" else tiny_attention_model()
    codes = fake_codes(3) if arch == "seminar" else fake_regions(3)
    vocab = model.vocab
    sentences = vocab.as_matrix([[START, "w1", "w2", END], [START, "w3", END],
                                 [START, "w4", "w5", "w6", "w7"]])
    losses = theano.function([model.image_vectors, model.sentences],
                             model.caption_losses())(codes, sentences)
    probs = model.get_probs(codes, sentences)
    assert losses == pytest.approx(_numpy_caption_losses(probs, sentences),
                                   rel=1e-4)


# ---------------------------------------------------------------- update
@pytest.mark.parametrize("arch", ["seminar", "attention"])
def test_an_update_follows_the_advantages(arch):
    if arch == "seminar":
        model = CaptionModel(Vocabulary(WORDS), embed_size=8, lstm_units=16,
                             cnn_feature_size=12, seed=3)
        codes = fake_codes(1)
    else:
        from captioning.attention_model import AttentionCaptionModel
        model = AttentionCaptionModel(Vocabulary(WORDS), embed_size=8,
                                      lstm_units=16, attention_units=6,
                                      cnn_feature_size=12, seed=3)
        codes = fake_regions(1)
    trainer = SelfCritical(model, learning_rate=1e-2)
    losses = theano.function([model.image_vectors, model.sentences],
                             model.caption_losses())
    vocab = model.vocab
    sentences = vocab.as_matrix([[START, "w1", "w2", END], [START, "w3", END]])
    both = np.repeat(codes, 2, axis=0)
    before = losses(both, sentences)
    for _ in range(3):
        trainer.update(model.prepare_codes(both), sentences,
                       np.array([1.0, -1.0], "float32"))
    after = losses(both, sentences)
    # the rewarded caption became likelier, the other less likely
    assert after[0] < before[0] and after[1] > before[1]


def test_restart_forgets_adams_state():
    model = CaptionModel(Vocabulary(WORDS), embed_size=8, lstm_units=16,
                         cnn_feature_size=12, seed=5)
    trainer = SelfCritical(model)
    sentences = model.vocab.as_matrix([[START, "w1", END], [START, "w2", END]])
    trainer.update(model.prepare_codes(fake_codes(2)), sentences,
                   np.array([1.0, -1.0], "float32"))
    weights = set(model.params(trainable=True))
    state = [v for v in trainer.updates if v not in weights]
    assert any(np.abs(v.get_value()).sum() > 0 for v in state)
    before = {k: v.get_value() for k, v in model.named_params().items()}
    trainer.restart(1e-3)
    assert all(np.abs(v.get_value()).sum() == 0 for v in state)
    assert trainer.learning_rate.get_value() == np.float32(1e-3)
    # the weights are left alone
    assert all(np.array_equal(before[k], v.get_value())
               for k, v in model.named_params().items())


def test_a_step_samples_and_rewards_every_photo():
    model = CaptionModel(Vocabulary(WORDS), embed_size=8, lstm_units=16,
                         cnn_feature_size=12, seed=4)
    trainer = SelfCritical(model)
    scorer = CiderD([["w1 w2 w3", "w1 w2"], ["w4 w5"], ["w6"]])
    rewards = trainer.step(fake_codes(2), np.array([0, 2]), scorer,
                           np.random.RandomState(0))
    assert rewards.shape == (2, SAMPLES) and (rewards >= 0).all()
