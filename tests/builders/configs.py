"""config.json in every form our layouts need: transformers' own, Jina's, the MLX ones.

``arch`` is ``"qwen3"`` (the "small" backbone, causal) or ``"eurobert"`` (the "nano"
backbone, bidirectional).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from transformers import EuroBertConfig, EuroBertModel, Qwen3Config, Qwen3Model

from builders.files import weight_keys
from builders.tokenizers import LLAMA_VOCAB, QWEN_VOCAB

ARCHS = {  # arch -> (transformers config class, backbone model class)
    "qwen3": (Qwen3Config, Qwen3Model),
    "eurobert": (EuroBertConfig, EuroBertModel),
}
_DEFAULT_THETA = {"qwen3": 3_500_000.0, "eurobert": 1_000_000.0}
_MINIMAL_MLX_KEYS = [  # unified nano's config.json is 378 bytes: only the shapes
    "model_type",
    "hidden_size",
    "num_hidden_layers",
    "intermediate_size",
    "num_attention_heads",
    "num_key_value_heads",
    "max_position_embeddings",
    "rms_norm_eps",
    "rope_theta",
    "vocab_size",
    "hidden_act",
]


def backbone_arch(folder: Path) -> str:
    """Return "qwen3" or "eurobert", from the weights (only Qwen3 has q_norm)."""
    keys = weight_keys(folder)
    if any(k.endswith("self_attn.q_norm.weight") for k in keys):
        return "qwen3"
    return "eurobert"


def hf_config(
    arch: str, *, vocab_size: int, **overrides: Any
) -> Qwen3Config | EuroBertConfig:
    """A tiny transformers config for ``arch`` ("qwen3" or "eurobert").

    Defaults: hidden 64, 2 layers, intermediate 96, eager attention. qwen3: 4 query / 2
    kv heads, head_dim 16, theta 3.5e6, eps 1e-6, tied embeddings. eurobert: 4 / 4
    heads, head_dim hidden/heads, theta 1e6, eps 1e-5, untied. The theta is always set
    explicitly (transformers 5 silently falls back to 10,000; docs/model-facts.md).
    ``rope_theta=`` in overrides is accepted and moved into ``rope_parameters``.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; expected one of {sorted(ARCHS)}")
    kw: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        intermediate_size=96,
        hidden_act="silu",
        attention_bias=False,
    )
    kw.update(_arch_defaults(arch, vocab_size))
    theta = overrides.pop("rope_theta", _DEFAULT_THETA[arch])
    kw["rope_parameters"] = {"rope_theta": float(theta), "rope_type": "default"}
    kw.update(overrides)
    if arch == "eurobert" and "head_dim" not in overrides:
        kw["head_dim"] = kw["hidden_size"] // kw["num_attention_heads"]
    config = ARCHS[arch][0](**kw)
    config._attn_implementation = "eager"  # plain float32 math for the reference
    return config


def _arch_defaults(arch: str, vocab_size: int) -> dict[str, Any]:
    """Heads, norms, tying, context and special ids of one backbone."""
    if arch == "qwen3":
        kw: dict[str, Any] = dict(
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            rms_norm_eps=1e-6,
            tie_word_embeddings=True,
            max_position_embeddings=32_768,
        )
        if vocab_size >= QWEN_VOCAB:  # Qwen3-0.6B-Base: bos = eos = <|endoftext|>
            kw.update(bos_token_id=151_643, eos_token_id=151_643)
        return kw
    kw = dict(
        num_attention_heads=4,
        num_key_value_heads=4,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        max_position_embeddings=8_192,
    )
    if vocab_size >= LLAMA_VOCAB:  # the nano config's ids (docs/model-facts.md)
        ids = dict(pad_token_id=128_001, bos_token_id=128_000, eos_token_id=128_001)
        kw.update(ids, mask_token_id=128_002)
    else:  # the tiny tokenizer's specials; EuroBERT's defaults are out of range
        kw.update(pad_token_id=0, bos_token_id=1, eos_token_id=2, mask_token_id=3)
    return kw


def _hf_config_dict(config: Qwen3Config | EuroBertConfig) -> dict[str, Any]:
    # The diff form is what save_pretrained writes (no id2label etc. noise).
    data = json.loads(config.to_json_string(use_diff=True))
    data.pop("_attn_implementation_autoset", None)
    return data


def flatten_rope(data: dict[str, Any], rope_form: str) -> dict[str, Any]:
    """Rewrite rope settings into the transformers-4.x top-level form."""
    rope = data.pop("rope_parameters", None) or {}
    theta = rope.get("rope_theta", data.get("rope_theta"))
    assert theta is not None, "every test config must carry an explicit rope_theta"
    data["rope_theta"] = theta
    if rope_form == "top-linear":  # EuroBERT's remote code rewrites "default" this way
        data["rope_scaling"] = {"type": "linear", "factor": 1.0}
    else:
        data["rope_scaling"] = None
    if "dtype" in data:  # 4.x spelled it torch_dtype
        data["torch_dtype"] = data.pop("dtype")
    return data


def jina_config(
    config: Qwen3Config | EuroBertConfig,
    arch: str,
    rope_form: str,
    tasks: Iterable[str],
) -> dict[str, Any]:
    """The base repo's config.json (layout a): the backbone config as remote code."""
    data = _hf_config_dict(config)
    data["model_type"] = "jina_embeddings_v5"
    data["architectures"] = ["JinaEmbeddingsV5Model"]
    data["auto_map"] = {  # the remote code a trust_remote_code loader would run
        "AutoConfig": "configuration_jina_embeddings_v5.JinaEmbeddingsV5Config",
        "AutoModel": "modeling_jina_embeddings_v5.JinaEmbeddingsV5Model",
    }
    data["task_names"] = list(tasks)
    data["dtype"] = "float32"  # like nano: says float32 whatever the file holds
    if arch == "eurobert":
        data["is_decoder"] = False
    if rope_form == "parameters":
        assert "rope_theta" not in data and "rope_theta" in data["rope_parameters"]
    elif rope_form in ("top", "top-linear"):
        flatten_rope(data, rope_form)
        if (
            arch == "eurobert"
            and data["head_dim"] * data["num_attention_heads"] == data["hidden_size"]
        ):  # the 4.x nano file has no head_dim: loaders must derive it
            del data["head_dim"]
    else:
        raise ValueError(
            f"rope_form must be 'parameters', 'top' or 'top-linear', not {rope_form!r}"
        )
    return data


def mlx_config(base: Path, model_type: str, *, minimal: bool) -> dict[str, Any]:
    """Backbone config with flattened rope, as an MLX converter would write it.

    ``minimal``: only the shapes and rope_theta (unified -mlx, layout d); otherwise the
    full config with ``architectures: null`` (per-task -mlx, layout c).
    """
    data = json.loads((base / "config.json").read_text())
    data = flatten_rope(data, "top")
    for key in ("task_names", "auto_map", "torch_dtype", "transformers_version"):
        data.pop(key, None)
    data["model_type"] = model_type
    if not minimal:
        # reported for a per-task -mlx config (docs/model-facts.md)
        data["architectures"] = None
        return data
    keep = list(_MINIMAL_MLX_KEYS)
    if backbone_arch(base) == "qwen3":  # Qwen3's head_dim may differ from hidden/heads
        keep += ["head_dim", "tie_word_embeddings"]
    elif data.get("head_dim", 0) * data["num_attention_heads"] != data["hidden_size"]:
        keep += ["head_dim"]  # only when it cannot be derived
    return {k: data[k] for k in keep if k in data}
