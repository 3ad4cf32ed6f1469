"""``caption grade``: grade handed-in seminar notebooks (see
:mod:`captioning.notebook.grade`; the same as ``make grade``)."""

__all__ = ["register"]


def register(subparsers):
    from captioning.notebook import grade
    p = subparsers.add_parser(
        "grade", help="grade handed-in seminar notebooks",
        description="Run each submission in a fresh kernel with short training and time limits; write "
                    "report.json and feedback.txt per submission; the last line printed is one JSON object.")
    grade.add_arguments(p)
    p.set_defaults(func=grade.run)
