"""The committed notebook carries no data-set content and no progress noise."""
import nbformat

from captioning.notebook_run import (SCRUB_NOTE, drop_transient_stderr,
                                     scrub_dataset_outputs)

NOTEBOOK = "notebooks/image_captioning_seminar.ipynb"


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


def test_committed_notebook_is_scrubbed_and_executed():
    import os
    path = os.path.join(os.path.dirname(__file__), "..", NOTEBOOK)
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "commit the executed notebook"
    for cell in code:
        if "shows-dataset" in cell.metadata.get("tags", []):
            assert [o.get("text") for o in cell.outputs] == [SCRUB_NOTE + "\n"]
