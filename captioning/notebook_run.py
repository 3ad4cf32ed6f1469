"""Execute a notebook headless: `make demo` and `make notebook` use this.

    python -m captioning.notebook_run NOTEBOOK OUT.ipynb [--scrub-dataset-outputs]

Environment variables (CAPTION_*) are passed to the kernel, so they select
the data and the training length (see the notebook's parameters cell).
``--scrub-dataset-outputs`` (for the committed copy) empties the outputs of
cells tagged ``shows-dataset`` (they display photos or human captions of the
data set, which may not be redistributed with the project), leaving a note,
and drops progress-bar redraws.
"""
import argparse
import os
import sys
import time

import nbformat
from nbclient import NotebookClient

SCRUB_TAG = "shows-dataset"
SCRUB_NOTE = ("[output removed from the committed copy: it shows photos or captions "
              "of the data set, which are not redistributed with this project. "
              "Run the notebook to see it.]")


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


def run(src, dst, scrub=False, timeout=None):
    nb = nbformat.read(src, as_version=4)
    workdir = os.path.dirname(os.path.abspath(src))
    start = time.time()
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": workdir}}).execute()
    print("executed %s in %.0f s" % (src, time.time() - start))
    if scrub:
        print("scrubbed %d dataset outputs" % scrub_dataset_outputs(nb))
        print("dropped %d transient stderr outputs" % drop_transient_stderr(nb))
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    nbformat.write(nb, dst)
    print("wrote", dst)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook")
    parser.add_argument("out")
    parser.add_argument("--scrub-dataset-outputs", action="store_true")
    args = parser.parse_args(argv)
    run(args.notebook, args.out, scrub=args.scrub_dataset_outputs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
