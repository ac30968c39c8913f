"""Seeded random weights in numpy: the backbone and the PEFT LoRA adapters, the merge,
and the key checks. All random weights are seeded, so builds are reproducible."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from builders.configs import head_dim
from builders.files import read_safetensors

LORA_TARGETS = (  # the seven projections Jina's adapters touch
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)
PEFT_VERSION = "0.22.0"  # what the saved adapter configs name
_ADAPTER_KEY = re.compile(
    r"^base_model\.model\.layers\.(\d+)\.(self_attn|mlp)\."
    r"(q|k|v|o|gate|up|down)_proj\.lora_([AB])\.weight$"
)


def linear_shapes(config: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """(out, in) of each layer's seven projections, by weight name."""
    d, inter, hd = config["hidden_size"], config["intermediate_size"], head_dim(config)
    q, kv = config["num_attention_heads"] * hd, config["num_key_value_heads"] * hd
    return {
        "self_attn.q_proj": (q, d),
        "self_attn.k_proj": (kv, d),
        "self_attn.v_proj": (kv, d),
        "self_attn.o_proj": (d, q),
        "mlp.gate_proj": (inter, d),
        "mlp.up_proj": (inter, d),
        "mlp.down_proj": (d, inter),
    }


def backbone_shapes(config: dict[str, Any], arch: str) -> dict[str, tuple[int, ...]]:
    """Every un-prefixed backbone tensor's shape; Qwen3 (causal) adds q/k norms."""
    d = config["hidden_size"]
    shapes: dict[str, tuple[int, ...]] = {
        "embed_tokens.weight": (config["vocab_size"], d),
        "norm.weight": (d,),
    }
    for i in range(config["num_hidden_layers"]):
        p = f"layers.{i}."
        for name, shape in linear_shapes(config).items():
            shapes[f"{p}{name}.weight"] = shape
        shapes[p + "input_layernorm.weight"] = (d,)
        shapes[p + "post_attention_layernorm.weight"] = (d,)
        if arch == "qwen3":
            shapes[p + "self_attn.q_norm.weight"] = (head_dim(config),)
            shapes[p + "self_attn.k_norm.weight"] = (head_dim(config),)
    return shapes


def random_backbone(config: dict[str, Any], arch: str, seed: int) -> dict[str, np.ndarray]:
    """Seeded float32 weights with O(1) activations, so every component matters.

    RMSNorm scales are 1 + 0.2 * N(0, 1) (a missing or misplaced norm shows),
    embeddings N(0, 1), linears N(0, 1 / fan_in) (unit gain: each block changes the
    residual stream by O(1), attention logits are O(1), so rope, masks and pooling bugs
    all move the output).
    """
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in backbone_shapes(config, arch).items():
        noise = rng.standard_normal(shape, dtype=np.float32)
        if name.endswith("norm.weight"):
            out[name] = 1 + np.float32(0.2) * noise
        elif name == "embed_tokens.weight":
            out[name] = noise
        else:
            out[name] = noise / np.float32(math.sqrt(shape[1]))
    return out


def lora_scale(r: int, lora_alpha: float, use_rslora: bool) -> float:
    return lora_alpha / math.sqrt(r) if use_rslora else lora_alpha / r


def random_adapter(
    state: dict[str, np.ndarray],
    config: dict[str, Any],
    *,
    seed: int,
    r: int,
    scale: float,
    strength: float,
) -> dict[str, np.ndarray]:
    """PEFT LoRA tensors with Jina's key names, A (r, in) and B (out, r), random and
    non-zero, with ||scale * B @ A|| about ``strength`` * ||W||: a merge bug (wrong
    scale, transposed A/B, missed layer) changes the embeddings clearly."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(config["num_hidden_layers"]):
        for name, (n_out, fan_in) in linear_shapes(config).items():
            w_std = float(state[f"layers.{i}.{name}.weight"].astype(np.float32).std())
            b_std = strength * w_std * math.sqrt(fan_in / r) / scale
            key = f"base_model.model.layers.{i}.{name}.lora_"
            a = rng.standard_normal((r, fan_in), dtype=np.float32) / math.sqrt(fan_in)
            b = rng.standard_normal((n_out, r), dtype=np.float32) * np.float32(b_std)
            out[key + "A.weight"], out[key + "B.weight"] = a.astype(np.float32), b
    check_adapter(out, config["num_hidden_layers"], r)
    return out


def adapter_config(task: str, *, r: int, lora_alpha: float, use_rslora: bool) -> dict:
    """adapter_config.json as peft's save_pretrained writes it (Jina's dropouts)."""
    return {
        "alora_invocation_tokens": None,
        "alpha_pattern": {},
        "arrow_config": None,
        "astra_config": None,
        "auto_mapping": None,
        "base_model_name_or_path": None,
        "bias": "none",
        "corda_config": None,
        "ensure_weight_tying": False,
        "eva_config": None,
        "exclude_modules": None,
        "fan_in_fan_out": False,
        "inference_mode": True,
        "init_lora_weights": False,
        "kasa_config": None,
        "layer_replication": None,
        "layers_pattern": None,
        "layers_to_transform": None,
        "loftq_config": {},
        "lora_alpha": lora_alpha,
        "lora_bias": False,
        "lora_dropout": 0.05 if task == "classification" else 0.1,
        "lora_ga_config": None,
        "megatron_config": None,
        "megatron_core": "megatron.core",
        "modules_to_save": None,
        "monteclora_config": None,
        "peft_type": "LORA",
        "peft_version": PEFT_VERSION,
        "qalora_group_size": 16,
        "r": r,
        "rank_pattern": {},
        "revision": None,
        "target_modules": list(LORA_TARGETS),
        "target_parameters": None,
        "task_type": "FEATURE_EXTRACTION",
        "trainable_token_indices": None,
        "use_bdlora": None,
        "use_dora": False,
        "use_qalora": False,
        "use_rslora": use_rslora,
        "velora_config": None,
    }


def merge_adapter(
    state: dict[str, np.ndarray], adapter: dict[str, np.ndarray], scale: float
) -> dict[str, np.ndarray]:
    """W + scale * B @ A for every adapted weight, in float32 (un-prefixed keys)."""
    out = {k: v.astype(np.float32) for k, v in state.items()}
    for key, a in adapter.items():
        if ".lora_A." not in key:
            continue
        b = adapter[key.replace(".lora_A.", ".lora_B.")]
        target = key.removeprefix("base_model.model.").replace(".lora_A", "")
        out[target] = out[target] + np.float32(scale) * (
            b.astype(np.float32) @ a.astype(np.float32)
        )
    return out


def read_adapter(folder: Path) -> tuple[dict[str, np.ndarray], float]:
    """An adapter folder's tensors (float32) and its LoRA scale."""
    import json

    config = json.loads((Path(folder) / "adapter_config.json").read_text())
    scale = lora_scale(config["r"], config["lora_alpha"], config.get("use_rslora", False))
    return read_safetensors(Path(folder) / "adapter_model.safetensors"), scale


def check_backbone_keys(keys: Iterable[str], arch: str, n_layers: int) -> None:
    """Assert the un-prefixed backbone keys of ``arch``, nothing more (no lm_head)."""
    keys = set(keys)
    expected = {"embed_tokens.weight", "norm.weight"}
    per_layer = [
        f"self_attn.{p}.weight" for p in ("q_proj", "k_proj", "v_proj", "o_proj")
    ]
    per_layer += [f"mlp.{p}.weight" for p in ("gate_proj", "up_proj", "down_proj")]
    per_layer += ["input_layernorm.weight", "post_attention_layernorm.weight"]
    if arch == "qwen3":
        per_layer += ["self_attn.q_norm.weight", "self_attn.k_norm.weight"]
    expected |= {f"layers.{i}.{k}" for i in range(n_layers) for k in per_layer}
    assert keys == expected, (
        f"unexpected backbone keys: missing {sorted(expected - keys)[:5]}, "
        f"extra {sorted(keys - expected)[:5]}"
    )


def check_adapter(tensors: dict[str, np.ndarray], n_layers: int, r: int) -> None:
    """Assert Jina's adapter key naming and PEFT shapes."""
    bad = [k for k in tensors if not _ADAPTER_KEY.match(k)]
    assert not bad, f"adapter keys do not follow Jina's naming: {bad[:5]}"
    assert len(tensors) == n_layers * len(LORA_TARGETS) * 2, len(tensors)
    for key, t in tensors.items():
        which = _ADAPTER_KEY.match(key).group(4)
        assert (t.shape[0] if which == "A" else t.shape[1]) == r, (key, tuple(t.shape))
