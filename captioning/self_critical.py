"""Self-critical training on CIDEr-D (Rennie et al. 2017), after cross-entropy.

Cross-entropy teaches each word given the reference's previous words, but a
caption is decoded from the model's own words and judged by a metric the
loss never saw. Self-critical training optimises the metric on the model's
own captions: for every photo of a step, ``SAMPLES`` captions are drawn from
the model (:func:`captioning.decode.sample`, dropout off), each is rewarded
with its CIDEr-D against the photo's training captions
(:class:`captioning.metrics.CiderD`, document frequencies over the training
photos), and its baseline is the mean reward of the photo's other samples
(Luo 2020, "A better variant of self-critical sequence training"; no greedy
decode needed). Minimising ``sum_k (b_k - r_k) log p(caption_k)`` is
REINFORCE with that baseline: one teacher-forced pass over the sampled
captions, each caption's cross-entropy
(:meth:`captioning.model.CaptionModel.caption_losses`) weighted by its
advantage. Dropout stays off in that pass too, so the update is for the
model that sampled.
"""
import captioning.stack  # noqa: F401  (Theano flags and the Lasagne backport first)

import lasagne
import numpy as np
import theano
import theano.tensor as T

from captioning.decode import sample
from captioning.text import END, START

__all__ = ["SAMPLES", "IMAGES_PER_STEP", "LEARNING_RATE", "MAX_WORDS",
           "MAX_NORM", "ROUND_STEPS", "advantages", "sampled_matrix", "SelfCritical"]

SAMPLES = 5            # captions drawn per photo (the baseline needs >= 2)
IMAGES_PER_STEP = 16   # so 80 captions per step
LEARNING_RATE = 5e-5   # Adam's; cross-entropy's last rate was 1.25e-4
MAX_WORDS = 20         # longer samples are cut (Flickr8k captions: ~11)
MAX_NORM = 5.0         # the gradient's total norm is scaled down to this
# updates between two looks at the selection photos: at 5e-5, Flickr8k's
# selection BLEU-4 rose for ~250 updates, then fell
ROUND_STEPS = 80


def advantages(rewards):
    """Each reward minus the mean reward of the other samples of its photo.

    ``rewards``: (photos, samples), samples >= 2. The baseline of a sample
    does not depend on the sample itself, so the gradient stays unbiased.
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.ndim != 2 or rewards.shape[1] < 2:
        raise ValueError("rewards must be (photos, samples >= 2), got %s"
                         % (rewards.shape,))
    k = rewards.shape[1]
    others = (rewards.sum(axis=1, keepdims=True) - rewards) / (k - 1)
    return rewards - others


def sampled_matrix(vocab, captions, max_words=MAX_WORDS):
    """The token matrix of sampled captions (lists of words): ``#START#``,
    the words, ``#END#``; a caption cut at ``max_words`` gets no ``#END#``
    (the model did not choose to end it)."""
    return vocab.as_matrix([[START] + list(words)
                            + ([END] if len(words) < max_words else [])
                            for words in captions])


class SelfCritical:
    """The self-critical update of one model (compiled once).

    Parameters
    ----------
    model : CaptionModel or AttentionCaptionModel
    learning_rate : float
        Adam's, with its own moments (cross-entropy's are not reused).
    """

    def __init__(self, model, learning_rate=LEARNING_RATE):
        self.model = model
        weights = model.params(trainable=True)
        advantage = T.vector("advantage")
        losses = model.caption_losses()
        objective = (advantage * losses).sum() / advantage.shape[0]
        gradients = lasagne.updates.total_norm_constraint(
            theano.grad(objective, weights), MAX_NORM)
        self.learning_rate = theano.shared(np.float32(learning_rate),
                                           name="self_critical_learning_rate")
        self.updates = lasagne.updates.adam(gradients, weights,
                                            learning_rate=self.learning_rate)
        # returns the sampled captions' mean cross-entropy before the update
        self.update = theano.function(
            [model.image_vectors, model.sentences, advantage], losses.mean(),
            updates=self.updates, mode=model.train_mode(),
            name="self_critical_step")

    def state_variables(self):
        """Weights (by name) and Adam's state, in a fixed order: what a
        resumed run restores."""
        named = self.model.named_params()
        weights = set(self.model.params(trainable=True))
        return ([named[k] for k in sorted(named)]
                + [v for v in self.updates if v not in weights]
                + [self.learning_rate])

    def restart(self, learning_rate):
        """Forget Adam's moments and step count; go on at ``learning_rate``."""
        weights = set(self.model.params(trainable=True))
        for var in self.updates:
            if var not in weights:
                value = var.get_value()
                var.set_value(np.zeros_like(value))
        self.learning_rate.set_value(np.float32(learning_rate))

    def step(self, codes, images, scorer, rng):
        """One update on a batch of photos; returns their samples' rewards
        (photos, SAMPLES).

        ``codes``: the photos' raw CNN codes; ``images``: their indices in
        ``scorer`` (a :class:`captioning.metrics.CiderD` of the training
        captions); ``rng``: a ``np.random.RandomState`` for the samples.
        """
        repeated = np.repeat(np.asarray(codes), SAMPLES, axis=0)
        captions = sample(self.model, repeated, max_len=MAX_WORDS, rng=rng)
        rewards = np.array([scorer.score(words, image) for words, image in
                            zip(captions, np.repeat(images, SAMPLES))])
        rewards = rewards.reshape(len(images), SAMPLES)
        self.update(self.model.prepare_codes(repeated),
                    sampled_matrix(self.model.vocab, captions),
                    advantages(rewards).ravel().astype("float32"))
        return rewards
