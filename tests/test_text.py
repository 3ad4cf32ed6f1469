"""The caption normaliser (coco-caption's PTB rules) and the vocabulary."""
import json

import numpy as np
import pytest
from nltk.tokenize import TreebankWordTokenizer
from PIL import Image

from _flickr8k_fakes import fake_encoder
from captioning import commands, metrics, training
from captioning.datasets.formats import load_dataset
from captioning.text import (END, PAD_ix, START, UNK, Vocabulary,
                             caption_tokens, normalise_caption, ptb_tokenize)

# coco-caption, pycocoevalcap/tokenizer/ptbtokenizer.py: PTBTokenizer is run
# with -lowerCase, then these tokens are dropped (its PUNCTUATIONS list).
COCO_PUNCTUATIONS = ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
                     ".", "?", "!", ",", ":", "-", "--", "...", ";"]

# Expected tokens written by hand from those rules and the Penn Treebank's
# tokenisation conventions (which Stanford's PTBTokenizer follows): clitics
# 's 're 've 'll 'd 'm and n't split off; cannot -> can not, gonna -> gon na;
# hyphenated words and numbers stay whole; " becomes `` or '' and ( ) become
# -LRB- -RRB-, all in the dropped list; other symbols (# & $ %) stay tokens.
HAND_WRITTEN = [
    # Flickr8k's own, already tokenised, style
    ("A girl holding a horse 's lead behind a fire .",
     ["a", "girl", "holding", "a", "horse", "'s", "lead", "behind", "a",
      "fire"]),
    ("They do n't see it", ["they", "do", "n't", "see", "it"]),
    # attached clitics and contractions are split the same way
    ("The dog's ball; they don't, can't, won't!",
     ["the", "dog", "'s", "ball", "they", "do", "n't", "ca", "n't", "wo",
      "n't"]),
    ("We're sure they'll say he'd come, I'm told you've seen",
     ["we", "'re", "sure", "they", "'ll", "say", "he", "'d", "come", "i",
      "'m", "told", "you", "'ve", "seen"]),
    ("You cannot stay, I'm gonna go", ["you", "can", "not", "stay", "i", "'m",
                                       "gon", "na", "go"]),
    # a plural possessive's apostrophe is a lone ' (dropped); inside a word
    # it is not a clitic
    ("the dogs' ball at six o'clock", ["the", "dogs", "ball", "at", "six",
                                       "o'clock"]),
    # capitals; hyphenated words stay whole; - and -- alone are dropped
    ("A tri-colored T-shirt -- on the Merry-Go-Round - TODAY",
     ["a", "tri-colored", "t-shirt", "on", "the", "merry-go-round", "today"]),
    # quotes, brackets and the listed punctuation are dropped
    ('Two dogs , one brown ; one white ( and "happy" ) ! Why ? Yes : ...',
     ["two", "dogs", "one", "brown", "one", "white", "and", "happy", "why",
      "yes"]),
    # numbers keep their , . : ; other symbols are tokens
    ("1,000 people at 10:30 watch 3.5 goals , $5 , 50% & Sooners # 28 .",
     ["1,000", "people", "at", "10:30", "watch", "3.5", "goals", "$", "5",
      "50", "%", "&", "sooners", "#", "28"]),
    # abbreviations keep their period, a sentence's last one is dropped
    ("Mr. Smith in Washington D.C. at 5 p.m.",
     ["mr.", "smith", "in", "washington", "d.c.", "at", "5", "p.m."]),
    # unicode: letters kept, composed; typographic quotes, dashes and the
    # ellipsis read as ' " -- ...
    ("Un CAF\u00c9 \u201cau lait\u201d \u2014 tr\u00e8s bon\u2026",
     ["un", "caf\u00e9", "au", "lait", "tr\u00e8s", "bon"]),
    ("Cafe\u0301 : the dog\u2019s bowl", ["caf\u00e9", "the", "dog", "'s",
                                         "bowl"]),
    (" . , ", []),
]


@pytest.mark.parametrize("raw, expected", HAND_WRITTEN)
def test_ptb_tokenize_follows_coco_captions_rules(raw, expected):
    assert ptb_tokenize(raw) == expected


@pytest.mark.parametrize("raw", [
    "They don't see it; can't, won't, cannot!",
    "I'm gonna go, gotta wanna gimme lemme.",
    "A girl holding a horse's lead.",
    'Two dogs, one "happy" (and wet).',
    "A tri-colored T-shirt on the merry-go-round.",
    "1,000 people at 10:30 watch 3.5 goals.",
    "We're sure they'll say he'd come, you've seen?",
    "the dogs' ball",
    "Mr. Smith at 5 p.m. runs -- or walks ...",
])
def test_ptb_tokenize_agrees_with_nltks_treebank_tokenizer(raw):
    # nltk's TreebankWordTokenizer: another implementation of the Treebank
    # rules (it keeps ( ) as they are, where PTB writes -LRB- -RRB-)
    dropped = set(COCO_PUNCTUATIONS) | {"(", ")"}
    expected = [t.lower() for t in TreebankWordTokenizer().tokenize(raw)
                if t not in dropped]
    assert ptb_tokenize(raw) == expected


@pytest.mark.parametrize("raw, expected", HAND_WRITTEN)
def test_stored_captions_split_into_their_tokens(raw, expected):
    # the data files hold normalise_caption's text; the notebook splits it
    # on " ", the metrics tokenise it again: all must give the same tokens
    stored = normalise_caption(raw)
    assert (stored.split(" ") if stored else []) == expected
    assert ptb_tokenize(stored) == expected
    assert ptb_tokenize(expected) == expected
    assert normalise_caption(stored) == stored


# Captions with 's, punctuation, capitals, hyphens, numbers and unicode.
MIXED = ["A girl holding a horse 's lead .",
         "The DOG's ball, red!",
         "Two men do n't see the tri-colored T-shirt .",
         "3 kids , 1,000 balloons and a 4-wheeler at 10:30 .",
         "Un caf\u00e9 \u201cau lait\u201d \u2014 tr\u00e8s bon\u2026",
         "Cafe\u0301 sign ( red ) ; # 28 & co"]


def test_data_files_caption_train_and_metrics_see_the_same_tokens(
        tmp_path):
    folder = tmp_path / "f8k"
    (folder / "images").mkdir(parents=True)
    names = ["p%d.jpg" % i for i in range(len(MIXED))]
    for i, name in enumerate(names):
        Image.new("RGB", (16, 16), (30 * i, 90, 200)).save(
            folder / "images" / name)
    (folder / "Flickr8k.token.txt").write_text("".join(
        "%s#0\t%s\n" % (n, c) for n, c in zip(names, MIXED)), "utf-8")
    out = tmp_path / "data"
    assert commands.main(["data", "flickr8k", "--flickr8k", str(folder),
                     "--out", str(out), "--no-progress"],
                    encoder=fake_encoder()) == 0

    stored = json.loads((out / "caption_tokens.json").read_text("utf-8"))
    assert load_dataset(out).captions == stored
    # the notebook's tokenising cell: caption_tokens of each stored caption
    notebook = [caption_tokens(caps[0]) for caps in stored]
    # caption train: its caption pairs, from the raw captions
    _, trained = training.caption_pairs(range(len(MIXED)), [[c] for c in MIXED])
    # the metrics: the tokens they score, from the raw captions
    scored = [[START] + metrics.ptb_tokenize(c) + [END] for c in MIXED]
    assert notebook == trained == scored
    assert notebook[0][5:7] == ["horse", "'s"]          # not "horses"
    assert "tri-colored" in notebook[2]                 # not "tricolored"
    # scoring a stored caption against its raw one finds every n-gram
    for raw, caps in zip(MIXED, stored):
        assert metrics.corpus_bleu([caps[0]], [[raw]]) == [1.0] * 4


# ---------------------------------------------------------------- vocabulary
def test_vocabulary_build_keeps_words_seen_five_times():
    tokens = [caption_tokens("A dog runs .")] * 5 + \
             [caption_tokens("a cat")] * 4 + [caption_tokens("the Dog")]
    vocab = Vocabulary.build(tokens)
    # specials first, then by count (dog 6, a 9 -> a first); cat (4) is out
    assert vocab.words == [UNK, START, END, "a", "dog", "runs"]
    assert (vocab.unk_ix, vocab.start_ix, vocab.end_ix) == (0, 1, 2)


def test_caption_tokens_add_start_and_end():
    assert caption_tokens("A Dog's toy , running .") == [
        START, "a", "dog", "'s", "toy", "running", END]


def test_as_matrix_pads_with_minus_one_and_maps_unknown_words():
    vocab = Vocabulary([UNK, START, END, "w0", "w1", "w2"])
    m = vocab.as_matrix([[START, "w0", "zebra", END], [START, END]])
    assert m.dtype == np.int32
    assert m.tolist() == [[1, 3, 0, 2], [1, 2, PAD_ix, PAD_ix]]
    assert vocab.as_matrix([[START, "w0", "w1"]], max_len=2).tolist() == [[1, 3]]
    assert vocab.decode([1, 3, 4, 2, 5]) == ["w0", "w1"]


def test_vocabulary_rejects_bad_word_lists():
    with pytest.raises(ValueError, match="starts with"):
        Vocabulary(["a", UNK, START, END])
    with pytest.raises(ValueError, match="repeats"):
        Vocabulary([UNK, START, END, "a", "a"])
