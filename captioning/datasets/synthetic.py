"""A generated picture world: the offline data source (``caption data synthetic``).

Each picture shows coloured shapes on a background; its captions come from
a small grammar over the same scene description, so they are true of the
picture by construction. Everything is deterministic from the seed: image
``i`` depends only on ``(seed, i)``.

Scenes are of three kinds, on a plain, gradient or noisy background:

``group``  k identical shapes: "two red circles on a blue background"
``pair``   two shapes in a relation: "a large green triangle next to a
           small yellow square", "a red star above a white circle"
``mix``    k shapes plus one odd one: "three blue stars and a red circle"

The images are rendered with PIL, encoded by the same CNN as real photos
(:func:`captioning.cnn.encode.encode`) and saved with ``source='synthetic'``,
names ``synthetic_00001.png`` and a ``NOTICE.txt`` saying they are generated.
"""
import json
from pathlib import Path

import numpy as np

from captioning.cnn.encode import Encoder, encode
from captioning.datasets.formats import (Dataset, check_target, load_dataset, make_split,
                   refuse_unreadable, save_dataset)
from captioning.io.files import atomic_write

__all__ = ["COLOURS", "SHAPES", "generate_scene", "render_scene", "describe",
           "generate", "build_synthetic"]

GENERATOR_VERSION = 1
COLOURS = {
    "red": (215, 40, 40), "green": (40, 165, 60), "blue": (40, 80, 215),
    "yellow": (240, 215, 40), "orange": (245, 135, 25),
    "purple": (135, 55, 175), "white": (245, 245, 245), "black": (20, 20, 20),
}
BACKGROUND_COLOURS = dict(COLOURS, grey=(128, 128, 128))
SHAPES = ("circle", "square", "triangle", "star", "diamond")
SIZES = {"small": 0.07, "large": 0.14}       # radius / image side
NUMBERS = {1: "one", 2: "two", 3: "three", 4: "four"}
GRID = 3                                      # objects sit in 3x3 cells
RELATIONS = ("left", "above")                 # first object left of/above


# ------------------------------------------------------------------ scenes

def _pick(rng, items, exclude=()):
    items = [x for x in items if x not in exclude]
    return items[int(rng.integers(len(items)))]


def _visible(colour, bg_colours, min_distance=120):
    """True if ``colour`` stands out from every background colour."""
    rgb = np.array(COLOURS[colour], dtype=float)
    return all(np.linalg.norm(rgb - BACKGROUND_COLOURS[c]) >= min_distance
               for c in bg_colours)


def _obj(rng, bg_colours, size=None):
    hidden = [c for c in COLOURS if not _visible(c, bg_colours)]
    return {"shape": _pick(rng, SHAPES),
            "colour": _pick(rng, list(COLOURS), exclude=hidden),
            "size": size or _pick(rng, list(SIZES))}


def generate_scene(rng):
    """Draw one scene description (a plain dict) from ``rng``.

    Returns
    -------
    dict
        ``background``: {kind: plain|gradient|noise, colours: [...],
        direction}; ``kind``: group|pair|mix; ``objects``: list of
        {shape, colour, size, cell: (row, col)}; ``relation`` for pairs.
    """
    kind = _pick(rng, ["plain", "gradient", "noise"])
    c1 = _pick(rng, list(BACKGROUND_COLOURS))
    colours = [c1]
    if kind == "gradient":
        colours.append(_pick(rng, list(BACKGROUND_COLOURS), exclude=[c1]))
    background = {"kind": kind, "colours": colours,
                  "direction": _pick(rng, ["horizontal", "vertical"])}
    cells = [(r, c) for r in range(GRID) for c in range(GRID)]
    scene_kind = _pick(rng, ["group", "group", "pair", "mix"])
    scene = {"kind": scene_kind, "background": background}
    if scene_kind == "group":
        count = int(rng.integers(1, 5))
        proto = _obj(rng, colours)
        chosen = rng.choice(len(cells), size=count, replace=False)
        scene["objects"] = [dict(proto, cell=cells[i]) for i in chosen]
    elif scene_kind == "pair":
        a = _obj(rng, colours)
        b = _obj(rng, colours)
        while (b["shape"], b["colour"]) == (a["shape"], a["colour"]):
            b = _obj(rng, colours)
        relation = _pick(rng, RELATIONS)
        line = int(rng.integers(GRID))
        first, second = sorted(rng.choice(GRID, size=2, replace=False))
        if relation == "left":     # same row, a in an earlier column
            a["cell"], b["cell"] = (line, first), (line, second)
        else:                      # same column, a in an earlier row
            a["cell"], b["cell"] = (first, line), (second, line)
        scene["objects"] = [a, b]
        scene["relation"] = relation
    else:
        count = int(rng.integers(2, 4))
        proto = _obj(rng, colours)
        odd = _obj(rng, colours)
        while odd["shape"] == proto["shape"]:
            odd = _obj(rng, colours)
        chosen = rng.choice(len(cells), size=count + 1, replace=False)
        scene["objects"] = ([dict(proto, cell=cells[i]) for i in chosen[:-1]]
                            + [dict(odd, cell=cells[chosen[-1]])])
    for o in scene["objects"]:
        o["cell"] = [int(o["cell"][0]), int(o["cell"][1])]
    return scene


# ------------------------------------------------------------------ pixels

def _background(bg, size, rng):
    c1 = np.array(BACKGROUND_COLOURS[bg["colours"][0]], dtype=np.float32)
    if bg["kind"] == "gradient":
        c2 = np.array(BACKGROUND_COLOURS[bg["colours"][1]], dtype=np.float32)
        t = np.linspace(0, 1, size, dtype=np.float32)
        t = t[None, :, None] if bg["direction"] == "horizontal" else \
            t[:, None, None]
        pixels = c1 + (c2 - c1) * t
        pixels = np.broadcast_to(pixels, (size, size, 3))
    else:
        pixels = np.broadcast_to(c1, (size, size, 3)).copy()
        if bg["kind"] == "noise":
            pixels = pixels + rng.normal(0, 30, size=(size, size, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def _polygon(shape, cx, cy, r):
    if shape == "square":
        s = r * 0.85
        return [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s),
                (cx - s, cy + s)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
    if shape == "triangle":
        angles = np.deg2rad([-90, 30, 150])
        radii = [r] * 3
    else:  # star
        angles = np.deg2rad(np.arange(10) * 36 - 90)
        radii = [r if k % 2 == 0 else r * 0.45 for k in range(10)]
    return [(cx + q * np.cos(a), cy + q * np.sin(a))
            for q, a in zip(radii, angles)]


def render_scene(scene, size=224, rng=None):
    """Draw a scene as a ``size`` x ``size`` RGB ``PIL.Image``.

    ``rng`` supplies the background noise and the jitter of each shape in
    its grid cell.
    """
    from PIL import Image, ImageDraw

    rng = rng if rng is not None else np.random.default_rng(0)
    image = Image.fromarray(_background(scene["background"], size, rng))
    draw = ImageDraw.Draw(image)
    cell = size / GRID
    for o in scene["objects"]:
        r = SIZES[o["size"]] * size
        slack = max(cell / 2 - r - 2, 0)
        row, col = o["cell"]
        cx = (col + 0.5) * cell + rng.uniform(-slack, slack)
        cy = (row + 0.5) * cell + rng.uniform(-slack, slack)
        colour = COLOURS[o["colour"]]
        outline = (0, 0, 0) if o["colour"] != "black" else (90, 90, 90)
        if o["shape"] == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour,
                         outline=outline)
        else:
            draw.polygon(_polygon(o["shape"], cx, cy, r), fill=colour,
                         outline=outline)
    return image


# ------------------------------------------------------------------ words

def _a(word):
    return ("an " if word[0] in "aeiou" else "a ") + word


def _plural(shape, k):
    return shape if k == 1 else shape + "s"


def _np(o, size=True):
    words = ([o["size"]] if size else []) + [o["colour"], o["shape"]]
    return _a(" ".join(words))


def _count_np(k, o, size=True, number=True):
    words = ([o["size"]] if size else []) + [o["colour"],
                                               _plural(o["shape"], k)]
    head = (NUMBERS[k] if number or k > 1 else "a") if k > 1 else \
        ("one" if number else "a")
    return head + " " + " ".join(words)


def _bg_phrases(bg):
    c = bg["colours"]
    if bg["kind"] == "plain":
        return [_a(c[0] + " background"), _a("plain %s background" % c[0])]
    if bg["kind"] == "gradient":
        return ["a gradient from %s to %s" % (c[0], c[1]),
                _a("%s and %s gradient background" % (c[0], c[1]))]
    return [_a("noisy %s background" % c[0]),
            _a("speckled %s background" % c[0])]


def describe(scene, rng, n_min=5, n_max=7):
    """Between ``n_min`` and ``n_max`` different true captions of a scene.

    Returns
    -------
    list of str
        Lowercase words separated by single spaces.
    """
    bgs = _bg_phrases(scene["background"])
    bg = bgs[int(rng.integers(len(bgs)))]
    objs = scene["objects"]
    if scene["kind"] == "group":
        o, k = objs[0], len(objs)
        is_are = "is" if k == 1 else "are"
        options = [
            "%s on %s" % (_count_np(k, o, size=False), bg),
            _count_np(k, o),
            "there %s %s on %s" % (is_are, _count_np(k, o, number=False),
                                   bg),
            "a picture of %s" % _count_np(k, o),
            "%s with %s" % (bg, _count_np(k, o, size=False)),
            "%s %s that %s %s" % ("one" if k == 1 else NUMBERS[k],
                                  _plural(o["shape"], k), is_are,
                                  o["colour"]),
            "%s %s %s on %s" % (NUMBERS[k], o["size"],
                                _plural(o["shape"], k), bg),
        ]
    elif scene["kind"] == "pair":
        a, b = objs
        if scene["relation"] == "left":
            rel = [("%s next to %s", a, b), ("%s to the left of %s", a, b),
                   ("%s to the right of %s", b, a), ("%s beside %s", b, a)]
        else:
            rel = [("%s above %s", a, b), ("%s below %s", b, a),
                   ("%s under %s", b, a), ("%s on top of %s", a, b)]
        options = [t % (_np(x), _np(y)) for t, x, y in rel]
        options += [
            "%s and %s on %s" % (_np(a, False), _np(b, False), bg),
            "two shapes %s and %s" % (_np(a), _np(b)),
            "%s and %s" % (_a(a["shape"]), _a(b["shape"])),
        ]
    else:
        many, odd = objs[:-1], objs[-1]
        k, o = len(many), many[0]
        options = [
            "%s and %s" % (_count_np(k, o, size=False), _np(odd, False)),
            "%s and %s on %s" % (_count_np(k, o), _np(odd), bg),
            "%s with %s shapes" % (bg, NUMBERS[k + 1]),
            "%s among %s %s" % (_np(odd, False), NUMBERS[k],
                                _plural(o["colour"] + " " + o["shape"], k)),
            "%s shapes %s %s and one %s" % (
                NUMBERS[k + 1], NUMBERS[k], _plural(o["shape"], k),
                odd["shape"]),
            "%s %s %s and %s" % (NUMBERS[k], o["colour"],
                                 _plural(o["shape"], k), _np(odd)),
        ]
    options = [" ".join(s.split()) for s in options]
    options = list(dict.fromkeys(options))                 # distinct
    n = int(rng.integers(n_min, min(n_max, len(options)) + 1))
    chosen = rng.choice(len(options), size=n, replace=False)
    return [options[i] for i in sorted(chosen)]


# ------------------------------------------------------------------ build

def generate(n, seed, image_dir, size=224, progress=False):
    """Render ``n`` pictures into ``image_dir`` and describe them.

    Returns
    -------
    names : list of str
        ``synthetic_00001.png``, ...
    paths : list of Path
    captions : list of list of str
    scenes : list of dict
    """
    from tqdm import tqdm

    image_dir = Path(image_dir)
    image_dir.mkdir(parents=True, exist_ok=True)
    names, paths, captions, scenes = [], [], [], []
    for i in tqdm(range(n), desc="drawing", unit="img", disable=not progress):
        rng = np.random.default_rng([seed, i])
        scene = generate_scene(rng)
        image = render_scene(scene, size, rng)
        name = "synthetic_%05d.png" % (i + 1)
        with atomic_write(image_dir / name) as f:
            image.save(f, format="PNG")
        names.append(name)
        paths.append(image_dir / name)
        captions.append(describe(scene, rng))
        scenes.append(scene)
    return names, paths, captions, scenes


NOTICE = """GENERATED DATA - not photographs.

The images in this directory were drawn by captioning/datasets/synthetic.py
(`caption data synthetic`, generator version {version}, seed {seed},
{n} images, {size}x{size} px): coloured shapes on plain, gradient or noisy
backgrounds. Their captions come from a small grammar over the same scene
descriptions (kept in synthetic_scenes.json). Image codes were computed by
the CNN `{cnn}`. Use it to run the pipeline offline; do not report results
on it as results on real images.
"""


def build_synthetic(out_dir="data", n=2000, seed=0, size=224, encoder=None,
                    batch_size=32, progress=True, force=False, val=0.1,
                    test=0.1):
    """Generate, encode and save the picture world to ``out_dir``.

    Parameters
    ----------
    out_dir : str or Path
        Gets the seminar's files plus ``images/``, ``NOTICE.txt`` and
        ``synthetic_scenes.json``.
    n : int
        Number of images.
    seed : int
        Determines pictures, captions and split.
    encoder : captioning.cnn.encode.Encoder, optional
        Default: EfficientNet-Lite0 logits; ``dataset.json`` records it.
    val, test : float or int
        Held-out fractions (or counts) of images.

    Returns
    -------
    Dataset
    """
    out_dir = Path(out_dir)
    check_target(out_dir, "synthetic", force)
    names, paths, captions, scenes = generate(n, seed, out_dir / "images",
                                              size, progress)
    encoder = Encoder() if encoder is None else encoder
    # Not cached: the pictures are rewritten (new modification times) by
    # every build, so their codes would never be looked up again.
    codes, _, failures = encode(paths, encoder, cache=False,
                                progress=progress, batch_size=batch_size)
    refuse_unreadable(failures, len(paths))
    split = make_split(n, seed=seed, n_val=val, n_test=test)
    meta = {"generated": True, "seed": seed, "generator_version":
            GENERATOR_VERSION, "image_size": size, "cnn": encoder.cnn,
            "encoder": encoder.record(),
            "images_dir": "images"}
    dataset = Dataset(codes, captions, names, split, "synthetic", meta)
    save_dataset(dataset, out_dir, {"seed": seed, "method":
                                    "seeded random split by image"},
                 overwrite_source=force)
    with atomic_write(out_dir / "synthetic_scenes.json", "w") as f:
        json.dump(dict(zip(names, scenes)), f)
    with atomic_write(out_dir / "NOTICE.txt", "w") as f:
        f.write(NOTICE.format(version=GENERATOR_VERSION, seed=seed, n=n,
                              size=size, cnn=encoder.cnn))
    # as a later run loads it (with meta["image_dir"], where the photos are)
    return load_dataset(out_dir)
