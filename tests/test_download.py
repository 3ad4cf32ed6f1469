"""Download with resume and safe extraction, against a server on 127.0.0.1.

The server runs in a thread and implements HTTP Range itself; no traffic
leaves the machine.
"""
import hashlib
import http.server
import io
import json
import os
import pickle
import socket
import tarfile
import threading

import numpy as np
import pytest

from captioning.datasets.formats import load_dataset
from captioning.datasets.seminar import fetch_seminar
from captioning.io.download import (DownloadError, OfflineError,
                                    UnsafeArchiveError, download, safe_extract)


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        srv = self.server
        srv.ranges.append(self.headers.get("Range"))
        body = srv.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start, status = 0, 200
        rng = self.headers.get("Range")
        if rng and srv.honour_range:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", "bytes */%d" % len(body))
                self.end_headers()
                return
            status = 206
        self.send_response(status)
        if status == 206:
            self.send_header("Content-Range", "bytes %d-%d/%d"
                             % (start, len(body) - 1, len(body)))
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        chunk = body[start:]
        if srv.cut_after is not None:       # simulate a dropped connection
            chunk, srv.cut_after = chunk[:srv.cut_after], None
            self.wfile.write(chunk)
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(chunk)


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.files, srv.ranges = {}, []
    srv.honour_range, srv.cut_after = True, None
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,),
                              daemon=True)
    thread.start()
    srv.url = "http://127.0.0.1:%d" % srv.server_address[1]
    yield srv
    srv.shutdown()
    srv.server_close()


def make_tar(members):
    """members: list of (TarInfo kwargs, bytes or None)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, payload in members:
            ti = tarfile.TarInfo(info.pop("name"))
            for k, v in info.items():
                setattr(ti, k, v)
            if payload is not None:
                ti.size = len(payload)
                tar.addfile(ti, io.BytesIO(payload))
            else:
                tar.addfile(ti)
    return buf.getvalue()


def npy_bytes(array):
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def seminar_archive(n=12):
    codes = np.random.RandomState(0).randn(n, 1000).astype(np.float32)
    captions = [["a man riding a bike %d" % i, "a bike on a road"]
                for i in range(n)]
    return make_tar([
        (dict(name="data", type=tarfile.DIRTYPE), None),
        (dict(name="data/image_codes.npy"), npy_bytes(codes)),
        (dict(name="data/caption_tokens.pcl"), pickle.dumps(captions, 2)),
    ]), codes, captions


BLOB = bytes(range(256)) * 400          # 102,400 bytes


def test_download_plain(server, tmp_path):
    server.files["/f.bin"] = BLOB
    dest = download(server.url + "/f.bin", tmp_path / "f.bin",
                    expected_size=len(BLOB), progress=False)
    assert dest.read_bytes() == BLOB
    assert not (tmp_path / "f.bin.part").exists()
    assert server.ranges == [None]


def test_download_truncated_then_resumed(server, tmp_path):
    server.files["/f.bin"] = BLOB
    server.cut_after = 30_000
    dest = tmp_path / "f.bin"
    with pytest.raises(DownloadError, match="rerun to resume"):
        download(server.url + "/f.bin", dest, expected_size=len(BLOB),
                 progress=False)
    part = tmp_path / "f.bin.part"
    assert not dest.exists()                  # nothing looks complete
    assert part.stat().st_size == 30_000
    download(server.url + "/f.bin", dest, expected_size=len(BLOB),
             progress=False)
    assert server.ranges == [None, "bytes=30000-"]
    assert dest.read_bytes() == BLOB
    assert not part.exists()


def test_resume_from_existing_part_file(server, tmp_path):
    server.files["/f.bin"] = BLOB
    (tmp_path / "f.bin.part").write_bytes(BLOB[:1234])
    download(server.url + "/f.bin", tmp_path / "f.bin", progress=False,
             sha256=hashlib.sha256(BLOB).hexdigest())
    assert server.ranges == ["bytes=1234-"]
    assert (tmp_path / "f.bin").read_bytes() == BLOB


def test_complete_part_file_gets_416_and_is_accepted(server, tmp_path):
    server.files["/f.bin"] = BLOB
    (tmp_path / "f.bin.part").write_bytes(BLOB)
    download(server.url + "/f.bin", tmp_path / "f.bin", progress=False)
    assert (tmp_path / "f.bin").read_bytes() == BLOB


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    server.files["/f.bin"] = BLOB
    server.honour_range = False
    (tmp_path / "f.bin.part").write_bytes(b"garbage!" * 10)
    download(server.url + "/f.bin", tmp_path / "f.bin",
             expected_size=len(BLOB), progress=False)
    assert (tmp_path / "f.bin").read_bytes() == BLOB


def test_wrong_size_is_refused_and_nothing_kept(server, tmp_path):
    server.files["/f.bin"] = BLOB
    with pytest.raises(DownloadError, match="expected %d" % (len(BLOB) + 1)):
        download(server.url + "/f.bin", tmp_path / "f.bin",
                 expected_size=len(BLOB) + 1, progress=False)
    assert os.listdir(tmp_path) == []


def test_wrong_sha256_is_refused(server, tmp_path):
    server.files["/f.bin"] = BLOB
    with pytest.raises(DownloadError, match="sha256"):
        download(server.url + "/f.bin", tmp_path / "f.bin",
                 sha256="0" * 64, progress=False)
    assert os.listdir(tmp_path) == []


def test_http_error_is_reported(server, tmp_path):
    with pytest.raises(DownloadError, match="404"):
        download(server.url + "/missing", tmp_path / "x", progress=False)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_offline_is_one_line_and_exit_2(tmp_path, capsys):
    url = "http://127.0.0.1:%d/data.tar.gz" % free_port()
    with pytest.raises(OfflineError):
        download(url, tmp_path / "x", progress=False)
    from captioning.commands import main
    assert main(["data", "seminar", "--out", str(tmp_path / "d"), "--url", url,
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "offline" in err
    assert err.startswith("caption data seminar: error: ")


def test_safe_extract_strips_data_prefix(tmp_path):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(make_tar([
        (dict(name="data/x.txt"), b"hello"),
        (dict(name="data/sub/y.txt"), b"world")]))
    out = tmp_path / "out"
    safe_extract(archive, out)
    assert (out / "x.txt").read_bytes() == b"hello"
    assert (out / "sub" / "y.txt").read_bytes() == b"world"


@pytest.mark.parametrize("bad", [
    dict(name="/tmp/evil_abs.txt"),
    dict(name="data/../../evil_dotdot.txt"),
    dict(name="data/link", type=tarfile.SYMTYPE, linkname="/etc/passwd"),
    dict(name="data/link", type=tarfile.SYMTYPE, linkname="../../outside"),
    dict(name="data/hard", type=tarfile.LNKTYPE, linkname="data/x.txt"),
    dict(name="data/dev", type=tarfile.CHRTYPE, devmajor=1, devminor=3),
    dict(name="data/fifo", type=tarfile.FIFOTYPE),
], ids=["absolute", "dotdot", "symlink-abs", "symlink-out", "hardlink",
        "device", "fifo"])
def test_unsafe_members_refused_before_anything_is_written(tmp_path, bad):
    payload = b"evil" if bad.get("type", tarfile.REGTYPE) == tarfile.REGTYPE \
        else None
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(make_tar([(dict(name="data/x.txt"), b"fine"),
                                  (dict(bad), payload)]))
    out = tmp_path / "deep" / "out"
    with pytest.raises(UnsafeArchiveError, match="nothing extracted"):
        safe_extract(archive, out)
    assert list(out.iterdir()) == []
    assert not (tmp_path / "evil_dotdot.txt").exists()
    assert not os.path.exists("/tmp/evil_abs.txt")


def test_member_through_existing_symlink_is_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", out / "sub")
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(make_tar([(dict(name="data/sub/x.txt"), b"x")]))
    with pytest.raises(UnsafeArchiveError, match="outside"):
        safe_extract(archive, out)
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_fetch_seminar_end_to_end(server, tmp_path):
    blob, codes, captions = seminar_archive()
    server.files["/data.tar.gz"] = blob
    out = tmp_path / "data"
    dataset = fetch_seminar(out, url=server.url + "/data.tar.gz",
                            expected_size=len(blob), progress=False)
    assert dataset.source == "seminar"
    np.testing.assert_array_equal(dataset.codes, codes)
    assert dataset.captions == captions
    assert dataset.names[:2] == ["coco_000000", "coco_000001"]
    # the original files are kept as shipped; the rest is recorded beside
    assert (out / "caption_tokens.pcl").read_bytes() == pickle.dumps(
        captions, 2)
    assert json.loads((out / "dataset.json").read_text())["source"] == \
        "seminar"
    assert len(json.loads((out / "split.json").read_text())["split"]) == 12
    assert not (out / "data.tar.gz").exists()
    again = load_dataset(out)
    assert list(again.split) == list(dataset.split)
    # a second run finds the files and downloads nothing
    fetch_seminar(out, url=server.url + "/data.tar.gz",
                  expected_size=len(blob), progress=False)
    assert server.ranges == [None]
    # nor when dataset.json has the name earlier versions wrote; the new
    # name is written
    meta = json.loads((out / "dataset.json").read_text())
    (out / "dataset.json").write_text(json.dumps(dict(meta,
                                                      source="coco-seminar")))
    assert fetch_seminar(out, url=server.url + "/data.tar.gz",
                         expected_size=len(blob),
                         progress=False).source == "seminar"
    assert server.ranges == [None]
    assert json.loads((out / "dataset.json").read_text())["source"] == \
        "seminar"


def test_fetch_seminar_refuses_malicious_archive(server, tmp_path):
    blob = make_tar([(dict(name="data/image_codes.npy"), b"x"),
                     (dict(name="data/../../../escape.txt"), b"x")])
    server.files["/data.tar.gz"] = blob
    with pytest.raises(UnsafeArchiveError):
        fetch_seminar(tmp_path / "d" / "data",
                      url=server.url + "/data.tar.gz",
                      expected_size=len(blob), progress=False)
    assert not (tmp_path / "escape.txt").exists()
    assert not (tmp_path / "d" / "data" / "image_codes.npy").exists()
