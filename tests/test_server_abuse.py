"""The server under hostile and careless clients: keys, browsers, slow and malformed requests.

Run: python -m pytest tests/test_server_abuse.py -q

Each test reproduces an attack or a misbehaving client with raw sockets or
httpx against a live server on 127.0.0.1, and checks the refusal: its status, its
message, and that the server goes on serving.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

import mlx_jina
from live_server import live_server
from mlx_jina.server import Limits, Worker, create_app

NAME = "tiny-jina"
BODY = {"model": NAME, "input": ["hello"]}


@pytest.fixture(scope="module")
def model_path(tiny_qwen_base):
    return tiny_qwen_base


def start(model_path, limits: Limits | None = None, **app_kwargs):
    worker = Worker(lambda: mlx_jina.load(model_path, task="retrieval"), limits=limits).start()
    return worker, create_app(worker, model_name=NAME, **app_kwargs)


@pytest.fixture(scope="module")
def open_server(model_path):
    """No key, default guards (loopback hosts only, no CORS), 1-second read timeout."""
    limits = Limits(read_timeout=1.0, max_connections=8)
    worker, app = start(model_path, limits)
    with live_server(app, limits) as url:
        OPEN_WORKERS[url] = worker
        yield url


OPEN_WORKERS: dict = {}


@pytest.fixture
def open_server_worker(open_server):
    return OPEN_WORKERS[open_server]


def raw_exchange(url: str, data: bytes, wait: float = 30.0) -> bytes:
    """Send raw bytes, read until the server closes (b"<no close>" if it doesn't within
    `wait` seconds, a bound for a broken server, not a measurement)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as s:
        s.settimeout(wait)
        s.sendall(data)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except socket.timeout:
            chunks.append(b"<no close>")
    return b"".join(chunks)


def status_of(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


def embed_ok(url: str, **kwargs) -> bool:
    r = httpx.post(url + "/v1/embeddings", json=BODY, timeout=30, **kwargs)
    return r.status_code == 200 and len(r.json()["data"]) == 1


# ---------------------------------------------------------------------------
# 5, 6: the API key


@pytest.mark.parametrize("key", ["", "   ", " padded", "line\nbreak"])
def test_empty_or_unsendable_key_is_refused_at_start(model_path, key):
    """An empty key would let every client in, one no header can carry lock all out."""
    worker = Worker(lambda: mlx_jina.load(model_path, task="retrieval")).start()
    try:
        with pytest.raises(ValueError, match="API key"):
            create_app(worker, model_name=NAME, api_key=key)
    finally:
        worker.stop()


@pytest.mark.parametrize("how", ["flag", "env"])
def test_cli_refuses_an_empty_key_before_loading(how, tmp_path):
    """`--api-key ""` or `MLX_JINA_API_KEY=` is a one-line usage error, before any model loads."""
    args = [sys.executable, "-m", "mlx_jina", "serve", "-m", str(tmp_path / "no-such-model")]
    env = {"PATH": "", "HOME": str(tmp_path)}
    if how == "flag":
        args += ["--api-key", ""]
    else:
        env["MLX_JINA_API_KEY"] = ""
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2
    assert "API key is empty" in proc.stderr and "Traceback" not in proc.stderr
    assert "no-such-model" not in proc.stderr  # refused before the model was looked at


def test_non_ascii_key(model_path):
    """A non-ASCII key must not make every request a 500: keys compare as UTF-8 bytes."""
    key = "clé-secrète"
    _, app = start(model_path, api_key=key)
    with live_server(app) as url:
        good = {"Authorization": f"Bearer {key}".encode()}
        assert embed_ok(url, headers=good)
        for token in ("clé-secrèteX", "cle-secrete", "clé", "ключ", "-"):
            headers = {"Authorization": f"Bearer {token}".encode()}
            r = httpx.post(url + "/v1/embeddings", json=BODY, headers=headers, timeout=30)
            assert r.status_code == 401, token
        # latin-1 bytes of the same characters are other bytes: refused, not a 500
        latin = {"Authorization": b"Bearer " + key.encode("latin-1")}
        assert httpx.post(url + "/v1/embeddings", json=BODY, headers=latin).status_code == 401


def test_non_ascii_token_against_ascii_key(model_path):
    """A client's non-ASCII bearer token against an ASCII key is a 401, not a 500."""
    _, app = start(model_path, api_key="plain-key")
    with live_server(app) as url:
        headers = {"Authorization": "Bearer ключ".encode()}
        r = httpx.post(url + "/v1/embeddings", json=BODY, headers=headers, timeout=30)
        assert r.status_code == 401
        assert embed_ok(url, headers={"Authorization": "Bearer plain-key"})


# ---------------------------------------------------------------------------
# 7: browsers


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_simple_cross_origin_posts_are_refused(open_server, content_type):
    """A page may POST text/plain (or a form) to 127.0.0.1 without a preflight; such a
    body must not be embedded with a 200, so only JSON bodies are accepted."""
    headers = {} if content_type is None else {"Content-Type": content_type}
    r = httpx.post(open_server + "/v1/embeddings", content=json.dumps(BODY), headers=headers)
    assert r.status_code == 415
    assert "application/json" in r.json()["error"]["message"]
    ok = {"Content-Type": "application/json; charset=utf-8"}
    assert httpx.post(open_server + "/v1/embeddings", content=json.dumps(BODY), headers=ok).status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "127.0.0.1.nip.io", ""])
def test_foreign_host_header_is_refused(open_server, host):
    """DNS rebinding: a hostile name resolving to 127.0.0.1 sends its own Host."""
    r = httpx.post(open_server + "/v1/embeddings", json=BODY, headers={"Host": host})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "host_not_allowed"
    assert "--allowed-hosts" in r.json()["error"]["message"]
    assert httpx.get(open_server + "/health", headers={"Host": host}).status_code == 400


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:1234", "127.0.0.1", "[::1]:8080", "localhost."])
def test_loopback_host_names_are_accepted(open_server, host):
    assert embed_ok(open_server, headers={"Host": host})


def test_allowed_hosts_option(model_path):
    _, app = start(model_path, allowed_hosts=("embed.lan",))
    with live_server(app) as url:
        assert embed_ok(url, headers={"Host": "embed.lan:8080"})
        r = httpx.post(url + "/v1/embeddings", json=BODY, headers={"Host": "localhost"})
        assert r.status_code == 400
    _, app = start(model_path, allowed_hosts=("*",))
    with live_server(app) as url:
        assert embed_ok(url, headers={"Host": "anything.example"})


def test_cross_origin_requests_are_refused_without_cors(open_server):
    r = httpx.post(open_server + "/v1/embeddings", json=BODY, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in r.headers
    pre = httpx.options(
        open_server + "/v1/embeddings",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert pre.status_code == 403 and "access-control-allow-origin" not in pre.headers


def test_cors_origins_option(model_path):
    """--cors-origins lets exactly the named web origins call the API from a browser."""
    origin = "http://localhost:3000"
    _, app = start(model_path, cors_origins=(origin,))
    with live_server(app) as url:
        pre = httpx.options(
            url + "/v1/embeddings",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,authorization",
            },
        )
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == origin
        r = httpx.post(url + "/v1/embeddings", json=BODY, headers={"Origin": origin})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == origin
        other = httpx.post(url + "/v1/embeddings", json=BODY, headers={"Origin": "http://localhost:3001"})
        assert other.status_code == 403


# ---------------------------------------------------------------------------
# 8: requests that never finish arriving


def test_slow_headers_get_408_and_are_closed(open_server):
    """A client that never finishes its headers must not hold a connection forever."""
    reply = raw_exchange(open_server, b"POST /v1/embeddings HTTP/1.1\r\nHost: local")
    assert status_of(reply) == 408 and b"request_timeout" in reply
    assert embed_ok(open_server)


def test_headers_trickled_byte_by_byte_still_time_out(open_server):
    """Each byte resetting a timer is the slowloris trick: the deadline is for the whole
    head, so the 408 comes before the head is through (a byte per 0.3 s, 1 s deadline)."""
    host, port = open_server.removeprefix("http://").split(":")
    head = b"POST /v1/embeddings HTTP/1.1\r\nHost: localhost\r\nX-Pad: " + b"a" * 200
    with socket.create_connection((host, int(port))) as s:
        s.settimeout(0.3)
        reply, sent = b"", 0
        for byte in head:
            try:
                s.sendall(bytes([byte]))
                sent += 1
                reply += s.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                break
            if reply:
                break
    assert status_of(reply) == 408
    assert sent < len(head)


@pytest.mark.parametrize(
    "request_bytes",
    [
        # Content-Length larger than the body that ever arrives
        b"POST /v1/embeddings HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: 500\r\n\r\n{\"input\": \"a\"}",
        # a chunked body that stops arriving
        b"POST /v1/embeddings HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"inp",
    ],
    ids=["short-body", "stalled-chunks"],
)
def test_bodies_that_never_finish_get_408(open_server, request_bytes):
    reply = raw_exchange(open_server, request_bytes)
    assert status_of(reply) == 408 and b"--read-timeout" in reply
    assert embed_ok(open_server)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /v1/embeddings HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /v1/embeddings HTTP/1.1\r\nHost: localhost\r\nContent-Length: -1\r\n\r\n",
        b"POST /v1/embeddings HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n"
        b"Content-Length: 4\r\n\r\nabcd",
        b"POST /v1/embeddings HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\nabc\r\n0\r\n\r\n",
        b"GARBAGE\r\n\r\n",
    ],
    ids=["length-and-chunked", "negative-length", "two-lengths", "bad-chunk", "garbage"],
)
def test_malformed_framing_gets_400(open_server, request_bytes):
    """Content-Length with chunked encoding must be refused: a proxy may read it
    otherwise. It and other broken framings are a 400, and the connection closes."""
    reply = raw_exchange(open_server, request_bytes)
    assert status_of(reply) == 400 and not reply.endswith(b"<no close>")


class Gate:
    """Holds the worker inside its first forward pass until `release` is set, and counts
    the jobs submitted to it, so tests order events without sleeping."""

    def __init__(self, worker: Worker):
        self.worker, self.model = worker, worker.model
        self.entered, self.release = threading.Event(), threading.Event()
        self.jobs: list = []
        self.submitted = threading.Semaphore(0)
        self._forward, self._submit = self.model.embed_batch, worker.submit

        def held(*args, **kwargs):
            self.entered.set()
            assert self.release.wait(60)
            return self._forward(*args, **kwargs)

        def counted(job):
            future = self._submit(job)
            self.jobs.append(job)
            self.submitted.release()
            return future

        self.model.embed_batch, worker.submit = held, counted  # what the worker calls

    def wait_for_jobs(self, n: int) -> None:
        for _ in range(n):
            assert self.submitted.acquire(timeout=60)

    def close(self) -> None:
        self.release.set()
        del self.model.embed_batch, self.worker.submit


def refusals(url: str, cause: str) -> float:
    text = httpx.get(url + "/metrics").text
    key = f'mlx_jina_refusals_total{{cause="{cause}"}} '
    return float(next((ln for ln in text.splitlines() if ln.startswith(key)), key + "0").split()[-1])


def served_once(host: str, port: int) -> socket.socket:
    """A keep-alive connection that got one answer and now waits for its next request."""
    s = socket.create_connection((host, port))
    s.settimeout(30)
    s.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
    reply = b""
    while b"\r\n\r\n" not in reply:
        reply += s.recv(65536)
    head, body = reply.split(b"\r\n\r\n", 1)
    length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
    while len(body) < length:  # the whole answer: what comes next is the server's
        body += s.recv(65536)
    assert head.startswith(b"HTTP/1.1 200")
    return s


def post_raw(host: str, port: int, replies: dict, name: str) -> None:
    body = json.dumps(BODY).encode()
    head = (
        "POST /v1/embeddings HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json"
        f"\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, port)) as s:
        s.settimeout(60)
        s.sendall(head + body)
        replies[name] = s.recv(65536)


def stalled_connections(url: str, n: int, partial: bytes) -> list[socket.socket]:
    """`n` keep-alive connections, oldest first, each served once and then sending only
    `partial` of its next request. Each sends at once: uvicorn closes a keep-alive
    connection idle for 5 s, which a loaded machine can take to open the next ones."""
    host, port = url.removeprefix("http://").split(":")
    stalled = []
    for _ in range(n):
        stalled.append(served_once(host, int(port)))
        stalled[-1].sendall(partial)  # and never more
    return stalled


def test_slow_clients_cannot_fill_the_connections(model_path):
    """Slowloris: sockets that trickle bytes and reconnect kept --max-connections full, and
    legitimate clients got 503 (22 of 24 requests). At the cap, the connection that has
    waited longest without a whole request is closed (408) to make room: a request that
    arrives whole is served, and the refusal is counted in /metrics by cause."""
    limits = Limits(read_timeout=30.0, max_connections=4)
    _, app = start(model_path, limits)
    with live_server(app, limits) as url:
        slow = stalled_connections(url, 4, b"POST /v1/embeddings HTTP/1.1\r\nHo")
        try:
            reply = raw_exchange(url, b"GET /health HTTP/1.1\r\nHost: localhost\r\n"
                                 b"Connection: close\r\n\r\n")
            assert status_of(reply) == 200
            evicted = slow[0].recv(65536)
            assert status_of(evicted) == 408 and b"connection_evicted" in evicted
            assert refusals(url, "evicted") >= 1
            assert refusals(url, "max_connections") == 0
        finally:
            for s in slow:
                s.close()
        assert embed_ok(url)


def test_slow_bodies_are_closed_to_make_room_too(model_path):
    """A body that trickles is not a whole request either: at the cap its connection is
    closed for a newcomer's whole request, which is served."""
    limits = Limits(read_timeout=30.0, max_connections=4)
    _, app = start(model_path, limits)
    with live_server(app, limits) as url:
        slow = stalled_connections(url, 4, (
            b"POST /v1/embeddings HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
            b"application/json\r\nContent-Length: 100\r\n\r\n{\"input\""
        ))  # fmt: skip
        try:
            assert embed_ok(url)
            closed = slow[0].recv(65536)  # closed, with a 408 if its headers were not in yet
            assert closed == b"" or status_of(closed) == 408
            assert refusals(url, "evicted") >= 1
        finally:
            for s in slow:
                s.close()


def posting_clients(url: str, n: int, replies: dict) -> list[threading.Thread]:
    """`n` started threads, each sending one whole embeddings request (post_raw)."""
    host, port = url.removeprefix("http://").split(":")
    clients = [
        threading.Thread(target=post_raw, args=(host, int(port), replies, i)) for i in range(n)
    ]
    for c in clients:
        c.start()
    return clients


def test_503_only_when_every_connection_holds_a_whole_request(model_path):
    """A newcomer is refused only when no open connection is still waiting for its request:
    with the worker held and four whole requests in, a fifth connection gets 503 naming
    --max-connections, counted as such; the four are then answered."""
    limits = Limits(max_connections=4)
    worker, app = start(model_path, limits)
    gate = Gate(worker)
    replies: dict = {}
    try:
        with live_server(app, limits) as url:
            clients = posting_clients(url, 4, replies)
            gate.wait_for_jobs(4)  # all four requests arrived whole
            reply = raw_exchange(url, b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert status_of(reply) == 503 and b"--max-connections" in reply
            gate.release.set()
            for c in clients:
                c.join(60)
            assert [status_of(replies[i]) for i in range(4)] == [200] * 4
            assert refusals(url, "max_connections") == 1
    finally:
        gate.close()


def test_one_address_is_capped_apart(model_path, monkeypatch):
    """--max-connections-per-client bounds one (non-loopback) address under the same rule,
    so one remote client can't hold every slot. Loopback is exempt (every local client
    shares it); the test makes 127.0.0.1 count as remote."""
    monkeypatch.setattr("mlx_jina.server.connections.is_loopback", lambda host: False)
    limits = Limits(max_connections=8, max_connections_per_client=2)
    worker, app = start(model_path, limits)
    gate = Gate(worker)
    replies: dict = {}
    try:
        with live_server(app, limits) as url:
            clients = posting_clients(url, 2, replies)
            gate.wait_for_jobs(2)
            reply = raw_exchange(url, b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert status_of(reply) == 503 and b"--max-connections-per-client" in reply
            gate.release.set()
            for c in clients:
                c.join(60)
            assert [status_of(replies[i]) for i in range(2)] == [200] * 2
            assert refusals(url, "max_connections_per_client") == 1
    finally:
        gate.close()


def test_read_deadlines_are_counted_by_cause(open_server):
    """Refusals at the header and body deadlines are in /metrics, by cause."""
    before = {c: refusals(open_server, c) for c in ("header_timeout", "body_timeout")}
    assert status_of(raw_exchange(open_server, b"GET /health HTTP/1.1\r\nHo")) == 408
    short_body = (
        b"POST /v1/embeddings HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json"
        b"\r\nContent-Length: 50\r\n\r\n{"
    )
    assert status_of(raw_exchange(open_server, short_body)) == 408
    for cause in before:
        assert refusals(open_server, cause) == before[cause] + 1


# ---------------------------------------------------------------------------
# 12: the smaller ones


def test_deeply_nested_json_is_a_400(open_server):
    """JSON nested 100k deep was a 500 (RecursionError)."""
    body = b"[" * 100_000 + b"]" * 100_000
    r = httpx.post(
        open_server + "/v1/embeddings", content=body, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and "nested too deeply" in r.json()["error"]["message"]


@pytest.mark.parametrize("body", [b"\xff\xfe{", b'{"input": "\xc3\x28"}'])
def test_non_utf8_body_is_a_400(open_server, body):
    r = httpx.post(
        open_server + "/v1/embeddings", content=body, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400


def test_lone_surrogate_in_a_string_is_a_400(open_server):
    """"a\\ud800b" is valid JSON but not text: it was a 500 from the tokenizer."""
    body = b'{"input": ["fine", "a\\ud800b"]}'
    r = httpx.post(
        open_server + "/v1/embeddings", content=body, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and "input[1]" in r.json()["error"]["message"]


def test_unknown_model_is_a_404(open_server):
    """An unknown model is not served; OpenAI answers 404 model_not_found."""
    r = httpx.post(open_server + "/v1/embeddings", json={"model": "text-embedding-3-small", "input": "a"})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model_not_found"
    assert NAME in r.json()["error"]["message"]
    assert f"{NAME}:query" in r.json()["error"]["message"]  # the ids it does serve
    r = httpx.post(open_server + "/v1/embeddings", json={"model": "other:query", "input": "a"})
    assert r.status_code == 404  # the suffix does not make any name valid
    assert embed_ok(open_server)  # the served name
    r = httpx.post(open_server + "/v1/embeddings", json={"input": "a"})  # no model: the served one
    assert r.status_code == 200


def test_repo_id_name_is_also_accepted(model_path):
    worker = Worker(lambda: mlx_jina.load(model_path, task="retrieval")).start()
    app = create_app(worker, model_name="jinaai/jina-embeddings-v5-text-small")
    with live_server(app) as url:
        for name in ("jinaai/jina-embeddings-v5-text-small", "jina-embeddings-v5-text-small"):
            for suffix in ("", ":query"):
                r = httpx.post(url + "/v1/embeddings", json={"model": name + suffix, "input": "a"})
                assert r.status_code == 200, name + suffix
                assert r.json()["model"] == "jinaai/jina-embeddings-v5-text-small" + suffix


def test_disconnect_during_upload_is_not_a_500(open_server, open_server_worker):
    """A client that drops the connection mid-body was counted as a 500 in /metrics."""
    head = (
        b"POST /v1/embeddings HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n{\"input\": \"a"
    )
    host, port = open_server.removeprefix("http://").split(":")
    worker = open_server_worker
    counted = threading.Event()
    record = worker.metrics.request

    def request(path, status, seconds=None):
        record(path, status, seconds)
        if status == 499:
            counted.set()

    before = httpx.get(open_server + "/metrics").text
    worker.metrics.request = request
    try:
        with socket.create_connection((host, int(port))) as s:
            s.sendall(head)
            s.sendall(b"a")  # and leave mid-body
        assert counted.wait(60)
    finally:
        del worker.metrics.request
    after = httpx.get(open_server + "/metrics").text

    def count(text: str, status: int) -> int:
        key = f'mlx_jina_requests_total{{path="/v1/embeddings",status="{status}"}} '
        line = next((ln for ln in text.splitlines() if ln.startswith(key)), key + "0")
        return int(float(line.split()[-1]))

    assert count(after, 500) == count(before, 500)
    assert count(after, 499) == count(before, 499) + 1


# ---------------------------------------------------------------------------
# 9: abandoned and overlong requests, over HTTP


LONG_TEXT = "word " * 10  # 44 tokens with the prompt: one per 64-token batch


def test_client_that_gives_up_stops_the_work(model_path):
    """An abandoned request ran to its end and counted as a 200: now the worker drops it
    before its next batch, and it is counted as 499. The worker is held inside the
    request's first batch while the client leaves."""
    limits = Limits(max_batch_tokens=64, request_timeout=None)
    worker, app = start(model_path, limits)
    gate = Gate(worker)
    try:
        with live_server(app, limits) as url:
            host, port = url.removeprefix("http://").split(":")
            body = json.dumps({"input": [LONG_TEXT] * 20}).encode()  # 20 one-text batches
            with socket.create_connection((host, int(port))) as s:
                s.sendall(
                    b"POST /v1/embeddings HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                    b"application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body
                )
                assert gate.entered.wait(60)  # its first batch is running
                cancelled, job = threading.Event(), gate.jobs[0]
                cancel = job.cancel

                def recorded_cancel():
                    cancel()
                    cancelled.set()

                job.cancel = recorded_cancel
            assert cancelled.wait(60)  # the app saw the client leave
            gate.release.set()
            # The worker drops a cancelled job before the next batch it plans.
            assert embed_ok(url)
            assert (worker.metrics.batches, worker.metrics.cancelled) == (2, 1)
            text = httpx.get(url + "/metrics").text
            assert 'path="/v1/embeddings",status="499"' in text
            assert worker.alive
    finally:
        gate.close()


def test_request_timeout_gives_504(model_path):
    """A request past --request-timeout gets 504 naming the flag, and its work stops; its
    deadline is moved to now while the worker is held in its first batch."""
    limits = Limits(max_batch_tokens=64, request_timeout=300)
    worker, app = start(model_path, limits)
    gate = Gate(worker)
    replies: dict = {}
    try:
        with live_server(app, limits) as url:

            def send():
                replies["r"] = httpx.post(
                    url + "/v1/embeddings", json={"input": [LONG_TEXT] * 20}, timeout=60
                )

            client = threading.Thread(target=send)
            client.start()
            assert gate.entered.wait(60)
            gate.jobs[0].deadline = time.monotonic()
            gate.release.set()
            client.join(60)
            r = replies["r"]
            assert r.status_code == 504 and r.json()["error"]["code"] == "deadline_exceeded"
            assert "--request-timeout" in r.json()["error"]["message"]
            assert worker.metrics.timed_out == 1 and worker.metrics.batches == 1
            assert worker.alive and embed_ok(url)
    finally:
        gate.close()
