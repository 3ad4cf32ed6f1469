"""Grade handed-in seminar notebooks: ``make grade SUBMISSION=path.ipynb``.

    python -m captioning.notebook.grade SUBMISSION [--out DIR] [--data DIR]
           [--cell-timeout S] [--timeout S] [--epochs N] [--batches N]

SUBMISSION is one notebook or a folder (every ``*.ipynb`` below it). For
each one, in ``OUT/<name>/``: ``submitted.ipynb`` (a byte copy: the
student's file itself is only read), ``graded.ipynb`` (the copy as run),
``report.json`` and ``feedback.txt``. The last line printed is one JSON
object: ``score`` and ``max_score`` (autograded points), the points of the
answers still to be graded by hand, and where the report is.

Grading follows nbgrader's ``autograde``, without its database: the
instructor's notebook (``captioning.notebook.assignment.SOURCE``) says
which cells are tests, answers and read-only cells. Test cells and
read-only cells are put back as the instructor wrote them (with the hidden
tests); one the student edited (its checksum, computed as
``nbgrader.utils.compute_checksum`` does, differs from the release's) or
deleted gets a line in the report. The copy runs in a fresh kernel with the
short-training settings and time limits (``captioning.notebook.execute``:
an endless loop is interrupted, a kernel that will not stop is killed); a
cell that raises does not stop the run. A test cell earns its points when
it ran without an error (warnings on stderr cost nothing, unlike in
nbgrader). The checking questions' answers are collected for grading by
hand. A file that is not a notebook gets a report and zero, not a crash.

Two leniencies, so that one mistake costs only its own points: the kernel
runs Theano with ``on_unused_input=warn`` (a graph that ignores the image
still compiles its train and val steps), and the tests use fake networks
where they can (generation, temperature).
"""
import argparse
import datetime
import json
import os
import re
import shutil
import sys
import tempfile
import time

from captioning.errors import UsageError
from captioning.notebook import assignment

REPO = assignment.REPO
OUT = os.path.join(REPO, "runs", "grading")
GRADING_DATA = os.path.join(REPO, "runs", "grading-data")
# The notebook shows captions[1337]: the grading data needs more images than that.
GRADING_IMAGES = 1400
CELL_TIMEOUT = 300          # seconds per cell (the first train_step compile is the slowest)
TIMEOUT = 900               # seconds for the whole run
EPOCHS, BATCHES = 1, 5      # short training: the tests do not depend on it
MESSAGE_CHARS = 400         # an error message longer than this is cut in the report


# ------------------------------------------------------------------ the instructor's notebook

class Reference:
    """What the instructor's notebook says about its graded and read-only cells."""

    def __init__(self, source_nb):
        import nbformat
        from nbgrader.utils import compute_checksum
        released = assignment.release(source_nb)
        self.kernelspec = source_nb.metadata.get("kernelspec")
        self.cells = {}                     # grade_id -> instructor's cell (with hidden tests)
        self.release_checksums = {}         # grade_id -> checksums of the unedited cell
        for cell, release_cell in zip(source_nb.cells, released.cells):
            nbg = cell.metadata.get("nbgrader", {})
            if not (nbg.get("grade") or nbg.get("solution") or nbg.get("locked")):
                continue
            self.cells[nbg["grade_id"]] = cell
            source_copy = nbformat.from_dict(cell)
            source_copy.metadata.nbgrader = dict(release_cell.metadata.nbgrader)
            self.release_checksums[nbg["grade_id"]] = {release_cell.metadata.nbgrader["checksum"],
                                                       compute_checksum(source_copy)}
        self.order = list(self.cells)

    def kind(self, grade_id):
        nbg = self.cells[grade_id].metadata.nbgrader
        if nbg.get("grade") and nbg.get("solution"):
            return "answer"
        if nbg.get("grade"):
            return "test"
        return "solution" if nbg.get("solution") else "read-only"

    def ids(self, kind):
        return [g for g in self.order if self.kind(g) == kind]

    def points(self, grade_id):
        return float(self.cells[grade_id].metadata.nbgrader.get("points", 0))

    def title(self, grade_id):
        """A test cell's first comment line, without the points it repeats."""
        first = self.cells[grade_id].source.split("\n", 1)[0].lstrip("# ").strip()
        if first.lower().startswith("test:"):
            first = first[5:].strip()
        return first.rsplit(" (", 1)[0] if first.endswith("points)") or first.endswith("point)") else first


def _grade_id(cell):
    nbg = cell.metadata.get("nbgrader")
    if not isinstance(nbg, dict):
        return None
    gid = nbg.get("grade_id")
    return gid if isinstance(gid, str) else None


def prepare(submission_nb, ref):
    """The notebook to run (nbgrader's autograde sanitising), and what was found on the way.

    Returns ``(nb, notes)``; ``notes`` maps each graded or read-only cell's
    grade_id to ``'edited'`` or ``'missing'`` (others are as released).
    """
    import nbformat
    from nbgrader.preprocessors import DeduplicateIds
    from nbgrader.utils import compute_checksum
    nb = nbformat.from_dict(submission_nb)
    for cell in nb.cells:     # metadata a student edited into something that is not nbgrader's
        if "nbgrader" in cell.metadata and _grade_id(cell) is None:
            del cell.metadata["nbgrader"]
    nb, _ = DeduplicateIds().preprocess(nb, {})
    notes = {}
    present = set()
    for cell in nb.cells:
        gid = _grade_id(cell)
        if gid is None:
            continue
        if gid not in ref.cells:          # not the instructor's: run as plain code
            del cell.metadata["nbgrader"]
            continue
        present.add(gid)
        theirs = ref.cells[gid]
        kind = ref.kind(gid)
        if cell.cell_type != theirs.cell_type:
            notes[gid] = "edited"
        cell.cell_type = theirs.cell_type
        cell.metadata.nbgrader = {k: v for k, v in theirs.metadata.nbgrader.items()}
        if cell.cell_type == "code":
            cell.setdefault("outputs", [])
            cell.setdefault("execution_count", None)
        else:
            cell.pop("outputs", None)
            cell.pop("execution_count", None)
        if kind in ("test", "read-only"):
            if compute_checksum(cell) not in ref.release_checksums[gid]:
                notes[gid] = "edited"
            cell.source = theirs.source       # nbgrader's "overwrite cells"
    for gid in ref.order:
        if gid not in present and ref.kind(gid) != "solution":
            notes[gid] = "missing"
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            cell.metadata.pop("execution", None)
    if ref.kernelspec:
        nb.metadata["kernelspec"] = ref.kernelspec
    return nb, notes


# ------------------------------------------------------------------ running

def kernel_env(data_dir, run_dir, epochs, batches):
    """The kernel's environment: the short-training settings, this checkout
    first on the path, Theano lenient about unused inputs."""
    from captioning.datasets.formats import has_dataset
    env = dict(os.environ)
    env.update(CAPTION_DATA=has_dataset(data_dir) or "auto", CAPTION_EPOCHS=str(epochs),
               CAPTION_BATCHES_PER_EPOCH=str(batches), CAPTION_RUN_DIR=run_dir)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
    env["THEANO_FLAGS"] = ",".join(filter(None, [env.get("THEANO_FLAGS"), "on_unused_input=warn"]))
    return env


# ------------------------------------------------------------------ the report

def _first_lines(text, limit=MESSAGE_CHARS):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _error(cell):
    for out in cell.get("outputs", []):
        if out.output_type == "error":
            return "%s: %s" % (out.ename, _first_lines(out.evalue)) if out.evalue else out.ename
    return None


def _where(nb, index):
    """``cell 12 ('decoder')`` for an nbgrader cell, else ``cell 12 (`its first line`)``."""
    gid = _grade_id(nb.cells[index])
    if gid:
        return "cell %d ('%s')" % (index + 1, gid)
    first = next((l.strip() for l in nb.cells[index].source.split("\n")
                  if l.strip() and not l.startswith("%")), "")
    return "cell %d (`%s`)" % (index + 1, _first_lines(first, 60))


def collect(nb, ref, notes, client, stopped):
    """The report's ``tests``, ``manual`` and ``problems`` from the run notebook."""
    index_of = {}
    for i, cell in enumerate(nb.cells):
        gid = _grade_id(cell)
        if gid is not None:
            index_of.setdefault(gid, i)
    errors = [(i, _error(c)) for i, c in enumerate(nb.cells) if c.cell_type == "code" and _error(c)]
    tests_at = _test_indices(nb, ref)

    tests = []
    for gid in ref.ids("test"):
        test = {"id": gid, "title": ref.title(gid), "max_points": ref.points(gid), "points": 0.0}
        i = index_of.get(gid)
        if notes.get(gid) == "missing":
            test.update(status="missing", message="the test cell was deleted from the submission")
        elif client is None:
            test.update(status="not run", message=stopped)
        elif i in client.timed_out:
            test.update(status="timed out", message="did not finish within its time limit: stopped")
        elif _error(nb.cells[i]):
            test.update(status="failed", message=_explain(nb, ref, i, _error(nb.cells[i]), dict(errors)))
        elif nb.cells[i].get("execution_count") is None:    # only a cell that ran can pass
            test.update(status="not run", message=stopped or "not run: the time limit for the whole run was reached")
        else:
            test.update(status="passed", points=ref.points(gid), message="")
        if notes.get(gid) == "edited":
            test["message"] = ("the test cell was edited; the instructor's version was run. "
                               + test["message"]).strip()
        tests.append(test)

    answers = []
    for gid in ref.ids("answer"):
        i = index_of.get(gid)
        question = _question_before(ref, gid)
        entry = {"id": gid, "question": question, "max_points": ref.points(gid), "points": None}
        if i is None:
            entry.update(status="missing", answer="", points=0.0)
        else:
            text = nb.cells[i].source.strip()
            unanswered = not text or text == "YOUR ANSWER HERE"
            entry.update(status="unanswered" if unanswered else "to grade by hand", answer=text)
            if unanswered:
                entry["points"] = 0.0
        answers.append(entry)

    problems = []
    for gid in ref.order:
        kind = ref.kind(gid)
        if notes.get(gid) == "edited" and kind != "test":
            problems.append("the read-only cell '%s' was edited; the instructor's version was run" % gid)
        elif notes.get(gid) == "missing" and kind == "read-only":
            problems.append("the read-only cell '%s' was deleted" % gid)
    for i, message in errors:
        if i not in tests_at:
            problems.append("%s raised %s" % (_where(nb, i), message))
    if stopped:
        problems.append(stopped)
    elif client is not None and client.not_run:
        problems.append("the whole run's time limit (%d s) was reached: %d cells were not run"
                        % (client.timeout_total, len(client.not_run)))
    return tests, answers, problems


GAP = "NotImplementedError"


def _defined_in(nb, ref, name, before):
    """The last cell before ``before`` whose top-level code assigns, defines
    or imports ``name``, in the student's version or (a solution cell) in
    the instructor's, whose lines the student may not have written yet."""
    word = r"\b%s\b" % re.escape(name)
    pattern = re.compile(r"^(?:[\w, ]*%s[\w, ]*=[^=]|(?:def|class) %s|(?:from \S+ )?import .*%s)" % (word, word, word),
                         re.M)
    for j in range(before - 1, -1, -1):
        cell = nb.cells[j]
        theirs = ref.cells.get(_grade_id(cell))
        if cell.cell_type == "code" and any(pattern.search(c.source) for c in filter(None, [cell, theirs])):
            return j
    return None


def _explain(nb, ref, index, message, errors):
    """A test's error, and why: the cell that should define a missing name
    failed (followed back to the first cause), or a gap is not filled in.
    ``errors``: cell index -> its error."""
    original, chain = message, []
    while message.startswith("NameError"):
        found = re.search(r"name '(\w+)' is not defined", message)
        j = _defined_in(nb, ref, found.group(1), index) if found else None
        if j is None or j not in errors:
            break
        chain.append(j)
        index, message = j, errors[j]
    if chain:
        original += "; %s, which defines it, failed" % _where(nb, chain[0])
        original += (" with %s" % message if len(chain) == 1
                     else "; first cause: %s raised %s" % (_where(nb, chain[-1]), message))
    if message.startswith(GAP):
        original += " (a `# YOUR CODE HERE` gap is not filled in yet)"
    return original


def _test_indices(nb, ref):
    tests = set(ref.ids("test"))
    return {i for i, c in enumerate(nb.cells) if _grade_id(c) in tests}


def _question_before(ref, answer_id):
    """The read-only question cell just before an answer in the instructor's notebook."""
    at = ref.order.index(answer_id)
    if at and ref.kind(ref.order[at - 1]) == "read-only":
        return ref.cells[ref.order[at - 1]].source.strip()
    return ""


def feedback(report):
    """The report as text for the student."""
    lines = ["Grade of %s: %g / %g points from the autograded tests."
             % (report["submission"], report["score"], report["max_score"])]
    manual = report["manual"]
    if manual["answers"]:
        lines.append("The checking questions (%g points) are graded by hand." % manual["max_score"])
    lines += ["", "Autograded tests:"]
    for test in report["tests"]:
        lines.append("  [%g/%g] %s: %s" % (test["points"], test["max_points"], test["title"], test["status"]))
        if test["message"]:
            lines.append("        " + test["message"])
    if manual["answers"]:
        lines += ["", "Checking questions (graded by hand):"]
        for answer in manual["answers"]:
            lines.append("  %s (%g point%s): %s" % (answer["id"], answer["max_points"],
                                                    "" if answer["max_points"] == 1 else "s", answer["status"]))
    if report["problems"]:
        lines += ["", "Problems found:"] + ["  - " + p for p in report["problems"]]
    run = report["run"]
    lines += ["", "The run: %s s (limits: %d s per cell, %d s in all); data: %s; %s epoch(s) of %s batches."
              % (run["seconds"], run["cell_timeout"], run["timeout"], run["data"], run["epochs"], run["batches"])]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ one submission

def grade_one(path, out_dir, ref, data_dir, cell_timeout=CELL_TIMEOUT, timeout=TIMEOUT,
              epochs=EPOCHS, batches=BATCHES):
    """Grade the notebook at ``path``; writes ``out_dir/{submitted,graded}.ipynb``,
    ``report.json``, ``feedback.txt`` and returns the report (a dict)."""
    import nbformat
    from captioning.notebook.execute import LimitedClient
    os.makedirs(out_dir, exist_ok=True)
    copy = os.path.join(out_dir, "submitted.ipynb")
    if not (os.path.exists(copy) and os.path.samefile(path, copy)):
        shutil.copyfile(path, copy)
    started = time.monotonic()
    client, stopped, nb, notes = None, None, None, {}
    try:
        with open(copy, encoding="utf-8") as f:
            submitted = nbformat.read(f, as_version=4)
        nbformat.validate(submitted)
    except Exception as error:  # not JSON, not a notebook, not UTF-8: a zero, with the reason
        stopped = "not run: the file is not a readable notebook (%s: %s)" % (
            type(error).__name__, _first_lines(error, 200))
        nb = nbformat.v4.new_notebook()
    if nb is None:
        nb, notes = prepare(submitted, ref)
        work = tempfile.mkdtemp(prefix="work-", dir=out_dir)
        try:
            os.symlink(os.path.abspath(data_dir), os.path.join(work, "data"))
            client = LimitedClient(nb, cell_timeout, timeout, kernel_name="python3",
                                   resources={"metadata": {"path": work}})
            stopped = client.run(cwd=work, env=kernel_env(data_dir, os.path.join(work, "run"), epochs, batches))
        except Exception as error:  # the kernel did not start, ...: the report says so, the cells not run get 0
            stopped = "the run stopped: %s: %s" % (type(error).__name__, _first_lines(error, 200))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        nbformat.write(nb, os.path.join(out_dir, "graded.ipynb"))
    tests, answers, problems = collect(nb, ref, notes, client, stopped)
    report = {
        "submission": path,
        "graded_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "score": sum(t["points"] for t in tests),
        "max_score": sum(t["max_points"] for t in tests),
        "tests": tests,
        "manual": {"max_score": sum(a["max_points"] for a in answers), "answers": answers},
        "problems": problems,
        "run": {"seconds": round(time.monotonic() - started), "cell_timeout": cell_timeout, "timeout": timeout,
                "data": os.path.abspath(data_dir), "epochs": epochs, "batches": batches,
                "finished": client is not None and not stopped and not client.not_run},
    }
    with open(os.path.join(out_dir, "report.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, ensure_ascii=False, indent=1)
    with open(os.path.join(out_dir, "feedback.txt"), "w", encoding="utf-8") as f:
        f.write(feedback(report))
    return report


def summary_line(report, out_dir):
    return {"submission": report["submission"], "score": report["score"], "max_score": report["max_score"],
            "manual_max_score": report["manual"]["max_score"], "report": os.path.join(out_dir, "report.json")}


# ------------------------------------------------------------------ data and the command

def ensure_grading_data(data_dir):
    """``data_dir`` if it holds a data set, else the generated picture world built there once."""
    from captioning.datasets.formats import has_dataset
    if has_dataset(data_dir):
        return data_dir
    if os.path.exists(data_dir) and os.listdir(data_dir):
        raise UsageError("%s is neither a data set nor empty: pass --data DIR with a data set "
                         "(e.g. one `caption data ...` made)" % data_dir)
    from captioning.datasets.synthetic import build_synthetic
    print("building the grading data once: %d generated pictures in %s (a few minutes)"
          % (GRADING_IMAGES, data_dir), flush=True)
    build_synthetic(data_dir, n=GRADING_IMAGES, seed=0)
    return data_dir


def submissions(path, out):
    """The notebooks to grade: ``path`` itself, or every ``*.ipynb`` below the folder."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise UsageError("no such file or folder: %s" % path)
    found = []
    skip = os.path.abspath(out)
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d != ".ipynb_checkpoints"
                         and os.path.abspath(os.path.join(root, d)) != skip)
        found += [os.path.join(root, f) for f in sorted(files) if f.endswith(".ipynb")]
    if not found:
        raise UsageError("no .ipynb files in %s" % path)
    return found


def out_name(path, base):
    """``OUT/<name>``: the submission's path below the folder, flattened."""
    rel = os.path.relpath(path, base) if base else os.path.basename(path)
    return rel[:-len(".ipynb")].replace(os.sep, "__") if rel.endswith(".ipynb") else rel.replace(os.sep, "__")


def add_arguments(parser):
    """The grader's options (``python -m captioning.notebook.grade`` and ``caption grade``)."""
    parser.add_argument("submission", help="a notebook, or a folder of them")
    parser.add_argument("--source", default=assignment.SOURCE, help="the instructor's notebook (default: %(default)s)")
    parser.add_argument("--out", default=OUT, help="reports go to OUT/<name>/ (default: %(default)s)")
    parser.add_argument("--data", default=GRADING_DATA,
                        help="the data the notebooks run on (default: %(default)s, the generated pictures, "
                             "built there on first use)")
    parser.add_argument("--cell-timeout", type=int, default=CELL_TIMEOUT, help="seconds per cell (%(default)s)")
    parser.add_argument("--timeout", type=int, default=TIMEOUT, help="seconds for a whole notebook (%(default)s)")
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="training epochs (%(default)s)")
    parser.add_argument("--batches", type=int, default=BATCHES, help="batches per epoch (%(default)s)")


def run(args):
    """Grade ``args.submission``; prints each feedback, then one JSON line.
    Bad input (no such file, a bad option, no data) raises UsageError."""
    if args.cell_timeout < 1 or args.timeout < 1 or args.epochs < 0 or args.batches < 1:
        raise UsageError("--cell-timeout, --timeout and --batches must be >= 1, --epochs >= 0")
    paths = submissions(args.submission, args.out)
    ref = Reference(assignment.read_source(args.source))
    data_dir = ensure_grading_data(args.data)
    base = args.submission if os.path.isdir(args.submission) else None
    lines = []
    for path in paths:
        out_dir = os.path.join(args.out, out_name(path, base))
        print("grading %s ..." % path, flush=True)
        report = grade_one(path, out_dir, ref, data_dir, args.cell_timeout, args.timeout, args.epochs, args.batches)
        sys.stdout.write(feedback(report))
        lines.append(summary_line(report, out_dir))
        if len(paths) > 1:
            print(json.dumps(lines[-1], ensure_ascii=False), flush=True)
    if len(paths) == 1:
        print(json.dumps(lines[0], ensure_ascii=False))
    else:
        print(json.dumps({"graded": len(lines), "max_score": lines[0]["max_score"],
                          "scores": {line["submission"]: line["score"] for line in lines},
                          "out": args.out}, ensure_ascii=False))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except UsageError as error:
        print("grade: error: %s" % error, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
