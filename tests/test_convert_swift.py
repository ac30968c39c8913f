"""The folders `convert` writes for small (Qwen3) load in MLX Swift's MLXEmbedders.

There is no Swift toolchain here, so the folder is read back by MLXEmbedders' rules as its
source states them (ml-explore/mlx-swift-lm, Libraries/MLXEmbedders and MLXLMCommon),
written out below independently of mlx_jina:
- `model_type` picks the model; "qwen3" is registered, EuroBERT is not;
- Qwen3's config needs hidden_size, num_hidden_layers, intermediate_size,
  num_attention_heads, rms_norm_eps, vocab_size, num_key_value_heads and head_dim; it
  reads rope_theta flat (absent: 1e6, silently);
- "quantization": group_size, bits, mode, and any other key is a per-layer override
  (an object, or false); a layer is quantized when the weights hold `<path>.scales`;
- every *.safetensors file found is merged, keys get a "model." prefix when they lack
  one, and the update is verified: no tensor missing, none extra, every shape right;
- pooling comes from 1_Pooling/config.json (priority cls > mean > max > last);
- the tokenizer needs tokenizer.json and tokenizer_config.json.
mlx_jina must load the same folder and give the same vectors as loading the source.
A real Swift run is `test_swift_smoke`, skipped without a toolchain.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

import mlx_jina
from _quantize_fixtures import cosines
from mlx_jina.conversion import main
from mlx_jina.conversion.pipeline import describe, write_folder

TEXTS = [
    "Which planet is known as the Red Planet?",
    "Mars is often called the Red Planet.",
    "机器学习 模型 文本 向量",
    "Paris is the capital and largest city of France. " * 5,
]
SWIFT_MODEL_TYPES = {"bert", "roberta", "xlm-roberta", "distilbert", "nomic_bert", "qwen3"}
QWEN3_REQUIRED = (
    "hidden_size",
    "num_hidden_layers",
    "intermediate_size",
    "num_attention_heads",
    "rms_norm_eps",
    "vocab_size",
    "num_key_value_heads",
    "head_dim",
)
NOT_LAYERS = {"group_size", "bits", "mode", "quant_method", "linear_class", "quantization_mode"}


def swift_parameters(config: dict) -> dict[str, tuple[int, ...]]:
    """Qwen3Model's float parameters in MLXEmbedders, by path, with their shapes."""
    d, heads, kv, hd = (
        config["hidden_size"],
        config["num_attention_heads"],
        config["num_key_value_heads"],
        config["head_dim"],
    )
    inter = config["intermediate_size"]
    shapes = {"model.embed_tokens.weight": (config["vocab_size"], d), "model.norm.weight": (d,)}
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}"
        shapes |= {
            f"{p}.self_attn.q_proj.weight": (heads * hd, d),
            f"{p}.self_attn.k_proj.weight": (kv * hd, d),
            f"{p}.self_attn.v_proj.weight": (kv * hd, d),
            f"{p}.self_attn.o_proj.weight": (d, heads * hd),
            f"{p}.self_attn.q_norm.weight": (hd,),
            f"{p}.self_attn.k_norm.weight": (hd,),
            f"{p}.mlp.gate_proj.weight": (inter, d),
            f"{p}.mlp.up_proj.weight": (inter, d),
            f"{p}.mlp.down_proj.weight": (d, inter),
            f"{p}.input_layernorm.weight": (d,),
            f"{p}.post_attention_layernorm.weight": (d,),
        }
    return shapes


def read_like_mlxembedders(folder: Path) -> dict:
    """Check `folder` by MLXEmbedders' rules; return what it would build: the config,
    each quantized layer's (group_size, bits, mode) and the pooling strategy."""
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] in SWIFT_MODEL_TYPES, config["model_type"]
    assert config["model_type"] == "qwen3"
    for key in QWEN3_REQUIRED:
        assert isinstance(config[key], (int, float)) and not isinstance(config[key], bool), key
    assert isinstance(config["rope_theta"], (int, float)), "flat rope_theta (else 1e6)"
    assert isinstance(config.get("max_position_embeddings", 32768), int)
    assert isinstance(config.get("tie_word_embeddings", False), bool)

    # Every .safetensors anywhere in the folder is merged: exactly one must exist.
    files = sorted(folder.rglob("*.safetensors"))
    assert [f.relative_to(folder).as_posix() for f in files] == [files[0].name], files
    assert files[0].name.startswith("model")
    weights = {}
    for f in files:
        for key, value in mx.load(str(f)).items():
            if "lm_head" in key or "self_attn.rotary_emb.inv_freq" in key:
                continue
            weights[key if key.startswith("model.") else f"model.{key}"] = value

    block = config.get("quantization")
    layers: dict[str, tuple] = {}
    if block is not None:
        default = (block["group_size"], block["bits"], block.get("mode", "affine"))
        overrides = {k: v for k, v in block.items() if k not in NOT_LAYERS}
        for k, v in overrides.items():
            assert v is False or set(v) <= {"group_size", "bits", "mode"}, (k, v)
        for path in {k.removesuffix(".scales") for k in weights if k.endswith(".scales")}:
            o = overrides.get(path)
            assert o is not False, f"{path} has scales but is marked not quantized"
            layers[path] = (o["group_size"], o["bits"], o.get("mode", "affine")) if o else default
    else:
        assert not any(k.endswith(".scales") for k in weights), "scales without a block"

    # model.update(parameters, verify: .all): the file's tensors are exactly the model's.
    want = {}
    for key, shape in swift_parameters(config).items():
        path = key.removesuffix(".weight")
        if path not in layers:
            want[key] = (shape, "float")
            continue
        group_size, bits, mode = layers[path]
        assert mode == "affine", "this test knows affine triplets only"
        out, n_in = shape
        want[key] = ((out, n_in * bits // 32), "uint32")
        want[f"{path}.scales"] = ((out, n_in // group_size), "float")
        want[f"{path}.biases"] = ((out, n_in // group_size), "float")
    assert set(weights) == set(want), set(weights) ^ set(want)
    for key, (shape, kind) in want.items():
        w = weights[key]
        assert tuple(w.shape) == shape, (key, w.shape, shape)
        if kind == "uint32":
            assert w.dtype == mx.uint32, key
        else:
            assert mx.issubdtype(w.dtype, mx.floating), key

    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    assert pooling["word_embedding_dimension"] == config["hidden_size"]
    order = ["cls_token", "mean_tokens", "max_tokens", "lasttoken"]
    chosen = next((m for m in order if pooling.get(f"pooling_mode_{m}", False)), "first")
    assert (folder / "tokenizer.json").is_file() and (folder / "tokenizer_config.json").is_file()
    return {"config": config, "layers": layers, "pooling": chosen}


def source_theta(folder: Path) -> float:
    config = json.loads((folder / "config.json").read_text())
    return config.get("rope_theta") or config["rope_parameters"]["rope_theta"]


def same_vectors(a: mlx_jina.Embedder, b: mlx_jina.Embedder) -> None:
    for encode in ("encode_query", "encode_document"):
        got, want = getattr(a, encode)(TEXTS), getattr(b, encode)(TEXTS)
        assert cosines(got, want).min() >= 0.99999


@pytest.mark.filterwarnings("ignore:2 layers stay float")
@pytest.mark.parametrize("bits", [None, 4, 8])
def test_plain_convert_meets_the_swift_rules(tiny_qwen_base, tmp_path, bits):
    """Plain convert (float, 4- and 8-bit) writes a folder MLXEmbedders loads, and
    mlx_jina loads it with the vectors of loading the source with the same bits."""
    argv = ["--hf-path", str(tiny_qwen_base), "--mlx-path", str(tmp_path / "out")]
    argv += ["--task", "retrieval"] + (["-q", "--q-bits", str(bits)] if bits else [])
    main(argv)
    dst = tmp_path / "out"
    read = read_like_mlxembedders(dst)
    assert read["pooling"] == "lasttoken"
    assert read["config"]["rope_theta"] == source_theta(tiny_qwen_base) == 3_500_000
    if bits:
        assert read["config"]["quantization"] == {"group_size": 64, "bits": bits, "mode": "affine"}
        # down_proj's 96 inputs are no multiple of 64: float, and no entry needed.
        assert "model.layers.0.mlp.down_proj" not in read["layers"]
        assert read["layers"]["model.embed_tokens"] == (64, bits, "affine")
    else:
        assert "quantization" not in read["config"] and not read["layers"]
    # mlx_jina still knows the folder: its block, task and prompts.
    assert read["config"]["mlx_jina"]["task"] == "retrieval"
    converted = mlx_jina.load(dst)
    assert converted.task == "retrieval" and converted.prompts["query"] == "Query: "
    same_vectors(converted, mlx_jina.load(tiny_qwen_base, task="retrieval", bits=bits))

    card = (dst / "README.md").read_text()
    assert "EmbedderModelFactory.shared.loadContainer" in card
    assert '"Query: Which planet' in card and '"Document: Mars' in card
    assert "normalize: true" in card and "applyLayerNorm: true" not in card


def test_format_swift_group_32(tiny_qwen_base, tmp_path):
    """--format swift with group size 32: down_proj (96 inputs) is quantized too."""
    dst = mlx_jina.convert(
        str(tiny_qwen_base), str(tmp_path / "s"), task="clustering",
        quantize=True, q_bits=4, q_group_size=32, format="swift",
    )
    read = read_like_mlxembedders(dst)
    assert read["layers"]["model.layers.1.mlp.down_proj"] == (32, 4, "affine")
    same_vectors(
        mlx_jina.load(dst),
        mlx_jina.load(tiny_qwen_base, task="clustering", bits=4, group_size=32),
    )


def test_per_layer_overrides(tiny_qwen_base, tmp_path):
    """A model whose layers differ in bits gets mlx-lm's per-layer entries, which both
    MLXEmbedders' rules and mlx_jina's loader read back to the same layers."""
    embedder = mlx_jina.load(tiny_qwen_base, task="retrieval", dtype="float32")
    model = embedder.model
    eight = {"layers.0.self_attn.v_proj", "embed_tokens"}

    def settings(path: str, m: nn.Module):
        if not hasattr(m, "to_quantized") or m.weight.shape[-1] % 64:
            return False
        return {"group_size": 64, "bits": 8 if path in eight else 4, "mode": "affine"}

    nn.quantize(model, class_predicate=settings)
    want = {"query": embedder.encode_query(TEXTS), "document": embedder.encode_document(TEXTS)}
    info = describe(embedder, "tiny", None, 4)
    write_folder(tmp_path / "mixed", tiny_qwen_base, embedder, info, None, "mixed")
    read = read_like_mlxembedders(tmp_path / "mixed")
    block = read["config"]["quantization"]
    assert {k: v for k, v in block.items() if k.startswith("model.")} == {
        f"model.{p}": {"group_size": 64, "bits": 8, "mode": "affine"} for p in eight
    }
    assert read["layers"]["model.layers.0.self_attn.v_proj"] == (64, 8, "affine")
    assert read["layers"]["model.layers.0.self_attn.q_proj"] == (64, 4, "affine")
    loaded = mlx_jina.load(tmp_path / "mixed")
    assert loaded.model.layers[0].self_attn.v_proj.bits == 8
    assert loaded.model.layers[1].self_attn.v_proj.bits == 4
    assert cosines(loaded.encode_query(TEXTS), want["query"]).min() >= 0.99999
    assert cosines(loaded.encode_document(TEXTS), want["document"]).min() >= 0.99999


def test_nano_is_refused_for_swift_and_noted_otherwise(tiny_eurobert_base, tmp_path, capsys):
    """MLXEmbedders has no EuroBERT: --format swift refuses nano before writing anything;
    a plain convert says so in one line and in the model card."""
    with pytest.raises(ValueError, match="eurobert.*MLXEmbedders has no such model type"):
        mlx_jina.convert(
            str(tiny_eurobert_base), str(tmp_path / "nano"), task="retrieval", format="swift"
        )
    assert not (tmp_path / "nano").exists()
    mlx_jina.convert(str(tiny_eurobert_base), str(tmp_path / "ok"), task="retrieval")
    notes = [line for line in capsys.readouterr().out.splitlines() if "MLXEmbedders" in line]
    assert len(notes) == 1 and "can't load this eurobert folder" in notes[0]
    card = (tmp_path / "ok" / "README.md").read_text()
    assert "Swift apps can't load this folder" in card and "loadContainer" not in card
    config = json.loads((tmp_path / "ok" / "config.json").read_text())
    assert config["model_type"] == "eurobert"
    same_vectors(mlx_jina.load(tmp_path / "ok"), mlx_jina.load(tiny_eurobert_base, task="retrieval"))


SWIFT_PACKAGE = os.environ.get("MLX_SWIFT_LM")  # a local checkout of ml-explore/mlx-swift-lm


@pytest.mark.swift
@pytest.mark.skipif(not SWIFT_PACKAGE, reason="set MLX_SWIFT_LM to a mlx-swift-lm checkout")
@pytest.mark.skipif(shutil.which("swift") is None, reason="no Swift toolchain on this machine")
def test_swift_smoke(tiny_qwen_base, tmp_path):
    """Build the model card's Swift snippet against MLXEmbedders, run it on a converted
    folder, and compare its vectors with mlx_jina's."""
    dst = mlx_jina.convert(str(tiny_qwen_base), str(tmp_path / "m"), task="retrieval")
    card = (dst / "README.md").read_text()
    snippet = card.split("```swift\n", 1)[1].split("```", 1)[0]
    snippet = snippet.replace(
        snippet.split("let folder = ", 1)[1].split("\n", 1)[0], f'URL(filePath: "{dst}")'
    )
    pkg = tmp_path / "smoke"
    (pkg / "Sources" / "Smoke").mkdir(parents=True)
    (pkg / "Package.swift").write_text(
        "// swift-tools-version:5.9\nimport PackageDescription\n"
        'let package = Package(name: "Smoke", platforms: [.macOS(.v14)],\n'
        f'  dependencies: [.package(path: "{SWIFT_PACKAGE}")],\n'
        '  targets: [.executableTarget(name: "Smoke", dependencies: [\n'
        '    .product(name: "MLXEmbedders", package: "mlx-swift-lm"),\n'
        '    .product(name: "MLXHuggingFace", package: "mlx-swift-lm")])])\n'
    )
    (pkg / "Sources" / "Smoke" / "main.swift").write_text(
        "import Foundation\n" + snippet
        + "\nlet data = try JSONSerialization.data(withJSONObject: vectors)\n"
        "print(String(data: data, encoding: .utf8)!)\n"
    )
    out = subprocess.run(
        ["swift", "run", "-c", "release", "Smoke"], cwd=pkg, capture_output=True, text=True,
        timeout=1800,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    vectors = np.array(json.loads(out.stdout.strip().splitlines()[-1]))
    model = mlx_jina.load(dst)
    want = np.concatenate([
        model.encode_query(["Which planet is known as the Red Planet?"]),
        model.encode_document(["Mars is often called the Red Planet."]),
    ])
    assert cosines(vectors, want).min() >= 0.999


def test_apps_read_the_tasks_own_prompts(tiny_qwen_base, tmp_path):
    """config_sentence_transformers.json holds the prompts of the folder's task (an app
    reads them there): "Document: " before queries too for a symmetric task."""
    source = json.loads((tiny_qwen_base / "config_sentence_transformers.json").read_text())
    assert source["prompts"]["query"] == "Query: "  # so the check below can fail
    for task, query in (("text-matching", "Document: "), ("retrieval", "Query: ")):
        dst = mlx_jina.convert(str(tiny_qwen_base), str(tmp_path / task), task=task)
        st = json.loads((dst / "config_sentence_transformers.json").read_text())
        assert st["prompts"] == {"query": query, "document": "Document: "}
        assert st["default_prompt_name"] == "document" and st["similarity_fn_name"] == "cosine"
        assert mlx_jina.load(dst).prompts == st["prompts"]
