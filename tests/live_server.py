"""A live `mlx-jina serve` app on a free 127.0.0.1 port (or a Unix socket), run in a thread,
for the server tests."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from mlx_jina.server import Limits
from mlx_jina.server.app import uvicorn_config
from mlx_jina.server.unix_socket import run_on_unix_socket


@contextlib.contextmanager
def live_server(app, limits: Limits | None = None) -> Iterator[str]:
    """Run `app` with the server's own uvicorn settings; yield its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn_config(
        app, host="127.0.0.1", port=0, limits=limits or Limits(), log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    with contextlib.closing(sock), _running(server, thread):
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@contextlib.contextmanager
def live_unix_server(app, path: Path, limits: Limits | None = None) -> Iterator[Path]:
    """Run `app` as `mlx-jina serve --uds path` does; yield the socket's path."""
    config = uvicorn_config(
        app, host="127.0.0.1", port=0, limits=limits or Limits(), log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=run_on_unix_socket, args=(server, path), daemon=True)
    with _running(server, thread):
        yield path


@contextlib.contextmanager
def _running(server: uvicorn.Server, thread: threading.Thread) -> Iterator[None]:
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(15)
