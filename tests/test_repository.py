"""What the repository itself holds: no symlinks, no Flickr8k-derived binaries.

A helper worktree once committed its ``.venv`` symlink; merged, it replaced
the checkout's virtualenv and broke ``make setup`` in every fresh clone.
"""
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def tracked():
    """``(mode, path)`` of every tracked file; skips outside a git checkout."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (or no git): nothing to check")
    out = subprocess.run(["git", "ls-files", "-s"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    return [(line.split()[0], line.split("\t", 1)[1]) for line in out.splitlines()]


def test_no_symlinks_are_committed():
    links = [path for mode, path in tracked() if mode == "120000"]
    assert links == [], "symlinks in the repository: %s" % links


def test_no_photos_arrays_or_pickles_are_committed():
    # codes, weights and photos would be derived from Flickr8k or too big
    bad = [path for _, path in tracked()
           if path.lower().endswith((".jpg", ".jpeg", ".npy", ".npz", ".pkl"))]
    assert bad == [], bad
