"""Embedding files with fingerprints (mlx_jina/store.py).

Run: python -m pytest tests/test_store.py -q
"""

import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import save_file

import mlx_jina
from mlx_jina import Fingerprint, fingerprint, load_embeddings, save_embeddings
from mlx_jina.retrieval.precision import PRECISIONS, quantize_embeddings

DOCS = ["Paris is the capital of France.", "Mars is red.", "quick brown fox"]


def test_fingerprint_records_the_settings(qwen, tiny_qwen_base):
    fp = fingerprint(qwen, truncate_dim=32, precision="binary")
    assert fp == Fingerprint(model=str(tiny_qwen_base), revision=None, task="retrieval",
                             prompt="Document: ", dims=32, precision="binary",
                             version=mlx_jina.__version__, identity=qwen.identity)
    assert qwen.identity.startswith("c1:") and len(qwen.identity) == 35
    query = fingerprint(qwen, prompt_name="query")
    assert (query.prompt, query.dims, query.precision) == ("Query: ", qwen.dim, "float32")


@pytest.mark.parametrize("precision", PRECISIONS)
def test_round_trip_is_exact(qwen, tmp_path, precision):
    """What encode returned comes back bit for bit, with its fingerprint."""
    emb = qwen.encode_document(DOCS, precision=precision, truncate_dim=40)
    fp = fingerprint(qwen, truncate_dim=40, precision=precision)
    path = save_embeddings(tmp_path / "docs.safetensors", emb, fp)
    loaded = load_embeddings(path, fp)
    assert loaded.embeddings.dtype == emb.dtype
    assert np.array_equal(loaded.embeddings, emb)
    assert loaded.fingerprint == fp and loaded.ranges is None


def test_round_trip_keeps_custom_int8_ranges(qwen, tmp_path):
    floats = qwen.encode_document(DOCS)
    ranges = np.stack([floats.min(0), floats.max(0)])
    emb = quantize_embeddings(floats, "int8", ranges=ranges)
    fp = fingerprint(qwen, precision="int8")
    loaded = load_embeddings(save_embeddings(tmp_path / "d.safetensors", emb, fp, ranges=ranges))
    assert np.array_equal(loaded.ranges, ranges) and np.array_equal(loaded.embeddings, emb)


def test_mismatched_fingerprint_is_refused(qwen, qwen_for, tmp_path):
    """A corpus embedded with another task, size or prompt is refused with every difference
    named, unless forced."""
    clustering = qwen_for("clustering")
    emb = clustering.encode(DOCS, truncate_dim=32)
    path = save_embeddings(tmp_path / "c.safetensors", emb, fingerprint(clustering, truncate_dim=32))
    with pytest.raises(ValueError) as err:
        load_embeddings(path, fingerprint(qwen))
    message = str(err.value)
    assert "task 'clustering' (expected 'retrieval')" in message
    assert f"dims 32 (expected {qwen.dim})" in message
    assert "force=True" in message and str(path) in message
    assert "prompt" not in message  # both used "Document: "
    forced = load_embeddings(path, fingerprint(qwen), force=True)
    assert np.array_equal(forced.embeddings, emb)


def test_query_prompt_corpus_is_refused(qwen, tmp_path):
    """Documents embedded with the query prompt don't match the document-side fingerprint."""
    fp = fingerprint(qwen, prompt_name="query")
    path = save_embeddings(tmp_path / "q.safetensors", qwen.encode_query(DOCS), fp)
    with pytest.raises(ValueError, match="prompt 'Query: ' \\(expected 'Document: '\\)"):
        load_embeddings(path, fingerprint(qwen))


def test_model_is_compared_by_content_not_by_name(qwen, tmp_path):
    fp = fingerprint(qwen)
    path = save_embeddings(tmp_path / "d.safetensors", qwen.encode_document(DOCS), fp)
    # The same content under another name or revision: the same vectors, accepted.
    renamed = Fingerprint(**{**fp.__dict__, "model": "./elsewhere/", "revision": "abc123"})
    assert load_embeddings(path, renamed).fingerprint == fp
    # Other content under the same name: refused, naming both identities.
    other = Fingerprint(**{**fp.__dict__, "identity": "c1:" + "0" * 32})
    with pytest.raises(ValueError, match=f"identity '{fp.identity}' \\(expected 'c1:0+'\\)"):
        load_embeddings(path, other)
    # A side without an identity (an older file) falls back to the name and revision.
    unnamed = Fingerprint(**{**fp.__dict__, "identity": None, "revision": "abc123"})
    with pytest.raises(ValueError, match="revision None \\(expected 'abc123'\\)"):
        load_embeddings(path, unnamed)
    # precision and version are recorded, not compared: a float query reads a binary corpus.
    same = Fingerprint(**{**fp.__dict__, "precision": "binary", "version": "9.9.9"})
    assert load_embeddings(path, same).fingerprint == fp


def test_revision_comes_from_a_hub_snapshot_folder(tiny_qwen_base, tmp_path):
    """A model under .../snapshots/<commit>/ (the Hub cache layout) records that commit."""
    folder = tmp_path / "snapshots" / "0123abcd"
    shutil.copytree(tiny_qwen_base, folder)
    model = mlx_jina.load(folder, task="retrieval")
    assert fingerprint(model).revision == "0123abcd"


def test_save_refuses_vectors_that_dont_fit_the_fingerprint(qwen, tmp_path):
    emb = qwen.encode_document(DOCS)  # float32, full size
    with pytest.raises(ValueError, match="says int8 vectors.*got float32"):
        save_embeddings(tmp_path / "x.safetensors", emb, fingerprint(qwen, precision="int8"))
    with pytest.raises(ValueError, match="of 32 dimensions"):
        save_embeddings(tmp_path / "x.safetensors", emb, fingerprint(qwen, truncate_dim=32))


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="No embedding file"):
        load_embeddings(tmp_path / "missing.safetensors")
    save_file({"embeddings": np.zeros((2, 4), np.float32)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ValueError, match="not an mlx_jina embedding file"):
        load_embeddings(tmp_path / "plain.safetensors")


def test_fingerprint_is_plain_json_in_the_header(qwen, tmp_path):
    """Other tools can read the fingerprint without mlx_jina: it is JSON in the metadata."""
    from safetensors import safe_open

    fp = fingerprint(qwen)
    path = save_embeddings(tmp_path / "d.safetensors", qwen.encode_document(DOCS), fp)
    with safe_open(str(path), framework="numpy") as f:
        meta = json.loads(f.metadata()["fingerprint"])
    assert meta["task"] == "retrieval" and meta["prompt"] == "Document: "
    assert meta["dims"] == qwen.dim and meta["version"] == mlx_jina.__version__


def test_fingerprint_dims_follow_the_matryoshka_minimum(qwen):
    """fingerprint() took dims from 1 while encode() takes them from 32: one rule now."""
    from mlx_jina.tasks import MIN_DIM

    with pytest.raises(ValueError, match=f"from {MIN_DIM} to the embedding size"):
        fingerprint(qwen, truncate_dim=MIN_DIM - 1)
    with pytest.raises(ValueError, match=f"from {MIN_DIM}"):
        qwen.encode("a", truncate_dim=MIN_DIM - 1)
    assert fingerprint(qwen, truncate_dim=MIN_DIM).dims == MIN_DIM


def test_the_same_folder_spelled_another_way_is_accepted(tiny_qwen_base, tmp_path, monkeypatch):
    """`load_embeddings(dir, fingerprint(model))` refused the model folder that made the
    vectors when it was spelled `./models/x/` or absolutely instead of `models/x`; an
    embedding file likewise. Another model under that name is still refused."""
    shutil.copytree(tiny_qwen_base, tmp_path / "models" / "x")
    monkeypatch.chdir(tmp_path)
    made_with = mlx_jina.load("models/x", task="retrieval")
    mlx_jina.embed_corpus(made_with, DOCS, tmp_path / "job")
    save_embeddings(tmp_path / "d.safetensors", made_with.encode_document(DOCS), fingerprint(made_with))
    for spelling in ("models/x", "./models/x/", str(tmp_path / "models" / "x")):
        fp = fingerprint(mlx_jina.load(spelling, task="retrieval"))
        assert len(load_embeddings(tmp_path / "job", fp).embeddings) == len(DOCS)
        assert load_embeddings(tmp_path / "d.safetensors", fp).fingerprint.model == "models/x"
    other = fingerprint(mlx_jina.load("models/x", task="text-matching"))
    with pytest.raises(ValueError, match="identity"):
        load_embeddings(tmp_path / "job", other)


def test_a_file_from_before_identities_accepts_its_folder_spelled_another_way(
    tiny_qwen_base, tmp_path, monkeypatch
):
    """Without an identity on one side the model is compared by name; two spellings of one
    local folder are one name, as they are for a corpus job's resume."""
    shutil.copytree(tiny_qwen_base, tmp_path / "models" / "x")
    monkeypatch.chdir(tmp_path)
    model = mlx_jina.load("models/x", task="retrieval")
    old = Fingerprint(**{**fingerprint(model).__dict__, "identity": None})
    path = save_embeddings(tmp_path / "old.safetensors", model.encode_document(DOCS), old)
    respelled = fingerprint(mlx_jina.load("./models/x/", task="retrieval"))
    assert load_embeddings(path, respelled).fingerprint == old
    with pytest.raises(ValueError, match="model 'models/x' \\(expected 'elsewhere'\\)"):
        load_embeddings(path, Fingerprint(**{**respelled.__dict__, "model": "elsewhere"}))


def test_an_identity_of_another_scheme_falls_back_to_the_name(qwen, tmp_path):
    """A later release may hash other things (a new scheme): its identities are not
    compared with ours, the model's name and revision are."""
    fp = fingerprint(qwen)
    path = save_embeddings(tmp_path / "d.safetensors", qwen.encode_document(DOCS), fp)
    newer = Fingerprint(**{**fp.__dict__, "identity": "c2:" + "0" * 32})
    assert load_embeddings(path, newer).fingerprint == fp
    with pytest.raises(ValueError, match="model .* \\(expected 'other'\\)"):
        load_embeddings(path, Fingerprint(**{**newer.__dict__, "model": "other"}))
