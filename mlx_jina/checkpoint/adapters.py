"""Read Jina's PEFT LoRA task adapters, and merge them into base weights (`merge`) or
attach them unmerged to a built model (`add_adapters`, for multitask models).

PEFT stores `lora_A` as (r, in) and `lora_B` as (out, r) under keys like
`base_model.model.layers.0.self_attn.q_proj.lora_A.weight`; the merged weight is
`W + scale * B @ A` with `scale = lora_alpha / r` (or `/ sqrt(r)` with rsLoRA).
"""

import math
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn

from ..thread_streams import release_at_thread_exit
from . import list_problems
from ..models.lora import LoRALinear
from .quantization import input_size
from .safetensors import FLOATS, TensorInfo, read_json
from .weights import load_safetensors, weight_header

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
# Published adapters use scale 1 (lora_alpha = r); a scale far beyond this is a broken
# config, and its merged weights overflow (inf at 1e308, already in float32).
MAX_SCALE = 1024.0


@dataclass
class Adapter:
    task: str
    scale: float
    # base weight key -> (A (r, in), B (out, r))
    pairs: dict[str, tuple[mx.array, mx.array]]


def lora_scale(config: dict, r: int, where: Path) -> float:
    """`lora_alpha / r` from a PEFT adapter_config.json, refusing variants we don't run."""
    if problems := config_type_problems(config):
        raise ValueError(f"{where} has fields of the wrong type: {', '.join(problems)}.")
    problems = []
    if config.get("peft_type", "LORA") != "LORA":
        problems.append(f"peft_type={config.get('peft_type')!r}"[:100] + " (need 'LORA')")
    if config.get("use_dora"):
        problems.append("use_dora=true")
    if config.get("fan_in_fan_out"):
        problems.append("fan_in_fan_out=true")
    if config.get("bias", "none") != "none":
        problems.append(f"bias={config.get('bias')!r}"[:100] + " (need 'none')")
    if config.get("modules_to_save"):
        problems.append(f"modules_to_save={config['modules_to_save']!r}"[:100])
    if problems:
        raise ValueError(f"Unsupported adapter in {where}: {', '.join(problems[:5])}.")
    if config.get("r", r) != r:
        raise ValueError(f"{where} says r={config['r']} but the tensors have rank {r}.")
    alpha = config.get("lora_alpha", r)
    rslora = config.get("use_rslora")
    scale = alpha / math.sqrt(r) if rslora else alpha / r
    if scale > MAX_SCALE:
        raise ValueError(
            f"{where} has lora_alpha={alpha!r}: a LoRA scale of lora_alpha / "
            f"{'sqrt(r)' if rslora else 'r'} = {scale:.3g} with r={r}, over {MAX_SCALE:g}. "
            "Published adapters use lora_alpha = r (scale 1); fix adapter_config.json."
        )
    return scale


def config_type_problems(config: dict) -> list[str]:
    """Fields of the wrong type or range: junk must not reach the arithmetic."""
    problems = []
    for key, ok, need in [
        ("r", lambda v: type(v) is int and v >= 1, "a whole number >= 1"),
        ("lora_alpha", lambda v: type(v) in (int, float) and math.isfinite(v) and v > 0,
         "a positive number"),
        ("use_rslora", lambda v: type(v) is bool, "true or false"),
        ("use_dora", lambda v: type(v) is bool, "true or false"),
        ("fan_in_fan_out", lambda v: type(v) is bool, "true or false"),
    ]:
        if config.get(key) is not None and not ok(config[key]):
            problems.append(f"{key}={config[key]!r}"[:100] + f" (need {need})")
    return problems


def pair_keys(header: dict[str, TensorInfo], path: Path) -> dict[str, tuple[str, str]]:
    """Base weight key -> (lora_A key, lora_B key); anything else is refused."""
    a_keys, b_keys, unknown = {}, {}, []
    for key in header:
        base = key.removeprefix("base_model.model.").removeprefix("model.")
        if base.endswith(".lora_A.weight"):
            a_keys[base.removesuffix(".lora_A.weight") + ".weight"] = key
        elif base.endswith(".lora_B.weight"):
            b_keys[base.removesuffix(".lora_B.weight") + ".weight"] = key
        else:
            unknown.append(key)
    unpaired = sorted(set(a_keys) ^ set(b_keys))
    if unknown or unpaired or not a_keys:
        raise ValueError(
            f"{path} is not a LoRA adapter: unexpected keys "
            f"{(unknown + unpaired)[:5] or '(no lora_A/lora_B tensors)'}."
        )
    return {k: (a_keys[k], b_keys[k]) for k in a_keys}


def adapter_rank(header: dict[str, TensorInfo], pairs: dict, path: Path) -> int:
    """The one LoRA rank of an adapter file; float 2-D tensors only."""
    problems, ranks = [], set()
    for a_key, b_key in pairs.values():
        a, b = header[a_key], header[b_key]
        for key, t in ((a_key, a), (b_key, b)):
            if t.dtype not in FLOATS:
                problems.append(f"{key} is {t.dtype}; adapters must be F16, BF16 or F32")
            elif len(t.shape) != 2:
                problems.append(f"{key} has shape {t.shape}; LoRA matrices are 2-D")
        if len(a.shape) == len(b.shape) == 2 and a.shape[0] != b.shape[1]:
            problems.append(f"{b_key} has rank {b.shape[1]} but its lora_A has rank {a.shape[0]}")
        ranks.add(a.shape[0] if a.shape else 0)
    if problems:
        raise ValueError(f"{path} is not a LoRA adapter:{list_problems(problems)}")
    if len(ranks) != 1:
        raise ValueError(f"{path} mixes LoRA ranks {sorted(ranks)[:10]}.")
    return ranks.pop()


def read_adapter(folder: Path, task: str) -> Adapter:
    """Load one task adapter folder.

    Unified MLX repos may ship `adapter_model.safetensors` without `adapter_config.json`;
    then `lora_alpha = r` (scale 1.0), the value every published Jina adapter uses.
    """
    path = folder / ADAPTER_WEIGHTS
    # Check names, dtypes and ranks from the header before reading any data.
    header = weight_header(path)
    pairs = pair_keys(header, path)
    rank = adapter_rank(header, pairs, path)
    config_file = folder / ADAPTER_CONFIG
    config = read_json(config_file) if config_file.exists() else {}
    scale = lora_scale(config, rank, config_file)
    tensors = load_safetensors(path)
    check_finite(tensors, path)
    return Adapter(task, scale, {k: (tensors[a], tensors[b]) for k, (a, b) in pairs.items()})


def check_finite(tensors: dict[str, mx.array], path: Path) -> None:
    """NaN or inf in a LoRA matrix spreads to every vector; name the tensors, not a dtype."""
    release_at_thread_exit()  # this evaluates: free this thread's streams as it ends
    flags = {key: mx.all(mx.isfinite(t)) for key, t in tensors.items()}
    mx.eval(list(flags.values()))
    if bad := sorted(key for key, ok in flags.items() if not ok.item()):
        raise ValueError(
            f"{path} holds NaN or inf values in {len(bad)} tensor(s):{list_problems(bad, 3)}\n"
            "The adapter file is damaged; download or convert it again."
        )


def check_adapter(shapes: dict[str, tuple[int, ...]], adapter: Adapter) -> None:
    """Every adapter pair must match a base weight's (float) shape; one error lists them."""
    errors = []
    for key, (a, b) in adapter.pairs.items():
        shape = shapes.get(key)
        if shape is None:
            errors.append(f"{key}: no such base weight")
        elif len(shape) != 2 or (b.shape[0], a.shape[1]) != tuple(shape):
            errors.append(f"{key}: B@A is {(b.shape[0], a.shape[1])}, base is {tuple(shape)}")
    if errors:
        problems = list_problems(errors)
        raise ValueError(f"The {adapter.task!r} adapter does not fit this model:{problems}")


def merge(weights: dict[str, mx.array], adapter: Adapter) -> dict[str, mx.array]:
    """A new weight dict with the adapter merged in float32 and cast back to each weight's dtype."""
    check_adapter({k: tuple(w.shape) for k, w in weights.items()}, adapter)
    merged = dict(weights)
    for key, (a, b) in adapter.pairs.items():
        w = weights[key]
        delta = adapter.scale * (b.astype(mx.float32) @ a.astype(mx.float32))
        merged[key] = (w.astype(mx.float32) + delta).astype(w.dtype)
    return merged


def add_adapters(model: nn.Module, adapters: list[Adapter]) -> None:
    """Wrap every layer an adapter touches in a `LoRALinear`; no weight is modified."""
    modules = dict(model.named_modules())
    # Keep adapters in the dtype the model computes in (the float weights' dtype).
    dtype = model.norm.weight.dtype
    per_layer: dict[str, dict[str, dict[str, mx.array]]] = {}
    errors = []
    for adapter in adapters:
        for key, (a, b) in adapter.pairs.items():
            path = key.removesuffix(".weight")
            module = modules.get(path)
            if not isinstance(module, (nn.Linear, nn.QuantizedLinear)):
                errors.append(f"{adapter.task}: {key}: no such linear layer")
                continue
            shape = (module.weight.shape[0], input_size(module))
            if (b.shape[0], a.shape[1]) != shape:
                errors.append(
                    f"{adapter.task}: {key}: B@A is {(b.shape[0], a.shape[1])}, base is {shape}"
                )
                continue
            # Fold the scale into B in float32 so the call does one add.
            b = (adapter.scale * b.astype(mx.float32)).astype(dtype)
            per_layer.setdefault(path, {})[adapter.task] = {
                "a": a.astype(dtype),
                "b": b,
            }
    if errors:
        raise ValueError(
            "The adapters do not fit this model:\n  " + "\n  ".join(errors)
        )
    for path, lora in per_layer.items():
        parent, name = path.rsplit(".", 1)
        setattr(modules[parent], name, LoRALinear(modules[path], lora))
    mx.eval(model.parameters())
