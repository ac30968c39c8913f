"""`convert --format sentence-transformers`: a standard sentence-transformers folder that
the real library loads with no remote code and that encodes like mlx_jina."""

from __future__ import annotations

import json

import pytest

import mlx_jina
from _quantize_fixtures import cosines
from mlx_jina.conversion import main

sentence_transformers = pytest.importorskip("sentence_transformers")

TEXTS = [
    "Which planet is known as the Red Planet?",
    "Mars is often called the Red Planet.",
    "Le renard brun rapide saute par-dessus le chien paresseux.",
    "机器学习 模型 文本 向量",
    "Paris is the capital and largest city of France. " * 6,
]


@pytest.mark.parametrize(
    "fixture,task",
    [("tiny_qwen_base", "retrieval"), ("tiny_eurobert_base", "text-matching")],
)
def test_sentence_transformers_folder(request, tmp_path, fixture, task):
    """SentenceTransformer(folder) loads it (no Python files, no remote code), with the
    task's prompts and cosine similarity, and its float32 vectors match mlx_jina's."""
    base = request.getfixturevalue(fixture)
    dst = tmp_path / "st"
    main(["--hf-path", str(base), "--mlx-path", str(dst), "--task", task,
          "--format", "sentence-transformers", "--dtype", "float32"])
    assert not list(dst.rglob("*.py"))
    modules = json.loads((dst / "modules.json").read_text())
    assert [m["path"] for m in modules] == ["", "1_Pooling", "2_Normalize"]

    model = sentence_transformers.SentenceTransformer(str(dst), trust_remote_code=False, device="cpu")
    assert model.similarity_fn_name == "cosine"
    mlx_model = mlx_jina.load(base, task=task, dtype="float32")
    assert model.prompts == mlx_model.prompts
    for name, encode in (("query", mlx_model.encode_query), ("document", mlx_model.encode_document)):
        got = model.encode(TEXTS, prompt_name=name, batch_size=2, convert_to_numpy=True)
        want = encode(TEXTS)
        assert cosines(got, want).min() >= 0.9999, name
    # The same folder loads in mlx_jina too.
    assert cosines(mlx_jina.load(dst).encode_query(TEXTS), mlx_model.encode_query(TEXTS)).min() >= 0.99999
    card = (dst / "README.md").read_text()
    assert "library_name: sentence-transformers" in card and "SentenceTransformer(" in card


def test_sentence_transformers_refuses_quantizing(tiny_qwen_base, tmp_path):
    """Quantized weights can't go into a transformers folder: refused before any work."""
    with pytest.raises(ValueError, match="float weights"):
        mlx_jina.convert(
            str(tiny_qwen_base), str(tmp_path / "q"), task="retrieval",
            quantize=True, format="sentence-transformers",
        )
    assert not (tmp_path / "q").exists()
    # An already quantized source too, once its weights are read.
    quantized = mlx_jina.convert(str(tiny_qwen_base), str(tmp_path / "q4"), task="retrieval", quantize=True)
    with pytest.raises(ValueError, match="quantized weights, which transformers can't read"):
        mlx_jina.convert(str(quantized), str(tmp_path / "q"), format="sentence-transformers")
    assert not (tmp_path / "q").exists()
    with pytest.raises(ValueError, match="format='onnx'"):
        mlx_jina.convert(str(tiny_qwen_base), str(tmp_path / "q"), task="retrieval", format="onnx")


def test_force_replaces_a_sentence_transformers_output(tiny_eurobert_base, tmp_path):
    """--force knows its own sentence-transformers folders (1_Pooling, 2_Normalize,
    modules.json), and still refuses a folder with anything else in it."""
    args = dict(task="all", format="sentence-transformers")
    dst = mlx_jina.convert(str(tiny_eurobert_base), str(tmp_path / "all"), **args)
    assert sorted(p.name for p in dst.iterdir()) == sorted(
        ["retrieval", "text-matching", "clustering", "classification"]
    )
    mlx_jina.convert(str(tiny_eurobert_base), str(dst), force=True, **args)
    (dst / "retrieval" / "2_Normalize" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="found retrieval/2_Normalize"):
        mlx_jina.convert(str(tiny_eurobert_base), str(dst), force=True, **args)
    assert (dst / "retrieval" / "2_Normalize" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_sentence_transformers_16_bit(tiny_qwen_base, tmp_path, dtype):
    """16-bit folders store 16-bit weights, say so in config.json, and encode like
    mlx_jina's float32 model to within their rounding."""
    dst = mlx_jina.convert(
        str(tiny_qwen_base), str(tmp_path / dtype), task="retrieval",
        format="sentence-transformers", dtype=dtype,
    )
    config = json.loads((dst / "config.json").read_text())
    assert config["dtype"] == dtype
    model = sentence_transformers.SentenceTransformer(str(dst), device="cpu")
    assert str(next(model.parameters()).dtype) == f"torch.{dtype}"
    got = model.encode(TEXTS, prompt_name="query", convert_to_numpy=True)
    want = mlx_jina.load(tiny_qwen_base, task="retrieval", dtype="float32").encode_query(TEXTS)
    assert cosines(got.astype("float32"), want).min() >= 0.99
