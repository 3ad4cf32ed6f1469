"""The committed notebook carries no data-set content and no progress noise."""
import nbformat
import pytest

from captioning.notebook.run import (SCRUB_NOTE, drop_transient_stderr,
                                     scrub_dataset_outputs)

NOTEBOOKS = ["notebooks/image_captioning_seminar.ipynb", "notebooks/image_captioning_bonus.ipynb"]


def stream(name, text):
    return nbformat.v4.new_output("stream", name=name, text=text)


def test_scrub_replaces_only_tagged_outputs():
    tagged = nbformat.v4.new_code_cell("print(captions[0])")
    tagged.metadata["tags"] = ["shows-dataset"]
    tagged.outputs = [stream("stdout", "a dog runs on the grass\n")]
    plain = nbformat.v4.new_code_cell("print(1)")
    plain.outputs = [stream("stdout", "1\n")]
    nb = nbformat.v4.new_notebook(cells=[tagged, plain])
    assert scrub_dataset_outputs(nb) == 1
    assert tagged.outputs[0].text == SCRUB_NOTE + "\n"
    assert plain.outputs[0].text == "1\n"


def test_progress_redraws_go_and_messages_stay():
    cell = nbformat.v4.new_code_cell("train()")
    cell.outputs = [stream("stderr", "\repoch 0:  10%|#   | 1/10"),
                    stream("stdout", "Epoch: 0, val loss: 3.1\n"),
                    stream("stderr", "INFO (theano.gof.compilelock): Waiting\n"),
                    stream("stderr", "UserWarning: something real\n")]
    nb = nbformat.v4.new_notebook(cells=[cell])
    assert drop_transient_stderr(nb) == 2
    assert [o.text for o in cell.outputs] == ["Epoch: 0, val loss: 3.1\n",
                                              "UserWarning: something real\n"]


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_committed_notebook_is_scrubbed_and_executed(notebook):
    import os
    path = os.path.join(os.path.dirname(__file__), "..", notebook)
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "commit the executed notebook"
    for cell in code:
        if "shows-dataset" in cell.metadata.get("tags", []):
            assert [o.get("text") for o in cell.outputs] == [SCRUB_NOTE + "\n"]


# ------------------------------------------------------------ the runner
# Small fake notebooks run in a real kernel (a few seconds each, no Theano).

import json  # noqa: E402
import os  # noqa: E402
import select  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402


from captioning.notebook import run as notebook_run  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_heading_of_markdown_cells():
    heading = notebook_run.heading
    assert heading("### Data preprocessing\n\nsome text") == "### Data preprocessing"
    assert heading('<h1 align="center"> Image Captioning </h1>\n\ntext') == "# Image Captioning"
    assert heading("text first\n## Later  \n# Bonus") == "## Later"
    assert heading("**Вопрос 1**: text, #hashtag") is None
    assert heading("#no space is not a heading") is None


def kernel_says(client, cell_index, msg_type, **content):
    """Feed one iopub message to the client as nbclient does while a cell runs."""
    return client.output(client.nb.cells[cell_index].outputs,
                         {"msg_type": msg_type, "content": content, "header": {"msg_type": msg_type},
                          "parent_header": {"msg_id": "m1"}}, None, cell_index)


def test_echo_keeps_what_is_saved_and_ends_open_lines(capsys):
    shown, hidden = code("train()"), code("show()", tags=["shows-dataset"])
    client = notebook_run.ProgressClient(nbformat.v4.new_notebook(cells=[shown, hidden]),
                                         hide_tag="shows-dataset")
    client.clear_before_next_output = False     # set by nbclient as each cell starts
    kernel_says(client, 0, "stream", name="stderr", text="\repoch 0:  50%|#  | 1/2")
    kernel_says(client, 0, "stream", name="stdout", text="Epoch: 0, train loss: 5.000")
    kernel_says(client, 0, "stream", name="stderr", text="\r        \r")
    client.say("[cell 2/2] ## Next")
    kernel_says(client, 1, "stream", name="stdout", text="val_1.jpg:\n  a caption\n")
    captured = capsys.readouterr()
    # the bar's line is ended before stdout writes; the print's line before the runner's
    assert captured.err == "\repoch 0:  50%|#  | 1/2\n\r        \r"
    assert captured.out == "Epoch: 0, train loss: 5.000\n[cell 2/2] ## Next\n"
    # what nbclient records is unchanged, hidden or not
    assert [o.text for o in shown.outputs] == ["\repoch 0:  50%|#  | 1/2",
                                               "Epoch: 0, train loss: 5.000", "\r        \r"]
    assert [o.text for o in hidden.outputs] == ["val_1.jpg:\n  a caption\n"]


def code(source, tags=()):
    cell = nbformat.v4.new_code_cell(source)
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def write_notebook(path, cells):
    nbformat.write(nbformat.v4.new_notebook(cells=cells), str(path))
    return path


def start(args, env=None):
    """The runner in a subprocess; its pipes are binary, so a "\r" stays one."""
    env = dict(os.environ, PYTHONPATH=REPO, **(env or {}))
    return subprocess.Popen([sys.executable, "-m", "captioning.notebook.run"] + args,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=REPO, env=env)


def read_until(stream, marker, seconds):
    """Lines of ``stream`` up to the one containing ``marker`` (None if it
    does not come within ``seconds``)."""
    seen, deadline = [], time.time() + seconds
    while time.time() < deadline:
        if select.select([stream], [], [], 0.5)[0]:
            line = stream.readline().decode()
            if not line:
                return None
            seen.append(line)
            if marker in line:
                return seen
    return None


@pytest.mark.slow
def test_run_shows_progress_live_and_ends_with_summary(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "stale.png").write_bytes(b"\x89PNG old")
    os.utime(run_dir / "stale.png", (time.time() - 3600,) * 2)
    (run_dir / "data" / "images").mkdir(parents=True)      # new, but not a figure of the run
    (run_dir / "data" / "images" / "synthetic_00001.png").write_bytes(b"\x89PNG new")
    go = tmp_path / "go"
    src = write_notebook(tmp_path / "nb.ipynb", [
        nbformat.v4.new_markdown_cell('<h1 align="center"> Intro </h1>\nwords'),
        # prints, then waits until the test has seen that line: only a live echo gets it there
        code("import os, time\nprint('ready', flush=True)\n"
             "t = time.time()\nwhile not os.path.exists(%r) and time.time() - t < 90:\n"
             "    time.sleep(0.1)\nassert os.path.exists(%r), 'nobody saw ready'" % (str(go), str(go))),
        nbformat.v4.new_markdown_cell("no heading here"),
        nbformat.v4.new_markdown_cell("### Main loop"),
        code("import sys\nsys.stderr.write('\\repoch 0:  50%|#  | 1/2')\nsys.stderr.flush()\n"
             "print('Epoch: 0, train loss: 5.000, val loss: 4.500')\n"
             "print('Epoch: 1, train loss: 4.000, val loss: 3.250')\nprint('Finish :)')"),
        code("open(os.path.join(os.environ['CAPTION_RUN_DIR'], 'loss.png'), 'wb').write(b'png')"),
        code("print('val_001.jpg:\\n  a data set caption\\n  another one')", tags=["shows-dataset"]),
        code("print('greedy : not a photo list')\n"
             "for name in ['cat', 'dog', 'cup', 'sky']:\n"
             "    print('%s:\\n  a %s greedy\\n  a %s sampled' % (name, name, name))"),
    ])
    dst = tmp_path / "out" / "nb.ipynb"
    proc = start([str(src), str(dst), "--scrub-dataset-outputs"],
                 env={"CAPTION_RUN_DIR": str(run_dir), "CAPTION_EPOCHS": "2"})
    try:
        # a loaded machine took over a minute to start the kernel (two suites
        # and a training run on 2 cores); an echo held back until the cell
        # ends still fails below: the cell gives up after 90 s, failing the run
        before = read_until(proc.stdout, "ready", 240)
        assert before is not None, "'ready' was not echoed while its cell ran"
        go.touch()
        rest, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    out, err = "".join(before) + rest.decode(), err.decode()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("running %s (8 cells); " % src)
    assert "CAPTION_EPOCHS=2" in lines[0] and "CAPTION_RUN_DIR=%s" % run_dir in lines[0]
    assert lines[1].startswith("[cell 1/8, ") and lines[1].endswith(" s] # Intro")
    assert lines[2] == "ready"
    assert lines[3].startswith("[cell 4/8, ") and lines[3].endswith(" s] ### Main loop")
    assert lines[4:7] == ["Epoch: 0, train loss: 5.000, val loss: 4.500",
                          "Epoch: 1, train loss: 4.000, val loss: 3.250", "Finish :)"]
    assert "\repoch 0:  50%|#  | 1/2" in err            # the bar, live, on stderr
    assert "a data set caption" not in out               # scrubbed cells are not echoed
    end = out[out.index("wrote %s\n" % dst):].splitlines()
    assert end[1:] == [
        "final losses (epoch 1): train 4.000, val 3.250",
        "captions (cell 8, 4 photos):",
        "  cat:", "    a cat greedy", "    a cat sampled",
        "  dog:", "    a dog greedy", "    a dog sampled",
        "  cup:", "    a cup greedy", "    a cup sampled",
        "  ... 1 more in the notebook",
        "figures written in %s:" % run_dir,
        "  %s" % (run_dir / "loss.png"),
    ]
    # the saved copy is scrubbed and free of the bar, as before
    saved = nbformat.read(str(dst), as_version=4)
    assert [o.get("text") for o in saved.cells[6].outputs] == [SCRUB_NOTE + "\n"]
    texts = [o.get("text", "") for c in saved.cells if c.cell_type == "code" for o in c.outputs]
    assert not any(t.startswith("\r") for t in texts)
    assert "Epoch: 1, train loss: 4.000, val loss: 3.250\n" in "".join(texts)


@pytest.mark.slow
def test_failing_cell_stops_the_run_with_one_line(tmp_path):
    marker = tmp_path / "after"
    src = write_notebook(tmp_path / "nb.ipynb", [
        nbformat.v4.new_markdown_cell("## Setup"),
        code("print('before')"),
        code("print('val_9.jpg:\\n  shown when not scrubbing')", tags=["shows-dataset"]),
        code("raise ValueError('bad thing\\nsecond line')"),
        code("open(%r, 'w').write('ran')" % str(marker)),
    ])
    dst = tmp_path / "out.ipynb"
    dst.write_text("the copy from before")
    proc = start([str(src), str(dst)])
    out, err = (b.decode() for b in proc.communicate(timeout=600))
    assert proc.returncode == 1
    assert err.splitlines()[-1] == \
        "notebook_run: error: cell 4/5 (## Setup) raised ValueError: bad thing"
    assert "before\n" in out and "shown when not scrubbing" in out
    assert not marker.exists()                            # the run stopped there
    assert dst.read_text() == "the copy from before"      # nothing lost


@pytest.mark.parametrize("content", [None, "not json", json.dumps({"cells": 3})])
def test_unreadable_notebook_is_one_line_and_exit_2(tmp_path, capsys, content):
    src = tmp_path / "nb.ipynb"
    if content is not None:
        src.write_text(content)
    assert notebook_run.main([str(src), str(tmp_path / "out.ipynb")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("notebook_run: error: cannot read %s: " % src) and err.count("\n") == 1
    assert not (tmp_path / "out.ipynb").exists()
