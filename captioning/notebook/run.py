"""Execute a notebook headless: `make demo` and `make notebook` use this.

    python -m captioning.notebook.run NOTEBOOK OUT.ipynb [--scrub-dataset-outputs]

Environment variables (CAPTION_*) are passed to the kernel, so they select
the data and the training length (see the notebook's parameters cell).

While it runs it prints each markdown heading it reaches
(``[cell 11/51, 40 s] ### Data preprocessing``) and the kernel's stdout and
stderr as they arrive (the training bar and losses); at the end, a summary:
the last ``Epoch: N, train loss: X, val loss: Y`` line, the captions the
first untagged cell printed as ``name:`` + indented lines, and the PNG files
written in ``$CAPTION_RUN_DIR`` during the run. A cell that raises stops the
run with one line naming the cell and the error (exit code 1); OUT is then
not written, so a committed copy is never replaced by a broken one.

``--scrub-dataset-outputs`` (for the committed copy) empties the outputs of
cells tagged ``shows-dataset`` (they display photos or human captions of the
data set, which may not be redistributed with the project), leaving a note,
and drops progress-bar redraws. Those cells' outputs are then not echoed
either. The echo never changes what is saved.
"""
import argparse
import glob
import os
import re
import sys
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from captioning.errors import UsageError

SCRUB_TAG = "shows-dataset"
SCRUB_NOTE = ("[output removed from the committed copy: it shows photos or captions "
              "of the data set, which are not redistributed with this project. "
              "Run the notebook to see it.]")

# what the notebook's training cell prints once per epoch
EPOCH_LINE = re.compile(r"Epoch: (\d+), train loss: (\S+), val loss: (\S+)")
# what show_captioned prints per photo: "name:" then one indented line per caption
CAPTIONED = re.compile(r"^(\S[^\n]*):\n((?:  [^\n]*(?:\n|$))+)", re.M)
SUMMARY_PHOTOS = 3

_MD_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*$", re.M)
_HTML_HEADING = re.compile(r"<h([1-6])[^>]*>(.*?)</h\1>", re.I | re.S)


class RunError(Exception):
    """A cell failed or the run was stopped; the message is one line."""


def heading(markdown):
    """The first heading of a markdown cell as ``'## text'``, or None.

    Markdown ``#`` headings and HTML ``<h1>``..``<h6>`` both count (the
    seminar's title cells are HTML).
    """
    found = [(m.start(), m.group(1), m.group(2)) for m in _MD_HEADING.finditer(markdown)]
    found += [(m.start(), "#" * int(m.group(1)), m.group(2))
              for m in _HTML_HEADING.finditer(markdown)]
    if not found:
        return None
    _, hashes, text = min(found)
    return "%s %s" % (hashes, " ".join(re.sub(r"<[^>]+>", "", text).split()))


class ProgressClient(NotebookClient):
    """A NotebookClient that echoes headings and the kernel's streams live.

    nbclient records outputs only into the notebook; ``output`` is the one
    place every kernel output passes through, so the echo hooks in there
    (after nbclient has recorded it, unchanged).
    """

    def __init__(self, nb, hide_tag=None, **kw):
        super().__init__(nb, on_cell_start=self._cell_start, **kw)
        self.hide_tag = hide_tag        # cells whose outputs are not echoed
        self.started = time.time()
        self.cell_index = None
        self.section = None
        self._line_open = None          # the stream that left the cursor mid-line

    def where(self):
        """``cell 12/51 (## Data preprocessing)``: the cell running now."""
        if self.cell_index is None:
            return "before the first cell"
        text = "cell %d/%d" % (self.cell_index + 1, len(self.nb.cells))
        return text + (" (%s)" % self.section if self.section else "")

    def say(self, text):
        """A line of the runner's own, on a line of its own."""
        self.end_line()
        self._write(sys.stdout, text + "\n")

    def end_line(self):
        """Finish a line the kernel left open (a print without newline, a bar)."""
        if self._line_open:
            self._write(self._line_open, "\n")

    def _write(self, stream, text):
        # the kernel flushes stdout and stderr separately: a line that one
        # left open (a progress bar) is ended before the other writes
        if self._line_open and stream is not self._line_open:
            self.end_line()
        stream.write(text)
        stream.flush()
        if text:
            self._line_open = None if text.endswith(("\n", "\r")) else stream

    def _cell_start(self, cell, cell_index):
        self.cell_index = cell_index
        title = heading(cell.source) if cell.cell_type == "markdown" else None
        if title:
            self.section = title
            self.say("[cell %d/%d, %.0f s] %s" % (cell_index + 1, len(self.nb.cells),
                                                  time.time() - self.started, title))

    def output(self, outs, msg, display_id, cell_index):
        out = super().output(outs, msg, display_id, cell_index)
        cell = self.nb.cells[cell_index]
        if self.hide_tag and self.hide_tag in cell.metadata.get("tags", []):
            return out
        content = msg["content"]
        if msg["msg_type"] == "stream":
            self._write(sys.stderr if content["name"] == "stderr" else sys.stdout,
                        content["text"])
        elif msg["msg_type"] == "error":
            self.end_line()
            self._write(sys.stderr, "\n".join(content.get("traceback") or []) + "\n")
        return out


def scrub_dataset_outputs(nb):
    """Replace the outputs of cells tagged `shows-dataset` by a short note."""
    count = 0
    for cell in nb.cells:
        if cell.cell_type == "code" and SCRUB_TAG in cell.metadata.get("tags", []):
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=SCRUB_NOTE + "\n")]
            count += 1
    return count


def drop_transient_stderr(nb):
    """Drop progress-bar redraws and Theano compile-lock waits from outputs:
    they describe the run, not the lesson, and bloat a committed notebook."""
    count = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = [o for o in cell.outputs
                if not (o.output_type == "stream" and o.name == "stderr"
                        and (o.text.startswith("\r") or "compilelock" in o.text))]
        count += len(cell.outputs) - len(kept)
        cell.outputs = kept
    return count


def summary(nb, run_dir, since):
    """Lines that tell what the run gave: losses, captions, figures."""
    printed = [(i, cell, "".join(o.text for o in cell.outputs
                                 if o.output_type == "stream" and o.name == "stdout"))
               for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    lines = []
    epochs = [m for _, _, text in printed for m in EPOCH_LINE.finditer(text)]
    if epochs:
        lines.append("final losses (epoch %s): train %s, val %s" % epochs[-1].groups())
    else:
        lines.append("losses: no 'Epoch: N, train loss: X, val loss: Y' line was printed")
    for i, cell, text in printed:
        photos = CAPTIONED.findall(text)
        if photos and SCRUB_TAG not in cell.metadata.get("tags", []):
            lines.append("captions (cell %d, %d photos):" % (i + 1, len(photos)))
            for name, captions in photos[:SUMMARY_PHOTOS]:
                lines.append("  %s:" % name)
                lines += ["    " + c.strip() for c in captions.splitlines() if c.strip()]
            if len(photos) > SUMMARY_PHOTOS:
                lines.append("  ... %d more in the notebook" % (len(photos) - SUMMARY_PHOTOS))
            break
    if run_dir is None:
        lines.append("figures: CAPTION_RUN_DIR not set")
    else:
        # the notebook saves its figures in RUN_DIR itself (not below: a data
        # directory there holds thousands of PNGs); mtimes can lag the clock
        # by a filesystem tick: allow 2 s
        figures = sorted(p for p in glob.glob(os.path.join(run_dir, "*.png"))
                         if os.path.getmtime(p) >= since - 2)
        lines.append("figures written in %s:" % run_dir if figures
                     else "figures: none written in %s" % run_dir)
        lines += ["  " + p for p in figures]
    return lines


def _first_line(text):
    lines = str(text).strip().splitlines()
    return lines[0] if lines else ""


def run(src, dst, scrub=False, timeout=None):
    try:
        nb = nbformat.read(src, as_version=4)
        nbformat.validate(nb)
    except Exception as error:   # nbformat raises all sorts on a file that is not a notebook
        raise UsageError("cannot read %s: %s" % (src, _first_line(error))) from None
    workdir = os.path.dirname(os.path.abspath(src))
    run_dir = os.environ.get("CAPTION_RUN_DIR")
    if run_dir is not None:
        run_dir = os.path.join(workdir, run_dir)   # the kernel runs in workdir
    client = ProgressClient(nb, hide_tag=SCRUB_TAG if scrub else None, timeout=timeout,
                            kernel_name="python3", resources={"metadata": {"path": workdir}})
    settings = " ".join("%s=%s" % kv for kv in sorted(os.environ.items())
                        if kv[0].startswith("CAPTION_"))
    client.say("running %s (%d cells)%s" % (src, len(nb.cells),
                                            "; " + settings if settings else ""))
    try:
        try:
            client.execute()
        finally:
            client.end_line()
    except CellExecutionError as error:
        raise RunError("%s raised %s: %s" % (client.where(), error.ename,
                                             _first_line(error.evalue))) from None
    except (CellTimeoutError, DeadKernelError) as error:
        raise RunError("%s: %s: %s" % (client.where(), type(error).__name__,
                                       _first_line(error))) from None
    except KeyboardInterrupt:
        raise RunError("interrupted in %s" % client.where()) from None
    client.say("executed %s in %.0f s" % (src, time.time() - client.started))
    lines = summary(nb, run_dir, client.started)
    if scrub:
        print("scrubbed %d dataset outputs" % scrub_dataset_outputs(nb))
        print("dropped %d transient stderr outputs" % drop_transient_stderr(nb))
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    nbformat.write(nb, dst)
    print("wrote", dst)
    print("\n".join(lines))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook")
    parser.add_argument("out")
    parser.add_argument("--scrub-dataset-outputs", action="store_true")
    args = parser.parse_args(argv)
    try:
        run(args.notebook, args.out, scrub=args.scrub_dataset_outputs)
    except (UsageError, RunError) as error:
        sys.stdout.flush()
        print("notebook_run: error: %s" % error, file=sys.stderr)
        return 2 if isinstance(error, UsageError) else 1   # bad input / failed run
    return 0


if __name__ == "__main__":
    sys.exit(main())
