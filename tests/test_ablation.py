"""The bonus notebook's table: rows, the evaluate command, what each row says.

The command is replaced by a fake ``run`` that records its argv and answers
as ``caption evaluate`` would; the last test runs the real command in a
subprocess on a tiny model and a fake Flickr8k.
"""
import json
import sys

import pytest

from captioning.notebook.ablation import (ROWS, Row, describe_model,
                                          evaluate_command, evaluate_rows,
                                          histories, markdown_table,
                                          train_command)

SCORES = {"bleu1": 0.6012, "bleu2": 0.4187, "bleu3": 0.2866, "bleu4": 0.1948,
          "cider": 0.4624, "n_images": 1000}


def write_model_json(folder, **config):
    folder.mkdir(parents=True)
    (folder / "model.json").write_text(json.dumps(config))
    return folder


def fake_flickr8k(root):
    (root / "images").mkdir(parents=True)
    (root / "Flickr8k.token.txt").write_text("a.jpg#0\ta dog\n")
    (root / "Flickr_8k.devImages.txt").write_text("a.jpg\n")
    return root


class FakeRun:
    """Answers every command with ``answer`` and records the argv."""

    def __init__(self, code=0, out="", err=""):
        self.answer, self.calls = (code, out, err), []

    def __call__(self, argv):
        self.calls.append(argv)
        return self.answer


ATTENTION_JSON = {
    "arch": "attention", "encoder": {"feature_kind": "spatial"},
    "hyper_parameters": {"embed_size": 256, "lstm_units": 512, "attention_units": 256},
    "training": {"word_vectors": {"source": "glove-6b-50d", "frozen": True},
                 "epoch": 2, "history": [{"epoch": 1}, {"epoch": 2}, {"epoch": 3}]}}


def test_the_rows_train_options_are_caption_train_options():
    # parsed by the real `caption train` parser, as a reader would type them
    import argparse
    from captioning.commands import train
    parser = argparse.ArgumentParser()
    train.register(parser.add_subparsers())
    parsed = [parser.parse_args(["train", "--flickr8k", "F", "--out", "O",
                                 *row.train_options]) for row in ROWS]
    # with the arch's defaults where an option is not given: each row adds
    # one thing (the attention model keeps the GloVe start)
    assert [(a.arch, *train.arch_defaults(a)) for a in parsed] == [
        ("seminar", "logits", "none", 0), ("seminar", "pooled", "none", 0),
        ("seminar", "pooled", "glove", 0), ("attention", "spatial", "glove", 0),
        ("attention", "spatial", "glove", train.SELF_CRITICAL_ROUNDS),
        ("attention", "spatial", "glove", train.SELF_CRITICAL_ROUNDS)]
    assert train.SELF_CRITICAL_ROUNDS > 0
    # the attention rows see the photos at 448 px, averaged to 7x7 regions
    assert [train.region_defaults(a, train.arch_defaults(a)[0]) for a in parsed] \
        == [(None, None)] * 3 + [(448, 7)] * 3
    assert [row.beam for row in ROWS] == [1, 1, 1, 1, 1, 3]
    # the last two rows are one model, decoded two ways
    assert ROWS[4].model == ROWS[5].model != ROWS[3].model


def test_train_and_evaluate_commands(tmp_path):
    row = Row("x", "pooled", ("--features", "pooled"), 1)
    assert train_command(row, "runs/bonus", "/data/flickr 8k") == (
        "caption train --flickr8k '/data/flickr 8k' --out runs/bonus/pooled "
        "--features pooled")
    flickr = fake_flickr8k(tmp_path / "f")
    assert evaluate_command("m/att", flickr, 3) == [
        sys.executable, "-m", "captioning", "evaluate", "--model", "m/att",
        "--images", str(flickr / "images"),
        "--captions", str(flickr / "Flickr8k.token.txt"),
        "--list", str(flickr / "Flickr_8k.devImages.txt"), "--beam", "3"]


def test_paths_work_from_the_repository_root(tmp_path, monkeypatch):
    # the notebook runs in notebooks/, the commands in the repository root
    from captioning.datasets.formats import REPO_ROOT
    row = Row("x", "logits", (), 1)
    assert train_command(row, REPO_ROOT / "notebooks" / ".." / "runs" / "bonus", "/f") == (
        "caption train --flickr8k /f --out runs/bonus/logits")
    flickr = fake_flickr8k(tmp_path / "f")
    write_model_json(tmp_path / "models" / "logits")
    monkeypatch.chdir(tmp_path / "models")
    run = FakeRun(out=json.dumps(SCORES))
    evaluate_rows([row], ".", "../f", run=run, log=lambda _: None)
    assert run.calls == [evaluate_command(tmp_path / "models" / "logits", flickr, 1)]


def test_describe_model_reads_model_json(tmp_path):
    assert describe_model(write_model_json(tmp_path / "a", **ATTENTION_JSON)) == \
        "attention, spatial, glove-6b-50d (frozen), E=256 H=512; epoch 2 of 3"
    # format 1 and 2 (no arch, no encoder): the seminar graph on logits
    assert describe_model(write_model_json(tmp_path / "b", vocabulary=[])) == \
        "seminar, logits"
    assert describe_model(tmp_path / "none") is None
    tuned = dict(ATTENTION_JSON, training=dict(
        ATTENTION_JSON["training"], self_critical={"round": 2, "history": [{}, {}, {}]}))
    assert describe_model(write_model_json(tmp_path / "c", **tuned)).endswith(
        "epoch 2 of 3, then self-critical round 2 of 3")
    tuned["training"]["self_critical"]["round"] = None
    assert describe_model(write_model_json(tmp_path / "d", **tuned)).endswith(
        "epoch 2 of 3, then self-critical (no round kept of 3)")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "model.json").write_text("{not json")
    assert describe_model(tmp_path / "bad") is None
    fine = dict(ATTENTION_JSON, encoder={"feature_kind": "spatial",
                                         "image_size": 448, "grid": 7})
    assert describe_model(write_model_json(tmp_path / "e", **fine)).startswith(
        "attention, spatial, 448 px, 7x7 regions, glove-6b-50d (frozen), E=256")
    # the entropy term shows (a model trained before it existed has none)
    moving = dict(ATTENTION_JSON, hyper_parameters=dict(
        ATTENTION_JSON["hyper_parameters"], attention_entropy=0.05,
        attention_entropy_words="content"))
    assert describe_model(write_model_json(tmp_path / "f", **moving)) == (
        "attention, spatial, glove-6b-50d (frozen), E=256 H=512, entropy 0.05 "
        "on content words; epoch 2 of 3")
    moving["hyper_parameters"]["attention_entropy"] = 0.0
    assert "entropy" not in describe_model(write_model_json(tmp_path / "g", **moving))


def test_scores_come_from_the_last_json_line(tmp_path):
    flickr = fake_flickr8k(tmp_path / "f")
    write_model_json(tmp_path / "models" / "attention", **ATTENTION_JSON)
    run = FakeRun(out="caption evaluate: note\n" + json.dumps(SCORES) + "\n\n")
    rows = [ROWS[3]._replace(beam=3, label="+ beam search (k = 3)")]
    results = evaluate_rows(rows, tmp_path / "models", flickr, run=run, log=lambda _: None)
    assert run.calls == [evaluate_command(tmp_path / "models" / "attention", flickr, 3)]
    assert results[0]["scores"] == SCORES and results[0]["note"] == ""
    table = markdown_table(results).splitlines()
    assert table[0] == ("|  | model (from model.json) | beam | photos | BLEU-1 | BLEU-2 | "
                        "BLEU-3 | BLEU-4 | CIDEr-D |")
    assert table[2] == ("| + beam search (k = 3) | attention, spatial, glove-6b-50d (frozen), "
                        "E=256 H=512; epoch 2 of 3 | 3 | 1000 | 0.601 | 0.419 | 0.287 | 0.195 | 0.462 |")


def test_photos_left_out_are_noted(tmp_path):
    flickr = fake_flickr8k(tmp_path / "f")
    write_model_json(tmp_path / "models" / "logits")
    run = FakeRun(2, json.dumps(dict(SCORES, n_images=998)),
                  "x.jpg: no such file\ncaption evaluate: 2 of 1000 listed images "
                  "were left out (see above)\n")
    result, = evaluate_rows(ROWS[:1], tmp_path / "models", flickr, run=run,
                            log=lambda _: None)
    assert result["scores"]["n_images"] == 998
    assert result["note"] == ("998 photos; some left out: caption evaluate: 2 of 1000 "
                              "listed images were left out (see above)")
    assert markdown_table([result]).splitlines()[2].endswith("0.462 (%s) |" % result["note"])


def test_a_failed_command_gives_its_last_line(tmp_path):
    flickr = fake_flickr8k(tmp_path / "f")
    write_model_json(tmp_path / "models" / "logits")
    run = FakeRun(2, "", "Traceback...\ncaption evaluate: error: bad model\n")
    result, = evaluate_rows(ROWS[:1], tmp_path / "models", flickr, run=run,
                            log=lambda _: None)
    assert result["scores"] is None
    assert result["note"] == "failed (exit code 2): caption evaluate: error: bad model"
    assert "| failed (exit code 2): caption evaluate: error: bad model |" in markdown_table([result])


def test_missing_model_and_missing_flickr8k_run_nothing(tmp_path):
    flickr = fake_flickr8k(tmp_path / "f")
    write_model_json(tmp_path / "models" / "pooled")
    run = FakeRun()
    missing, present = evaluate_rows(ROWS[:2], tmp_path / "models", flickr, run=run)
    assert run.calls == [evaluate_command(tmp_path / "models" / "pooled", flickr, 1)]
    assert missing["note"] == ("missing: no model in %s; make it with `caption train "
                               "--flickr8k %s --out %s`" % (tmp_path / "models" / "logits",
                                                            flickr, tmp_path / "models" / "logits"))
    run = FakeRun()
    for folder in (None, tmp_path / "nowhere"):
        results = evaluate_rows(ROWS[:2], tmp_path / "models", folder, run=run)
        assert results[1]["note"] == "skipped: no Flickr8k here (%s)" % folder
        assert results[0]["note"].startswith("missing: ")
    assert run.calls == []


def test_histories_once_per_model_in_row_order(tmp_path):
    history = [{"epoch": 1, "train_loss": 3.0, "selection_loss": 3.2}]
    write_model_json(tmp_path / "attention", training={"history": history})
    write_model_json(tmp_path / "logits", training={"history": history[:0]})
    write_model_json(tmp_path / "pooled", training={"history": history * 2})
    assert histories(ROWS, tmp_path) == {"pooled": history * 2, "attention": history}


@pytest.mark.slow
def test_the_real_command_on_a_tiny_model(tmp_path):
    # `python -m captioning evaluate` in a subprocess, with the real CNN, on
    # three coloured squares: the table's path in the notebook's full run
    from _flickr8k_fakes import make_fake_flickr8k
    from captioning.cnn.encode import Encoder
    from captioning.model import CaptionModel
    from captioning.model_dir import save_model
    from captioning.text import Vocabulary
    flickr = make_fake_flickr8k(tmp_path / "flickr8k")
    model = CaptionModel(Vocabulary(["#UNK#", "#START#", "#END#", "a", "red", "square"]),
                         embed_size=8, lstm_units=16, seed=0)
    model.encoder_record = Encoder().record()
    save_model(model, tmp_path / "models" / "logits")
    logged = []
    result, = evaluate_rows(ROWS[:1], tmp_path / "models", flickr, log=logged.append)
    assert result["note"] == "" and result["model"] == "seminar, logits, E=8 H=16"
    assert result["scores"]["n_images"] == 3
    assert all(0 <= result["scores"][m] <= 1 for m in ("bleu1", "bleu4"))
    assert logged and logged[0].startswith("seminar graph on logits (beam 1): ")
