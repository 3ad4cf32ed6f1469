"""The grader (``captioning.notebook.grade``).

Small made-up assignments (no Theano) check the machinery in a real kernel:
time limits, a cell that raises, edited or deleted test cells, a file that
is not a notebook. Then the seminar itself, once per submission with the
short-training settings: the completed notebook scores full marks, the
release scores zero, and three broken submissions lose exactly the points
of the tests that concern them. Submissions are made from the release as a
student gets it (its metadata and checksums), filled in with the solutions.
"""
import json
import os
import time

import nbformat
import numpy as np
import pytest

from captioning.notebook import assignment, execute, grade

# ------------------------------------------------------------------ a small assignment


def cell(kind, source, **nbgrader):
    made = nbformat.v4.new_code_cell(source) if kind == "code" else nbformat.v4.new_markdown_cell(source)
    if nbgrader:
        made.metadata["nbgrader"] = dict({"grade": False, "solution": False, "locked": False,
                                          "schema_version": 3}, **nbgrader)
    return made


def small_source():
    """Fill in x; two tests (1 + 2 points), one with a hidden part; one answer."""
    nb = nbformat.v4.new_notebook(cells=[
        cell("code", "### BEGIN SOLUTION\nx = 1\n### END SOLUTION", grade_id="fill", solution=True),
        cell("code", "# Test: x is 1 (1 point)\nassert x == 1, 'x must be 1'\n"
                     "### BEGIN HIDDEN TESTS\nassert x + 1 == 2\n### END HIDDEN TESTS",
             grade_id="test_one", grade=True, locked=True, points=1),
        cell("markdown", "**Вопрос 1**: why?", grade_id="question_1", locked=True),
        cell("markdown", "because", grade_id="answer_q1", grade=True, solution=True, points=1),
        cell("code", "# Test: the kernel still works (2 points)\nassert 'x' in globals()",
             grade_id="test_two", grade=True, locked=True, points=2),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


@pytest.fixture
def small(tmp_path):
    """The small assignment's reference, a filled-in student copy, and an
    empty data folder."""
    source = small_source()
    (tmp_path / "data").mkdir()
    return grade.Reference(source), assignment.release(source, keep_solutions=True), str(tmp_path / "data")


def write(nb, path):
    nbformat.write(nb, str(path))
    return str(path), path.read_bytes(), os.stat(path).st_mtime_ns


def by_test(report):
    return {t["id"]: t for t in report["tests"]}


def test_prepare_puts_the_instructors_test_cells_back():
    source = small_source()
    ref = grade.Reference(source)
    student = assignment.release(source)
    student.cells[0].source = "x = 1"
    student.cells[1].source = "assert True   # the test, made easy"
    student.cells[4].metadata.nbgrader["points"] = 20
    nb, notes = grade.prepare(student, ref)
    assert notes == {"test_one": "edited"}
    assert nb.cells[1].source == source.cells[1].source          # hidden part included
    assert nb.cells[4].metadata.nbgrader["points"] == 2           # the instructor's points
    assert nb.cells[0].source == "x = 1"                          # the student's answer stays
    # an unedited release, and the instructor's own notebook, are not "edited"
    assert grade.prepare(assignment.release(source), ref)[1] == {}
    assert grade.prepare(source, ref)[1] == {}
    del student.cells[4]
    assert grade.prepare(student, ref)[1] == {"test_one": "edited", "test_two": "missing"}


def test_not_a_notebook_gives_a_report_and_zero(small, tmp_path):
    ref, _, data = small
    bad = tmp_path / "hand-in.ipynb"
    bad.write_text('{"cells": [', encoding="utf-8")
    before = bad.read_bytes(), os.stat(bad).st_mtime_ns
    report = grade.grade_one(str(bad), str(tmp_path / "out"), ref, data)
    assert (report["score"], report["max_score"]) == (0, 3)
    assert {t["status"] for t in report["tests"]} == {"not run"}
    assert report["problems"] == ["not run: the file is not a readable notebook (NotJSONError: Notebook does not "
                                 "appear to be JSON: '{\"cells\": [')"]
    assert [a["status"] for a in report["manual"]["answers"]] == ["missing"]
    assert (bad.read_bytes(), os.stat(bad).st_mtime_ns) == before
    assert (tmp_path / "out" / "submitted.ipynb").read_bytes() == before[0]
    saved = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert saved["score"] == 0 and "not a readable notebook" in (tmp_path / "out" / "feedback.txt").read_text()


def test_a_run_that_cannot_start_scores_zero(small, tmp_path, monkeypatch):
    """Only a test cell that ran can pass: here none did (no kernel)."""
    ref, filled, data = small

    def no_kernel(self, **kw):
        raise RuntimeError("Kernel didn't respond in 60 seconds")
    monkeypatch.setattr(execute.LimitedClient, "run", no_kernel)
    report = grade.grade_one(write(filled, tmp_path / "s.ipynb")[0], str(tmp_path / "out"), ref, data)
    assert report["score"] == 0 and {t["status"] for t in report["tests"]} == {"not run"}
    assert report["problems"] == ["the run stopped: RuntimeError: Kernel didn't respond in 60 seconds"]
    assert report["run"]["finished"] is False


@pytest.mark.slow
def test_full_marks_and_the_file_left_alone(small, tmp_path):
    ref, filled, data = small
    path, data_before, mtime = write(filled, tmp_path / "student.ipynb")
    report = grade.grade_one(path, str(tmp_path / "out"), ref, data)
    assert (report["score"], report["max_score"]) == (3, 3) and report["problems"] == []
    assert report["manual"]["answers"][0]["answer"] == "because"
    assert report["manual"]["answers"][0]["status"] == "to grade by hand"
    assert ((tmp_path / "student.ipynb").read_bytes(), os.stat(path).st_mtime_ns) == (data_before, mtime)
    graded = nbformat.read(str(tmp_path / "out" / "graded.ipynb"), as_version=4)
    assert "### BEGIN HIDDEN TESTS" in graded.cells[1].source    # the hidden test ran


@pytest.mark.slow
def test_a_cell_that_raises_and_a_wrong_answer(small, tmp_path):
    ref, filled, data = small
    filled.cells[0].source = "x = 2"
    filled.cells.insert(1, nbformat.v4.new_code_cell("raise ValueError('boom')"))
    report = grade.grade_one(write(filled, tmp_path / "s.ipynb")[0], str(tmp_path / "out"), ref, data)
    tests = by_test(report)
    assert tests["test_one"]["status"] == "failed" and tests["test_one"]["points"] == 0
    assert tests["test_one"]["message"] == "AssertionError: x must be 1"
    assert tests["test_two"]["status"] == "passed" and report["score"] == 2
    assert report["problems"] == ["cell 2 (`raise ValueError('boom')`) raised ValueError: boom"]


@pytest.mark.slow
def test_edited_and_deleted_test_cells(small, tmp_path):
    ref, filled, data = small
    filled.cells[0].source = "x = 2"
    filled.cells[1].source = "assert True"
    del filled.cells[4]
    report = grade.grade_one(write(filled, tmp_path / "s.ipynb")[0], str(tmp_path / "out"), ref, data)
    tests = by_test(report)
    # the instructor's version ran: x = 2 fails it
    assert tests["test_one"]["status"] == "failed"
    assert tests["test_one"]["message"].startswith("the test cell was edited; the instructor's version was run")
    assert tests["test_two"] == dict(tests["test_two"], status="missing", points=0.0,
                                     message="the test cell was deleted from the submission")
    assert report["score"] == 0


@pytest.mark.slow
def test_an_endless_loop_is_interrupted_and_the_rest_graded(small, tmp_path):
    ref, filled, data = small
    filled.cells.insert(1, nbformat.v4.new_code_cell("while True:\n    pass"))
    started = time.monotonic()
    # 10 s per cell: trivial cells after the interrupted one took over 3 s on a
    # loaded 2-core machine (two suites at once), and timed out too
    report = grade.grade_one(write(filled, tmp_path / "s.ipynb")[0], str(tmp_path / "out"), ref, data,
                             cell_timeout=10, timeout=120)
    assert time.monotonic() - started < 90
    assert report["score"] == 3
    assert report["problems"] == ["cell 2 (`while True:`) raised CellTimeoutError: the cell did not finish within "
                                  "its time limit and was interrupted"]


@pytest.mark.slow
def test_a_kernel_that_ignores_interrupts_is_stopped_by_the_whole_limit(small, tmp_path):
    ref, filled, data = small
    filled.cells.insert(1, nbformat.v4.new_code_cell(
        "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    time.sleep(0.05)"))
    started = time.monotonic()
    report = grade.grade_one(write(filled, tmp_path / "s.ipynb")[0], str(tmp_path / "out"), ref, data,
                             cell_timeout=2, timeout=6)
    assert time.monotonic() - started < 6 + execute.KILL_GRACE + 15
    assert report["score"] == 0
    assert {t["status"] for t in report["tests"]} <= {"not run", "timed out"}
    assert report["run"]["finished"] is False
    assert any("time limit" in p for p in report["problems"])


def test_bad_command_line_is_one_line_exit_2(tmp_path, capsys):
    assert grade.main([str(tmp_path / "nothing.ipynb")]) == 2
    err = capsys.readouterr().err
    assert err == "grade: error: no such file or folder: %s\n" % (tmp_path / "nothing.ipynb")
    (tmp_path / "empty").mkdir()
    assert grade.main([str(tmp_path / "empty")]) == 2
    assert capsys.readouterr().err == "grade: error: no .ipynb files in %s\n" % (tmp_path / "empty")
    from captioning.commands import main
    assert main(["grade", str(tmp_path / "empty"), "--timeout", "0"]) == 2
    assert capsys.readouterr().err == ("caption grade: error: --cell-timeout, --timeout and --batches must be "
                                       ">= 1, --epochs >= 0\n")


def test_grading_data_is_built_once(tmp_path, monkeypatch):
    import captioning.datasets.synthetic
    built = []
    monkeypatch.setattr(captioning.datasets.synthetic, "build_synthetic",
                        lambda out, n, seed: built.append((out, n, seed)))
    ready = fake_grading_data(tmp_path / "ready", n=20)
    assert grade.ensure_grading_data(ready) == ready and built == []
    assert grade.ensure_grading_data(str(tmp_path / "new")) == str(tmp_path / "new")
    assert built == [(str(tmp_path / "new"), 1400, 0)]       # more images than the notebook's captions[1337]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(grade.UsageError, match="is neither a data set nor empty"):
        grade.ensure_grading_data(str(tmp_path / "other"))


# ------------------------------------------------------------------ the seminar

def fake_grading_data(out, n=1400):
    """The generated picture world's captions with made-up codes (no
    rendering, no CNN): the grader's tests do not depend on what codes say.
    The notebook shows captions[1337], hence 1400 images."""
    from captioning.datasets.formats import Dataset, make_split, save_dataset
    from captioning.cnn.encode import Encoder
    from captioning.datasets.synthetic import describe, generate_scene
    codes, captions = [], []
    for i in range(n):
        rng = np.random.default_rng([0, i])
        captions.append(describe(generate_scene(rng), rng))
        codes.append(rng.normal(size=1000))
    meta = {"generated": True, "encoder": Encoder().record(), "note": "test data: codes are random numbers"}
    save_dataset(Dataset(np.asarray(codes, "float32"), captions, ["synthetic_%05d.png" % (i + 1) for i in range(n)],
                         make_split(n, seed=0, n_val=0.1, n_test=0.1), "synthetic", meta), out)
    return str(out)


@pytest.fixture(scope="module")
def seminar(tmp_path_factory):
    """Grades each submission once (on first use): name -> report."""
    base = tmp_path_factory.mktemp("seminar")
    data = fake_grading_data(base / "data")
    source = assignment.read_source()
    ref = grade.Reference(source)
    filled = assignment.release(source, keep_solutions=True)

    def broken(old, new):
        nb = nbformat.from_dict(filled)
        changed = [c for c in nb.cells if old in c.source]
        assert len(changed) == 1, old
        changed[0].source = changed[0].source.replace(old, new)
        return nb

    makers = {
        "completed": lambda: source,
        "release": lambda: assignment.release(source),
        "no_cell_init": lambda: broken("                    cell_init=l_image_features_small,\n", ""),
        "no_mask": lambda: broken("return (loss * output_mask).sum() / output_mask.sum()", "return loss.mean()"),
        "start_bug": lambda: broken('caption_prefix=("#START#",)', 'caption_prefix=("START",)'),
    }
    reports = {}

    def report(name):
        if name not in reports:
            path = write(makers[name](), base / ("%s.ipynb" % name))[0]
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("CAPTION_CACHE_DIR", str(base / "code-cache"))
                reports[name] = grade.grade_one(path, str(base / "out" / name), ref, data)
        return reports[name]

    report.ref = ref
    return report


def failed(report):
    return {t["id"] for t in report["tests"] if t["points"] < t["max_points"]}


@pytest.mark.slow
def test_completed_notebook_scores_full_marks(seminar):
    report = seminar("completed")
    assert report["score"] == report["max_score"] == sum(seminar.ref.points(g) for g in seminar.ref.ids("test"))
    assert report["max_score"] == 16 and report["problems"] == [] and report["run"]["finished"]
    assert [a["status"] for a in report["manual"]["answers"]] == ["to grade by hand"] * 6
    assert report["manual"]["answers"][0]["answer"].startswith("**Ответ.**")


@pytest.mark.slow
def test_release_scores_zero_with_a_useful_message(seminar):
    report = seminar("release")
    assert report["score"] == 0 and len(report["tests"]) == 9
    for test in report["tests"]:
        assert test["status"] == "failed"
        assert "a `# YOUR CODE HERE` gap is not filled in yet" in test["message"], test
    assert by_test(report)["test_cell_init"]["message"].startswith(
        "NameError: name 'decoder' is not defined; cell ")
    assert "('decoder'), which defines it, failed with NotImplementedError" in by_test(report)["test_cell_init"][
        "message"]
    assert [a["status"] for a in report["manual"]["answers"]] == ["unanswered"] * 6


@pytest.mark.slow
@pytest.mark.parametrize("name, concerned", [
    ("no_cell_init", {"test_cell_init"}),
    ("no_mask", {"test_mask", "test_loss"}),
    ("start_bug", {"test_generation"}),
])
def test_broken_submission_loses_exactly_its_tests(seminar, name, concerned):
    report = seminar(name)
    assert failed(report) == concerned, [(t["id"], t["message"]) for t in report["tests"] if t["message"]]
    assert report["score"] == report["max_score"] - sum(seminar.ref.points(g) for g in concerned)
    for test in report["tests"]:
        if test["id"] in concerned:
            assert test["status"] == "failed" and test["message"].startswith("AssertionError: ")
