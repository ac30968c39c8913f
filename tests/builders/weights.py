"""Seeded random weights: the backbone and the PEFT LoRA adapters, with key checks.

All random weights are seeded, so builds are reproducible.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Iterable

import torch

from builders.configs import ARCHS
from builders.files import cast_file, read_safetensors

LORA_TARGETS = (  # the seven projections Jina's adapters touch
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)
_ADAPTER_KEY = re.compile(
    r"^base_model\.model\.layers\.(\d+)\.(self_attn|mlp)\."
    r"(q|k|v|o|gate|up|down)_proj\.lora_([AB])\.weight$"
)


def random_backbone(config, arch: str, seed: int) -> torch.nn.Module:
    """A Qwen3Model / EuroBertModel for ``config`` with seeded weights (eval mode)."""
    torch.manual_seed(seed)  # module init is overwritten, but keep it deterministic
    model = ARCHS[arch][1](config).eval()
    _randomize_(model, seed)
    return model


def _randomize_(model: torch.nn.Module, seed: int) -> None:
    """Seeded weights with O(1) activations, so every component matters.

    RMSNorm scales are 1 + 0.2 * N(0, 1) (a missing or misplaced norm shows),
    embeddings N(0, 1), linears N(0, 1 / fan_in) (unit gain: each block changes the
    residual stream by O(1), attention logits are O(1), so rope, masks and pooling bugs
    all move the output).
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * noise)
            elif name.endswith("embed_tokens.weight"):
                p.copy_(noise)
            elif p.ndim == 2:
                p.copy_(noise / math.sqrt(p.shape[1]))
            else:
                raise AssertionError(f"unexpected parameter {name} {tuple(p.shape)}")


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


def write_adapters(
    folder: Path,
    model: torch.nn.Module,
    tasks: tuple[str, ...],
    *,
    seed: int,
    r: int,
    lora_alpha: float,
    use_rslora: bool,
    strength: float,
    dtype: torch.dtype,
) -> None:
    """Random PEFT LoRA adapters on ``model``, saved as ``folder``/<task>/ per task.

    One PEFT model holds every task; peft saves non-"default" adapters to
    <dir>/<adapter_name>/, which is exactly adapters/<task>/.
    """
    from peft import LoraConfig, get_peft_model

    scale = _lora_scale(r, lora_alpha, use_rslora)
    peft_model = None
    for i, task in enumerate(tasks):
        lora_config = LoraConfig(
            r=r,
            lora_alpha=lora_alpha,
            target_modules=list(LORA_TARGETS),
            lora_dropout=0.05 if task == "classification" else 0.1,  # as Jina's
            bias="none",
            use_rslora=use_rslora,
            init_lora_weights=False,
            task_type="FEATURE_EXTRACTION",
        )
        if peft_model is None:
            peft_model = get_peft_model(model, lora_config, adapter_name=task)
        else:
            peft_model.add_adapter(task, lora_config)
        _randomize_lora_(peft_model, task, seed * 1000 + 17 + i, strength, scale)
    peft_model.save_pretrained(str(folder))
    (folder / "README.md").unlink(missing_ok=True)  # Jina ships only the two files
    for task in tasks:
        files = sorted(p.name for p in (folder / task).iterdir())
        assert files == ["adapter_config.json", "adapter_model.safetensors"], files
        weights = folder / task / "adapter_model.safetensors"
        _check_adapter_file(weights, model.config.num_hidden_layers, r)
        cast_file(weights, dtype)


def _lora_scale(r: int, lora_alpha: float, use_rslora: bool) -> float:
    return lora_alpha / math.sqrt(r) if use_rslora else lora_alpha / r


def _randomize_lora_(
    peft_model: torch.nn.Module, adapter: str, seed: int, strength: float, scale: float
) -> None:
    """Random, non-zero A and B with ||delta W|| about ``strength`` * ||W||.

    A ~ N(0, 1/in); B is scaled so that the std of scale * B @ A is ``strength``
    times the std of the base weight: a merge bug (wrong scale, transposed A/B,
    missed layer) changes the embeddings clearly.
    """
    from peft.tuners.lora import LoraLayer

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in peft_model.modules():
            if not isinstance(module, LoraLayer) or adapter not in module.lora_A:
                continue
            a = module.lora_A[adapter].weight  # [r, in]
            b = module.lora_B[adapter].weight  # [out, r]
            r, fan_in = a.shape
            w_std = module.get_base_layer().weight.std().item()
            a.copy_(torch.randn(a.shape, generator=gen) / math.sqrt(fan_in))
            b_std = strength * w_std * math.sqrt(fan_in / r) / scale
            b.copy_(torch.randn(b.shape, generator=gen) * b_std)


def _check_adapter_file(path: Path, n_layers: int, r: int) -> None:
    """Assert Jina's adapter key naming and PEFT shapes (docs/model-facts.md, "LoRA adapters")."""
    tensors = read_safetensors(path)
    bad = [k for k in tensors if not _ADAPTER_KEY.match(k)]
    assert not bad, f"adapter keys do not follow Jina's naming: {bad[:5]}"
    assert len(tensors) == n_layers * len(LORA_TARGETS) * 2, len(tensors)
    for key, t in tensors.items():
        which = _ADAPTER_KEY.match(key).group(4)
        assert (t.shape[0] if which == "A" else t.shape[1]) == r, (key, tuple(t.shape))
