"""`mlx-jina serve`: a live uvicorn server on 127.0.0.1 with a tiny local model.

Run: python -m pytest tests/test_server.py -q

Clients are the real `openai` SDK and plain httpx (as a Jina API client sends). Every
vector is checked against direct `Embedder.encode` on a model loaded in the test thread,
and the retrieval vectors also against the independent torch + peft reference.
"""

from __future__ import annotations

import base64
import json
import random
import re
import shutil
import threading
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

import mlx_jina
from builders.reference import reference_embeddings, reference_token_ids
from live_server import live_server
from mlx_jina.server import Limits, Worker, create_app
from mlx_jina.tasks import TASK_NAMES

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
TEXTS = [
    "What is the capital of France?",
    "Paris is the capital and largest city of France.",
    "Mars is often called the Red Planet.",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "hello",
    "Embeddings map text to vectors; similar texts get similar vectors. " * 3,
]
CONTEXT = 40  # the "limits" model's max_position_embeddings
# Jina API task -> (adapter, prompt text), as Jina trained them (docs/model-facts.md).
JINA_TASKS = {
    "retrieval.query": ("retrieval", "Query: "),
    "retrieval.passage": ("retrieval", "Document: "),
    "text-matching": ("text-matching", "Document: "),
    "classification": ("classification", "Document: "),
    "clustering": ("clustering", "Document: "),
}


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.atleast_2d(a).astype(np.float64), np.atleast_2d(b).astype(np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def assert_same(got, want) -> None:
    got, want = np.asarray(got, dtype=np.float32), np.asarray(want, dtype=np.float32)
    assert got.shape == want.shape
    assert cosines(got, want).min() >= 0.99999
    np.testing.assert_allclose(got, want, atol=1e-4)


@pytest.fixture(scope="module")
def server(tiny_qwen_base):
    """Multitask server (all four adapters, default retrieval) with an API key, taking
    token ids (refused by default: tests/test_server_clients.py)."""
    worker = Worker(
        lambda: mlx_jina.load(tiny_qwen_base, multitask=True, task="retrieval"),
        limits=Limits(max_inputs=64, max_body_bytes=64 * 1024, max_batch_tokens=2048),
    ).start()
    app = create_app(worker, model_name="tiny-jina", api_key=KEY, accept_token_ids=True)
    with live_server(app) as url:
        yield url
    assert not worker.alive  # the app's shutdown stopped the worker


@pytest.fixture(scope="module")
def limits_model(tiny_qwen_base, tmp_path_factory) -> Path:
    """tiny_qwen_base with a 40-token context, so over-long inputs are cheap."""
    folder = tmp_path_factory.mktemp("short_context") / "model"
    shutil.copytree(tiny_qwen_base, folder)
    config = json.loads((folder / "config.json").read_text())
    config["max_position_embeddings"] = CONTEXT
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def limits_server(limits_model):
    """Single-task (retrieval) server, no API key, a queue of one request, token ids."""
    worker = Worker(
        lambda: mlx_jina.load(limits_model, task="retrieval"), limits=Limits(max_queue=1)
    ).start()
    with live_server(create_app(worker, model_name="short", accept_token_ids=True)) as url:
        yield url, worker


def post(url: str, body, headers=AUTH, **kwargs) -> httpx.Response:
    return httpx.post(url + "/v1/embeddings", json=body, headers=headers, timeout=30, **kwargs)


# ---------------------------------------------------------------------------
# the OpenAI SDK


def test_openai_sdk_default_base64(server, qwen_for):
    """The SDK asks for base64 by default; it must decode to the direct-encode vectors."""
    client = openai.OpenAI(base_url=server + "/v1", api_key=KEY, max_retries=0)
    raw = client.embeddings.with_raw_response.create(model="tiny-jina", input=TEXTS)
    sent = json.loads(raw.http_request.content)
    assert sent["encoding_format"] == "base64"  # the SDK default this server must honour
    wire = raw.http_response.json()
    assert all(isinstance(d["embedding"], str) for d in wire["data"])
    result = raw.parse()
    got = np.array([d.embedding for d in sorted(result.data, key=lambda d: d.index)])
    assert_same(got, qwen_for("retrieval").encode(TEXTS))
    assert result.model == "tiny-jina"
    # usage counts the real tokenizer's tokens, "Document: " prompt and specials included
    ids = reference_token_ids(server_tokenizer(qwen_for), TEXTS, prompt="Document: ")
    assert result.usage.prompt_tokens == result.usage.total_tokens == sum(map(len, ids))


def server_tokenizer(qwen_for) -> Path:
    return Path(qwen_for("retrieval").source) / "tokenizer.json"


def test_openai_sdk_float_and_dimensions(server, qwen_for):
    """encoding_format=float and dimensions (Matryoshka: cut, then renormalize)."""
    client = openai.OpenAI(base_url=server + "/v1", api_key=KEY, max_retries=0)
    result = client.embeddings.create(
        model="tiny-jina", input=TEXTS[:3], encoding_format="float", dimensions=32
    )
    got = np.array([d.embedding for d in result.data])
    assert got.shape == (3, 32)
    assert_same(got, qwen_for("retrieval").encode(TEXTS[:3], truncate_dim=32))
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
    one = client.embeddings.create(model="tiny-jina", input="hello", dimensions=48)
    assert_same(one.data[0].embedding, qwen_for("retrieval").encode("hello", truncate_dim=48))


def test_openai_sdk_token_ids(server, qwen_for):
    """Token id input is embedded as sent: the ids of "Document: hello" give encode("hello")."""
    client = openai.OpenAI(base_url=server + "/v1", api_key=KEY, max_retries=0)
    ids = reference_token_ids(server_tokenizer(qwen_for), ["hello", TEXTS[2]], prompt="Document: ")
    want = qwen_for("retrieval").encode(["hello", TEXTS[2]])
    many = client.embeddings.create(model="tiny-jina", input=ids, encoding_format="float")
    assert_same([d.embedding for d in many.data], want)
    assert many.usage.prompt_tokens == sum(map(len, ids))
    one = client.embeddings.create(model="tiny-jina", input=ids[0])  # a flat id list
    assert_same([one.data[0].embedding], want[:1])


# ---------------------------------------------------------------------------
# Jina API fields


@pytest.mark.parametrize("task", list(JINA_TASKS))
def test_jina_task(server, qwen_for, task):
    """Each Jina task picks its adapter and prompt; retrieval.query uses "Query: "."""
    adapter, prompt = JINA_TASKS[task]
    r = post(server, {"model": "tiny-jina", "input": TEXTS, "task": task})
    assert r.status_code == 200, r.text
    got = np.array([d["embedding"] for d in r.json()["data"]])
    assert_same(got, qwen_for(adapter).encode(TEXTS, prompt=prompt))
    if task.startswith("retrieval"):  # independent check: torch + peft merge
        model_dir = Path(qwen_for(adapter).source)
        want = reference_embeddings(model_dir, TEXTS, task=adapter, prompt=prompt)
        assert cosines(got, want).min() >= 0.9999


def test_query_and_passage_differ(server):
    """Queries and passages get different prompts, so different vectors."""
    q = post(server, {"input": "Mars", "task": "retrieval.query"}).json()["data"][0]["embedding"]
    p = post(server, {"input": "Mars", "task": "retrieval.passage"}).json()["data"][0]["embedding"]
    assert cosines(q, p)[0] < 0.999


@pytest.mark.parametrize("kind", ["float", "base64", "binary", "ubinary", "int8"])
def test_jina_embedding_type(server, qwen_for, kind):
    """embedding_type wins over the SDK's encoding_format and matches encode(precision=)."""
    body = {
        "input": TEXTS,
        "task": "text-matching",
        "embedding_type": kind,
        "dimensions": 56,
        "encoding_format": "base64",
    }
    r = post(server, body)
    assert r.status_code == 200, r.text
    data = [d["embedding"] for d in r.json()["data"]]
    model = qwen_for("text-matching")
    if kind in ("float", "base64"):
        if kind == "base64":
            data = [np.frombuffer(base64.b64decode(s), dtype="<f4") for s in data]
        assert_same(data, model.encode(TEXTS, truncate_dim=56))
        return
    want = model.encode(TEXTS, truncate_dim=56, precision=kind)
    got = np.array(data)
    assert got.shape == want.shape == (len(TEXTS), 7 if "binary" in kind else 56)
    assert got.min() >= np.iinfo(want.dtype).min and got.max() <= np.iinfo(want.dtype).max
    # Server (unmerged LoRA) and direct (merged) floats differ by ~1e-7, which could move
    # one value over a bin edge or zero: allow one differing element at most.
    assert (got != want).sum() <= 1
    if kind == "int8":
        assert np.abs(got - want.astype(int)).max() <= 1


def test_jina_normalized_false(server, qwen_for):
    """normalized: false returns the raw pooled state (cut to dimensions, no L2 norm)."""
    r = post(
        server,
        {"input": TEXTS[:2], "task": "classification", "normalized": False, "dimensions": 40},
    )
    got = np.array([d["embedding"] for d in r.json()["data"]])
    want = qwen_for("classification").encode(
        TEXTS[:2], truncate_dim=40, normalize_embeddings=False
    )
    assert_same(got, want)
    assert np.abs(np.linalg.norm(got, axis=1) - 1).max() > 0.01


def test_jina_text_objects(server, qwen_for):
    """Jina's {"text": ...} input objects are accepted."""
    r = post(server, {"input": [{"text": t} for t in TEXTS[:2]], "task": "clustering"})
    assert_same(
        [d["embedding"] for d in r.json()["data"]], qwen_for("clustering").encode(TEXTS[:2])
    )


def test_truncate_field(limits_server, limits_model):
    """truncate: false (the default) refuses over-long inputs naming the limit; true cuts."""
    url, _ = limits_server
    long = "Mars is often called the Red Planet. " * 12
    r = post(url, {"input": ["hi", long]}, headers={})
    assert r.status_code == 400
    assert f"{CONTEXT}" in r.json()["error"]["message"] and "truncate" in r.json()["detail"]
    r = post(url, {"input": ["hi", long], "truncate": True}, headers={})
    assert r.status_code == 200, r.text
    want = mlx_jina.load(limits_model, task="retrieval").encode(["hi", long])  # cuts at 40
    assert_same([d["embedding"] for d in r.json()["data"]], want)
    ids = reference_token_ids(limits_model / "tokenizer.json", ["hi"], prompt="Document: ")
    assert r.json()["usage"]["prompt_tokens"] == len(ids[0]) + CONTEXT
    # token ids: the same rule
    r = post(url, {"input": [[5] * (CONTEXT + 1)]}, headers={})
    assert r.status_code == 400 and f"limit of {CONTEXT}" in r.json()["detail"]
    r = post(url, {"input": [[5] * (CONTEXT + 1)], "truncate": True}, headers={})
    assert r.status_code == 200 and r.json()["usage"]["prompt_tokens"] == CONTEXT


def test_a_15_mb_text_is_cut_before_it_is_tokenized(limits_server, limits_model):
    """One 15 MB text with "truncate": true took the server from 82 MB to 2.58 GB and
    over a minute; it is now cut by prefix (tests/test_long_inputs.py): its vector is that
    of its first 2,000 characters, cut at the context, and usage counts the context."""
    url, _ = limits_server
    huge = ("Mars is often called the Red Planet. " * 420_000)[:15_000_000]
    r = post(url, {"input": huge, "truncate": True}, headers={})
    assert r.status_code == 200, r.text[:200]
    assert r.json()["usage"]["prompt_tokens"] == CONTEXT
    with pytest.warns(UserWarning, match="were truncated"):
        want = mlx_jina.load(limits_model, task="retrieval").encode([huge[:2000]])
    assert_same([r.json()["data"][0]["embedding"]], want)
    r = post(url, {"input": huge}, headers={})
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"


# ---------------------------------------------------------------------------
# concurrency


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert match, f"{name} missing from /metrics"
    return float(match.group(1))


def test_concurrent_clients_share_batches(server, qwen_for):
    """16 threads x 25 requests of 1-8 texts: every vector equals direct encode, no errors,
    and the worker put several requests into one batch."""
    pool = [f"{t} ({i})" for i, t in enumerate(TEXTS * 4)]
    want = {t: v for t, v in zip(pool, qwen_for("retrieval").encode(pool), strict=True)}
    before = httpx.get(server + "/metrics", headers=AUTH).text
    errors, checked = [], []

    def client(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=server, headers=AUTH, timeout=60) as http:
            for _ in range(25):
                texts = rng.sample(pool, rng.randint(1, 8))
                fmt = rng.choice(["float", "base64"])
                r = http.post("/v1/embeddings", json={"input": texts, "encoding_format": fmt})
                if r.status_code != 200:
                    errors.append(r.text)
                    continue
                for d in r.json()["data"]:
                    vec = d["embedding"]
                    if fmt == "base64":
                        vec = np.frombuffer(base64.b64decode(vec), dtype="<f4")
                    cos = cosines(vec, want[texts[d["index"]]])[0]
                    checked.append(cos)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    assert len(checked) >= 16 * 25 and min(checked) >= 0.99999
    after = httpx.get(server + "/metrics", headers=AUTH).text
    name = 'mlx_jina_requests_total{path="/v1/embeddings",status="200"}'
    assert metric(after, name) - metric(before, name) == 400
    batches = metric(after, "mlx_jina_batch_requests_count") - metric(
        before, "mlx_jina_batch_requests_count"
    )
    single = metric(after, 'mlx_jina_batch_requests_bucket{le="1.0"}') - metric(
        before, 'mlx_jina_batch_requests_bucket{le="1.0"}'
    )
    assert batches < 400 and single < batches  # some batches held several requests


# ---------------------------------------------------------------------------
# bad requests


BAD_REQUESTS = [
    # (name, body or raw bytes, status, words the message must contain)
    ("empty list", {"input": []}, 400, "empty list"),
    ("empty string", {"input": ["ok", ""]}, 400, "input[1] is empty"),
    ("blank string", {"input": ["ok", " \n"]}, 400, "input[1] holds only whitespace"),
    ("no input", {"model": "x"}, 400, "'input' is required"),
    ("input number", {"input": 5}, 400, "must be a string"),
    ("mixed input", {"input": ["a", 1]}, 400, "input[1] is int"),
    ("strings and lists", {"input": ["a", [1]]}, 400, "mixes strings and lists"),
    ("bad id list", {"input": [[1, "a"]]}, 400, "input[0] must be a non-empty list"),
    ("id out of range", {"input": [[1, 10**6]]}, 400, "valid ids are 0 to"),
    ("negative id", {"input": [[-1]]}, 400, "token id -1"),
    ("unknown task", {"input": "a", "task": "retrieval.doc"}, 400, "Unknown task 'retrieval."),
    (
        "dimensions small",
        {"input": "a", "dimensions": 8},
        400,
        "dimensions=8; use an integer from 32 to 64",
    ),
    ("dimensions big", {"input": "a", "dimensions": 65}, 400, "from 32 to 64"),
    ("dimensions text", {"input": "a", "dimensions": "64"}, 400, "'dimensions' must be an integer"),
    ("dimensions bool", {"input": "a", "dimensions": True}, 400, "'dimensions' must be an integer"),
    ("encoding format", {"input": "a", "encoding_format": "float16"}, 400, "use float or base64"),
    ("embedding type", {"input": "a", "embedding_type": "int4"}, 400, "embedding_type='int4'"),
    (
        "normalized text",
        {"input": "a", "normalized": "yes"},
        400,
        "'normalized' must be true or false",
    ),
    ("model number", {"input": "a", "model": 3}, 400, "'model' must be a string"),
    ("too many inputs", {"input": ["a"] * 65}, 400, "at most 64 per request"),
    ("not json", b"{input: 'a'", 400, "not valid JSON"),
    ("json array", b'["a"]', 400, "must be a JSON object"),
    ("body too large", {"input": ["x" * 1000] * 66}, 413, "limit of 65536 bytes"),
]


@pytest.mark.parametrize("name,body,status,words", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_request(server, name, body, status, words):
    """Bad input answers the right 4xx with a message naming the problem, never a 500."""
    if isinstance(body, bytes):
        r = httpx.post(
            server + "/v1/embeddings",
            content=body,
            headers={**AUTH, "Content-Type": "application/json"},
        )
    else:
        r = post(server, body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert words in error["message"], error["message"]
    assert error["type"] == "invalid_request_error" and r.json()["detail"] == error["message"]


def test_body_too_large_without_content_length(server):
    """A chunked body is counted as it streams in."""

    def chunks():
        for _ in range(70):
            yield b" " * 1024

    headers = {**AUTH, "Content-Type": "application/json"}
    r = httpx.post(server + "/v1/embeddings", content=chunks(), headers=headers)
    assert r.status_code == 413 and "65536" in r.json()["detail"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}])
def test_api_key(server, headers):
    """--api-key: missing or wrong bearer tokens get 401 on the API and /metrics."""
    for r in (
        post(server, {"input": "a"}, headers=headers),
        httpx.get(server + "/v1/models", headers=headers),
        httpx.get(server + "/metrics", headers=headers),
    ):
        assert r.status_code == 401
        assert "Authorization: Bearer" in r.json()["error"]["message"]
        assert r.headers["www-authenticate"] == "Bearer"
    assert httpx.get(server + "/health").status_code == 200  # liveness stays open
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server + "/v1", api_key="wrong", max_retries=0).embeddings.create(
            model="x", input="a"
        )


def test_single_task_server_refuses_other_tasks(limits_server):
    """A single-task server names the adapter it runs and how to serve the others."""
    url, _ = limits_server
    assert post(url, {"input": "a", "task": "retrieval.query"}, headers={}).status_code == 200
    r = post(url, {"input": "a", "task": "clustering"}, headers={})
    assert r.status_code == 400
    assert "'retrieval' adapter, not 'clustering'" in r.json()["detail"]
    assert "--multitask" in r.json()["detail"]


def test_queue_full(limits_server, limits_model):
    """With the worker busy and its one queue slot taken, a third request gets 429 with
    Retry-After; the first two then finish correctly."""
    url, worker = limits_server
    model = worker.model
    entered, release = threading.Event(), threading.Event()
    original = model.embed_batch

    def blocked(*args, **kwargs):
        entered.set()
        assert release.wait(30)
        return original(*args, **kwargs)

    model.embed_batch = blocked  # the worker calls the instance attribute
    submitted, submit = threading.Semaphore(0), worker.submit

    def counted(job):
        future = submit(job)
        submitted.release()
        return future

    worker.submit = counted  # the service calls the instance attribute
    results = {}

    def send(name, text):
        results[name] = post(url, {"input": text}, headers={})

    try:
        first = threading.Thread(target=send, args=("first", "one"))
        first.start()
        assert entered.wait(10)  # the worker is inside the first request
        second = threading.Thread(target=send, args=("second", "two"))
        second.start()
        assert submitted.acquire(timeout=30) and submitted.acquire(timeout=30)  # both queued
        assert worker.queue_depth == 1
        r = post(url, {"input": "three"}, headers={})
        assert r.status_code == 429
        assert r.headers["retry-after"] == "1" and "queue is full" in r.json()["detail"]
        assert r.json()["error"]["type"] == "rate_limit_error"
    finally:
        release.set()
        del model.embed_batch, worker.submit
    first.join(30)
    second.join(30)
    direct = mlx_jina.load(limits_model, task="retrieval")
    for name, text in (("first", "one"), ("second", "two")):
        assert results[name].status_code == 200
        assert_same([results[name].json()["data"][0]["embedding"]], direct.encode([text]))
    assert httpx.get(url + "/health").json()["status"] == "ok"


def test_healthy_after_bad_requests(server, qwen_for):
    """After every bad request above, the server still answers and still embeds correctly."""
    for _, body, _, _ in BAD_REQUESTS:
        if not isinstance(body, bytes):
            post(server, body)
    health = httpx.get(server + "/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    r = post(server, {"input": TEXTS[:2]})
    assert_same(
        [d["embedding"] for d in r.json()["data"]], qwen_for("retrieval").encode(TEXTS[:2])
    )
    text = httpx.get(server + "/metrics", headers=AUTH).text
    assert 'status="500"' not in text


# ---------------------------------------------------------------------------
# the other endpoints


def test_models_health_metrics(server):
    """/v1/models lists the model (OpenAI shape), /health is ok, /metrics is Prometheus text."""
    client = openai.OpenAI(base_url=server + "/v1", api_key=KEY, max_retries=0)
    models = client.models.list().data
    assert [m.id for m in models] == ["tiny-jina", "tiny-jina:query"]
    info = httpx.get(server + "/v1/models", headers=AUTH).json()["data"][0]
    assert info["tasks"] == list(TASK_NAMES) and info["dimensions"] == 64
    assert info["max_input_tokens"] == 32768
    assert httpx.get(server + "/health").json() == {
        "status": "ok",
        "model": "tiny-jina",
        "loaded": ["tiny-jina"],
        "queue_depth": 0,
    }
    post(server, {"input": ["a", "b"]})
    r = httpx.get(server + "/metrics", headers=AUTH)
    assert r.headers["content-type"].startswith("text/plain")
    for name in (
        "mlx_jina_inputs_total",
        "mlx_jina_tokens_total",
        "mlx_jina_queue_depth",
        "mlx_jina_batch_requests_count",
        "mlx_jina_batch_tokens_sum",
        "mlx_jina_request_duration_seconds_count",
    ):
        metric(r.text, name)
    assert metric(r.text, "mlx_jina_queue_depth") == 0
    assert metric(r.text, "mlx_jina_inputs_total") >= 2


def test_the_model_fingerprint_is_served(server, tiny_qwen_base, tmp_path):
    """Clients that store vectors can tell the model behind the server by content: the
    same files loaded from another path give the same fingerprint, in GET /v1/models and
    on every embeddings response."""
    copy = shutil.copytree(tiny_qwen_base, tmp_path / "copy")
    same = mlx_jina.load(copy, multitask=True, task="retrieval").identity
    listed = httpx.get(server + "/v1/models", headers=AUTH).json()["data"]
    assert [m["fingerprint"] for m in listed] == [same, same]
    r = httpx.post(server + "/v1/embeddings", json={"input": ["a"]}, headers=AUTH)
    assert r.status_code == 200 and r.headers["x-model-fingerprint"] == same
    assert mlx_jina.load(copy, task="retrieval").identity != same  # merged, not multitask


def test_docs_list_every_limit_with_its_default():
    """docs/server.md's table of limits names each serve flag with the default that
    `mlx-jina serve --help` shows (both read mlx_jina/server/limits.py)."""
    from dataclasses import fields

    from mlx_jina.server.limits import SHOWN

    doc = (Path(__file__).resolve().parents[1] / "docs" / "server.md").read_text()
    for f in fields(Limits):
        flag = "--" + f.name.replace("_", "-")
        shown = SHOWN[f.metadata["unit"]](f.default)
        assert f"| `{flag}` | {shown} |" in doc, (flag, shown)
