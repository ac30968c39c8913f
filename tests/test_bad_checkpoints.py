"""Bad checkpoints and bad paths: one clear, short, fast error each, before any building.

Each case copies a tiny fixture folder, corrupts one thing and expects one error that
names the file and the field. Run: pytest tests/test_bad_checkpoints.py
"""

import json
import os
import re
import resource
import shutil
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import mlx.core as mx
import pytest
from mlx.utils import tree_flatten

import mlx_jina
from mlx_jina.models import BACKBONES
from mlx_jina.models.base import ModelArgs
from mlx_jina.models.decoder import Model, weight_shapes

qwen3, eurobert = BACKBONES["qwen3"], BACKBONES["eurobert"]

# Table cases must fail fast; generous for a busy 2-core machine.
FAST_S = 2.0
SHORT_MESSAGE = 2000


@contextmanager
def deadline(seconds: float):
    """Fail instead of hanging (a FIFO opened for reading blocks until a writer comes)."""

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# --- corruptions: each takes the copied folder and changes one thing ---------------


def config(**changes):
    """Set config.json keys; a value of ... deletes the key."""

    def corrupt(folder: Path) -> None:
        path = folder / "config.json"
        data = json.loads(path.read_text())
        for key, value in changes.items():
            if value is ...:
                data.pop(key, None)
            else:
                data[key] = value
        path.write_text(json.dumps(data))

    return corrupt


def config_text(key: str, raw: str):
    """Set one config.json key to raw JSON text (NaN and Infinity aren't json.dumps-able)."""

    def corrupt(folder: Path) -> None:
        data = json.loads((folder / "config.json").read_text())
        data[key] = "@@"
        (folder / "config.json").write_text(json.dumps(data).replace('"@@"', raw))

    return corrupt


def write(name: str, data: str | bytes):
    def corrupt(folder: Path) -> None:
        path = folder / name
        path.unlink()
        path.write_bytes(data.encode() if isinstance(data, str) else data)

    return corrupt


def json_file(name: str, **changes):
    def corrupt(folder: Path) -> None:
        path = folder / name
        path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))

    return corrupt


def fifo(name: str):
    def corrupt(folder: Path) -> None:
        (folder / name).unlink()
        os.mkfifo(folder / name)

    return corrupt


def folder_instead(name: str):
    def corrupt(folder: Path) -> None:
        (folder / name).unlink()
        (folder / name).mkdir()

    return corrupt


def sparse(name: str, size: int):
    """A file of `size` bytes that costs no disk (and must never be read whole)."""

    def corrupt(folder: Path) -> None:
        with open(folder / name, "wb") as f:
            f.truncate(size)

    return corrupt


def tensors(change, name: str = "model.safetensors"):
    """Rewrite a safetensors file after change(dict of mx arrays) edits it in place."""

    def corrupt(folder: Path) -> None:
        path = folder / name
        found = dict(mx.load(str(path)))
        change(found)
        mx.save_safetensors(str(path), found)

    return corrupt


def as_float64(key: str):
    """MLX can't save float64, so this one goes through numpy."""

    def corrupt(folder: Path) -> None:
        from safetensors.numpy import load_file, save_file

        found = load_file(str(folder / "model.safetensors"))
        found[key] = found[key].astype("float64")
        save_file(found, str(folder / "model.safetensors"))

    return corrupt


def header(change, name: str = "model.safetensors"):
    """Edit a safetensors file's JSON header (the data is left as it is)."""

    def corrupt(folder: Path) -> None:
        path = folder / name
        raw = path.read_bytes()
        n = int.from_bytes(raw[:8], "little")
        head = json.loads(raw[8 : 8 + n])
        text = json.dumps(change(head)).encode()
        path.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n :])

    return corrupt


def raw_bytes(change, name: str = "model.safetensors"):
    def corrupt(folder: Path) -> None:
        path = folder / name
        path.write_bytes(change(path.read_bytes()))

    return corrupt


def entry(key: str, **fields):
    def change(head: dict) -> dict:
        head[key] = {**head[key], **fields}
        return head

    return change


Q = "layers.0.self_attn.q_proj.weight"
UP = "layers.0.mlp.up_proj.weight"
LORA_A = "base_model.model.layers.0.self_attn.q_proj.lora_A.weight"
LORA_B = "base_model.model.layers.0.self_attn.q_proj.lora_B.weight"
ADAPTER = "adapters/retrieval/adapter_model.safetensors"
ADAPTER_CONFIG = "adapters/retrieval/adapter_config.json"
ST = "config_sentence_transformers.json"


def set_key(key, make):
    return lambda t: t.__setitem__(key, make(t))


def drop(key):
    return lambda t: t.pop(key)


def add_layer(t):
    for k in [k for k in t if k.startswith("layers.1.")]:
        t[k.replace("layers.1.", "layers.2.")] = t[k]


def shard(folder: Path) -> None:
    """Split model.safetensors into two shards plus an index, as big Hub repos do."""
    found = dict(mx.load(str(folder / "model.safetensors")))
    keys = sorted(found)
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    halves = [keys[: len(keys) // 2], keys[len(keys) // 2 :]]
    for name, part in zip(names, halves):
        mx.save_safetensors(str(folder / name), {k: found[k] for k in part})
    index = {"weight_map": {k: n for n, part in zip(names, halves) for k in part}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    (folder / "model.safetensors").unlink()


def sharded(then=None):
    def corrupt(folder: Path) -> None:
        shard(folder)
        if then:
            then(folder)

    return corrupt


def duplicate_across_shards(folder: Path) -> None:
    first = folder / "model-00001-of-00002.safetensors"
    second = folder / "model-00002-of-00002.safetensors"
    found = dict(mx.load(str(second)))
    key = next(iter(dict(mx.load(str(first)))))
    found[key] = dict(mx.load(str(first)))[key]
    mx.save_safetensors(str(second), found)


def huge_header_length(raw: bytes) -> bytes:
    return (2**62).to_bytes(8, "little") + raw[8:]


# (fixture, corruption, error type, regex). Fixtures: "merged" tiny_qwen_merged (float32),
# "nano" tiny_eurobert_merged, "base" tiny_qwen_base (adapters), "q4" a 4-bit -mlx folder.
# fmt: off
CASES = {
    # config.json as a file
    "config-list": ("merged", write("config.json", "[1, 2]"), ValueError, r"config\.json.*JSON list.*object"),
    "config-null": ("merged", write("config.json", "null"), ValueError, r"config\.json.*JSON null.*object"),
    "config-fifo": ("merged", fifo("config.json"), ValueError, r"config\.json is not a regular file"),
    "config-folder": ("merged", folder_instead("config.json"), ValueError, r"config\.json is not a regular file"),
    "config-huge": ("merged", sparse("config.json", 50_000_000), ValueError, r"config\.json is 50,000,000 bytes"),
    "config-deep": ("merged", write("config.json", "[" * 200_000), ValueError, r"config\.json is not valid JSON"),
    "config-not-utf8": ("merged", write("config.json", b"\xff\xfe{}"), ValueError, r"config\.json is not valid JSON"),
    # config.json fields: type and range
    "hidden-zero": ("merged", config(hidden_size=0), ValueError, r"config\.json.*hidden_size=0.*whole number"),
    "hidden-negative": ("merged", config(hidden_size=-64), ValueError, r"hidden_size=-64"),
    "hidden-string": ("merged", config(hidden_size="64"), ValueError, r"hidden_size='64'"),
    "hidden-float": ("merged", config(hidden_size=64.0), ValueError, r"hidden_size=64\.0"),
    "hidden-bool": ("merged", config(hidden_size=True), ValueError, r"hidden_size=True"),
    "hidden-missing": ("merged", config(hidden_size=...), ValueError, r"config\.json lacks hidden_size"),
    "hidden-wrong": ("merged", config(hidden_size=32), ValueError, r"embed_tokens\.weight.*\(512, 64\).*\(512, 32\)"),
    "hidden-huge": ("merged", config(hidden_size=10**15), ValueError, r"embed_tokens\.weight"),
    "heads-zero": ("merged", config(num_attention_heads=0), ValueError, r"num_attention_heads=0"),
    "heads-list": ("merged", config(num_attention_heads=[4]), ValueError, r"num_attention_heads=\[4\]"),
    "kv-heads-zero": ("merged", config(num_key_value_heads=0), ValueError, r"num_key_value_heads=0"),
    "kv-heads-not-dividing": ("merged", config(num_key_value_heads=3), ValueError, r"num_key_value_heads=3 does not divide num_attention_heads=4"),
    "head-dim-zero": ("merged", config(head_dim=0), ValueError, r"head_dim=0"),
    "head-dim-wrong": ("merged", config(head_dim=8), ValueError, r"q_proj\.weight.*\(64, 64\).*\(32, 64\)"),
    "head-dim-underivable": ("nano", config(num_attention_heads=3), ValueError, r"q_proj\.weight has 64 rows, not a multiple of num_attention_heads=3"),
    "layers-zero": ("merged", config(num_hidden_layers=0), ValueError, r"num_hidden_layers=0"),
    "layers-more": ("merged", config(num_hidden_layers=3), ValueError, r"num_hidden_layers=3.*2 layers"),
    "layers-fewer": ("merged", config(num_hidden_layers=1), ValueError, r"num_hidden_layers=1.*2 layers"),
    "layers-100000": ("merged", config(num_hidden_layers=100_000), ValueError, r"num_hidden_layers=100000.*2 layers"),
    "vocab-zero": ("merged", config(vocab_size=0), ValueError, r"vocab_size=0"),
    "vocab-wrong": ("merged", config(vocab_size=513), ValueError, r"embed_tokens\.weight"),
    "intermediate-wrong": ("nano", config(intermediate_size=95), ValueError, r"gate_proj\.weight.*\(96, 64\).*\(95, 64\)"),
    "intermediate-negative": ("merged", config(intermediate_size=-1), ValueError, r"intermediate_size=-1"),
    "max-pos-negative": ("merged", config(max_position_embeddings=-1), ValueError, r"max_position_embeddings=-1"),
    "max-pos-huge": ("merged", config(max_position_embeddings=10**12), ValueError, r"max_position_embeddings=1000000000000"),
    "max-pos-string": ("nano", config(max_position_embeddings="8192"), ValueError, r"max_position_embeddings='8192'"),
    "eps-zero": ("merged", config(rms_norm_eps=0), ValueError, r"rms_norm_eps=0.*positive"),
    "eps-infinite": ("merged", config_text("rms_norm_eps", "Infinity"), ValueError, r"rms_norm_eps=inf"),
    "eps-nan": ("nano", config_text("rms_norm_eps", "NaN"), ValueError, r"rms_norm_eps=nan"),
    "eps-string": ("merged", config(rms_norm_eps="1e-6"), ValueError, r"rms_norm_eps='1e-6'"),
    # RoPE settings (merged qwen uses rope_parameters, nano a top-level rope_theta)
    "theta-negative": ("merged", config(rope_parameters={"rope_theta": -1}), ValueError, r"rope_theta=-1.*positive"),
    "theta-string": ("merged", config(rope_parameters={"rope_theta": "abc"}), ValueError, r"rope_theta='abc'"),
    "theta-infinite": ("nano", config_text("rope_theta", "Infinity"), ValueError, r"rope_theta=inf"),
    "theta-bool": ("nano", config(rope_theta=True), ValueError, r"rope_theta=True"),
    "eps-huge": ("merged", config(rms_norm_eps=0.5), ValueError, r"rms_norm_eps=0\.5.*from 1e-12 to 0\.01"),
    "theta-tiny": ("merged", config(rope_parameters={"rope_theta": 1e-300}), ValueError, r"rope_parameters\.rope_theta=1e-300.*from 10 to"),
    "theta-tiny-top": ("nano", config(rope_theta=1e-300), ValueError, r"rope_theta=1e-300.*from 10 to"),
    "theta-huge": ("nano", config(rope_theta=1e300), ValueError, r"rope_theta=1e\+300"),
    # config values for layers the decoder does not have: refused by name, never run as the defaults
    "act-gelu": ("merged", config(hidden_act="gelu"), ValueError, r'hidden_act="gelu" \(supported: "silu"\)'),
    "act-gelu-nano": ("nano", config(hidden_act="gelu_pytorch_tanh"), ValueError, r'hidden_act="gelu_pytorch_tanh"'),
    "act-number": ("merged", config(hidden_act=1), ValueError, r"hidden_act=1 "),
    "attention-bias": ("merged", config(attention_bias=True), ValueError, r"attention_bias=true \(supported: false\)"),
    "attention-bias-nano": ("nano", config(attention_bias=True), ValueError, r"attention_bias=true"),
    "mlp-bias-nano": ("nano", config(mlp_bias=True), ValueError, r"mlp_bias=true"),
    "mlp-bias-one": ("nano", config(mlp_bias=1), ValueError, r"mlp_bias=1"),
    "sliding-window": ("merged", config(use_sliding_window=True, sliding_window=16), ValueError, r"use_sliding_window=true"),
    "layer-types-sliding": ("merged", config(layer_types=["full_attention", "sliding_attention"]), ValueError, r"layer_types=.*sliding_attention.*full_attention"),
    "layer-norm": ("nano", config(layer_norm_eps=1e-12), ValueError, r"layer_norm_eps=1e-12 \(not supported\).*RMSNorm"),
    "partial-rotary": ("nano", config(partial_rotary_factor=0.5), ValueError, r"partial_rotary_factor=0\.5"),
    "rope-partial-nested": ("merged", config(rope_parameters={"rope_theta": 3.5e6, "rope_type": "default", "partial_rotary_factor": 0.5}), ValueError, r"RoPE settings hold partial_rotary_factor"),
    "rope-yarn": ("merged", config(rope_parameters={"rope_theta": 3.5e6, "rope_type": "yarn", "factor": 4.0}), ValueError, r"Unsupported RoPE scaling.*yarn"),
    "rope-llama3": ("nano", config(rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0}), ValueError, r"RoPE settings hold low_freq_factor"),
    "is-decoder-nano": ("nano", config(is_decoder=True), ValueError, r"is_decoder=true.*eurobert.*bidirectional"),
    "rope-parameters-list": ("merged", config(rope_parameters=[1]), ValueError, r"rope_parameters=\[1\].*object"),
    "rope-scaling-string": ("nano", config(rope_scaling="linear"), ValueError, r"rope_scaling='linear'.*object"),
    "rope-factor-string": ("nano", config(rope_scaling={"type": "linear", "factor": "x"}), ValueError, r"Unsupported RoPE scaling"),
    # config.json fields the loader reads for itself
    "model-type-list": ("merged", config(model_type=["qwen3"]), ValueError, r"Unsupported model_type \['qwen3'\]"),
    "architectures-int": ("merged", config(architectures=5), ValueError, r"architectures=5.*list"),
    "task-names-int": ("base", config(task_names=5), ValueError, r"task_names=5.*list"),
    "mlx-jina-block-list": ("merged", config(mlx_jina=[1]), ValueError, r"mlx_jina=\[1\].*object"),
    "saved-task-unknown": ("merged", config(mlx_jina={"task": 5}), ValueError, r"mlx_jina.*task=5"),
    "quantization-block-list": ("q4", config(quantization=[4]), ValueError, r"quantization=\[4\].*object"),
    # float weights
    "int32-q-proj": ("merged", tensors(set_key(Q, lambda t: (t[Q] * 1000).astype(mx.int32))), ValueError, rf"{Q} is I32.*F16, BF16 or F32"),
    "float64-weights": ("nano", as_float64(UP), ValueError, rf"{UP} is F64"),
    "uint8-norm": ("merged", tensors(set_key("norm.weight", lambda t: t["norm.weight"].astype(mx.uint8))), ValueError, r"norm\.weight is U8"),
    "missing-tensor": ("merged", tensors(drop("layers.1.mlp.up_proj.weight")), ValueError, r"layers\.1\.mlp\.up_proj\.weight is missing"),
    "unexpected-tensor": ("merged", tensors(set_key("layers.0.self_attn.q_proj.bias", lambda t: mx.zeros(64))), ValueError, r"unexpected tensor layers\.0\.self_attn\.q_proj\.bias"),
    "transposed": ("merged", tensors(set_key(UP, lambda t: t[UP].T)), ValueError, rf"{UP} has shape \(64, 96\).*\(96, 64\)"),
    "extra-layer": ("merged", tensors(add_layer), ValueError, r"num_hidden_layers=2.*3 layers"),
    "many-unexpected": ("merged", tensors(lambda t: t.update({f"junk.{i}": mx.zeros(1) for i in range(500)})), ValueError, r"unexpected tensor junk\..*and \d+ more"),
    # the weight file itself
    "truncated": ("merged", raw_bytes(lambda b: b[: len(b) // 3]), ValueError, r"model\.safetensors.*corrupt or incomplete"),
    "header-length-huge": ("merged", raw_bytes(huge_header_length), ValueError, r"model\.safetensors.*corrupt or incomplete"),
    "header-garbage": ("merged", raw_bytes(lambda b: (16).to_bytes(8, "little") + b"\x00" * 16 + b[24:]), ValueError, r"model\.safetensors.*corrupt"),
    "header-list": ("merged", header(lambda h: [h]), ValueError, r"model\.safetensors.*corrupt"),
    "header-offsets-past-end": ("merged", header(entry(Q, data_offsets=[0, 10**9])), ValueError, r"model\.safetensors.*corrupt"),
    "header-shape-lies": ("merged", header(entry(Q, shape=[64, 65])), ValueError, r"model\.safetensors.*corrupt"),
    "header-unknown-dtype": ("merged", header(entry(Q, dtype="Q9")), ValueError, r"model\.safetensors.*dtype 'Q9'"),
    "weights-fifo": ("merged", fifo("model.safetensors"), ValueError, r"model\.safetensors is not a regular file"),
    "weights-folder": ("merged", folder_instead("model.safetensors"), ValueError, r"model\.safetensors is not a regular file"),
    "tiny-file": ("merged", write("model.safetensors", b"abc"), ValueError, r"model\.safetensors.*corrupt"),
    # sharded weights
    "index-list": ("merged", sharded(write("model.safetensors.index.json", "[]")), ValueError, r"index\.json.*JSON list.*object"),
    "index-map-list": ("merged", sharded(write("model.safetensors.index.json", '{"weight_map": [1]}')), ValueError, r"weight_map.*object"),
    "shard-duplicate": ("merged", sharded(duplicate_across_shards), ValueError, r"in both model-00001-of-00002\.safetensors and model-00002"),
    # quantized weights
    "q4-float-packed": ("q4", tensors(set_key("model." + Q, lambda t: t["model." + Q].astype(mx.float32)), "model-4bit.safetensors"), ValueError, r"q_proj\.weight is F32.*U32"),
    "q4-int-scales": ("q4", tensors(set_key("model.layers.0.mlp.up_proj.scales", lambda t: t["model.layers.0.mlp.up_proj.scales"].astype(mx.int32)), "model-4bit.safetensors"), ValueError, r"up_proj\.scales is I32"),
    "q4-biases-shape": ("q4", tensors(set_key("model.layers.0.mlp.up_proj.biases", lambda t: t["model.layers.0.mlp.up_proj.biases"][:, :1]), "model-4bit.safetensors"), ValueError, r"up_proj\.biases has shape \(96, 1\)"),
    "q4-no-biases": ("q4", tensors(drop("model.layers.0.mlp.up_proj.biases"), "model-4bit.safetensors"), ValueError, r"up_proj: scales without biases"),
    "q4-norm-scales": ("q4", tensors(set_key("model.norm.scales", lambda t: mx.ones((64, 1))), "model-4bit.safetensors"), ValueError, r"norm\.scales: no matching Linear or Embedding"),
    "q4-group-16": ("q4", tensors(lambda t: t.update({f"model.layers.0.mlp.up_proj.{s}": mx.ones((96, 4)) for s in ("scales", "biases")}), "model-4bit.safetensors"), ValueError, r"up_proj: group size 16; MLX runs group sizes 32, 64 and 128"),
    "q4-quant-bits-string": ("q4", config(quantization={"bits": "4", "group_size": 32}), ValueError, r"says bits='4'"),
    # adapters
    "adapter-int32": ("base", tensors(set_key(LORA_A, lambda t: (t[LORA_A] * 100).astype(mx.int32)), ADAPTER), ValueError, r"adapter_model\.safetensors.*lora_A\.weight is I32"),
    "adapter-3d": ("base", tensors(set_key(LORA_A, lambda t: t[LORA_A][None]), ADAPTER), ValueError, r"adapter_model\.safetensors.*lora_A\.weight has shape \(1, 4, 64\)"),
    "adapter-rank-mismatch": ("base", tensors(set_key(LORA_B, lambda t: t[LORA_B][:, :3]), ADAPTER), ValueError, r"lora_B\.weight has rank 3.*lora_A.*rank 4"),
    "adapter-fifo": ("base", fifo(ADAPTER), ValueError, r"adapter_model\.safetensors is not a regular file"),
    "adapter-truncated": ("base", raw_bytes(lambda b: b[:200], ADAPTER), ValueError, r"adapter_model\.safetensors.*corrupt"),
    "adapter-config-list": ("base", write(ADAPTER_CONFIG, "[]"), ValueError, r"adapter_config\.json.*JSON list.*object"),
    "adapter-config-fifo": ("base", fifo(ADAPTER_CONFIG), ValueError, r"adapter_config\.json is not a regular file"),
    "adapter-r-string": ("base", json_file(ADAPTER_CONFIG, r="4"), ValueError, r"adapter_config\.json.*r='4'"),
    "adapter-r-zero": ("base", json_file(ADAPTER_CONFIG, r=0), ValueError, r"adapter_config\.json.*r=0"),
    "adapter-alpha-list": ("base", json_file(ADAPTER_CONFIG, lora_alpha=[8]), ValueError, r"adapter_config\.json.*lora_alpha=\[8\]"),
    "adapter-alpha-string": ("base", json_file(ADAPTER_CONFIG, lora_alpha="8"), ValueError, r"lora_alpha='8'"),
    "adapter-alpha-huge": ("base", json_file(ADAPTER_CONFIG, lora_alpha=1e308), ValueError, r"adapter_config\.json has lora_alpha=1e\+308.*scale"),
    "adapter-alpha-rslora-huge": ("base", json_file(ADAPTER_CONFIG, lora_alpha=1e6, use_rslora=True), ValueError, r"lora_alpha=1000000.0.*sqrt\(r\)"),
    "adapter-alpha-negative": ("base", json_file(ADAPTER_CONFIG, lora_alpha=-8), ValueError, r"lora_alpha=-8 \(need a positive number\)"),
    "adapter-b-nan": ("base", tensors(set_key(LORA_B, lambda t: mx.full(t[LORA_B].shape, float("nan"))), ADAPTER), ValueError, r"adapter_model\.safetensors holds NaN or inf.*q_proj\.lora_B\.weight.*damaged"),
    "adapter-a-inf": ("base", tensors(set_key(LORA_A, lambda t: t[LORA_A] * float("inf")), ADAPTER), ValueError, r"NaN or inf.*q_proj\.lora_A\.weight"),
    "adapter-rslora-string": ("base", json_file(ADAPTER_CONFIG, use_rslora="yes"), ValueError, r"use_rslora='yes'"),
    "adapter-dora-string": ("base", json_file(ADAPTER_CONFIG, use_dora="no"), ValueError, r"use_dora='no'"),
    # tokenizer.json
    "tokenizer-garbage": ("merged", write("tokenizer.json", b"\x00garbage\xff"), ValueError, r"tokenizer\.json"),
    "tokenizer-empty-object": ("merged", write("tokenizer.json", "{}"), ValueError, r"tokenizer\.json.*tokenizers library"),
    "tokenizer-list": ("merged", write("tokenizer.json", "[]"), ValueError, r"tokenizer\.json"),
    "tokenizer-fifo": ("merged", fifo("tokenizer.json"), ValueError, r"tokenizer\.json is not a regular file"),
    "tokenizer-folder": ("merged", folder_instead("tokenizer.json"), ValueError, r"tokenizer\.json is not a regular file"),
    "tokenizer-huge": ("merged", sparse("tokenizer.json", 300_000_000), ValueError, r"tokenizer\.json is 300,000,000 bytes"),
    # config_sentence_transformers.json
    "st-list": ("merged", write(ST, "[]"), ValueError, r"config_sentence_transformers\.json.*JSON list"),
    "st-fifo": ("merged", fifo(ST), ValueError, r"config_sentence_transformers\.json is not a regular file"),
    "st-prompts-list": ("merged", json_file(ST, prompts=["Query: "]), ValueError, r"config_sentence_transformers\.json.*prompts"),
    "st-prompt-int": ("merged", json_file(ST, prompts={"query": 1, "document": ""}), ValueError, r"prompts"),
    "st-default-int": ("merged", json_file(ST, default_prompt_name=3), ValueError, r"default_prompt_name=3"),
    "st-default-unknown": ("merged", json_file(ST, default_prompt_name="passage"), ValueError, r"default_prompt_name='passage'.*document, query"),
}
# fmt: on
LOAD_KWARGS = {"base": {"task": "retrieval"}}


@pytest.fixture(scope="session")
def tiny_qwen_q4(tmp_path_factory, tiny_qwen_mlx_task) -> Path:
    """tiny_qwen_mlx_task as a 4-bit, group-32 -mlx folder (every Linear and the embedding)."""
    folder = tmp_path_factory.mktemp("tiny_qwen_q4")
    model = mlx_jina.load(tiny_qwen_mlx_task, bits=4, group_size=32).model
    weights = {f"model.{k}": v for k, v in tree_flatten(model.parameters())}
    mx.save_safetensors(str(folder / "model-4bit.safetensors"), weights)
    for name in ("config.json", "tokenizer.json"):
        shutil.copyfile(tiny_qwen_mlx_task / name, folder / name)
    return folder


@pytest.fixture
def fixtures(request):
    names = {
        "merged": "tiny_qwen_merged",
        "nano": "tiny_eurobert_merged",
        "base": "tiny_qwen_base",
        "q4": "tiny_qwen_q4",
    }
    return lambda name: request.getfixturevalue(names[name])


def corrupted_copy(source: Path, corrupt, tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(source, folder)
    corrupt(folder)
    return folder


@pytest.mark.parametrize("fixture", ["merged", "nano", "base", "q4"])
def test_uncorrupted_copies_load(fixtures, fixture, tmp_path):
    """The table's corruptions, not the copying, are what the loader refuses."""
    folder = corrupted_copy(fixtures(fixture), lambda f: None, tmp_path)
    model = mlx_jina.load(folder, **LOAD_KWARGS.get(fixture, {}))
    assert model.encode("hello").shape == (64,)


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_checkpoint_gives_one_short_clear_error(fixtures, case, tmp_path):
    """Every corruption gives one ValueError naming the file and the field, fast and short,
    never a hang, a crash deep inside or silently wrong vectors."""
    fixture, corrupt, error, words = CASES[case]
    folder = corrupted_copy(fixtures(fixture), corrupt, tmp_path)
    start = time.perf_counter()
    with deadline(10), pytest.raises(error) as info:
        mlx_jina.load(folder, **LOAD_KWARGS.get(fixture, {}))
    elapsed, message = time.perf_counter() - start, str(info.value)
    assert re.search(words, message, re.DOTALL), message  # lists span lines
    assert elapsed < FAST_S and len(message) < SHORT_MESSAGE


def peak_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes vs kB


def test_100000_layer_config_fails_fast_and_small(tiny_qwen_merged, tmp_path):
    """A config claiming 100,000 layers took 116 s and 9.6 GB before a 4 MB message."""
    folder = corrupted_copy(
        tiny_qwen_merged, config(num_hidden_layers=100_000), tmp_path
    )
    before = peak_rss_mb()
    start = time.perf_counter()
    with deadline(30), pytest.raises(ValueError) as info:
        mlx_jina.load(folder)
    assert time.perf_counter() - start < 2.0
    assert len(str(info.value)) < 2000
    assert peak_rss_mb() - before < 200
    assert "num_hidden_layers=100000" in str(info.value)


def test_weight_shapes_match_the_built_models():
    """The shape table checked before building is exactly what the models hold."""
    base = dict(
        hidden_size=32,
        num_hidden_layers=2,
        intermediate_size=48,
        rms_norm_eps=1e-6,
        vocab_size=64,
        rope_theta=1e4,
    )
    cases = [
        (qwen3, dict(num_attention_heads=4, num_key_value_heads=2, head_dim=16)),
        (qwen3, dict(num_attention_heads=3, num_key_value_heads=1, head_dim=16)),
        (eurobert, dict(num_attention_heads=4)),
        (eurobert, dict(num_attention_heads=4, num_key_value_heads=2)),
    ]
    for backbone, heads in cases:
        args = ModelArgs.from_dict({**base, **heads})
        built = {
            k: tuple(v.shape) for k, v in tree_flatten(Model(args, backbone).parameters())
        }
        assert weight_shapes(args, backbone) == built


def test_head_dim_has_one_rule():
    """head_dim: config.json's, else the q_proj rows / heads, else hidden / heads."""
    cfg = dict(
        hidden_size=64,
        num_hidden_layers=1,
        intermediate_size=96,
        num_attention_heads=3,
        rms_norm_eps=1e-6,
        vocab_size=64,
        rope_theta=1e4,
    )
    q, k = "layers.0.self_attn.q_proj.weight", "layers.0.self_attn.k_proj.weight"
    args = ModelArgs.from_dict(cfg, {q: (48, 64), k: (16, 64)})
    assert (args.head_dim, args.num_key_value_heads) == (16, 1)
    args = ModelArgs.from_dict({**cfg, "num_attention_heads": 4})
    assert (args.head_dim, args.num_key_value_heads) == (16, 4)
    with pytest.raises(
        ValueError, match=r"hidden_size=64 is not a multiple of num_attention_heads=3"
    ):
        ModelArgs.from_dict(cfg)
    with pytest.raises(ValueError, match=r"k_proj\.weight has 20 rows.*head_dim=16"):
        ModelArgs.from_dict(cfg, {q: (48, 64), k: (20, 64)})


# --- paths and repo ids ----------------------------------------------------------------


@pytest.fixture
def no_hub(monkeypatch):
    """Any Hub call fails the test: a bad id must be refused by its form alone."""
    import huggingface_hub.constants

    def refuse(*args, **kwargs):
        raise AssertionError("the Hub was called")

    class NoApi:
        def __init__(self, *args, **kwargs):
            refuse()

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "HfApi", NoApi)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)


@pytest.mark.parametrize(
    "source, error, words",
    [
        ("", ValueError, r"path_or_repo is empty"),
        ("   ", ValueError, r"path_or_repo is empty"),
        (None, ValueError, r"path_or_repo must be a folder .* not NoneType"),
        (123, ValueError, r"path_or_repo must be a folder .* not int"),
        (["org/model"], ValueError, r"not list"),
        ("~nonexistent", FileNotFoundError, r"No model folder at ~nonexistent"),
        (
            "org/bad name",
            ValueError,
            r"'org/bad name' is not a local folder and not a valid Hub repo id",
        ),
        (
            " jinaai/jina-embeddings-v5-text-small",
            ValueError,
            r"not a valid Hub repo id.*spaces",
        ),
        ("org/model--x", ValueError, r"not a valid Hub repo id"),
        ("org/model.git", ValueError, r"not a valid Hub repo id"),
    ],
)
def test_bad_paths_and_repo_ids(no_hub, source, error, words):
    with pytest.raises(error, match=words):
        mlx_jina.load(source)


def test_invalid_repo_id_offline_is_not_blamed_on_the_hub(monkeypatch):
    """Offline, a malformed id used to say "the Hub can't be reached"."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match="not a valid Hub repo id") as info:
        mlx_jina.load("jinaai/jina embeddings")
    assert "can't be reached" not in str(info.value)


def test_path_to_a_file_is_not_a_model_folder(tiny_qwen_merged):
    with pytest.raises(ValueError, match=r"config\.json is a file, not a model folder"):
        mlx_jina.load(tiny_qwen_merged / "config.json")


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(dtype=["float16"]), r"dtype=\['float16'\]"),
        (dict(bits=4.0), r"bits=4\.0"),
        (dict(bits=True), r"bits=True"),
        (dict(bits=4, group_size=64.0), r"group_size=64\.0"),
    ],
)
def test_bad_load_settings(tiny_qwen_merged, kwargs, words):
    with pytest.raises(ValueError, match=words):
        mlx_jina.load(tiny_qwen_merged, **kwargs)
