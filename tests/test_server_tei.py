"""Hugging Face text-embeddings-inference (TEI)'s API on `mlx-jina serve`.

Run: python -m pytest tests/test_server_tei.py -q

huggingface_hub's InferenceClient (which posts to the base URL, POST /) and plain HTTP
against a live server on 127.0.0.1. Vectors are compared with `encode_query` /
`encode_document` of the same checkpoint loaded here; token ids with the `tokenizers`
library reading the checkpoint's tokenizer.json itself. The model is qwen_base (the real
Qwen tokenizer, hidden size 32).
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from huggingface_hub import InferenceClient
from huggingface_hub.errors import HfHubHTTPError
from tokenizers import Tokenizer

import mlx_jina
from builders.layouts import with_context
from mlx_jina.server import ApiError, Limits
from mlx_jina.server.tei_protocol import tei_error
from vector_checks import AUTH, DOCS, KEY, NAME, QUERY
from vector_checks import assert_differ, assert_same, cosines, direct_models, served

CONTEXT = 32  # the short model's max_position_embeddings
LONG = "Mars is often called the Red Planet. " * 12 + "Its end is here."


@pytest.fixture(scope="module")
def server(qwen_base):
    """All four adapters, default task retrieval, behind an API key."""
    with served(qwen_base, {"multitask": True, "task": "retrieval"}, api_key=KEY) as url:
        yield url


@pytest.fixture(scope="module")
def direct(qwen_base):
    """task -> the same checkpoint loaded here, merged: the independent reference."""
    return direct_models(qwen_base)


@pytest.fixture(scope="module")
def short_model(qwen_base, tmp_path_factory) -> Path:
    """qwen_base with a 32-token context, so over-long inputs are cheap."""
    return with_context(qwen_base, tmp_path_factory.mktemp("tei_short") / "model", CONTEXT)


@pytest.fixture(scope="module")
def short(short_model):
    """Retrieval only (no text-matching adapter), no key, small limits, token ids on."""
    limits = Limits(max_inputs=4, max_body_bytes=8192)
    with served(short_model, {"task": "retrieval"}, limits, accept_token_ids=True) as url:
        yield url


def post(url: str, path: str, body, **headers) -> httpx.Response:
    sent = {**AUTH, "Content-Type": "application/json", **headers}
    return httpx.post(url + path, content=json.dumps(body), headers=sent, timeout=30)


def client(url: str) -> InferenceClient:
    return InferenceClient(model=url, token=KEY)


# ---------------------------------------------------------------------------
# /embed and POST /


def test_inference_client_feature_extraction(server, direct):
    """InferenceClient posts {"inputs", normalize, prompt_name, ...} to POST /; no
    prompt_name embeds documents, "query" queries."""
    hub = client(server)
    docs, queries = direct().encode_document(DOCS), direct().encode_query(DOCS)
    assert_same(hub.feature_extraction(DOCS), docs)
    assert_same(hub.feature_extraction(DOCS, prompt_name="document"), docs)
    assert_same(hub.feature_extraction(DOCS, prompt_name="query"), queries)
    assert_differ(hub.feature_extraction(DOCS, prompt_name="query"), docs)
    one = hub.feature_extraction(QUERY, prompt_name="query")
    assert one.shape == (1, 32)
    assert_same(one, direct().encode_query([QUERY]))
    assert_same(hub.feature_extraction(DOCS, dimensions=64 // 2), direct().encode_document(
        DOCS, truncate_dim=32))  # fmt: skip


def test_normalize_false_is_the_pooled_vector(server, direct):
    raw = direct().encode(DOCS, prompt_name="document", normalize_embeddings=False)
    assert abs(np.linalg.norm(raw[0]) - 1) > 1e-3  # so the test can tell
    got = client(server).feature_extraction(DOCS, normalize=False)
    np.testing.assert_allclose(got, raw, rtol=1e-4, atol=1e-5)
    r = post(server, "/embed", {"inputs": DOCS, "normalize": True})
    np.testing.assert_allclose(np.linalg.norm(r.json(), axis=1), 1, atol=1e-5)


def test_embed_route_and_headers(server, direct):
    r = post(server, "/embed", {"inputs": QUERY, "prompt_name": "query"})
    assert r.status_code == 200, r.text
    assert len(r.json()) == 1
    assert_same(r.json(), direct().encode_query([QUERY]))
    assert int(r.headers["x-compute-tokens"]) == len(direct().tokenize(["Query: " + QUERY])[0])
    assert r.headers["x-compute-characters"] == str(len(QUERY))  # TEI: the input alone
    listed = httpx.get(server + "/v1/models", headers=AUTH).json()["data"][0]["fingerprint"]
    assert r.headers["X-Model-Fingerprint"] == listed
    assert "X-Truncated-Inputs" not in r.headers


def test_post_root_lives_beside_ollamas_get_root(server):
    """Ollama's GET / (and HEAD /) and TEI's POST / are two routes on one path."""
    assert httpx.get(server + "/").text == "Ollama is running"
    assert httpx.head(server + "/").status_code == 200
    r = post(server, "/", {"inputs": ["a"]})
    assert r.status_code == 200 and len(r.json()[0]) == 32


# ---------------------------------------------------------------------------
# truncation


def reference_cut(tokenizer: Path, prompt: str, text: str, limit: int, left: bool) -> list[int]:
    """The ids of prompt + text cut to `limit` tokens from the tokenizers library alone:
    the whole text tokenized, then its end (Right) or the start after the prompt (Left) cut."""
    tok = Tokenizer.from_file(str(tokenizer))
    plain = tok.encode(prompt + text, add_special_tokens=False)
    full = tok.encode(prompt + text).ids
    at = next(k for k in range(len(full)) if full[k : k + len(plain.ids)] == plain.ids)
    before, after = full[:at], full[at + len(plain.ids) :]
    budget = limit - len(before) - len(after)
    if not left:
        return before + plain.ids[:budget] + after
    n = sum(end <= len(prompt) for _, end in plain.offsets)
    return before + plain.ids[:n] + plain.ids[len(plain.ids) - (budget - n) :] + after


def test_left_truncation_keeps_the_prompt_and_the_end(short, short_model):
    """truncation_direction Left (or left) embeds the prompt, the text's last tokens and
    the end-of-text token; Right its first ones; both say so in X-Truncated-Inputs."""
    model = mlx_jina.load(short_model, task="retrieval")
    left_ids = reference_cut(short_model / "tokenizer.json", "Query: ", LONG, CONTEXT, True)
    right_ids = reference_cut(short_model / "tokenizer.json", "Query: ", LONG, CONTEXT, False)
    assert len(left_ids) == len(right_ids) == CONTEXT and left_ids != right_ids
    left, right = model.encode_ids([left_ids]), model.encode_ids([right_ids])
    assert_differ(left, right)
    for direction in ("Left", "left"):
        body = {"inputs": ["hi", LONG], "prompt_name": "query", "truncate": True,
                "truncation_direction": direction}  # fmt: skip
        r = post(short, "/embed", body)
        assert r.status_code == 200, r.text
        assert r.headers["X-Truncated-Inputs"] == "1"
        assert_same(r.json()[1], left)
        assert_same(r.json()[0], model.encode_query(["hi"]))
    got = client(short).feature_extraction(LONG, prompt_name="query", truncate=True,
                                           truncation_direction="right")  # fmt: skip
    assert_same(got, right)
    r = post(short, "/embed", {"inputs": [list(range(10, 50))], "truncate": True,
                               "truncation_direction": "Left"})  # fmt: skip
    assert_same(r.json(), model.encode_ids([list(range(18, 50))]))  # ids: their last 32


def test_over_long_input_without_truncate_is_tei_422(short):
    r = post(short, "/embed", {"inputs": LONG})
    assert (r.status_code, r.json()["error_type"]) == (422, "Validation"), r.text
    assert str(CONTEXT) in r.json()["error"] and "truncate" in r.json()["error"]


# ---------------------------------------------------------------------------
# /similarity


def test_sentence_similarity_uses_text_matching(server, direct):
    """InferenceClient.sentence_similarity posts {"inputs": {"source_sentence",
    "sentences"}} to POST /; the text-matching adapter embeds every text as a document."""
    matching = direct("text-matching").encode_document([QUERY, *DOCS])
    want = cosines(matching[1:], matching[0])
    got = client(server).sentence_similarity(QUERY, DOCS)
    np.testing.assert_allclose(got, want, atol=1e-5)
    retrieval = direct().encode_document([QUERY, *DOCS])
    assert np.abs(cosines(retrieval[1:], retrieval[0]) - want).max() > 1e-3  # can fail
    body = {"inputs": {"source_sentence": QUERY, "sentences": DOCS}}
    r = post(server, "/similarity", body)
    assert r.status_code == 200
    np.testing.assert_allclose(r.json(), want, atol=1e-5)


def test_similarity_without_text_matching_uses_the_servers_task(short, short_model):
    model = mlx_jina.load(short_model, task="retrieval")
    body = {"inputs": {"source_sentence": QUERY, "sentences": DOCS[:2]},
            "parameters": {"prompt_name": "query"}}  # fmt: skip
    r = post(short, "/similarity", body)
    v = model.encode_query([QUERY, *DOCS[:2]])
    np.testing.assert_allclose(r.json(), cosines(v[1:], v[0]), atol=1e-5)


# ---------------------------------------------------------------------------
# /tokenize and /info


def check_tokens(tokens: list[dict], tokenizer: Path, whole: str, **options) -> None:
    """TEI's token list against the tokenizers library's encoding of prompt + text."""
    want = Tokenizer.from_file(str(tokenizer)).encode(whole, **options)
    assert [t["id"] for t in tokens] == want.ids
    assert [t["special"] for t in tokens] == [bool(m) for m in want.special_tokens_mask]
    plain = [t for t in tokens if not t["special"]]
    raw = whole.encode("utf-8")  # TEI's offsets count UTF-8 bytes
    assert [raw[t["start"] : t["stop"]].decode() for t in plain] == [t["text"] for t in plain]
    assert "".join(t["text"] for t in plain) == whole
    for token, text in zip(tokens, want.tokens, strict=True):
        if token["special"]:
            assert (token["text"], token["start"], token["stop"]) == (text, None, None)


def test_tokenize_matches_the_tokenizers_library(server, qwen_base):
    texts = ["Hello world", "ünïcode  机器学习 12345 <|endoftext|>"]
    r = post(server, "/tokenize", {"inputs": texts})
    assert r.status_code == 200, r.text
    for text, tokens in zip(texts, r.json(), strict=True):
        check_tokens(tokens, qwen_base / "tokenizer.json", "Document: " + text)  # /embed's prompt
    r = post(server, "/tokenize", {"inputs": "hi", "prompt_name": "query"})
    check_tokens(r.json()[0], qwen_base / "tokenizer.json", "Query: hi")


def test_tokenize_marks_special_tokens(tiny_qwen_base):
    """A tokenizer that appends an end-of-text token: listed as special, without offsets;
    add_special_tokens false leaves it out."""
    with served(tiny_qwen_base, {"task": "retrieval"}) as url:
        r = post(url, "/tokenize", {"inputs": ["hello world"]})
        assert r.json()[0][-1]["special"] and r.json()[0][-1]["start"] is None
        check_tokens(r.json()[0], tiny_qwen_base / "tokenizer.json", "Document: hello world")
        r = post(url, "/tokenize", {"inputs": "hello", "add_special_tokens": False})
        check_tokens(r.json()[0], tiny_qwen_base / "tokenizer.json", "Document: hello",
                     add_special_tokens=False)  # fmt: skip
        assert not any(t["special"] for t in r.json()[0])


def test_info(server, direct):
    r = httpx.get(server + "/info", headers=AUTH)
    info = r.json()
    assert info["model_id"] == NAME and info["model_type"] == {
        "embedding": {"pooling": "last_token"}}  # fmt: skip
    assert info["max_input_length"] == direct().max_length
    assert info["max_client_batch_size"] == Limits().max_inputs
    assert info["max_batch_tokens"] == Limits().max_batch_tokens
    assert info["model_dtype"] == "float32" and info["version"] == mlx_jina.__version__
    assert httpx.get(server + "/info").status_code == 401


# ---------------------------------------------------------------------------
# errors: TEI's shape and status


@pytest.mark.parametrize(
    "path,body,status,kind,words",
    [
        ("/embed", {"inputs": 5}, 422, "Validation", "'inputs' must be"),
        ("/embed", {"inputs": []}, 400, "Empty", "empty list"),
        ("/embed", {"inputs": ""}, 400, "Empty", "'inputs' is empty"),
        ("/embed", {"inputs": ["a", "  "]}, 400, "Empty", "'inputs[1]' holds only whitespace"),
        ("/embed", {"inputs": ["a", 3]}, 422, "Validation", "list of strings"),
        ("/embed", {"inputs": "a\ud800"}, 422, "Validation", "lone surrogate"),
        ("/embed", {"text": "a"}, 422, "Validation", "missing field 'inputs'"),
        ("/embed", ["a"], 422, "Validation", "JSON object"),
        ("/embed", {"inputs": "a", "normalize": "yes"}, 422, "Validation", "'normalize'"),
        ("/embed", {"inputs": "a", "truncate": 1}, 422, "Validation", "'truncate'"),
        ("/embed", {"inputs": "a", "truncation_direction": "up"}, 422, "Validation", '"Left"'),
        ("/embed", {"inputs": "a", "prompt_name": "passage"}, 422, "Validation", "query"),
        ("/embed", {"inputs": "a", "dimensions": 7}, 422, "Validation", "dimensions=7"),
        ("/embed", {"inputs": "a", "dimensions": "64"}, 422, "Validation", "'dimensions'"),
        ("/embed", {"inputs": list("abcde")}, 422, "Validation", "batch size 5 > maximum"),
        ("/embed", {"inputs": [[1, 2]], "prompt_name": "query"}, 422, "Validation", "prompt"),
        ("/", {"inputs": {"source_sentence": "a", "sentences": []}}, 400, "Empty", "sentences"),
        ("/similarity", {"inputs": "a"}, 422, "Validation", "source_sentence"),
        ("/similarity", {"inputs": {"source_sentence": "a", "sentences": list("abcd")}}, 422,
         "Validation", "batch size 5"),  # fmt: skip
        ("/similarity", {"inputs": {"source_sentence": 1, "sentences": ["a"]}}, 422,
         "Validation", "'inputs.source_sentence'"),  # fmt: skip
        ("/similarity", {"inputs": {"source_sentence": "a", "sentences": ["b"]},
                         "parameters": {"truncate": "no"}}, 422, "Validation",
         "'parameters.truncate'"),  # fmt: skip
        ("/tokenize", {"inputs": 3}, 422, "Validation", "'inputs'"),
        ("/tokenize", {"inputs": "a", "add_special_tokens": "no"}, 422, "Validation", "true"),
    ],
)
def test_bad_bodies_get_tei_errors(short, path, body, status, kind, words):
    r = post(short, path, body)
    assert (r.status_code, r.json()) == (status, {"error": r.json()["error"], "error_type": kind})
    assert words in r.json()["error"], r.json()


def test_bad_requests_below_the_body_get_tei_errors(short, server):
    r = httpx.post(short + "/embed", content=b"{not", headers={"Content-Type": "application/json"})
    assert (r.status_code, r.json()["error_type"]) == (400, "Validation")
    r = httpx.post(short + "/embed", content=b'{"inputs": "a"}', headers={"Content-Type": "text/x"})
    assert (r.status_code, r.json()["error_type"]) == (415, "Validation")
    r = post(short, "/embed", {"inputs": ["a" * 9000]})
    assert (r.status_code, r.json()["error_type"]) == (413, "Validation")
    assert "--max-body-bytes" in r.json()["error"]
    r = post(server, "/embed", {"inputs": "a"}, Authorization="Bearer wrong")
    assert (r.status_code, r.json()["error_type"]) == (401, "Validation")
    assert r.headers["WWW-Authenticate"] == "Bearer"
    with pytest.raises(HfHubHTTPError, match="Missing or wrong API key"):
        InferenceClient(model=server, token="wrong").feature_extraction("a")
    # the Host allowlist guards TEI's routes too, refused in TEI's shape (400 -> 422)
    r = post(server, "/embed", {"inputs": "a"}, Host="evil.example")
    assert (r.status_code, r.json()["error_type"]) == (422, "Validation")
    assert "evil.example" in r.json()["error"]


@pytest.mark.parametrize(
    "status,code,tei_status,kind",
    [(429, "queue_full", 429, "Overloaded"), (500, None, 424, "Backend"),
     (504, "deadline_exceeded", 504, "Backend"), (503, None, 503, "Overloaded"),
     (400, None, 422, "Validation"), (404, None, 404, "Validation")],  # fmt: skip
)
def test_server_statuses_become_teis(status, code, tei_status, kind):
    answer = tei_error(ApiError(status, "why", code=code, headers={"Retry-After": "1"}))
    assert answer.status_code == tei_status and answer.headers["Retry-After"] == "1"
    assert json.loads(answer.body) == {"error": "why", "error_type": kind}
