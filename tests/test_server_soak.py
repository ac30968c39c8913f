"""A bounded soak: 32 clients mixing good, abandoned, malformed and slow requests.

Run: python -m pytest tests/test_server_soak.py -q -s   (-s prints the tallies and RSS)

`mlx-jina serve` runs as a real subprocess on 127.0.0.1 (so its memory is its own) for
SOAK_SECONDS. Afterwards: every answered vector equals a direct `encode` with the same
task, prompt and dimensions; /health is 200 and the worker alive; no request got a 500;
and the server's RSS, once idle, is back within RSS_BOUND_MIB of what it was after warm-up.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest

import mlx_jina

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = 32
WEIGHTS = [int(w) for w in os.environ.get("SOAK_W", "6,1,2,1").split(",")]
SOAK_SECONDS = 12.0
RSS_BOUND_MIB = 64  # idle RSS after the soak may exceed the warmed-up RSS by this much
TEXTS = [
    "What is the capital of France?",
    "Paris is the capital and largest city of France.",
    "Mars is often called the Red Planet.",
    "Le renard brun rapide saute par-dessus le chien paresseux.",
    "机器学习 模型 文本 向量",
    "hello",
    "Embeddings map text to vectors; similar texts get similar vectors. " * 4,
]
# Jina API task -> (adapter, prompt name)
TASKS = {
    "retrieval.query": ("retrieval", "query"),
    "retrieval.passage": ("retrieval", "document"),
    "text-matching": ("text-matching", "document"),
    "clustering": ("clustering", "document"),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    out = subprocess.run(["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True)
    return int(out.stdout.split()[0]) / 1024


def released(base: str, auth: dict[str, str]) -> bool:
    text = httpx.get(base + "/metrics", headers=auth).text
    line = next(ln for ln in text.splitlines() if ln.startswith("mlx_jina_memory_released "))
    return float(line.split()[-1]) == 1


def wait_for_release(base: str, auth: dict[str, str]) -> None:
    """Wait until the worker, idle since its last job, has given memory back (the gauge
    is reset when work arrives; polled, not a timer)."""
    deadline = time.monotonic() + 60
    while not released(base, auth):
        assert time.monotonic() < deadline, "the worker never went idle"
        time.sleep(0.1)


def raw(port: int, data: bytes, *, timeout: float = 30.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        try:
            return s.recv(4096)
        except (socket.timeout, OSError):
            return b""


class Client(threading.Thread):
    """One client: a random mix of actions until the deadline; good answers are kept."""

    def __init__(self, port: int, seed: int, deadline: float, headers: dict[str, str]):
        super().__init__(daemon=True)
        self.port, self.rng, self.deadline = port, random.Random(seed), deadline
        self.headers = headers
        self.url = f"http://127.0.0.1:{port}/v1/embeddings"
        self.answers: list[tuple[str, int | None, list[str], np.ndarray]] = []
        self.tally: Counter = Counter()
        self.errors: list[str] = []

    def run(self) -> None:
        with httpx.Client(timeout=30, headers=self.headers) as http:
            while time.monotonic() < self.deadline:
                action = self.rng.choices(
                    ["good", "abandoned", "malformed", "slow"], weights=WEIGHTS
                )[0]
                try:
                    getattr(self, action)(http)
                    self.tally[action] += 1
                except Exception as e:  # noqa: BLE001 - reported by the test
                    self.errors.append(f"{action}: {type(e).__name__}: {e}")

    def good(self, http: httpx.Client) -> None:
        task = self.rng.choice(list(TASKS))
        dims = self.rng.choice([None, 32, 48])
        texts = self.rng.sample(TEXTS, self.rng.randint(1, 5))
        body = {"model": "soak", "input": texts, "task": task}
        if dims:
            body["dimensions"] = dims
        r = http.post(self.url, json=body)
        if r.status_code != 200:
            raise AssertionError(f"good request got {r.status_code}: {r.text[:200]}")
        vectors = np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32)
        self.answers.append((task, dims, texts, vectors))

    def abandoned(self, http: httpx.Client) -> None:
        body = {"model": "soak", "input": [TEXTS[-1] * 4] * 64, "task": "clustering"}
        try:
            httpx.post(self.url, json=body, headers=self.headers, timeout=0.2)
        except httpx.TimeoutException:
            pass

    def malformed(self, http: httpx.Client) -> None:
        kind = self.rng.randrange(7)
        if kind == 0:
            r = http.post(self.url, content=b"{not json", headers={"Content-Type": "application/json"})
            expect = 400
        elif kind == 1:
            r = http.post(self.url, content=b'{"input": "a"}', headers={"Content-Type": "text/plain"})
            expect = 415
        elif kind == 2:
            r = http.post(self.url, json={"input": "a"}, headers={"Host": "evil.example"})
            expect = 400
        elif kind == 3:
            r = http.post(self.url, json={"model": "gpt-4", "input": "a"})
            expect = 404
        elif kind == 4:
            deep = b"[" * 50_000 + b"]" * 50_000
            r = http.post(self.url, content=deep, headers={"Content-Type": "application/json"})
            expect = 400
        elif kind == 5:
            r = http.post(self.url, json={"input": [1.5, "x"], "dimensions": "many"})
            expect = 400
        else:
            reply = raw(
                self.port,
                b"POST /v1/embeddings HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            )
            assert reply.startswith(b"HTTP/1.1 400"), reply[:80]
            return
        if r.status_code != expect:
            raise AssertionError(f"malformed #{kind} got {r.status_code}, expected {expect}")

    def slow(self, http: httpx.Client) -> None:
        if self.rng.random() < 0.5:  # headers that never finish
            reply = raw(self.port, b"POST /v1/embeddings HTTP/1.1\r\nHost: loc")
        else:  # a body shorter than its Content-Length
            reply = raw(
                self.port,
                b"POST /v1/embeddings HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                b"application/json\r\nAuthorization: Bearer soak-key\r\n"
                b"Content-Length: 100\r\n\r\n{\"input\"",
            )
        assert reply.startswith(b"HTTP/1.1 408"), reply[:80]


@pytest.mark.slow
def test_soak(tiny_qwen_base):
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "mlx_jina", "serve", "-m", str(tiny_qwen_base),
            "--multitask", "--task", "retrieval", "--served-model-name", "soak",
            "--port", str(port), "--read-timeout", "1", "--request-timeout", "60",
            "--max-batch-tokens", "1024", "--log-level", "error",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MLX_JINA_API_KEY": "soak-key"},
    )
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": "Bearer soak-key"}
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "server did not start"
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        # Warm up every task once, then let the server go idle: that is the baseline.
        for task in TASKS:
            r = httpx.post(base + "/v1/embeddings", json={"input": TEXTS, "task": task}, headers=auth)
            assert r.status_code == 200
        wait_for_release(base, auth)
        rss_start = rss_mib(proc.pid)

        end = time.monotonic() + SOAK_SECONDS
        clients = [Client(port, seed, end, auth) for seed in range(CLIENTS)]
        for c in clients:
            c.start()
        for c in clients:
            c.join(SOAK_SECONDS + 60)
        assert not any(c.is_alive() for c in clients), "a client hung"

        errors = [e for c in clients for e in c.errors]
        tally = sum((c.tally for c in clients), Counter())
        assert not errors, "\n".join(errors[:5])
        assert min(tally[k] for k in ("good", "abandoned", "malformed", "slow")) > 0, tally

        health = httpx.get(base + "/health")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        metrics = httpx.get(base + "/metrics", headers=auth).text
        assert 'status="500"' not in metrics
        # idle: the worker empties MLX's cache and trims the heap
        wait_for_release(base, auth)
        rss_end = rss_mib(proc.pid)
        print(f"\nsoak: {dict(tally)}; RSS {rss_start:.0f} MiB after warm-up, "
              f"{rss_end:.0f} MiB idle after the soak")
        assert rss_end <= rss_start + RSS_BOUND_MIB
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()

    # Every answer equals direct encode with its settings (vectors don't depend on batching).
    model = mlx_jina.load(tiny_qwen_base, multitask=True, task="retrieval")
    expected: dict[tuple, np.ndarray] = {}
    answers = [a for c in clients for a in c.answers]
    for task, dims, texts, vectors in answers:
        adapter, prompt_name = TASKS[task]
        for text, got in zip(texts, vectors):
            key = (task, dims, text)
            if key not in expected:
                expected[key] = model.encode(
                    text, task=adapter, prompt_name=prompt_name, truncate_dim=dims
                )
            assert float(np.dot(got, expected[key])) >= 0.99999, key
    assert len(answers) >= CLIENTS
