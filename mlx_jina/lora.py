"""Read Jina's PEFT LoRA task adapters and merge them into base weights.

PEFT stores `lora_A` as (r, in) and `lora_B` as (out, r) under keys like
`base_model.model.layers.0.self_attn.q_proj.lora_A.weight`; the merged weight is
`W + scale * B @ A` with `scale = lora_alpha / r` (or `/ sqrt(r)` with rsLoRA).
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx

from .weights import load_safetensors

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


@dataclass
class Adapter:
    task: str
    scale: float
    # base weight key -> (A (r, in), B (out, r))
    pairs: dict[str, tuple[mx.array, mx.array]]


def lora_scale(config: dict, r: int, where: Path) -> float:
    """`lora_alpha / r` from a PEFT adapter_config.json, refusing variants we don't run."""
    problems = []
    if config.get("peft_type", "LORA") != "LORA":
        problems.append(f"peft_type={config.get('peft_type')!r} (need 'LORA')")
    if config.get("use_dora"):
        problems.append("use_dora=true")
    if config.get("fan_in_fan_out"):
        problems.append("fan_in_fan_out=true")
    if config.get("bias", "none") != "none":
        problems.append(f"bias={config.get('bias')!r} (need 'none')")
    if config.get("modules_to_save"):
        problems.append(f"modules_to_save={config['modules_to_save']!r}")
    if problems:
        raise ValueError(f"Unsupported adapter in {where}: {', '.join(problems)}.")
    if config.get("r", r) != r:
        raise ValueError(f"{where} says r={config['r']} but the tensors have rank {r}.")
    alpha = config.get("lora_alpha", r)
    return alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r


def read_adapter(folder: Path, task: str) -> Adapter:
    """Load one task adapter folder.

    Unified MLX repos may ship `adapter_model.safetensors` without `adapter_config.json`;
    then `lora_alpha = r` (scale 1.0), the value every published Jina adapter uses.
    """
    tensors = load_safetensors(folder / ADAPTER_WEIGHTS)
    a_parts, b_parts, unknown = {}, {}, []
    for key, value in tensors.items():
        base = key.removeprefix("base_model.model.").removeprefix("model.")
        if base.endswith(".lora_A.weight"):
            a_parts[base.removesuffix(".lora_A.weight") + ".weight"] = value
        elif base.endswith(".lora_B.weight"):
            b_parts[base.removesuffix(".lora_B.weight") + ".weight"] = value
        else:
            unknown.append(key)
    unpaired = sorted(set(a_parts) ^ set(b_parts))
    if unknown or unpaired or not a_parts:
        raise ValueError(
            f"{folder / ADAPTER_WEIGHTS} is not a LoRA adapter: unexpected keys "
            f"{(unknown + unpaired)[:5] or '(no lora_A/lora_B tensors)'}."
        )
    ranks = {a.shape[0] for a in a_parts.values()}
    if len(ranks) != 1:
        raise ValueError(f"{folder / ADAPTER_WEIGHTS} mixes LoRA ranks {sorted(ranks)}.")
    config_file = folder / ADAPTER_CONFIG
    config = json.loads(config_file.read_text()) if config_file.exists() else {}
    scale = lora_scale(config, ranks.pop(), config_file)
    return Adapter(task, scale, {k: (a_parts[k], b_parts[k]) for k in a_parts})


def check_adapter(weights: dict[str, mx.array], adapter: Adapter) -> None:
    """Every adapter pair must match a base weight's shape; report all mismatches at once."""
    errors = []
    for key, (a, b) in adapter.pairs.items():
        w = weights.get(key)
        if w is None:
            errors.append(f"{key}: no such base weight")
        elif w.ndim != 2 or b.shape[0] != w.shape[0] or a.shape[1] != w.shape[1]:
            shape = None if w is None else tuple(w.shape)
            errors.append(f"{key}: B@A is {(b.shape[0], a.shape[1])}, base is {shape}")
    if errors:
        raise ValueError(
            f"The {adapter.task!r} adapter does not fit this model:\n  " + "\n  ".join(errors)
        )


def merge(weights: dict[str, mx.array], adapter: Adapter) -> dict[str, mx.array]:
    """A new weight dict with the adapter merged in float32 and cast back to each weight's dtype."""
    check_adapter(weights, adapter)
    merged = dict(weights)
    for key, (a, b) in adapter.pairs.items():
        w = weights[key]
        delta = adapter.scale * (b.astype(mx.float32) @ a.astype(mx.float32))
        merged[key] = (w.astype(mx.float32) + delta).astype(w.dtype)
    return merged
