"""LangChain, LlamaIndex and Chroma integrations (mlx_jina/integrations/), run with the real
libraries, offline, on the tiny fixtures. Every vector is checked against an Embedder loaded
on its own (encode_query / encode_document). Run: python -m pytest tests/test_integrations.py
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import uuid

import numpy as np
import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("llama_index.core")
pytest.importorskip("chromadb")

FRAMEWORKS = ("langchain_core", "llama_index", "chromadb")
DOCS = [
    "Mars is often called the Red Planet.",
    "Venus is the hottest planet in the solar system.",
    "Jupiter is the largest planet, a gas giant.",
    "The Moon orbits the Earth every 27 days.",
]
QUERIES = ["Which planet is red?", "What is the biggest planet?"]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any connection beyond this machine fails the test (Chroma telemetry included)."""
    real_connect = socket.socket.connect

    def connect(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"network access attempted: {address!r}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def close(a, b) -> None:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape
    cos = np.sum(a * b, axis=-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
    assert np.all(cos >= 0.99999), cos


def nearest(embedder, query: str, docs=DOCS) -> str:
    """The reference answer, with a margin so that no rounding can flip it."""
    scores = embedder.encode_document(docs) @ embedder.encode_query(query)
    top, second = np.sort(scores)[::-1][:2]
    assert top - second > 1e-4, "the fixture gives a near tie; pick another query"
    return docs[int(np.argmax(scores))]


def on_a_worker_thread(monkeypatch, encoder) -> list[bool]:
    """Records, per encode, whether it ran off the calling (event loop) thread."""
    seen, main, real = [], threading.current_thread(), encoder._encode

    def spy(*args, **kwargs):
        seen.append(threading.current_thread() is not main)
        return real(*args, **kwargs)

    monkeypatch.setattr(encoder, "_encode", spy)
    return seen


# ---------------------------------------------------------------------------
# the package itself


def test_import_mlx_jina_loads_no_framework(tiny_qwen_base):
    script = (
        "import sys, mlx_jina, mlx_jina.integrations\n"
        f"m = mlx_jina.load({str(tiny_qwen_base)!r}, task='retrieval')\n"
        "m.encode_query('hi')\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FRAMEWORKS!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "[]"


@pytest.mark.parametrize("module, package, extra", [
    ("langchain", "langchain_core", "langchain"),
    ("llama_index", "llama_index", "llama-index"),
    ("chroma", "chromadb", "chroma"),
])  # fmt: skip
def test_missing_framework_says_what_to_install(module, package, extra):
    script = (
        f"import sys; sys.modules[{package!r}] = None\n"
        f"import mlx_jina.integrations.{module}\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode != 0
    assert "ImportError: This integration needs" in out.stderr
    assert f"pip install 'mlx-jina[{extra}]'" in out.stderr


# ---------------------------------------------------------------------------
# LangChain


@pytest.fixture(scope="module")
def lc(tiny_qwen_base):
    from mlx_jina.integrations.langchain import MLXJinaEmbeddings

    return MLXJinaEmbeddings(tiny_qwen_base, task="retrieval")


def test_langchain_documents_and_query_match_the_embedder(lc, qwen):
    docs = lc.embed_documents(DOCS)
    query = lc.embed_query(QUERIES[0])
    assert isinstance(docs, list) and all(isinstance(v, list) for v in docs)
    assert isinstance(query, list) and all(type(x) is float for x in query)
    close(docs, qwen.encode_document(DOCS))
    close(query, qwen.encode_query(QUERIES[0]))
    # the two prompts differ, so the comparison above can tell them apart
    assert float(np.dot(qwen.encode_document(QUERIES[0]), query)) < 0.9999
    assert lc.embed_documents([]) == []


def test_langchain_async_runs_off_the_event_loop(lc, qwen, monkeypatch):
    seen = on_a_worker_thread(monkeypatch, lc.encoder)

    async def main():
        return await lc.aembed_documents(DOCS), await lc.aembed_query(QUERIES[1])

    docs, query = asyncio.run(main())
    close(docs, qwen.encode_document(DOCS))
    close(query, qwen.encode_query(QUERIES[1]))
    assert seen == [True, True]


def test_langchain_concurrent_async_calls(lc, qwen):
    """Many calls at once, each in its own worker thread, one model: same vectors."""
    texts = [[f"{d} ({i})" for d in DOCS] for i in range(12)]

    async def main():
        return await asyncio.gather(*(lc.aembed_documents(t) for t in texts))

    for got, t in zip(asyncio.run(main()), texts):
        close(got, qwen.encode_document(t))


def test_langchain_loaded_embedder_path_truncate_dim(qwen, tiny_qwen_base):
    from mlx_jina.integrations.langchain import MLXJinaEmbeddings

    given = MLXJinaEmbeddings(qwen, truncate_dim=32, batch_size=2)
    assert given.embedder is qwen
    query = given.embed_query(QUERIES[0])
    assert len(query) == 32
    close(query, qwen.encode_query(QUERIES[0], truncate_dim=32))
    close(given.embed_documents(DOCS), qwen.encode_document(DOCS, truncate_dim=32))
    loaded = MLXJinaEmbeddings(str(tiny_qwen_base), task="retrieval", truncate_dim=32)
    close(loaded.embed_documents(DOCS), given.embed_documents(DOCS))


def test_langchain_symmetric_and_api_task_names(qwen_for, qwen, tiny_qwen_base):
    from mlx_jina.integrations.langchain import MLXJinaEmbeddings

    matching = qwen_for("text-matching")
    sym = MLXJinaEmbeddings(tiny_qwen_base, task="text-matching")
    # symmetric: a query is embedded like a document, with the text-matching adapter
    close(sym.embed_query(QUERIES[0]), matching.encode_document(QUERIES[0]))
    close(sym.embed_documents(DOCS), matching.encode_document(DOCS))
    assert float(np.dot(sym.embed_query(QUERIES[0]), qwen.encode_document(QUERIES[0]))) < 0.9999
    # Jina API names pick the adapter and fix the prompt for both methods
    passage = MLXJinaEmbeddings(qwen, task="retrieval.passage")
    close(passage.embed_query(QUERIES[0]), qwen.encode_document(QUERIES[0]))
    query = MLXJinaEmbeddings(qwen, task="retrieval.query")
    close(query.embed_documents(DOCS), qwen.encode_query(DOCS))


def test_langchain_in_memory_vector_store(lc, qwen):
    from langchain_core.documents import Document
    from langchain_core.vectorstores import InMemoryVectorStore

    store = InMemoryVectorStore(embedding=lc)
    store.add_documents([Document(page_content=d) for d in DOCS])
    for q in QUERIES:
        assert store.similarity_search(q, k=1)[0].page_content == nearest(qwen, q)
    hits = asyncio.run(store.asimilarity_search(QUERIES[0], k=1))
    assert hits[0].page_content == nearest(qwen, QUERIES[0])


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(task="nope"), ValueError, "Unknown task 'nope'"),
    (dict(task=3), TypeError, "task=3"),
    (dict(truncate_dim=7), ValueError, "truncate_dim=7"),
    (dict(batch_size=0), ValueError, "batch_size=0"),
    (dict(bits=4), ValueError, "bits only apply when loading"),
    (dict(task="text-matching"), ValueError, "loaded for task 'retrieval'"),
])  # fmt: skip
def test_bad_settings_fail_at_construction(qwen, kwargs, error, words):
    from mlx_jina.integrations.langchain import MLXJinaEmbeddings

    with pytest.raises(error, match=words):
        MLXJinaEmbeddings(qwen, **kwargs)


def test_bad_model_and_texts_name_the_problem(lc):
    from mlx_jina.integrations.langchain import MLXJinaEmbeddings

    with pytest.raises(TypeError, match="model is int"):
        MLXJinaEmbeddings(42)
    with pytest.raises(ValueError, match=r"texts\[1\] holds only whitespace"):
        lc.embed_documents(["fine", "  "])
    with pytest.raises(ValueError, match="The query is empty"):
        lc.embed_query("")
    with pytest.raises(TypeError, match=r"texts\[0\] is int"):
        lc.embed_documents([1])
    with pytest.raises(TypeError, match="list of strings, got str"):
        lc.embed_documents("one string")


# ---------------------------------------------------------------------------
# LlamaIndex


@pytest.fixture
def llama_settings():
    """LlamaIndex's global Settings, restored after the test; no LLM (so no OpenAI)."""
    from llama_index.core import Settings
    from llama_index.core.llms import MockLLM

    saved = Settings._embed_model, Settings._llm
    Settings.llm = MockLLM()
    yield Settings
    Settings._embed_model, Settings._llm = saved


def test_llama_index_matches_the_embedder(qwen, tiny_qwen_base):
    from mlx_jina.integrations.llama_index import MLXJinaEmbedding

    emb = MLXJinaEmbedding(tiny_qwen_base, task="retrieval")
    assert MLXJinaEmbedding.class_name() == "MLXJinaEmbedding"
    assert emb.model_name == str(tiny_qwen_base)
    close(emb.get_query_embedding(QUERIES[0]), qwen.encode_query(QUERIES[0]))
    close(emb.get_text_embedding(DOCS[0]), qwen.encode_document(DOCS[0]))
    close(emb.get_text_embedding_batch(DOCS), qwen.encode_document(DOCS))
    # its settings survive LlamaIndex's own serialization
    again = MLXJinaEmbedding.from_dict(emb.to_dict())
    assert (again.model_name, again.task) == (emb.model_name, "retrieval")
    assert MLXJinaEmbedding(qwen, model_name="ignored").model_name == qwen.source
    close(again.get_query_embedding(QUERIES[1]), qwen.encode_query(QUERIES[1]))


def test_llama_index_batches_by_embed_batch_size(qwen, monkeypatch):
    from mlx_jina.integrations.llama_index import MLXJinaEmbedding

    emb = MLXJinaEmbedding(qwen, embed_batch_size=3, truncate_dim=64)
    calls = []
    real = qwen.encode_document

    def spy(texts, **kwargs):
        calls.append((len(texts), kwargs["batch_size"]))
        return real(texts, **kwargs)

    monkeypatch.setattr(qwen, "encode_document", spy)
    got = emb.get_text_embedding_batch(DOCS + ["one more text"])
    assert calls == [(3, 3), (2, 3)]
    monkeypatch.undo()
    close(got, qwen.encode_document(DOCS + ["one more text"], truncate_dim=64))


def test_llama_index_async_runs_off_the_event_loop(qwen, monkeypatch):
    from mlx_jina.integrations.llama_index import MLXJinaEmbedding

    emb = MLXJinaEmbedding(qwen)
    seen = on_a_worker_thread(monkeypatch, emb._encoder)

    async def main():
        return (
            await emb.aget_query_embedding(QUERIES[0]),
            await emb.aget_text_embedding(DOCS[0]),
            await emb.aget_text_embedding_batch(DOCS),
        )

    query, doc, docs = asyncio.run(main())
    close(query, qwen.encode_query(QUERIES[0]))
    close(doc, qwen.encode_document(DOCS[0]))
    close(docs, qwen.encode_document(DOCS))
    assert seen == [True, True, True]  # the batch is one call, not one per text


def test_llama_index_vector_store_index(qwen, llama_settings):
    from llama_index.core import Document, VectorStoreIndex

    from mlx_jina.integrations.llama_index import MLXJinaEmbedding

    llama_settings.embed_model = MLXJinaEmbedding(qwen)
    index = VectorStoreIndex.from_documents([Document(text=d) for d in DOCS])
    retriever = index.as_retriever(similarity_top_k=1)
    for q in QUERIES:
        assert retriever.retrieve(q)[0].node.get_content() == nearest(qwen, q)


# ---------------------------------------------------------------------------
# Chroma


@pytest.fixture
def chroma_client():
    import chromadb
    from chromadb.config import Settings

    return chromadb.EphemeralClient(Settings(anonymized_telemetry=False))


def test_chroma_documents_and_queries(qwen, tiny_qwen_base):
    from mlx_jina.integrations.chroma import MLXJinaEmbeddingFunction

    ef = MLXJinaEmbeddingFunction(tiny_qwen_base, task="retrieval", truncate_dim=32)
    docs, queries = ef(DOCS), ef.embed_query(QUERIES)
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in docs + queries)
    close(np.stack(docs), qwen.encode_document(DOCS, truncate_dim=32))
    close(np.stack(queries), qwen.encode_query(QUERIES, truncate_dim=32))
    assert ef.name() == "mlx-jina" and ef.default_space() == "cosine"


def test_chroma_collection_add_and_query(qwen, chroma_client):
    from mlx_jina.integrations.chroma import MLXJinaEmbeddingFunction

    ef = MLXJinaEmbeddingFunction(qwen)
    collection = chroma_client.create_collection(f"t{uuid.uuid4().hex}", embedding_function=ef)
    collection.add(ids=[str(i) for i in range(len(DOCS))], documents=DOCS)
    found = collection.query(query_texts=QUERIES, n_results=1)
    assert [d[0] for d in found["documents"]] == [nearest(qwen, q) for q in QUERIES]
    stored = collection.get(ids=["0"], include=["embeddings"])["embeddings"][0]
    close(stored, qwen.encode_document(DOCS[0]))


def test_chroma_config_round_trip_loads_lazily(qwen, tiny_qwen_base):
    """Chroma rebuilds the function from its config to check it (is_legacy) and to reopen
    a collection: that must not load the model until it is used."""
    from mlx_jina.integrations.chroma import MLXJinaEmbeddingFunction

    ef = MLXJinaEmbeddingFunction(tiny_qwen_base, task="retrieval", batch_size=4)
    config = ef.get_config()
    assert config["model"] == str(tiny_qwen_base) and config["task"] == "retrieval"
    rebuilt = MLXJinaEmbeddingFunction.build_from_config(config)
    assert rebuilt._encoder is None and not ef.is_legacy()
    close(np.stack(rebuilt.embed_query(QUERIES)), qwen.encode_query(QUERIES))
    assert MLXJinaEmbeddingFunction(qwen).get_config()["task"] == "retrieval"
    with pytest.raises(ValueError, match="Unknown mlx-jina settings"):
        MLXJinaEmbeddingFunction.build_from_config({**config, "colour": "red"})
    with pytest.raises(ValueError, match="truncate_dim"):
        ef.validate_config_update(config, {**config, "truncate_dim": 32})


def test_chroma_persistent_collection_reopens(qwen, tiny_qwen_base, tmp_path):
    """A stored collection names its function; a new client gets it back without one."""
    import chromadb
    from chromadb.config import Settings

    from mlx_jina.integrations.chroma import MLXJinaEmbeddingFunction

    settings = Settings(anonymized_telemetry=False, allow_reset=True)
    client = chromadb.PersistentClient(path=str(tmp_path), settings=settings)
    ef = MLXJinaEmbeddingFunction(tiny_qwen_base, task="retrieval")
    client.create_collection("docs", embedding_function=ef).add(ids=["a", "b", "c", "d"], documents=DOCS)
    reopened = client.get_collection("docs")
    found = reopened.query(query_texts=[QUERIES[1]], n_results=1)
    assert found["documents"][0][0] == nearest(qwen, QUERIES[1])
    client.reset()


# ---------------------------------------------------------------------------
# the model a store was made with, by content: a relative path seen from another working
# directory may hold another model, and the same files may lie at another path


@pytest.fixture
def three_folders(tiny_qwen_base, tiny_tokenizer_eos, tmp_path):
    """models/m under a/ and c/ is tiny_qwen_base; under b/ it is another model of the
    same shapes (other weights)."""
    import shutil

    from builders.layouts import build_base

    shutil.copytree(tiny_qwen_base, tmp_path / "a" / "models" / "m")
    build_base(tmp_path / "b" / "models" / "m", "qwen3", tokenizer=tiny_tokenizer_eos, seed=7)
    shutil.copytree(tiny_qwen_base, tmp_path / "c" / "models" / "m")
    return tmp_path


def test_chroma_reopened_where_the_path_holds_another_model(qwen, three_folders, monkeypatch):
    """Before: the collection recorded "models/m" only, and reopened from b/ it queried with
    b/'s model (the stored document ranked 2nd). Now it records the content identity and
    refuses, naming both; from c/ (the same files) it is accepted."""
    import chromadb
    from chromadb.config import Settings

    from mlx_jina.integrations.chroma import MLXJinaEmbeddingFunction

    settings = Settings(anonymized_telemetry=False, allow_reset=True)
    client = chromadb.PersistentClient(path=str(three_folders / "db"), settings=settings)
    monkeypatch.chdir(three_folders / "a")
    ef = MLXJinaEmbeddingFunction("models/m", task="retrieval")
    client.create_collection("docs", embedding_function=ef).add(ids=["a", "b", "c", "d"], documents=DOCS)
    monkeypatch.chdir(three_folders / "b")
    other = MLXJinaEmbeddingFunction("models/m", task="retrieval").embedder.identity
    with pytest.raises(ValueError) as err:
        client.get_collection("docs").query(query_texts=[QUERIES[1]], n_results=1)
    message = str(err.value)
    assert f"model 'models/m', identity {qwen.identity}" in message
    assert f"'models/m' ({three_folders / 'b' / 'models' / 'm'}) is another model, identity {other}" in message
    monkeypatch.chdir(three_folders / "c")
    found = client.get_collection("docs").query(query_texts=[QUERIES[1]], n_results=1)
    assert found["documents"][0][0] == nearest(qwen, QUERIES[1])
    assert ef.get_config()["identity"] == qwen.identity
    client.reset()


def test_chroma_config_update_compares_identity_not_path(qwen, tiny_qwen_base):
    from mlx_jina.integrations.chroma import MLXJinaEmbeddingFunction

    ef = MLXJinaEmbeddingFunction(tiny_qwen_base, task="retrieval")
    config = ef.get_config()
    ef.validate_config_update(config, {**config, "model": "./elsewhere/m/"})  # same content
    with pytest.raises(ValueError, match="Changing identity"):
        ef.validate_config_update(config, {**config, "identity": "c1:" + "0" * 32})
    old = {k: v for k, v in config.items() if k != "identity"}  # from before identities
    ef.validate_config_update(old, config)
    with pytest.raises(ValueError, match="Changing model"):
        ef.validate_config_update(old, {**old, "model": "other"})
    with pytest.raises(ValueError, match="identity must be a string"):
        MLXJinaEmbeddingFunction.build_from_config({**config, "identity": 3})


def test_llama_index_saved_settings_reload_only_the_same_model(qwen, three_folders, monkeypatch):
    from mlx_jina.integrations.llama_index import MLXJinaEmbedding

    monkeypatch.chdir(three_folders / "a")
    saved = MLXJinaEmbedding("models/m", task="retrieval").to_dict()
    assert saved["identity"] == qwen.identity
    monkeypatch.chdir(three_folders / "b")
    with pytest.raises(ValueError, match=f"model 'models/m', identity {qwen.identity}; "):
        MLXJinaEmbedding.from_dict(saved)
    monkeypatch.chdir(three_folders / "c")
    close(MLXJinaEmbedding.from_dict(saved).get_query_embedding(QUERIES[0]), qwen.encode_query(QUERIES[0]))


def test_langchain_checks_an_identity_it_is_given(qwen, three_folders):
    from mlx_jina.integrations.langchain import MLXJinaEmbeddings

    a, b = three_folders / "a" / "models" / "m", three_folders / "b" / "models" / "m"
    assert MLXJinaEmbeddings(a, task="retrieval", identity=qwen.identity).identity == qwen.identity
    with pytest.raises(ValueError, match=f"identity {qwen.identity}; .* is another model"):
        MLXJinaEmbeddings(b, task="retrieval", identity=qwen.identity)
    with pytest.raises(TypeError, match="identity=5"):
        MLXJinaEmbeddings(a, task="retrieval", identity=5)


@pytest.mark.parametrize("texts, error", [
    (None, "texts must be a list of strings, got NoneType"),
    ("one text", "texts must be a list of strings, got str"),  # was embedded per character
    (b"bytes", "texts must be a list of strings, got bytes"),
    (["fine", None], r"texts\[1\] is NoneType"),
    (5, "texts must be a list of strings, got int"),
])  # fmt: skip
def test_llama_index_batches_refuse_what_is_not_a_list_of_texts(qwen, texts, error):
    """LlamaIndex's batch method iterated None ("'NoneType' object is not iterable") and
    embedded a string one character at a time."""
    from mlx_jina.integrations.llama_index import MLXJinaEmbedding

    emb = MLXJinaEmbedding(qwen)
    with pytest.raises(TypeError, match=error):
        emb.get_text_embedding_batch(texts)
    with pytest.raises(TypeError, match=error):
        asyncio.run(emb.aget_text_embedding_batch(texts))
    with pytest.raises(TypeError, match=error.replace("texts", "queries")):
        emb.get_agg_embedding_from_queries(texts)
    with pytest.raises(TypeError, match="The text must be a string"):
        emb.get_text_embedding(None)


def test_langchain_and_chroma_refuse_bytes(lc, qwen):
    """bytes are a sequence of ints: the error named texts[0] as int."""
    from mlx_jina.integrations.chroma import MLXJinaEmbeddingFunction

    with pytest.raises(TypeError, match="list of strings, got bytes"):
        lc.embed_documents(b"text")
    with pytest.raises(TypeError, match="list of strings, got bytes"):
        MLXJinaEmbeddingFunction(qwen)(b"text")
