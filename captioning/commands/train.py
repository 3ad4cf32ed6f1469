"""``caption train``: the command line of :func:`captioning.training.train`
(its docstring says what is written and how the epoch is chosen)."""
import json

from captioning.errors import UsageError

ARCHS = ("seminar", "attention")   # captioning.model_dir.ARCHS, without Theano
# captioning.attention_model's ATTEND and ENTROPY_WORDS, and its defaults
# of attention_entropy and attention_entropy_words, without Theano
ATTEND = ("before", "after", "both", "top_down")
ENTROPY_WORDS = ("all", "content")
ATTENTION_ENTROPY, ATTENTION_ENTROPY_WORDS = 0.05, "content"
from captioning.training import (BATCH_SIZE, DEFAULT_EPOCHS, DEFAULT_MINUTES,
                                 MIN_DELTA, PATIENCE, SELECTION_IMAGES,
                                 SELF_CRITICAL_MINUTES)

SELF_CRITICAL_ROUNDS = 10  # the attention model's default
# The attention model's photos (EfficientNet-Lite0, neither option given):
# seen at 448 px, the 14x14 map averaged to 7x7 regions. Against 224 px, on
# the selection photos with two seeds: loss 2.630 / 2.638 vs 2.648 / 2.652,
# BLEU-4 0.242 / 0.239 vs 0.235 / 0.231 (README, "Photos seen at 448 px").
ATTENTION_IMAGE_SIZE, ATTENTION_REGION_GRID = 448, 7

__all__ = ["arch_defaults", "region_defaults", "register", "run"]


def register(subparsers):
    p = subparsers.add_parser(
        "train", help="train the captioning model on Flickr8k",
        description="Train the seminar's LSTM captioner on the Flickr8k train "
                    "split, minus %d of its photos held out to choose the "
                    "epoch, schedule the learning rate and stop when learning "
                    "stops; the dev split is never read. Interrupt at any "
                    "time: rerunning the same command resumes from the last "
                    "finished epoch." % SELECTION_IMAGES)
    p.add_argument("--flickr8k", required=True, metavar="DIR",
                   help="Flickr8k folder: images/, Flickr8k.token.txt and "
                        "the Flickr_8k.trainImages.txt split list")
    p.add_argument("--out", required=True, metavar="MODEL_DIR",
                   help="model directory to write (and resume from)")
    p.add_argument("--minutes", type=float, default=DEFAULT_MINUTES,
                   help="wall-clock budget of the whole run, resumed runs "
                        "included (default %(default)s)")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS,
                   help="stop after this many epochs (default %(default)s)")
    p.add_argument("--patience", type=int, default=PATIENCE,
                   help="stop after this many epochs in a row without the "
                        "selection loss improving by %g (default "
                        "%%(default)s)" % MIN_DELTA)
    p.add_argument("--arch", choices=ARCHS, default="seminar",
                   help="seminar: the notebook's graph (image -> LSTM cell); "
                        "attention: Show, Attend and Tell over the CNN's 7x7 "
                        "regions (default %(default)s)")
    from captioning.cnn.encode import CNNS, DEFAULT_CNN, FEATURE_KINDS
    p.add_argument("--cnn", choices=CNNS, default=DEFAULT_CNN,
                   help="CNN whose codes to train on (default %(default)s); "
                        "model.json records it")
    p.add_argument("--features", choices=FEATURE_KINDS, default=None,
                   help="what the CNN gives per photo: logits (1000 ImageNet "
                        "scores), pooled (1280 averaged features) or spatial "
                        "(49 regions x 1280); default logits for --arch "
                        "seminar, spatial for attention")
    p.add_argument("--image-size", type=int, default=None, metavar="PX",
                   help="the side of the square the CNN sees, in pixels "
                        "(EfficientNets only): a larger one gives a finer "
                        "region grid, 448 -> 14x14, at 4x the encoding "
                        "time; default the CNN's own (224 for Lite0), "
                        "but %d for --arch attention on Lite0; model.json "
                        "records it" % ATTENTION_IMAGE_SIZE)
    p.add_argument("--region-grid", type=int, default=None, metavar="N",
                   help="spatial features: average the CNN's map to N x N "
                        "regions (N must divide its side: 448 px gives 14, "
                        "so 7 or 2 or 1); default the map's own cells, but "
                        "%d for --arch attention on Lite0 when --image-size "
                        "is not given either" % ATTENTION_REGION_GRID)
    p.add_argument("--word-vectors", choices=("none", "glove", "word2vec"),
                   default=None,
                   help="start the word embedding from GloVe 6B 50d or from "
                        "word2vec trained on the training captions, or "
                        "random (none); default none for --arch seminar, "
                        "glove for attention (the lower selection loss)")
    p.add_argument("--freeze-embedding", action="store_true",
                   help="keep the word vectors fixed while training")
    p.add_argument("--self-critical-rounds", type=int, default=None,
                   metavar="N",
                   help="after cross-entropy, up to N rounds of self-critical "
                        "training on CIDEr-D (sampled captions rewarded by "
                        "their CIDEr-D against the photo's captions; a round "
                        "is 80 updates of 16 photos, then the selection "
                        "photos are captioned with beam 3); the round kept "
                        "has the highest selection BLEU-4, if above the "
                        "cross-entropy model's (after a worse round: back to "
                        "it, half the learning rate; 3 in a row stop); 0 "
                        "turns it off. Default %d "
                        "for --arch attention, 0 for seminar"
                        % SELF_CRITICAL_ROUNDS)
    p.add_argument("--self-critical-minutes", type=float,
                   default=SELF_CRITICAL_MINUTES, metavar="M",
                   help="the part of --minutes kept for self-critical "
                        "training; cross-entropy gets the rest (default "
                        "%(default)s)")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                   help="captions per step (default %(default)s)")
    p.add_argument("--embed-size", type=int, default=None,
                   help="word embedding size (default: the arch's, 256)")
    p.add_argument("--lstm-units", type=int, default=None,
                   help="LSTM units (default: the arch's, 512)")
    p.add_argument("--attention-entropy", type=float, default=None,
                   metavar="MU",
                   help="--arch attention: add MU times the entropy of each "
                        "word's attention to the objective, so that each "
                        "word looks somewhere and the maps of --attention-map "
                        "move from word to word (default %g; 0 turns it "
                        "off, as in the paper, and the maps stay flat; see "
                        "README); model.json records it"
                        % ATTENTION_ENTROPY)
    p.add_argument("--attention-entropy-words", choices=ENTROPY_WORDS,
                   default=None,
                   help="--arch attention: weigh the entropy of every word "
                        "(all) or only of the words that name something "
                        "(content: not a, the, is, in, ...; default %s)"
                        % ATTENTION_ENTROPY_WORDS)
    p.add_argument("--attend", choices=ATTEND,
                   default=None,
                   help="--arch attention: look at the regions before each "
                        "LSTM tick, the context feeding the LSTM (Xu et al., "
                        "the default), after it, the context feeding the "
                        "output only (Lu et al. 2017), both, or top_down "
                        "(Anderson et al. 2018); see README")
    p.set_defaults(func=run, encoder=None)


def arch_defaults(args):
    """``(features, word_vectors, self_critical_rounds)``: the options, or
    the arch's defaults where not given (the attention model on regions,
    from GloVe, then self-critical; the seminar graph as the seminar
    trains it)."""
    attention = args.arch == "attention"
    self_critical = args.self_critical_rounds
    if self_critical is None:
        self_critical = SELF_CRITICAL_ROUNDS if attention else 0
    return (args.features or ("spatial" if attention else "logits"),
            args.word_vectors or ("glove" if attention else "none"),
            self_critical)


def region_defaults(args, features):
    """``(image_size, grid)`` for the encoder (None: the CNN's own): the
    options; for the attention model on Lite0's regions 448 px where
    --image-size is not given, averaged to 7 x 7 where --region-grid is not
    given either."""
    if not (args.arch == "attention" and features == "spatial"
            and args.cnn == "efficientnet_lite0" and args.image_size is None):
        return args.image_size, args.region_grid
    return ATTENTION_IMAGE_SIZE, (ATTENTION_REGION_GRID if args.region_grid is None
                                  else args.region_grid)


def run(args):
    if min(args.minutes, args.epochs, args.batch_size, args.patience) <= 0:
        raise UsageError("--minutes, --epochs, --patience and --batch-size "
                         "must be > 0")
    features, word_vectors, self_critical = arch_defaults(args)
    if args.attention_entropy is not None and args.arch != "attention":
        raise UsageError("--attention-entropy is for --arch attention")
    if args.attention_entropy is not None and not args.attention_entropy >= 0:
        raise UsageError("--attention-entropy must be >= 0")
    if args.attention_entropy_words is not None and args.arch != "attention":
        raise UsageError("--attention-entropy-words is for --arch attention")
    if args.attend is not None and args.arch != "attention":
        raise UsageError("--attend is for --arch attention")
    if self_critical < 0:
        raise UsageError("--self-critical-rounds must be >= 0")
    if self_critical and not 0 < args.self_critical_minutes < args.minutes:
        raise UsageError("--self-critical-minutes must be > 0 and less than "
                         "--minutes (%g), which also pays for cross-entropy"
                         % args.minutes)
    from captioning.cnn.encode import Encoder
    from captioning.model_dir import read_config
    from captioning.training import kept_epoch, train
    image_size, grid = region_defaults(args, features)
    history = train(args.flickr8k, args.out, args.minutes, args.epochs,
                    args.batch_size, args.embed_size, args.lstm_units,
                    args.patience, args.encoder or Encoder(
                        args.cnn, features, image_size=image_size, grid=grid),
                    arch=args.arch, word_vectors=word_vectors,
                    freeze_embedding=args.freeze_embedding,
                    self_critical_rounds=self_critical,
                    self_critical_minutes=args.self_critical_minutes,
                    attention_entropy=args.attention_entropy,
                    attention_entropy_words=args.attention_entropy_words,
                    attend=args.attend)
    if history:
        kept = kept_epoch(history)
        summary = {"model": str(args.out), "epochs": len(history),
                   "kept_epoch": kept,
                   "selection_loss": round(history[kept - 1]["selection_loss"], 4),
                   "minutes": round(history[-1]["seconds"] / 60, 1)}
        tuned = read_config(args.out)["training"].get("self_critical")
        if tuned and tuned["history"]:
            summary.update(self_critical_rounds=len(tuned["history"]),
                           kept_self_critical_round=tuned["round"],
                           minutes=round(tuned["history"][-1]["seconds"] / 60, 1))
        print(json.dumps(summary))
    return 0
