"""Tiny captioning models and fake image codes shared by the model, decode
and CLI tests (compiled Theano functions are the slow part, so one model
per process, built on first use)."""
import functools

import numpy as np

import captioning.stack  # noqa: F401  (Theano flags first)
from captioning.model import CaptionModel, Vocabulary

WORDS = ["#UNK#", "#START#", "#END#"] + ["w%d" % i for i in range(12)]
N_FEATURES = 12


@functools.lru_cache(maxsize=None)
def tiny_model():
    """A random tiny model: 15 tokens, 8-d embeddings, 16 LSTM units."""
    model = CaptionModel(Vocabulary(WORDS), embed_size=8, lstm_units=16,
                         cnn_feature_size=N_FEATURES)
    rng = np.random.RandomState(42)
    # Larger random weights than the initialisers give, so that the
    # next-word distributions are far from uniform and orders are clear.
    for name, param in model.named_params().items():
        value = param.get_value()
        param.set_value((rng.randn(*value.shape) * 0.8).astype(value.dtype))
    return model


def fake_codes(n, n_features=N_FEATURES, seed=0):
    return np.random.RandomState(seed).randn(n, n_features).astype("float32")


N_REGIONS = 5


@functools.lru_cache(maxsize=None)
def tiny_attention_model():
    """A random tiny attention model over 5 regions of 12 features."""
    from captioning.attention_model import AttentionCaptionModel
    model = AttentionCaptionModel(Vocabulary(WORDS), embed_size=8, lstm_units=16,
                                  attention_units=6, cnn_feature_size=N_FEATURES,
                                  seed=1)
    rng = np.random.RandomState(43)
    for name, param in model.named_params().items():
        value = param.get_value()
        param.set_value(np.asarray(rng.randn(*value.shape) * 0.8, value.dtype))
    return model


def fake_regions(n, seed=0):
    return np.random.RandomState(seed).randn(
        n, N_REGIONS, N_FEATURES).astype("float32")
