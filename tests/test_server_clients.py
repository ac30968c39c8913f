"""`mlx-jina serve` under the real client libraries people point at an OpenAI-compatible URL.

Run: python -m pytest tests/test_server_clients.py -q

The openai SDK, LangChain's OpenAIEmbeddings, LlamaIndex's OpenAIEmbedding and Chroma's
OpenAIEmbeddingFunction each talk to a live server on 127.0.0.1. Every vector
is compared with `encode_query` / `encode_document` of the same checkpoint loaded in the
test thread. The model is qwen_base: the real Qwen tokenizer (vocab 151,936), so OpenAI's
cl100k token ids all fall inside the vocabulary, as they do for the published models.

No test touches the network: the API key is a dummy, and LangChain's default path needs
tiktoken's cl100k file, which is read from LlamaIndex's bundled tiktoken cache (the test
is skipped, not downloaded, when that file is missing).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

import mlx_jina
from builders.reference import reference_token_ids
from mlx_jina.encoding.texts import text_problem
from mlx_jina.tasks import SYMMETRIC_TASKS, TASK_NAMES, TASKS, parse_task
from vector_checks import AUTH, DOCS, KEY, NAME, QUERY
from vector_checks import assert_differ, assert_same, direct_models, served

RETRIEVAL = TASKS[0]
MATCHING = SYMMETRIC_TASKS[0]
CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"


@pytest.fixture(scope="module")
def server(qwen_base):
    """All four adapters (unmerged), default task retrieval; token ids refused (default)."""
    with served(qwen_base, {"multitask": True, "task": RETRIEVAL}, api_key=KEY) as url:
        yield url


@pytest.fixture(scope="module")
def direct(qwen_base):
    """task -> the same checkpoint loaded here, merged: the independent reference."""
    return direct_models(qwen_base)


@pytest.fixture(autouse=True)
def offline_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # clients that read it find a dummy


def post(url: str, body: dict) -> httpx.Response:
    # json.dumps escapes a lone surrogate ("\ud800"), as JavaScript clients may send it.
    headers = {**AUTH, "Content-Type": "application/json"}
    return httpx.post(url + "/v1/embeddings", content=json.dumps(body), headers=headers, timeout=30)


def vectors(r: httpx.Response) -> np.ndarray:
    assert r.status_code == 200, r.text
    return np.array([d["embedding"] for d in r.json()["data"]])


# ---------------------------------------------------------------------------
# the openai SDK


def test_openai_sdk_documents_queries_and_task_field(server, direct):
    """The plain model id embeds documents; `<name>:query` and extra_body's task or
    input_type embed queries."""
    client = openai.OpenAI(base_url=server + "/v1", api_key=KEY, max_retries=0)

    def embed(model: str = NAME, texts=DOCS, **extra) -> np.ndarray:
        result = client.embeddings.create(model=model, input=texts, extra_body=extra or None)
        return np.array([d.embedding for d in result.data])

    docs, queries = direct().encode_document(DOCS), direct().encode_query(DOCS)
    assert_same(embed(), docs)
    assert_same(embed(NAME + ":query"), queries)
    assert_differ(embed(NAME + ":query"), docs)
    assert_same(embed(task=f"{RETRIEVAL}.query"), queries)
    for kind in ("query", "search_query"):  # Voyage's and Cohere's spelling
        assert_same(embed(input_type=kind), queries)
    for kind in ("document", "search_document"):
        assert_same(embed(NAME, input_type=kind), docs)
    # a bare adapter name: documents unless told otherwise
    assert_same(embed(task=RETRIEVAL), docs)
    assert_same(embed(task=RETRIEVAL, input_type="query"), queries)
    assert_same(embed(NAME + ":query", task=RETRIEVAL), queries)


def test_models_lists_a_query_id(server):
    """/v1/models offers the name for documents and `<name>:query` for queries."""
    client = openai.OpenAI(base_url=server + "/v1", api_key=KEY, max_retries=0)
    assert [m.id for m in client.models.list().data] == [NAME, NAME + ":query"]
    data = httpx.get(server + "/v1/models", headers=AUTH).json()["data"]
    assert [m["input_type"] for m in data] == ["document", "query"]


@pytest.mark.parametrize("task", TASK_NAMES)
def test_every_task_name_is_accepted(server, direct, task):
    """Adapter names were refused ("Unknown task"); every name parse_task knows works."""
    adapter, prompt_name = parse_task(task)
    want = direct(adapter).encode(DOCS, prompt_name=prompt_name or "document")
    assert_same(vectors(post(server, {"model": NAME, "input": DOCS, "task": task})), want)


@pytest.mark.parametrize(
    "body,words",
    [
        ({"task": f"{RETRIEVAL}.passage", "input_type": "query"}, ["task=", "input_type="]),
        ({"model": NAME + ":query", "task": f"{RETRIEVAL}.passage"}, ["model=", "task="]),
        ({"model": NAME + ":query", "input_type": "document"}, ["model=", "input_type="]),
    ],
)
def test_conflicting_prompt_choices_are_a_400(server, body, words):
    r = post(server, {"model": NAME, "input": "a", **body})
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert all(w in message for w in words), message


def test_unknown_input_type_is_a_400(server):
    r = post(server, {"input": "a", "input_type": "passage"})
    assert r.status_code == 400 and "search_document" in r.json()["detail"]


def test_symmetric_server_embeds_queries_as_documents(tiny_qwen_base):
    """A text-matching server lists no `:query` id, and `:query` changes nothing there."""
    model = mlx_jina.load(tiny_qwen_base, task=MATCHING)
    with served(tiny_qwen_base, {"task": MATCHING}, api_key=KEY) as url:
        ids = [m["id"] for m in httpx.get(url + "/v1/models", headers=AUTH).json()["data"]]
        assert ids == [NAME]
        got = vectors(post(url, {"model": NAME + ":query", "input": DOCS}))
        assert_same(got, model.encode_query(DOCS))
        assert_same(got, model.encode_document(DOCS))


def test_truncate_dim_is_an_alias_of_dimensions(server, direct):
    want = direct().encode_document(DOCS, truncate_dim=32)
    assert_same(vectors(post(server, {"input": DOCS, "truncate_dim": 32})), want)
    assert_same(vectors(post(server, {"input": DOCS, "truncate_dim": 32, "dimensions": 32})), want)
    r = post(server, {"input": DOCS, "truncate_dim": 32, "dimensions": 48})
    assert r.status_code == 400
    assert "'dimensions'" in r.json()["detail"] and "'truncate_dim'" in r.json()["detail"]


@pytest.mark.parametrize("bad", ["", " ", "\t\n ", "a\ud800b"])
def test_texts_follow_the_one_rule(server, bad):
    """Blank, whitespace-only and lone-surrogate texts are a 400 with the rule's words."""
    r = post(server, {"input": ["fine", bad]})
    assert r.status_code == 400, r.text
    assert f"input[1] {text_problem(bad)}" in r.json()["error"]["message"]


# ---------------------------------------------------------------------------
# token ids: OpenAI's tiktoken ids are not this model's


def test_cl100k_token_ids_are_refused(server, direct):
    """LangChain's request shape (lists of cl100k ids) got 200 and wrong vectors."""
    cl100k_ids = [[44, 1590, 374, 3629, 2663, 279, 3816, 29935, 13]]  # what tiktoken sends
    r = post(server, {"model": NAME, "input": cl100k_ids, "encoding_format": "base64"})
    assert r.status_code == 400, r.text
    detail = r.json()["detail"]
    assert "check_embedding_ctx_length=False" in detail and "--accept-token-ids" in detail
    assert r.json()["error"]["code"] == "token_ids_refused"
    one = post(server, {"model": NAME, "input": cl100k_ids[0]})  # a flat list too
    assert one.status_code == 400


def test_accept_token_ids_embeds_this_models_ids(qwen_base, direct):
    """With accept_token_ids, ids from this model's tokenizer are embedded as sent."""
    ids = reference_token_ids(qwen_base / "tokenizer.json", DOCS, prompt="Query: ")
    with served(qwen_base, {"task": RETRIEVAL}, api_key=KEY, accept_token_ids=True) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)
        result = client.embeddings.create(model=NAME, input=ids)
        # input_type and `:query` only pick a prompt, which ids don't get: refused, not ignored
        with_type = post(url, {"input": ids, "input_type": "query"})
        query_id = post(url, {"input": ids, "model": NAME + ":query"})
    assert_same([d.embedding for d in result.data], direct().encode_query(DOCS))
    for r in (with_type, query_id):
        assert r.status_code == 400 and "without a prompt" in r.json()["detail"], r.text


def cl100k_cache() -> str:
    """A tiktoken cache folder holding cl100k_base (LlamaIndex ships one), or skip."""
    core = pytest.importorskip("llama_index.core")
    folder = Path(core.__file__).parent / "_static" / "tiktoken_cache"
    if not (folder / hashlib.sha1(CL100K_URL.encode()).hexdigest()).is_file():
        pytest.skip("no offline copy of tiktoken's cl100k_base; not downloading it")
    return str(folder)


def test_langchain_defaults_get_a_clear_400(server, monkeypatch):
    """OpenAIEmbeddings' defaults send tiktoken ids: a 400 that names the fix, not
    vectors with a cosine of 0.27 to the right ones."""
    from langchain_openai import OpenAIEmbeddings

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", cl100k_cache())
    embeddings = OpenAIEmbeddings(model=NAME, base_url=server + "/v1", api_key=KEY, max_retries=0)
    with pytest.raises(openai.BadRequestError) as refused:
        embeddings.embed_documents(DOCS)
    message = str(refused.value)
    assert "check_embedding_ctx_length=False" in message and "--accept-token-ids" in message


# ---------------------------------------------------------------------------
# the recipes in the README


def ranked(direct) -> list[str]:
    """DOCS, best match for QUERY first, by direct encode_query / encode_document."""
    scores = direct().encode_document(DOCS) @ direct().encode_query(QUERY)
    return [DOCS[i] for i in np.argsort(-scores)]


def test_langchain_recipe(server, direct):
    from langchain_openai import OpenAIEmbeddings

    def client(model: str, **kwargs) -> OpenAIEmbeddings:
        return OpenAIEmbeddings(
            model=model,
            base_url=server + "/v1",
            api_key=KEY,
            check_embedding_ctx_length=False,  # send text, not tiktoken ids
            max_retries=0,
            **kwargs,
        )

    documents, queries = client(NAME), client(NAME + ":query")
    assert_same(documents.embed_documents(DOCS), direct().encode_document(DOCS))
    assert_same(queries.embed_query(QUERY), direct().encode_query(QUERY))
    assert_differ(documents.embed_query(QUERY), direct().encode_query(QUERY))  # why two
    cut = client(NAME, dimensions=32).embed_documents(DOCS)
    assert_same(cut, direct().encode_document(DOCS, truncate_dim=32))
    # a vector store holds one embeddings object: search it with the query vector
    from langchain_core.vectorstores import InMemoryVectorStore

    store = InMemoryVectorStore.from_texts(DOCS, documents)
    found = store.similarity_search_by_vector(queries.embed_query(QUERY), k=len(DOCS))
    assert [d.page_content for d in found] == ranked(direct)


def test_llamaindex_recipe(server, direct):
    from llama_index.embeddings.openai import OpenAIEmbedding

    def client(model: str) -> OpenAIEmbedding:
        # model_name= takes any id; model= only OpenAI's names.
        return OpenAIEmbedding(
            model_name=model, api_base=server + "/v1", api_key=KEY, max_retries=1
        )

    documents, queries = client(NAME), client(NAME + ":query")
    assert_same(documents.get_text_embedding_batch(DOCS), direct().encode_document(DOCS))
    assert_same(queries.get_query_embedding(QUERY), direct().encode_query(QUERY))
    assert_differ(documents.get_query_embedding(QUERY), direct().encode_query(QUERY))
    from llama_index.core import VectorStoreIndex
    from llama_index.core.schema import TextNode

    index = VectorStoreIndex([TextNode(text=t) for t in DOCS], embed_model=documents)
    retriever = index.as_retriever(embed_model=queries, similarity_top_k=len(DOCS))
    assert [n.node.get_content() for n in retriever.retrieve(QUERY)] == ranked(direct)


def test_chroma_recipe(server, direct):
    import chromadb
    from chromadb.config import Settings
    from chromadb.utils.embedding_functions import OpenAIEmbeddingFunction

    def function(model: str) -> OpenAIEmbeddingFunction:
        return OpenAIEmbeddingFunction(model_name=model, api_base=server + "/v1")

    documents, queries = function(NAME), function(NAME + ":query")
    assert_same(documents(DOCS), direct().encode_document(DOCS))
    assert_same(queries([QUERY]), direct().encode_query([QUERY]))
    store = chromadb.EphemeralClient(Settings(anonymized_telemetry=False))
    collection = store.create_collection("planets", embedding_function=documents)
    collection.add(ids=[str(i) for i in range(len(DOCS))], documents=DOCS)
    found = collection.query(query_embeddings=queries([QUERY]), n_results=len(DOCS))
    assert found["documents"][0] == ranked(direct)


@pytest.mark.parametrize("flag", [[], ["--accept-token-ids"]])
def test_accept_token_ids_flag_reaches_the_app(tiny_qwen_base, monkeypatch, flag):
    """`mlx-jina serve --accept-token-ids` -> serve() -> create_app(); off without it."""
    import uvicorn

    from mlx_jina.cli import main

    seen = []

    def run(server: uvicorn.Server) -> None:  # instead of serving: look, then stop
        service = server.config.app.state.models.default.service
        seen.append(service.accept_token_ids)
        service.worker.stop()

    monkeypatch.setattr(uvicorn.Server, "run", run)
    main(["serve", "-m", str(tiny_qwen_base), "--task", RETRIEVAL, "--port", "0", *flag])
    assert seen == [bool(flag)]
