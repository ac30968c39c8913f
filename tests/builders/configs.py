"""config.json in every form our layouts need: transformers' own, Jina's, the MLX ones.

``arch`` is ``"qwen3"`` (the "small" backbone, causal) or ``"eurobert"`` (the "nano"
backbone, bidirectional). Plain dicts, no transformers: ``hf_config`` writes what
transformers' ``save_pretrained`` writes (tests/test_checkpoints.py checks it against
transformers where the reference stack is installed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from builders.files import weight_keys
from builders.tokenizers import LLAMA_VOCAB, QWEN_VOCAB

TRANSFORMERS_VERSION = "5.25.0"  # what the saved configs name
# The published shapes: Qwen3-0.6B (small) and EuroBERT-210m (nano).
PUBLISHED = {
    "qwen3": dict(
        hidden_size=1024,
        num_hidden_layers=28,
        intermediate_size=3072,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=128,
    ),
    "eurobert": dict(
        hidden_size=768,
        num_hidden_layers=12,
        intermediate_size=3072,
        num_attention_heads=12,
        num_key_value_heads=12,
    ),
}
# The tests' tiny shapes: every component still matters, builds take milliseconds.
TINY = {
    "qwen3": dict(
        hidden_size=64,
        num_hidden_layers=2,
        intermediate_size=96,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
    ),
    "eurobert": dict(
        hidden_size=64,
        num_hidden_layers=2,
        intermediate_size=96,
        num_attention_heads=4,
        num_key_value_heads=4,
    ),
}
SIZES = {"tiny": TINY, "published": PUBLISHED}
ARCHS = tuple(TINY)
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


def head_dim(config: dict[str, Any]) -> int:
    return config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]


def hf_config(
    arch: str, *, vocab_size: int, size: str = "tiny", **overrides: Any
) -> dict[str, Any]:
    """The backbone's config as transformers saves it, ``size`` "tiny" or "published".

    tiny: hidden 64, 2 layers, intermediate 96; qwen3 4 query / 2 kv heads of 16,
    eurobert 4 / 4. Both: theta 3.5e6 (qwen3) or 1e6 (eurobert), eps 1e-6 / 1e-5,
    embeddings tied for qwen3 only. The theta is always written (transformers 5
    silently falls back to 10,000 without one). ``rope_theta=`` in overrides is moved
    into ``rope_parameters``.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; expected one of {sorted(ARCHS)}")
    if size not in SIZES:
        raise ValueError(f"size={size!r}; expected one of {sorted(SIZES)}")
    kw: dict[str, Any] = dict(
        SIZES[size][arch],
        vocab_size=vocab_size,
        hidden_act="silu",
        attention_bias=False,
        attention_dropout=0.0,
        initializer_range=0.02,
        use_cache=True,
        model_type=arch,
        transformers_version=TRANSFORMERS_VERSION,
    )
    kw.update(_arch_defaults(arch, vocab_size))
    theta = overrides.pop("rope_theta", _DEFAULT_THETA[arch])
    kw["rope_parameters"] = {"rope_theta": float(theta), "rope_type": "default"}
    kw.update(overrides)
    if arch == "eurobert" and "head_dim" not in overrides:
        kw["head_dim"] = kw["hidden_size"] // kw["num_attention_heads"]
    if arch == "qwen3":
        kw["layer_types"] = ["full_attention"] * kw["num_hidden_layers"]
    return dict(sorted(kw.items()))


def _arch_defaults(arch: str, vocab_size: int) -> dict[str, Any]:
    """Heads, norms, tying, context and special ids of one backbone."""
    if arch == "qwen3":
        kw: dict[str, Any] = dict(
            rms_norm_eps=1e-6,
            tie_word_embeddings=True,
            max_position_embeddings=32_768,
            max_window_layers=28,
            sliding_window=None,
            use_sliding_window=False,
            bos_token_id=None,
            eos_token_id=None,
            pad_token_id=None,
        )
        if vocab_size >= QWEN_VOCAB:  # Qwen3-0.6B-Base: bos = eos = <|endoftext|>
            kw.update(bos_token_id=151_643, eos_token_id=151_643)
        return kw
    kw = dict(
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        max_position_embeddings=8_192,
        classifier_pooling="late",
        mlp_bias=False,
        pretraining_tp=1,
    )
    if vocab_size >= LLAMA_VOCAB:  # the nano config's ids
        ids = dict(pad_token_id=128_001, bos_token_id=128_000, eos_token_id=128_001)
        kw.update(ids, mask_token_id=128_002)
    else:  # the tiny tokenizer's specials; EuroBERT's defaults are out of range
        kw.update(pad_token_id=0, bos_token_id=1, eos_token_id=2, mask_token_id=3)
    return kw


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
    config: dict[str, Any],
    arch: str,
    rope_form: str,
    tasks: Iterable[str],
) -> dict[str, Any]:
    """The base repo's config.json (layout a): the backbone config as remote code."""
    data = dict(config)
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
        # as in a published per-task -mlx config
        data["architectures"] = None
        return data
    keep = list(_MINIMAL_MLX_KEYS)
    if backbone_arch(base) == "qwen3":  # Qwen3's head_dim may differ from hidden/heads
        keep += ["head_dim", "tie_word_embeddings"]
    elif data.get("head_dim", 0) * data["num_attention_heads"] != data["hidden_size"]:
        keep += ["head_dim"]  # only when it cannot be derived
    return {k: data[k] for k in keep if k in data}
