"""Caption text: the one normaliser, and the vocabulary built on it.

Every caption is tokenised by :func:`ptb_tokenize`, whatever reads it: the
data files (``caption data``, the notebook), ``caption train``'s vocabulary
(:func:`caption_tokens`) and the metrics (:mod:`captioning.metrics`). So the
model generates exactly the tokens the metrics score, and the notebook and
the command build the same vocabulary from the same captions.

The rules are those coco-caption scores with (``pycocoevalcap/tokenizer/
ptbtokenizer.py``: Stanford's PTBTokenizer 3.4.1 run with ``-lowerCase``,
then the tokens in its ``PUNCTUATIONS`` list dropped), so BLEU and CIDEr-D
compare with published numbers:

* lower case;
* clitics split off as in the Penn Treebank: ``horse's`` -> ``horse 's``,
  ``don't`` -> ``do n't``, ``they're`` -> ``they 're`` (also ``'ve 'll 'd
  'm``), and the Treebank's ``cannot gonna gotta wanna gimme lemme`` ->
  ``can not``, ``gon na``...;
* punctuation split off words; hyphenated words (``tri-colored``), numbers
  (``3.5``, ``1,000``, ``10:30``), acronyms (``d.c.``), titles (``mr.``)
  and words joined by ``' / & .`` (``o'clock``, ``at&t``) stay one token;
* dropped: ``. , ; : ! ? - -- ...``, quotes and brackets (coco-caption's
  list; PTB writes ``"`` as two quotes and ``(`` as ``-LRB-``, both in
  it). Other symbols (``& # $ % =``) are tokens, as in coco-caption.

This is a re-implementation of those rules for captions, not the Java
tokenizer: rare cases (initials such as ``P.``, URLs, emoticons) may come
out differently. Of Flickr8k's 35,000 captions, 27 get other tokens than
from the metrics' earlier tokenizer (split on spaces, drop the tokens made
only of punctuation): mostly a kept ``#`` or ``&``.

Unicode text is composed (NFC) and typographic quotes, dashes and ``…``
are read as their ASCII forms (``dog’s`` -> ``dog 's``). Tokens never
contain spaces, and tokenising the tokens joined by spaces gives them back,
so a caption stored as :func:`normalise_caption` text splits on ``" "``
into exactly its tokens (what the notebook's tokenising cell does).
"""
import re
import unicodedata
from collections import Counter

import numpy as np

__all__ = ["NORMALISER", "ptb_tokenize", "normalise_caption", "caption_tokens",
           "Vocabulary", "PAD_ix", "UNK", "START", "END"]

# Recorded with data (dataset.json) so captions tokenised by other rules
# are recognised; change it whenever the tokens of some caption change.
NORMALISER = "ptb-coco-1"

PAD_ix = -1
UNK, START, END = "#UNK#", "#START#", "#END#"

_TYPOGRAPHIC = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
    "\u00ab": '"', "\u00bb": '"',
    "\u2010": "-", "\u2011": "-",                     # hyphens inside words
    "\u2012": " -- ", "\u2013": " -- ", "\u2014": " -- ", "\u2015": " -- ",
    "\u2026": "...",
})

_CLITIC = r"'(?:s|re|ve|ll|d|m)(?!\w)"
_TOKEN = re.compile(r"""
      \w+(?=n't(?!\w))                    # do|n't, ca|n't
    | n't(?!\w)
    | {clitic}                            # 's 're 've 'll 'd 'm
    | \b(?:can(?=not\b)|gon(?=na\b)|got(?=ta\b)|wan(?=na\b)
          |gim(?=me\b)|lem(?=me\b))       # the Treebank's split words
    | \b(?:[^\W\d_]\.){{2,}}              # acronyms: d.c., a.m.
    | \b(?:mr|mrs|ms|dr|jr|sr|st|vs)\.    # titles keep their period
    | \w+(?:(?:[-./&]|(?<=\d)[,:](?=\d)|(?!{clitic})')\w+)*   # words
    | \.\.\.|--|``|''
    | \S                                  # any other character alone
""".format(clitic=_CLITIC), re.VERBOSE)

# coco-caption's PUNCTUATIONS, as the raw characters they come from.
_DROPPED = frozenset(["''", "'", "``", "`", '"', "(", ")", "[", "]", "{", "}",
                      ".", "?", "!", ",", ":", "-", "--", "...", ";"])


def ptb_tokenize(caption):
    """A caption's tokens under coco-caption's PTB rules (module docs).

    Parameters
    ----------
    caption : str or sequence of str
        Raw text ("A horse's lead.") or tokens (joined by spaces first).

    Returns
    -------
    list of str
        Possibly empty.

    Example
    -------
    >>> ptb_tokenize("A girl holding a horse's tri-colored lead .")
    ['a', 'girl', 'holding', 'a', 'horse', "'s", 'tri-colored', 'lead']
    """
    if not isinstance(caption, str):
        caption = " ".join(caption)
    text = unicodedata.normalize("NFC", caption).translate(_TYPOGRAPHIC)
    return [t for t in _TOKEN.findall(text.lower()) if t not in _DROPPED]


def normalise_caption(caption):
    """The tokens of :func:`ptb_tokenize` joined by single spaces: how a
    caption is stored in the data files."""
    return " ".join(ptb_tokenize(caption))


def caption_tokens(caption):
    """A caption as the model sees it: ``[#START#, tokens..., #END#]``."""
    return [START] + ptb_tokenize(caption) + [END]


class Vocabulary:
    """Word <-> index, with the seminar's special tokens first.

    Parameters
    ----------
    words : sequence of str
        All tokens in index order; must start with ``#UNK#, #START#, #END#``.

    Example
    -------
    >>> v = Vocabulary.build([["#START#", "a", "dog", "#END#"]] * 5)
    >>> v.words
    ['#UNK#', '#START#', '#END#', 'a', 'dog']
    >>> v.as_matrix([["#START#", "a", "cat"], ["#START#"]])
    array([[ 1,  3,  0],
           [ 1, -1, -1]], dtype=int32)
    """

    def __init__(self, words):
        words = list(words)
        if words[:3] != [UNK, START, END]:
            raise ValueError("a vocabulary starts with %s, %s, %s; got %r"
                             % (UNK, START, END, words[:3]))
        if len(set(words)) != len(words):
            raise ValueError("the vocabulary repeats a word")
        self.words = words
        self.index = {w: i for i, w in enumerate(words)}
        self.unk_ix, self.start_ix, self.end_ix = 0, 1, 2

    def __len__(self):
        return len(self.words)

    @classmethod
    def build(cls, token_lists, min_count=5):
        """Words seen at least ``min_count`` times, most frequent first.

        The special tokens are not counted (the seminar's version listed
        ``#START#``/``#END#`` twice because they were counted as words).
        Ties are broken alphabetically so the vocabulary is reproducible.
        """
        counts = Counter(w for tokens in token_lists for w in tokens)
        for special in (UNK, START, END):
            counts.pop(special, None)
        frequent = sorted((w for w, c in counts.items() if c >= min_count),
                          key=lambda w: (-counts[w], w))
        return cls([UNK, START, END] + frequent)

    def as_matrix(self, sequences, max_len=None):
        """Token lists -> int32 matrix of indices, padded with ``PAD_ix``.

        Unknown words become ``#UNK#``; sequences longer than ``max_len`` are
        cut (as in the seminar).
        """
        max_len = max_len or max(map(len, sequences))
        matrix = np.full((len(sequences), max_len), PAD_ix, dtype="int32")
        for i, seq in enumerate(sequences):
            row = [self.index.get(w, self.unk_ix) for w in seq[:max_len]]
            matrix[i, :len(row)] = row
        return matrix

    def decode(self, indices):
        """Indices -> words, stopping at ``#END#`` and skipping ``#START#``."""
        words = []
        for i in indices:
            if i == self.end_ix:
                break
            if i != self.start_ix and i != PAD_ix:
                words.append(self.words[i])
        return words
