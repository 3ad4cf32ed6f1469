"""The student edition (``captioning.notebook.assignment``): the gaps, the
empty answers, the tests it shows, and no solution line in it.

No kernel, no Theano: the release is built from the committed notebook with
nbgrader's preprocessors and read as JSON.
"""
import json
import re

import nbformat
import pytest

from captioning.notebook import assignment

# Where the seed (the 2016 seminar) said <TO CODE IT BY YOURSELF>, by the
# solution cell's grade_id, and the names its placeholders stand for
# (`word_counts = <dict>`, `<Embedding Layer>`, `<Apply Dropout ...>` /
# `<Apply Dense ...>`, `LSTMLayer(<Hmmm>, cell_init=<>, mask_input=<>,
# grad_clipping=<>)`, `loss = <mean over non-PAD tokens>`, `weights = <>`,
# `updates = <>`, `train_step = <>`, `val_step = <>`), plus generation
# (the list: start token and temperature).
GAPS = {
    "vocabulary": ["word_counts"],
    "embedding": ["l_word_embeddings"],
    "image_branch": ["l_image_features_small"],
    "decoder": ["decoder"],
    "loss": [],                      # masked_loss keeps its def line: its return is the gap
    "updates": ["weights", "updates"],
    "train_val_step": ["train_step", "val_step"],
    "generation": [],                # apply_temperature and generate_caption keep their def lines
}
# What the issue asks the autograder to check.
TESTS = {"test_vocabulary", "test_graph_shapes", "test_cell_init", "test_mask", "test_loss",
         "test_train_step", "test_val_step", "test_generation", "test_temperature"}
STUB = "# YOUR CODE HERE\nraise NotImplementedError()"


@pytest.fixture(scope="module")
def source():
    return assignment.read_source()


@pytest.fixture(scope="module")
def release(source):
    return assignment.release(source)


def nbgrader(cell):
    return cell.metadata.get("nbgrader", {})


def by_id(nb):
    return {nbgrader(c)["grade_id"]: c for c in nb.cells if "grade_id" in nbgrader(c)}


def assigns(source, name):
    return re.search(r"^\s*(%s\s*=[^=]|def %s\b)" % (re.escape(name), re.escape(name)), source, re.M)


def test_gaps_are_the_seeds_places(source, release):
    solutions = {g for g, c in by_id(source).items() if nbgrader(c).get("solution") and not nbgrader(c).get("grade")}
    assert solutions == set(GAPS)
    released = by_id(release)
    for gid, names in GAPS.items():
        cell = released[gid]
        assert re.sub(r"^\s+", "", cell.source, flags=re.M).count(STUB) >= 1, gid
        for name in names:
            assert assigns(by_id(source)[gid].source, name), (gid, name)
            assert not assigns(cell.source, name), "%s still defines %s in the release" % (gid, name)
    loss = released["loss"].source
    assert "def masked_loss(probas):" in loss and "output_mask).sum()" not in loss
    generation = released["generation"].source
    assert "np.random.choice" not in generation and "np.log(probs)" not in generation
    assert generation.count("raise NotImplementedError()") == 2   # apply_temperature, generate_caption


def test_six_questions_have_empty_answer_cells(source, release):
    released = by_id(release)
    answers = [g for g, c in by_id(source).items() if nbgrader(c).get("solution") and nbgrader(c).get("grade")]
    assert answers == ["answer_q%d" % n for n in range(1, 7)]
    for n in range(1, 7):
        question = released["question_%d" % n]
        assert question.source.startswith("**Вопрос %d**" % n) and "Ответ" not in question.source
        assert nbgrader(question)["locked"] and question.metadata["editable"] is False
        answer = released["answer_q%d" % n]
        assert answer.cell_type == "markdown" and answer.source == "YOUR ANSWER HERE"
        assert nbgrader(answer)["points"] > 0
    # the completed notebook keeps its answers
    assert all(by_id(source)[a].source.startswith("**Ответ.**") for a in answers)


def test_release_keeps_the_visible_tests_and_drops_hidden_ones(source, release):
    original, released = by_id(source), by_id(release)
    tests = {g for g, c in original.items() if nbgrader(c).get("grade") and not nbgrader(c).get("solution")}
    assert tests == TESTS
    for gid in tests:
        theirs = original[gid].source
        assert "### BEGIN HIDDEN TESTS" in theirs, "%s has no hidden part" % gid
        assert released[gid].source == hidden_removed(theirs)
        assert nbgrader(released[gid])["points"] == nbgrader(original[gid])["points"] > 0
        assert released[gid].metadata["editable"] is False
    visible = {line for gid in tests for line in hidden_removed(original[gid].source).split("\n")}
    shown = release_lines(release)
    hidden = {line.strip() for line in assignment.hidden_test_lines(source) if line.strip()}
    hidden -= {line.strip() for line in visible}
    assert len(hidden) > 20
    assert sorted(hidden & shown) == []


def hidden_removed(text):
    return re.sub(r"\n?### BEGIN HIDDEN TESTS\n.*?### END HIDDEN TESTS", "", text, flags=re.S)


def release_lines(nb):
    """Every line a student sees, stripped: sources and outputs."""
    lines = set()
    for cell in nb.cells:
        lines |= {line.strip() for line in cell.source.split("\n")}
        for out in cell.get("outputs", []):
            lines |= {line.strip() for line in json.dumps(out, ensure_ascii=False, indent=0).split("\n")}
    return lines


def leaked(source, nb):
    """The solution lines (stripped, non-empty) that are lines of ``nb`` (its
    sources or outputs) and that the source does not also give outside its
    solutions."""
    solution = {line.strip() for line in assignment.solution_lines(source) if line.strip()}
    given = set()
    for cell in source.cells:
        text = cell.source
        if nbgrader(cell).get("solution"):
            if "BEGIN SOLUTION" not in text:
                continue
            text = re.sub(r"### BEGIN SOLUTION\n.*?### END SOLUTION", "", text, flags=re.S)
        given |= {line.strip() for line in text.split("\n")}
    return sorted((solution - given) & release_lines(nb))


def test_no_solution_line_leaks(source, release):
    assert leaked(source, release) == []
    assert all(not c.get("outputs") and c.get("execution_count") is None
               for c in release.cells if c.cell_type == "code")


def test_leak_search_finds_solutions_left_in(source):
    """The search is not vacuous: a release that keeps the solutions leaks
    every code and answer line that is not given elsewhere."""
    kept = assignment.release(source, keep_solutions=True)
    found = leaked(source, kept)
    assert "l_word_embeddings = EmbeddingLayer(l_words, input_size=n_tokens, output_size=EMBED_SIZE)" in found
    assert "return (loss * output_mask).sum() / output_mask.sum()" in found
    assert any(line.startswith("**Ответ.**") for line in found)


def test_cli_writes_the_release(tmp_path, capsys):
    out = tmp_path / "release" / "seminar.ipynb"
    assert assignment.main([assignment.SOURCE, str(out)]) == 0
    assert "9 autograded tests (16 points)" in capsys.readouterr().out
    assert by_id(nbformat.read(str(out), as_version=4))["answer_q1"].source == "YOUR ANSWER HERE"


def test_cli_bad_source_is_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "broken.ipynb"
    bad.write_text("{not json")
    assert assignment.main([str(bad), str(tmp_path / "out.ipynb")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("assignment: error: cannot read the source notebook") and err.count("\n") == 1
    assert not (tmp_path / "out.ipynb").exists()
