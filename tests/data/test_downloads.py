"""Downloads against a local HTTP server (127.0.0.1 only): deadlines, checksums, no partial files.

Issue 15.7: a host that sends one byte every 20 s kept ``cifar.download()`` running for minutes
(a socket timeout only notices silence) and left a 0-byte archive behind. Here a server in a
thread trickles one byte every 50 ms, and the download deadline is cut to about a second.
"""

from __future__ import annotations

import hashlib
import http.server
import threading
import time

import pytest
import torchvision

from course_utils.data import cifar, loading, voc

PAYLOAD = bytes(range(256)) * 400  # what the fast route serves: 100 kB


class _Handler(http.server.BaseHTTPRequestHandler):
    """``/fast/...`` sends ``PAYLOAD`` at once; any other path promises 1 MB and sends one byte
    every 50 ms, for at most 6 s (so that every test stays bounded, even against the old code)."""

    def do_GET(self) -> None:
        fast = self.path.startswith("/fast/")
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD) if fast else 1_000_000))
        self.end_headers()
        try:
            if fast:
                self.wfile.write(PAYLOAD)
                return
            stop = time.monotonic() + 6
            while time.monotonic() < stop:
                self.wfile.write(b"x")
                time.sleep(0.05)
        except OSError:
            pass  # the client gave up: that is the point

    def log_message(self, *args) -> None:  # keep the test output clean
        pass


def _fetch_within_a_second(*args, **kwargs):
    """``loading.fetch`` with its grace period cut from minutes to one second."""
    return loading.fetch(*args, grace_s=1.0, **kwargs)


@pytest.fixture
def server(monkeypatch):
    """Base URL of a loopback HTTP server running in a thread: ``http://127.0.0.1:<port>/``."""
    monkeypatch.setenv("no_proxy", "127.0.0.1")  # never send loopback requests to a proxy
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}/"
    httpd.shutdown()
    httpd.server_close()


def test_fetch_checks_the_file_and_renames_it_into_place(tmp_path, server):
    dest = tmp_path / "file.bin"
    assert loading.fetch(server + "fast/file.bin", dest, md5=hashlib.md5(PAYLOAD).hexdigest()) == dest
    assert dest.read_bytes() == PAYLOAD and [p.name for p in tmp_path.iterdir()] == ["file.bin"]
    with pytest.raises(RuntimeError, match="sha1"):
        loading.fetch(server + "fast/file.bin", tmp_path / "other.bin", sha1="0" * 40)
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]  # no other.bin, no .part


def test_fetch_gives_up_on_a_trickling_host_at_its_deadline(tmp_path, server):
    start = time.monotonic()
    with pytest.raises(TimeoutError) as error:
        loading.fetch(server + "slow/file.bin", tmp_path / "file.bin", md5="0" * 32, grace_s=1.0)
    assert time.monotonic() - start < 3
    message = str(error.value)
    assert "too slow" in message and "127.0.0.1" in message and "Try again later" in message
    assert "by hand" in message and str(tmp_path) in message
    assert list(tmp_path.iterdir()) == []  # the partial file is gone


def test_cifar_download_from_a_trickling_host_stops_and_leaves_no_archive(tmp_path, server, monkeypatch):
    url = server + "slow/cifar-10-python.tar.gz"
    monkeypatch.setattr(cifar, "URL", url)
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "url", url)  # torchvision's own download: loopback too
    monkeypatch.setattr(cifar, "fetch", _fetch_within_a_second, raising=False)
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"")  # what an earlier aborted download left
    start = time.monotonic()
    with pytest.raises(RuntimeError) as error:
        cifar.download(tmp_path)
    assert time.monotonic() - start < 4
    message = str(error.value)
    assert "Could not download CIFAR-10" in message and "too slow" in message and "by hand" in message
    assert list(tmp_path.iterdir()) == []  # neither the old 0-byte archive nor a partial one


def test_voc_download_from_trickling_hosts_stops_and_leaves_no_tar(tmp_path, server, monkeypatch, capsys):
    monkeypatch.setattr(voc, "OXFORD_URL", server + "slow/oxford/" + voc.TAR_NAME)
    monkeypatch.setattr(voc, "MIRROR_URL", server + "slow/mirror/" + voc.TAR_NAME)
    monkeypatch.setattr(voc, "fetch", _fetch_within_a_second, raising=False)
    start = time.monotonic()
    with pytest.raises(RuntimeError) as error:
        voc.download(tmp_path)
    assert time.monotonic() - start < 6  # two hosts, about a second each
    message = str(error.value)
    assert "Could not download VOC 2012" in message and "too slow" in message
    assert voc.MIRROR_URL in message and "by hand" in message
    assert "trying the mirror" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []  # no tar, no .part
