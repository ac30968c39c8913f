"""The server under hostile and careless clients: keys, browsers, slow and malformed requests.

Run: python -m pytest tests/test_server_abuse.py -q

Each test reproduces an attack or a misbehaving client with raw sockets or
httpx against a live server on 127.0.0.1, and checks the refusal: its status, its
message, and that the server goes on serving.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
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
    _, app = start(model_path, limits)
    with live_server(app, limits) as url:
        yield url


def raw_exchange(url: str, data: bytes, wait: float = 5.0) -> tuple[bytes, float]:
    """Send raw bytes, read until the server closes; return the reply and the seconds taken."""
    host, port = url.removeprefix("http://").split(":")
    start = time.monotonic()
    with socket.create_connection((host, int(port))) as s:
        s.settimeout(wait)
        s.sendall(data)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except socket.timeout:
            chunks.append(b"<no close>")
    return b"".join(chunks), time.monotonic() - start


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
    reply, seconds = raw_exchange(open_server, b"POST /v1/embeddings HTTP/1.1\r\nHost: local")
    assert status_of(reply) == 408 and b"request_timeout" in reply
    assert 0.9 <= seconds < 4
    assert embed_ok(open_server)


def test_headers_trickled_byte_by_byte_still_time_out(open_server):
    """Each byte resetting a timer is the slowloris trick: the deadline is for the whole head."""
    host, port = open_server.removeprefix("http://").split(":")
    start = time.monotonic()
    with socket.create_connection((host, int(port))) as s:
        s.settimeout(0.3)
        reply = b""
        for byte in b"POST /v1/embeddings HTTP/1.1\r\nHost: localhost\r\nX-Pad: " + b"a" * 200:
            try:
                s.sendall(bytes([byte]))
                reply += s.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                break
            if reply:
                break
    assert status_of(reply) == 408
    assert time.monotonic() - start < 4


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
    reply, seconds = raw_exchange(open_server, request_bytes)
    assert status_of(reply) == 408 and b"--read-timeout" in reply
    assert seconds < 4
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
    reply, seconds = raw_exchange(open_server, request_bytes)
    assert status_of(reply) == 400
    assert seconds < 2 and not reply.endswith(b"<no close>")


def test_open_connections_are_capped(model_path):
    """Idle sockets beyond --max-connections get a 503 at once, and the rest time out."""
    limits = Limits(read_timeout=1.0, max_connections=4)
    _, app = start(model_path, limits)
    with live_server(app, limits) as url:
        host, port = url.removeprefix("http://").split(":")
        idle = [socket.create_connection((host, int(port))) for _ in range(4)]
        try:
            time.sleep(0.2)
            reply, seconds = raw_exchange(url, b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert status_of(reply) == 503 and b"--max-connections" in reply
            assert seconds < 1
        finally:
            for s in idle:
                s.close()
        time.sleep(0.3)
        assert embed_ok(url)


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


def test_disconnect_during_upload_is_not_a_500(open_server):
    """A client that drops the connection mid-body was counted as a 500 in /metrics."""
    head = (
        b"POST /v1/embeddings HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n{\"input\": \"a"
    )
    host, port = open_server.removeprefix("http://").split(":")
    before = httpx.get(open_server + "/metrics").text
    with socket.create_connection((host, int(port))) as s:
        s.sendall(head)
        time.sleep(0.2)
    time.sleep(0.3)
    after = httpx.get(open_server + "/metrics").text

    def count(text: str, status: int) -> int:
        key = f'mlx_jina_requests_total{{path="/v1/embeddings",status="{status}"}} '
        line = next((ln for ln in text.splitlines() if ln.startswith(key)), key + "0")
        return int(float(line.split()[-1]))

    assert count(after, 500) == count(before, 500)
    assert count(after, 499) == count(before, 499) + 1


# ---------------------------------------------------------------------------
# 9: abandoned and overlong requests, over HTTP


def metric(url: str, name: str) -> float:
    text = httpx.get(url + "/metrics").text
    line = next(ln for ln in text.splitlines() if ln.startswith(f"mlx_jina_{name} "))
    return float(line.split()[-1])


@pytest.fixture(scope="module")
def slow_server(model_path):
    """Forward batches of at most 64 tokens, so an N-input request is ~N batches."""
    limits = Limits(max_batch_tokens=64, request_timeout=None)
    worker, app = start(model_path, limits)
    with live_server(app, limits) as url:
        yield url, worker


LONG_TEXT = "word " * 40


def test_client_that_gives_up_stops_the_work(slow_server):
    """An abandoned request must not run to its end and count as a 200: the
    worker drops it before its next batch, and it is counted as 499."""
    url, worker = slow_server
    before = {k: metric(url, k) for k in ("batches_total", "cancelled_total")}
    # 1,000 one-text batches: several seconds even with OpenBLAS (~4.5 ms a batch here);
    # 200 were too few once batches got fast (110 ran before the drop, CI saw it)
    with pytest.raises(httpx.TimeoutException):
        httpx.post(url + "/v1/embeddings", json={"input": [LONG_TEXT] * 1000}, timeout=0.5)
    deadline = time.monotonic() + 20
    while metric(url, "cancelled_total") == before["cancelled_total"]:
        assert time.monotonic() < deadline, "the abandoned job was never dropped"
        time.sleep(0.05)
    ran = metric(url, "batches_total") - before["batches_total"]
    assert ran < 500  # of ~1,000: the rest was dropped
    time.sleep(0.5)
    assert metric(url, "batches_total") - before["batches_total"] == ran  # nothing more ran
    text = httpx.get(url + "/metrics").text
    assert 'path="/v1/embeddings",status="499"' in text
    assert worker.alive and embed_ok(url)


def test_request_timeout_gives_504(model_path):
    limits = Limits(max_batch_tokens=64, request_timeout=0.5)
    worker, app = start(model_path, limits)
    with live_server(app, limits) as url:
        start_time = time.monotonic()
        # 1,000 one-text batches: seconds of work on any machine, so 0.5 s always runs out
        r = httpx.post(url + "/v1/embeddings", json={"input": [LONG_TEXT] * 1000}, timeout=30)
        assert r.status_code == 504 and r.json()["error"]["code"] == "deadline_exceeded"
        assert "--request-timeout" in r.json()["error"]["message"]
        assert time.monotonic() - start_time < 5
        assert metric(url, "timed_out_total") == 1
        assert worker.alive and embed_ok(url)
