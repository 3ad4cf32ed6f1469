"""The student edition of the seminar, built from the completed notebook.

    python -m captioning.notebook.assignment [SOURCE] [OUT]      (make assignment)

The completed notebook is the single source. It is marked the nbgrader way:
``### BEGIN SOLUTION`` / ``### END SOLUTION`` around the code students write
(cells with ``nbgrader.solution``), the checking questions' answers as
solution cells graded by hand, autograded test cells (``nbgrader.grade``,
``points``) whose ``### BEGIN HIDDEN TESTS`` / ``### END HIDDEN TESTS``
parts only the grader runs, and read-only cells (``nbgrader.locked``).

The release is made by nbgrader's own preprocessors, in the order of
``nbgrader generate_assignment`` (without its database): solutions become
``# YOUR CODE HERE`` / ``raise NotImplementedError()`` (answers: ``YOUR
ANSWER HERE``), outputs go, hidden tests go, and each graded or read-only
cell gets the checksum that ``captioning.notebook.grade`` compares to find
edited test cells.
"""
import argparse
import copy
import os
import sys

from captioning.errors import UsageError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCE = os.path.join(REPO, "notebooks", "image_captioning_seminar.ipynb")
RELEASE = os.path.join(REPO, "release", "image_captioning_seminar.ipynb")

BEGIN_SOLUTION, END_SOLUTION = "BEGIN SOLUTION", "END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"


def _first_line(text):
    lines = str(text).strip().splitlines()
    return lines[0] if lines else type(text).__name__


def read_source(path=SOURCE):
    """The instructor's notebook, its nbgrader metadata checked (UsageError if bad)."""
    import nbformat
    from nbgrader.nbgraderformat import MetadataValidator
    try:
        nb = nbformat.read(path, as_version=4)
        MetadataValidator().validate_nb(nb)
    except Exception as error:   # nbformat and nbgrader raise all sorts on a bad file
        raise UsageError("cannot read the source notebook %s: %s" % (path, _first_line(error))) from None
    return nb


def release(source_nb, keep_solutions=False):
    """The student edition of ``source_nb`` (a new notebook; the source is not changed).

    ``keep_solutions=True`` keeps the solutions (everything else as in the
    release): a fully filled-in student copy, for testing the grader.
    """
    from nbgrader import preprocessors as pp
    nb = copy.deepcopy(source_nb)
    resources = {}
    steps = [pp.LockCells(), pp.ClearOutput(), pp.CheckCellMetadata(), pp.ClearHiddenTests(),
             pp.ClearMarkScheme(), pp.ComputeChecksums(), pp.CheckCellMetadata()]
    if not keep_solutions:
        steps.insert(1, pp.ClearSolutions())
    for step in steps:
        nb, resources = step.preprocess(nb, resources)
    for cell in nb.cells:   # the instructor's run: timings are not the students' business
        cell.metadata.pop("execution", None)
    return nb


def _regions(source, begin, end):
    """The lines strictly inside ``begin`` ... ``end`` marker lines."""
    inside, found = False, []
    for line in source.split("\n"):
        if begin in line:
            inside = True
        elif end in line:
            inside = False
        elif inside:
            found.append(line)
    return found


def solution_lines(source_nb):
    """Every line the students must write: solution regions, and whole
    solution cells without regions (the checking questions' answers)."""
    lines = []
    for cell in source_nb.cells:
        nbg = cell.metadata.get("nbgrader", {})
        if not nbg.get("solution"):
            continue
        inside = _regions(cell.source, BEGIN_SOLUTION, END_SOLUTION)
        lines += inside if BEGIN_SOLUTION in cell.source else cell.source.split("\n")
    return lines


def hidden_test_lines(source_nb):
    """Every line of every hidden test region."""
    return [line for cell in source_nb.cells
            for line in _regions(cell.source, BEGIN_HIDDEN, END_HIDDEN)]


def build(source=SOURCE, out=RELEASE):
    """Write the release of ``source`` to ``out``; returns the notebook."""
    import nbformat
    nb = release(read_source(source))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    if os.path.exists(out) and os.path.samefile(out, source):
        raise UsageError("the release would overwrite its source %s" % source)
    nbformat.write(nb, out)
    return nb


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", default=SOURCE, help="the completed notebook (default: %(default)s)")
    parser.add_argument("out", nargs="?", default=RELEASE, help="the student edition (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        nb = build(args.source, args.out)
    except UsageError as error:
        print("assignment: error: %s" % error, file=sys.stderr)
        return 2
    cells = [c.metadata.get("nbgrader", {}) for c in nb.cells]
    tests = [m for m in cells if m.get("grade") and not m.get("solution")]
    answers = [m for m in cells if m.get("grade") and m.get("solution")]
    gaps = [m for m in cells if m.get("solution") and not m.get("grade")]
    print("wrote %s: %d code cells with gaps, %d autograded tests (%g points), %d answers graded by hand "
          "(%g points)" % (args.out, len(gaps), len(tests), sum(m["points"] for m in tests), len(answers),
                           sum(m["points"] for m in answers)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
