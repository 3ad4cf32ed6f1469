"""Download with resume, and extract archives without trusting them.

:func:`download` fetches a URL into ``DEST.part`` (resuming it with an
HTTP Range request when it exists), checks the size (and sha256 when
known) and only then renames it to ``DEST``: a file at ``DEST`` is always
complete. :func:`safe_extract` refuses absolute paths, ``..``, links and
devices before writing anything, and writes each file atomically.
:func:`captioning.datasets.seminar.fetch_seminar` does both for the
seminar's ``data.tar.gz``.
"""
import hashlib
import http.client
import os
import shutil
import socket
import tarfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

from captioning.errors import CaptionError
from captioning.io.files import atomic_write

__all__ = ["DownloadError", "OfflineError", "UnsafeArchiveError", "download",
           "safe_extract"]

CHUNK = 1 << 20


class DownloadError(CaptionError):
    """The download failed; the message says whether a rerun resumes."""


class OfflineError(DownloadError):
    """The server could not be reached at all."""


class UnsafeArchiveError(CaptionError):
    """The archive has members that would write outside the target."""


def _open(url, start, timeout):
    headers = {"User-Agent": "caption-data/0.1"}
    if start:
        headers["Range"] = "bytes=%d-" % start
    try:
        return urllib.request.urlopen(urllib.request.Request(url,
                                                             headers=headers),
                                      timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and start:
            return None      # nothing after `start`: the .part is complete
        raise DownloadError("%s: HTTP %d %s" % (url, error.code,
                                                error.reason)) from None
    except (urllib.error.URLError, socket.timeout, ConnectionError) as error:
        reason = getattr(error, "reason", error)
        raise OfflineError(
            "offline: cannot reach %s (%s); rerun when online (a partial "
            "download resumes), or use `caption data synthetic`"
            % (urllib.request.urlparse(url).netloc, reason)) from None


def _content_range(response, start):
    """(first byte, total size or None) of a response."""
    if response.status == 206:
        value = response.headers.get("Content-Range", "")
        try:
            first = int(value.split()[1].split("-")[0])
            total = value.rsplit("/", 1)[1]
            return first, (None if total == "*" else int(total))
        except (IndexError, ValueError):
            raise DownloadError("bad Content-Range %r" % value) from None
    length = response.headers.get("Content-Length")
    return 0, (int(length) if length else None)


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url, dest, expected_size=None, sha256=None, progress=True,
             timeout=60):
    """Download ``url`` to ``dest``, resuming ``dest.part`` if present.

    Parameters
    ----------
    url : str
    dest : str or Path
    expected_size : int, optional
        Known size in bytes; a different size is an error.
    sha256 : str, optional
        Known hex digest; checked when given.
    progress : bool
        Show a tqdm progress bar.
    timeout : float
        Seconds to wait for the server.

    Returns
    -------
    Path
        ``dest``, complete and verified.

    Raises
    ------
    OfflineError
        The server cannot be reached.
    DownloadError
        Interrupted (``.part`` kept: rerun to resume), or the size or
        checksum is wrong (``.part`` deleted).
    """
    from tqdm import tqdm

    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    start = part.stat().st_size if part.exists() else 0
    if expected_size is not None and start > expected_size:
        part.unlink()
        start = 0
    response = None
    if not (expected_size is not None and start == expected_size):
        response = _open(url, start, timeout)
    if response is not None:
        with response:
            first, total = _content_range(response, start)
            if response.status != 206:
                first = 0                    # server ignored the Range
            if first != start and first != 0:
                raise DownloadError("server resumed at byte %d, not %d; "
                                    "delete %s and rerun" % (first, start,
                                                             part))
            if (expected_size is not None and total is not None
                    and total != expected_size):
                part.unlink(missing_ok=True)
                raise DownloadError(
                    "%s is %d bytes, expected %d: not the expected file; "
                    "nothing kept" % (url, total, expected_size))
            written = first
            bar = tqdm(total=total or expected_size, initial=first,
                       unit="B", unit_scale=True, unit_divisor=1024,
                       desc=dest.name, disable=not progress)
            try:
                with open(part, "ab" if first else "wb") as f:
                    while True:
                        block = response.read(CHUNK)
                        if not block:
                            break
                        f.write(block)
                        written += len(block)
                        bar.update(len(block))
            except (http.client.IncompleteRead, OSError) as error:
                raise DownloadError(
                    "download interrupted at %d bytes (%s); rerun to resume "
                    "from %s" % (written, type(error).__name__, part)) \
                    from None
            finally:
                bar.close()
    size = part.stat().st_size if part.exists() else 0
    want = expected_size
    if want is None and response is not None:
        want = total
    if want is not None and size < want:
        raise DownloadError("download incomplete: %d of %d bytes; rerun to "
                            "resume from %s" % (size, want, part))
    if want is not None and size > want:
        part.unlink()
        raise DownloadError("downloaded %d bytes, expected %d: not the "
                            "expected file; nothing kept" % (size, want))
    if sha256 is not None and _sha256(part) != sha256.lower():
        part.unlink()
        raise DownloadError("%s: sha256 mismatch; nothing kept, rerun to "
                            "download again" % url)
    os.replace(part, dest)
    return dest


def _plan(members, out_dir, strip_prefix):
    """Map members to targets under ``out_dir``; refuse unsafe ones."""
    out_real = os.path.realpath(out_dir)
    names = [PurePosixPath(m.name.replace("\\", "/")) for m in members]
    parts = [tuple(p for p in n.parts if p != ".") for n in names]
    strip = bool(strip_prefix) and all(p and p[0] == strip_prefix
                                       for p in parts)
    plan, bad = [], []
    for member, name, p in zip(members, names, parts):
        if name.is_absolute() or (member.name[1:2] == ":"):
            bad.append("%s (absolute path)" % member.name)
        elif ".." in p:
            bad.append("%s (contains ..)" % member.name)
        elif member.issym() or member.islnk():
            bad.append("%s (link to %s)" % (member.name, member.linkname))
        elif not (member.isfile() or member.isdir()):
            bad.append("%s (device or special file)" % member.name)
        else:
            rel = p[1:] if strip else p
            if not rel:
                continue
            target = Path(out_dir, *rel)
            real = os.path.realpath(target)
            if not real.startswith(out_real + os.sep):
                bad.append("%s (resolves outside %s)" % (member.name,
                                                         out_dir))
            else:
                plan.append((member, target))
    if bad:
        raise UnsafeArchiveError(
            "refusing to extract: %d unsafe members: %s; nothing extracted"
            % (len(bad), ", ".join(bad[:5]) + (", ..." if len(bad) > 5
                                               else "")))
    return plan


def safe_extract(archive, out_dir, strip_prefix="data", progress=False):
    """Extract regular files and directories of a tar archive.

    Every member is checked first; if any is unsafe (absolute path, ``..``,
    symbolic or hard link, device, or resolving outside ``out_dir``)
    nothing is written. A leading ``strip_prefix/`` shared by all members
    is removed, so ``data/x.npy`` lands in ``out_dir/x.npy``.

    Returns
    -------
    list of Path
        The files written.

    Raises
    ------
    UnsafeArchiveError
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with tarfile.open(archive, "r:*") as tar:
        plan = _plan(tar.getmembers(), out_dir, strip_prefix)
        for member, target in tqdm(plan, desc="extracting", unit="file",
                                   disable=not progress):
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            with tar.extractfile(member) as src, atomic_write(target) as dst:
                shutil.copyfileobj(src, dst, CHUNK)
            written.append(target)
    return written
