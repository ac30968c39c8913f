"""A live `mlx-jina serve` app on a free 127.0.0.1 port (or a Unix socket), run in a thread,
for the server tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from mlx_jina.server import Limits
from mlx_jina.server.app import uvicorn_config
from mlx_jina.server.unix_socket import run_on_unix_socket

ROOT = Path(__file__).resolve().parent.parent


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_process(
    args: list[str], env: dict[str, str] | None = None, wait: float = 90
) -> Iterator[tuple[str, subprocess.Popen, list[str]]]:
    """A real `python -m mlx_jina serve ARGS` on a free 127.0.0.1 port; yields (its base
    URL, the process, its stderr lines) once uvicorn listens, and stops it with SIGINT
    (as Ctrl-C does) at the end."""
    port = free_port()
    argv = [sys.executable, "-m", "mlx_jina", "serve", *args, "--port", str(port)]
    env = {**os.environ, **(env or {})}
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    lines: list[str] = []
    up = threading.Event()

    def read_stderr() -> None:  # uvicorn says it is listening once the socket is bound
        for line in proc.stderr:
            lines.append(line)
            if "Uvicorn running on" in line:
                up.set()
        up.set()  # the process ended: stop waiting

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        assert up.wait(wait) and proc.poll() is None, "serve did not come up: " + "".join(lines)
        yield f"http://127.0.0.1:{port}", proc, lines
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        reader.join(10)
