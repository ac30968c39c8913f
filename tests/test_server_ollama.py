"""Ollama's embedding API on `mlx-jina serve`, under the real Ollama client libraries.

Run: python -m pytest tests/test_server_ollama.py -q

The `ollama` client, LangChain's OllamaEmbeddings and LlamaIndex's OllamaEmbedding talk to
a live server on 127.0.0.1 that serves three tiny models from one registry (a Qwen3 one,
a EuroBERT one under a repo id, and a Qwen3 one with a 40-token context). Every vector is
compared with `encode_query` / `encode_document` of the same checkpoint loaded in the test
thread (cosine >= 0.99999), and the wrong prompt is shown to give other vectors. The key
reaches every client through $OLLAMA_API_KEY, which the ollama client reads.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path

import httpx
import pytest

import mlx_jina
from builders.layouts import with_context
from live_server import live_server
from mlx_jina.server import Limits, create_app
from mlx_jina.server.durations import FOREVER
from mlx_jina.server.ollama import ollama_shaped
from mlx_jina.server.protocol import ApiError
from mlx_jina.server.registry import ModelRegistry, ModelSpec
from mlx_jina.server.service import queue_full
from vector_checks import AUTH, DOCS, KEY, NAME, QUERY, assert_differ, assert_same

ollama = pytest.importorskip("ollama")

NANO = "jinaai/jina-nano-tiny"  # a repo id: also asked for by its name alone
SHORT = "jina-short"
CONTEXT = 40  # SHORT's max_position_embeddings
LONG = "Embeddings map text to vectors; similar texts get similar vectors. " * 20


@pytest.fixture(scope="module")
def short_model(tiny_qwen_base, tmp_path_factory) -> Path:
    """tiny_qwen_base with a 40-token context, so over-long inputs are cheap."""
    folder = tmp_path_factory.mktemp("short_context") / "model"
    return with_context(tiny_qwen_base, folder, CONTEXT)


def spec(name: str, folder: Path, **kwargs) -> ModelSpec:
    return ModelSpec(name, lambda: mlx_jina.load(folder, task="retrieval"), str(folder), **kwargs)


@pytest.fixture(scope="module")
def server(tiny_qwen_base, tiny_eurobert_base, short_model):
    """Three models in one registry, loaded on first use, kept until the server stops."""
    registry = ModelRegistry(
        [spec(NAME, tiny_qwen_base), spec(NANO, tiny_eurobert_base), spec(SHORT, short_model)],
        keep_alive=FOREVER,
    )
    with live_server(create_app(registry, api_key=KEY)) as url:
        yield url


@pytest.fixture(autouse=True)
def ollama_key(monkeypatch):
    monkeypatch.setenv("OLLAMA_API_KEY", KEY)  # ollama.Client sends it as a Bearer key


def client(url: str) -> "ollama.Client":
    return ollama.Client(host=url, timeout=60)


def post(url: str, path: str, body, headers=AUTH) -> httpx.Response:
    headers = {**headers, "Content-Type": "application/json"}
    return httpx.post(url + path, content=json.dumps(body), headers=headers, timeout=60)


def loaded_names(url: str) -> list[str]:
    return [m.model for m in client(url).ps().models]


# ---------------------------------------------------------------------------
# the ollama client


def test_embed_documents_and_queries(server, qwen):
    """`<name>` (and :latest, :document) embeds documents, `<name>:query` queries."""
    docs, query = qwen.encode_document(DOCS), qwen.encode_query(QUERY)
    for model in (NAME, NAME + ":latest", NAME + ":document", NAME + ":LATEST"):
        assert_same(client(server).embed(model=model, input=DOCS).embeddings, docs)
    answer = client(server).embed(model=NAME + ":query", input=QUERY)
    assert_same(answer.embeddings, query)
    assert_differ(answer.embeddings, qwen.encode_document(QUERY))
    assert answer.model == NAME + ":query"
    assert answer.prompt_eval_count == len(qwen.tokenize(["Query: " + QUERY])[0])
    assert isinstance(answer.total_duration, int) and answer.total_duration > 0
    cut = client(server).embed(model=NAME, input=DOCS, dimensions=32).embeddings
    assert_same(cut, qwen.encode_document(DOCS, truncate_dim=32))


def test_legacy_embeddings_route(server, qwen):
    """/api/embeddings: one prompt, `{"embedding": [...]}`; an empty prompt only loads."""
    got = client(server).embeddings(model=NAME + ":query", prompt=QUERY).embedding
    assert_same(got, qwen.encode_query(QUERY))
    assert_same(client(server).embeddings(model=NAME, prompt=DOCS[0]).embedding,
                qwen.encode_document(DOCS[0]))  # fmt: skip
    r = post(server, "/api/embeddings", {"model": NAME, "prompt": ""})
    assert r.status_code == 200 and r.json() == {"embedding": []}


def test_two_models_answer_with_their_own_vectors(server, qwen, nano):
    """A repo id works with its tags and by its name alone; each model its own vectors."""
    short_name = NANO.rsplit("/", 1)[1]
    for model in (NANO + ":query", short_name + ":query"):
        assert_same(client(server).embed(model=model, input=QUERY).embeddings,
                    nano.encode_query(QUERY))  # fmt: skip
    got = client(server).embed(model=short_name, input=DOCS).embeddings
    assert_same(got, nano.encode_document(DOCS))
    assert_same(client(server).embed(model=NAME, input=DOCS).embeddings,
                qwen.encode_document(DOCS))  # fmt: skip
    assert_differ(got, qwen.encode_document(DOCS))


def test_tags_ps_and_show(server, qwen):
    """Every offered model in /api/tags; loaded ones in /api/ps; /api/show's facts."""
    client(server).embed(model=NAME, input="load it")
    listed = {m.model: m for m in client(server).list().models}
    assert {NAME + ":latest", NAME + ":query", NANO + ":latest", SHORT + ":latest"} <= set(listed)
    entry = listed[NAME + ":latest"]
    assert entry.digest == qwen.identity and entry.size > 0
    assert entry.details.family == "qwen3" and entry.details.format == "safetensors"
    assert entry.details.quantization_level == "F32" and entry.details.parameter_size
    running = {m.model: m for m in client(server).ps().models}
    assert NAME + ":latest" in running
    assert running[NAME + ":latest"].expires_at.year > 2200  # kept for good, as Ollama says
    shown = client(server).show(NAME + ":query")
    assert shown.capabilities == ["embedding"]
    assert shown.modelinfo["general.architecture"] == "qwen3"
    assert shown.modelinfo["qwen3.embedding_length"] == qwen.dim
    assert shown.modelinfo["qwen3.context_length"] == qwen.max_length


def test_unloaded_model_is_listed_from_its_files(tiny_eurobert_base, nano):
    """Before its first request a model is described from its folder, digest empty; once
    loaded the digest is its content identity."""
    app = create_app(ModelRegistry([spec(NANO, tiny_eurobert_base)]), api_key=KEY)
    with live_server(app) as url:
        assert loaded_names(url) == []
        entry = client(url).list().models[0]
        assert (entry.model, entry.digest) == (NANO + ":latest", "")
        assert entry.details.family == "eurobert"
        assert client(url).show(NANO).modelinfo["eurobert.embedding_length"] == nano.dim
        client(url).embed(model=NANO, input="hello")
        after = client(url).list().models[0]
        assert after.digest == nano.identity
        # the files told what loading tells
        assert (after.size, after.details) == (entry.size, entry.details)
        assert loaded_names(url) == [NANO + ":latest"]


# ---------------------------------------------------------------------------
# LangChain and LlamaIndex


def test_langchain_ollama_embeddings(server, qwen):
    """OllamaEmbeddings sends queries as documents; the `:query` model name is how."""
    from langchain_ollama import OllamaEmbeddings

    documents = OllamaEmbeddings(base_url=server, model=NAME)
    queries = OllamaEmbeddings(base_url=server, model=NAME + ":query", validate_model_on_init=True)
    assert_same(documents.embed_documents(DOCS), qwen.encode_document(DOCS))
    assert_same(queries.embed_query(QUERY), qwen.encode_query(QUERY))
    assert_differ(documents.embed_query(QUERY), qwen.encode_query(QUERY))  # why two


def test_llamaindex_ollama_embedding(server, qwen):
    """OllamaEmbedding's query_instruction="Query:" gives the query prompt from one object
    (the server adds no second one); without it, the `:query` model name does."""
    from llama_index.embeddings.ollama import OllamaEmbedding

    both = OllamaEmbedding(model_name=NAME, base_url=server, query_instruction="Query:")
    assert_same(both.get_query_embedding(QUERY), qwen.encode_query(QUERY))
    assert_same(both.get_text_embedding(DOCS[0]), qwen.encode_document(DOCS[0]))
    plain = OllamaEmbedding(model_name=NAME, base_url=server)
    assert_differ(plain.get_query_embedding(QUERY), qwen.encode_query(QUERY))
    queries = OllamaEmbedding(model_name=NAME + ":query", base_url=server)
    assert_same(queries.get_query_embedding(QUERY), qwen.encode_query(QUERY))


# ---------------------------------------------------------------------------
# the prompt rule, truncation, keep_alive


def test_a_prompt_already_sent_is_not_added_again(server, qwen):
    """Inputs that start with one of the model's prompts are embedded as sent, and the
    header counts them; the OpenAI route still adds its own prompt to every input."""
    texts = ["Query: " + QUERY, "Document: " + DOCS[0], DOCS[1]]
    r = post(server, "/api/embed", {"model": NAME + ":query", "input": texts})
    assert r.status_code == 200 and r.headers["x-inputs-already-prompted"] == "2"
    want = [qwen.encode_query(QUERY), qwen.encode_document(DOCS[0]), qwen.encode_query(DOCS[1])]
    assert_same(r.json()["embeddings"], want)
    r = post(server, "/api/embed", {"model": NAME, "input": DOCS})
    assert "x-inputs-already-prompted" not in r.headers
    openai_route = post(server, "/v1/embeddings", {"model": NAME, "input": texts[:1]})
    assert_same([openai_route.json()["data"][0]["embedding"]], qwen.encode_document(texts[:1]))


def test_truncate_defaults_to_true_and_says_so(server, short_model):
    direct = mlx_jina.load(short_model, task="retrieval")
    with pytest.warns(UserWarning, match="truncated"):
        want = direct.encode_document([LONG, "hi"])
    r = post(server, "/api/embed", {"model": SHORT, "input": [LONG, "hi"]})
    assert r.status_code == 200 and r.headers["x-truncated-inputs"] == "1"
    assert_same(r.json()["embeddings"], want)
    assert r.json()["prompt_eval_count"] == CONTEXT + len(direct.tokenize(["Document: hi"])[0])
    r = post(server, "/api/embed", {"model": SHORT, "input": [LONG], "truncate": False})
    assert r.status_code == 400
    assert r.json()["error"].startswith("the input length exceeds the context length")
    assert str(CONTEXT) in r.json()["error"]


def test_keep_alive_zero_unloads_and_the_next_request_reloads(server, nano):
    first = client(server).embed(model=NANO, input=DOCS, keep_alive=0)
    assert NANO + ":latest" not in loaded_names(server)
    again = client(server).embed(model=NANO, input=DOCS)
    assert again.load_duration > 0 and NANO + ":latest" in loaded_names(server)
    assert_same(first.embeddings, nano.encode_document(DOCS))
    assert_same(again.embeddings, first.embeddings)
    # an empty input unloads with keep_alive 0, and loads without it
    assert client(server).embed(model=NANO, keep_alive=0).embeddings == []
    assert NANO + ":latest" not in loaded_names(server)
    assert client(server).embed(model=NANO, input=[], keep_alive="10m").embeddings == []
    entry = {m.model: m for m in client(server).ps().models}[NANO + ":latest"]
    left = entry.expires_at.timestamp() - datetime.now().timestamp()
    assert 500 < left <= 600


# ---------------------------------------------------------------------------
# errors, in Ollama's shape


@pytest.mark.parametrize(
    "path, body, status, words",
    [
        ("/api/embed", {"input": "a"}, 400, "model is required"),
        ("/api/embed", {"model": 5, "input": "a"}, 400, "'model' must be a string"),
        ("/api/embed", {"model": "nope", "input": "a"}, 404, 'model "nope" not found'),
        ("/api/embed", {"model": NAME + ":v2", "input": "a"}, 404, ":query"),
        ("/api/embed", {"model": NAME, "input": 5}, 400, "invalid input type"),
        ("/api/embed", {"model": NAME, "input": ["a", 1]}, 400, "invalid input type"),
        ("/api/embed", {"model": NAME, "input": ["a", ""]}, 400, "input[1]"),
        ("/api/embed", {"model": NAME, "input": "a", "truncate": "yes"}, 400, "'truncate'"),
        ("/api/embed", {"model": NAME, "input": "a", "keep_alive": "soon"}, 400, "'soon'"),
        ("/api/embed", {"model": NAME, "input": "a", "keep_alive": [1]}, 400, "[1]"),
        ("/api/embed", {"model": NAME, "input": "a", "dimensions": -1}, 400, "dimensions=-1"),
        ("/api/embed", {"model": NAME, "input": "a", "dimensions": 16}, 400, "dimensions=16"),
        ("/api/embed", {"model": NAME, "input": "a", "dimensions": 65}, 400, "dimensions=65"),
        ("/api/embed", {"model": NAME, "dimensions": 65}, 400, "dimensions=65"),
        ("/api/embed", {"model": NAME, "input": "a", "dimensions": "32"}, 400, "'dimensions'"),
        ("/api/embed", {"model": NAME, "input": "a", "options": "x"}, 400, "'options'"),
        ("/api/embed", ["a"], 400, "JSON object"),
        ("/api/embeddings", {"prompt": "a"}, 400, "model is required"),
        ("/api/embeddings", {"model": NAME, "prompt": 5}, 400, "'prompt'"),
        ("/api/show", {}, 400, "model is required"),
        ("/api/show", {"model": "nope"}, 404, "-m FOLDER_OR_REPO_ID"),
    ],
)
def test_bad_requests_get_ollamas_error_shape(server, path, body, status, words):
    r = post(server, path, body)
    assert r.status_code == status, r.text
    assert list(r.json()) == ["error"] and words in r.json()["error"], r.json()


def test_the_ollama_client_raises_the_message(server):
    with pytest.raises(ollama.ResponseError) as refused:
        client(server).embed(model="nope", input="a")
    assert refused.value.status_code == 404 and 'model "nope" not found' in refused.value.error


@pytest.mark.parametrize("method, path", [("POST", "/api/embed"), ("POST", "/api/embeddings"),
                                          ("GET", "/api/tags"), ("GET", "/api/ps"),
                                          ("POST", "/api/show")])  # fmt: skip
def test_the_key_guards_every_api_route(server, method, path):
    body = json.dumps({"model": NAME, "input": "a"})
    headers = {"Content-Type": "application/json"}
    r = httpx.request(method, server + path, content=body, headers=headers)
    assert r.status_code == 401 and "Bearer" in r.json()["error"]


def test_probes_are_open_and_answer_as_ollama(server):
    """GET / and HEAD / (Ollama's apps probe them) and /api/version need no key."""
    r = httpx.get(server + "/")
    assert r.status_code == 200 and r.text == "Ollama is running"
    assert httpx.head(server + "/").status_code == 200
    version = httpx.get(server + "/api/version").json()["version"]
    assert tuple(map(int, version.split("."))) >= (0, 12, 5)


def test_bodies_that_are_not_json(server):
    def send(body: bytes, kind: str) -> httpx.Response:
        headers = {**AUTH, "Content-Type": kind}
        return httpx.post(server + "/api/embed", content=body, headers=headers)

    r = send(b"model=x", "text/plain")
    assert r.status_code == 415 and "Content-Type" in r.json()["error"]
    r = send(b"{", "application/json")
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]


def test_body_limit_and_load_failure(tiny_qwen_base):
    """413 past --max-body-bytes; a model that can't load gets Ollama's 500."""

    def broken():
        raise OSError("weights unreadable")

    registry = ModelRegistry(
        [spec(NAME, tiny_qwen_base), ModelSpec("broken", broken, "nowhere")],
        limits=Limits(max_body_bytes=200),
    )
    with live_server(create_app(registry, api_key=KEY)) as url:
        r = post(url, "/api/embed", {"model": NAME, "input": "x" * 300})
        assert r.status_code == 413 and "--max-body-bytes" in r.json()["error"]
        r = post(url, "/api/embed", {"model": "broken", "input": "x"})
        assert r.status_code == 500 and "weights unreadable" in r.json()["error"]


def test_queue_and_busy_refusals_keep_their_status_and_retry_after():
    """429 (queue full) and 503 (every loaded model busy) in Ollama's shape, Retry-After kept."""
    registry = ModelRegistry([ModelSpec("x", lambda: None)], max_loaded=1)
    async def past_deadline():  # the registry's own refusal: no room, past its deadline
        await registry._wait(asyncio.Event(), registry.slots[0], deadline=0.0)

    with pytest.raises(ApiError) as busy:
        asyncio.run(past_deadline())
    assert busy.value.code == "models_busy"
    for error, status in ((queue_full(), 429), (busy.value, 503)):

        async def refused(request):
            raise error

        response = asyncio.run(ollama_shaped(refused)(None))
        assert response.status_code == status and response.headers["retry-after"] == "1"
        assert list(json.loads(response.body)) == ["error"]


def test_guard_refusals_come_in_each_apis_shape(tiny_qwen_base):
    """Host and Origin are refused before any route runs; an Ollama or TEI client still
    reads the refusal in its own API's shape, and an OpenAI client in OpenAI's."""
    from starlette.testclient import TestClient

    from mlx_jina.server import Worker

    worker = Worker(lambda: mlx_jina.load(tiny_qwen_base, task="retrieval")).start()
    client = TestClient(create_app(worker, model_name="m"))  # it sends Host: testserver
    try:
        for method, path, body in [("post", "/api/embed", {"model": "m", "input": "a"}),
                                   ("get", "/", None), ("get", "/api/tags", None)]:  # fmt: skip
            r = client.request(method, path, json=body)
            assert r.status_code == 400 and list(r.json()) == ["error"], path
            assert "testserver" in r.json()["error"]
        for path in ("/embed", "/"):  # TEI's, POST / included
            r = client.post(path, json={"inputs": "a"})  # TEI answers refusals with 422
            assert r.status_code == 422 and set(r.json()) == {"error", "error_type"}, path
        r = client.post("/v1/embeddings", json={"input": "a"})
        assert r.json()["error"]["code"] == "host_not_allowed"  # OpenAI's shape, as before
        page = {"host": "localhost", "origin": "http://page.invalid"}
        r = client.post("/api/embed", json={"model": "m", "input": "a"}, headers=page)
        assert r.status_code == 403 and list(r.json()) == ["error"]
        r = client.post("/embed", json={"inputs": "a"}, headers=page)
        assert r.status_code == 403 and set(r.json()) == {"error", "error_type"}
    finally:
        worker.stop()
