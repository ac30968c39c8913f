"""`mlx-jina serve --uds PATH`: the server on a 0600 Unix socket instead of a TCP port.

Run: python -m pytest tests/test_unix_socket.py -q

Vectors that come over the socket are compared with `encode_document` of the same
checkpoint loaded in the test. One test runs the real command in a subprocess and stops
it with SIGTERM, as launchd and systemd do.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

import mlx_jina
from live_server import live_unix_server
from mlx_jina.server import Limits, Worker, create_app
from mlx_jina.server.unix_socket import (
    SUN_PATH_BYTES,
    bind_unix_socket,
    check_unix_socket_path,
    file_identity,
    remove_socket_file,
)

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["Mars is often called the Red Planet.", "Paris is the capital of France."]


def uds_client(path: Path) -> httpx.Client:
    # Over a Unix socket the URL's host is only the Host header: localhost, as curl sends.
    transport = httpx.HTTPTransport(uds=str(path))
    return httpx.Client(transport=transport, base_url="http://localhost", timeout=60)


def embed(path: Path, texts: list[str]) -> np.ndarray:
    with uds_client(path) as client:
        r = client.post("/v1/embeddings", json={"input": texts, "model": "tiny"})
    assert r.status_code == 200, r.text
    return np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32)


def assert_same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cos.min() >= 0.99999
    np.testing.assert_allclose(got, want, atol=1e-4)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def dead_socket_file(path: Path) -> None:
    """A socket file whose server is gone, as a killed server leaves it."""
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))


@pytest.fixture
def worker(tiny_qwen_base):
    """A started worker; the app it serves stops it when the server stops."""
    worker = Worker(lambda: mlx_jina.load(tiny_qwen_base, task="retrieval")).start()
    yield worker
    worker.stop()


# ---------------------------------------------------------------------------
# the socket file


@pytest.mark.parametrize("chmod", ["real", "skipped"])
def test_the_socket_file_is_0600_from_the_start(tmp_path, monkeypatch, chmod):
    """0600 even with umask 0 and no chmod: the umask around bind alone makes it so, so no
    moment exists when it is 0777; and the process's umask is put back."""
    if chmod == "skipped":
        monkeypatch.setattr(os, "chmod", lambda *a, **k: None)
    old = os.umask(0)
    try:
        sock = bind_unix_socket(tmp_path / "s.sock")
        assert os.umask(0) == 0  # restored to what it was
    finally:
        os.umask(old)
    with sock:
        assert stat.S_ISSOCK(os.lstat(tmp_path / "s.sock").st_mode)
        assert mode(tmp_path / "s.sock") == 0o600


def test_a_path_with_tilde_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    with bind_unix_socket("~/s.sock") as sock:
        assert sock.getsockname() == str(tmp_path / "s.sock")


@pytest.mark.parametrize("kind", ["file", "folder", "link to a socket"])
def test_anything_but_a_socket_is_refused_and_left_as_it_is(tmp_path, kind):
    path = tmp_path / "s.sock"
    if kind == "file":
        path.write_text("the user's notes")
    elif kind == "folder":
        path.mkdir()
    else:
        dead_socket_file(tmp_path / "real.sock")
        path.symlink_to(tmp_path / "real.sock")
    with pytest.raises(ValueError, match=rf"{path} exists and is not a socket.*--uds"):
        bind_unix_socket(path)
    with pytest.raises(ValueError, match="not a socket"):
        check_unix_socket_path(path)
    if kind == "file":
        assert path.read_text() == "the user's notes"
    assert os.path.lexists(path) and (kind != "link to a socket" or path.is_symlink())


def test_a_stale_socket_is_replaced(tmp_path):
    path = tmp_path / "s.sock"
    dead_socket_file(path)
    os.chmod(path, 0o666)
    stale = file_identity(path)
    assert check_unix_socket_path(path) == path  # checking changes nothing
    assert file_identity(path) == stale
    with bind_unix_socket(path) as sock:
        assert mode(path) == 0o600  # a new file (its inode may be the old one's again)
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))  # and it listens
            sock.accept()[0].close()


def test_a_live_socket_is_refused_and_kept(tmp_path):
    path = tmp_path / "s.sock"
    with bind_unix_socket(path) as first:
        live = file_identity(path)
        for check in (bind_unix_socket, check_unix_socket_path):
            with pytest.raises(ValueError, match=f"Another server is listening on {path}"):
                check(path)
        assert file_identity(path) == live
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))
            first.accept()[0].close()


def test_a_path_too_long_for_af_unix_is_a_clear_error(tmp_path):
    longest = SUN_PATH_BYTES - 1
    room = longest - len(os.fsencode(tmp_path / "")) - 1
    if room < 1:
        pytest.skip(f"the temporary folder {tmp_path} is too long to build the longest path")
    fits = tmp_path / ("s" * room)
    assert len(os.fsencode(fits)) == longest
    bind_unix_socket(fits).close()  # the longest path this system takes binds
    too_long = tmp_path / ("s" * (room + 1))
    with pytest.raises(ValueError, match=rf"{longest + 1} bytes.*at most {longest}.*shorter"):
        bind_unix_socket(too_long)
    assert not os.path.lexists(too_long)


def test_a_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"does not exist.*mkdir -p"):
        bind_unix_socket(tmp_path / "no" / "s.sock")


def test_the_socket_file_is_removed_only_while_it_is_ours(tmp_path):
    path = tmp_path / "s.sock"
    bind_unix_socket(path).close()
    ours = file_identity(path)
    dead_socket_file(tmp_path / "other.sock")
    os.rename(tmp_path / "other.sock", path)  # another server's since
    remove_socket_file(path, ours)
    assert os.path.lexists(path)
    remove_socket_file(path, file_identity(path))
    assert not os.path.lexists(path)


# ---------------------------------------------------------------------------
# the server over the socket


def test_embeddings_over_the_socket_match_encode_document(worker, qwen, tmp_path):
    path = tmp_path / "server.sock"
    with live_unix_server(create_app(worker, model_name="tiny"), path):
        assert mode(path) == 0o600
        assert_same(embed(path, DOCS), qwen.encode_document(DOCS))
    assert not os.path.lexists(path)  # removed when the server stopped


def raw_get(conn: socket.socket) -> bytes:
    conn.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
    head = b""
    while b"\r\n" not in head:
        chunk = conn.recv(4096)
        if not chunk:
            break
        head += chunk
    return head.split(b"\r\n")[0]


def test_unix_clients_are_local_and_share_no_per_client_cap(worker, tmp_path):
    """With room for one connection per client, a second idle Unix-socket connection does
    not evict the first (408): like loopback ones, they have no address to be counted under."""
    limits = Limits(max_connections=8, max_connections_per_client=1)
    path = tmp_path / "s.sock"
    with live_unix_server(create_app(worker, model_name="tiny"), path, limits):
        with socket.socket(socket.AF_UNIX) as first, socket.socket(socket.AF_UNIX) as second:
            first.connect(str(path))
            second.connect(str(path))
            # Answered on the second, so the server has taken both (accepted in order).
            assert raw_get(second) == b"HTTP/1.1 200 OK"
            assert raw_get(first) == b"HTTP/1.1 200 OK"


def test_mlx_jina_serve_uds_end_to_end(tiny_qwen_base, qwen, tmp_path):
    """The command: 0600 socket, the vectors, loopback Host names only, a second server
    on the same path refused before it loads a model, the file gone after SIGTERM."""
    path = tmp_path / "server.sock"
    command = [sys.executable, "-m", "mlx_jina", "serve", "-m", str(tiny_qwen_base), "--task",
               "retrieval", "--served-model-name", "tiny", "--uds", str(path)]  # fmt: skip
    server = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(300, server.kill)  # a hung server fails the test, not the run
    watchdog.start()
    try:
        lines = []
        for line in server.stderr:  # the server says when it is on the socket
            lines.append(line)
            if "running on unix socket" in line:
                break
        assert str(path) in lines[-1], "".join(lines)
        assert mode(path) == 0o600
        assert_same(embed(path, DOCS), qwen.encode_document(DOCS))
        with uds_client(path) as client:
            r = client.get("/health", headers={"Host": "evil.example"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "host_not_allowed"
        second = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        assert f"Another server is listening on {path}" in second.stderr
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    finally:
        watchdog.cancel()
        server.kill()
        server.wait()
    assert not os.path.lexists(path)
