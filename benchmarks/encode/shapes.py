"""The benchmarks' models and their random checkpoints (bench_encode.py and gpu_check.py).

The encode table runs the published widths at a given depth (2 layers and the published
depth by default): the time per token of a width is what the engines differ on; depth
scales every engine's layers alike, but not what runs once per text (tokenization,
embedding, pooling, mlx_jina's last layer at the pooled token only), hence both depths.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from checkpoint import LLAMA_TOKENIZER, PUBLISHED, QWEN_TOKENIZER, TINY, build, head_dim

ARCHS = {"small": "qwen3", "nano": "eurobert"}
# Qwen3-0.6B (hidden 1024, 16/8 heads of 128, MLP 3072) and EuroBERT-210m (hidden 768,
# 12/12 heads of 64, MLP 3072); tiny: the tests' widths with an MLP of 128, not 96 (the
# quantized rows need multiples of 64).
REAL = {name: {k: v for k, v in PUBLISHED[arch].items() if k != "num_hidden_layers"}
        for name, arch in ARCHS.items()}  # fmt: skip
TINY_SHAPES = {name: {k: v for k, v in TINY[arch].items() if k != "num_hidden_layers"}
               | {"intermediate_size": 128} for name, arch in ARCHS.items()}  # fmt: skip


@dataclass
class Model:
    """One random checkpoint: plain data, so it can travel to another process."""

    name: str  # "small" or "nano"
    arch: str  # "qwen3" (small's backbone) or "eurobert" (nano's)
    config: dict  # its config.json
    folder: Path

    @property
    def causal(self) -> bool:
        return self.arch == "qwen3"

    def to_json(self) -> dict:
        return dict(vars(self), folder=str(self.folder))

    @classmethod
    def from_json(cls, data: dict) -> "Model":
        return cls(**dict(data, folder=Path(data["folder"])))


def build_model(root: Path, name: str, layers: int | None, seed: int,
                real_tokenizer: bool = True, **options) -> Model:
    """A random checkpoint of `name`'s widths (`options` over them and over
    checkpoint.build's defaults: the merged per-task layout, float32); `layers` None:
    the published depth. Without `real_tokenizer`, the tests' tiny tokenizer."""
    arch = ARCHS[name]
    tokenizer = (QWEN_TOKENIZER if arch == "qwen3" else LLAMA_TOKENIZER) if real_tokenizer else None
    options = {"tasks": (), "num_hidden_layers": layers or PUBLISHED[arch]["num_hidden_layers"]} | options
    folder = build(root / name, arch, tokenizer=tokenizer, seed=seed, **options)
    return Model(name, arch, json.loads((folder / "config.json").read_text()), folder)


def mlx_embeddings_folder(folder: Path, write: bool = True) -> Path:
    """The same weights with the config mlx-embeddings reads (model_type qwen3); the
    parent writes it once, the measured processes only read it."""
    out = folder.parent / (folder.name + "-mlx-embeddings")
    if not write:
        return out
    out.mkdir(exist_ok=True)
    config = json.loads((folder / "config.json").read_text())
    config |= {"model_type": "qwen3", "architectures": ["Qwen3Model"]}
    (out / "config.json").write_text(json.dumps(config))
    for name in ("model.safetensors", "tokenizer.json"):
        if not (out / name).exists():
            (out / name).symlink_to(folder / name)
    return out


def describe(model: Model) -> str:
    c = model.config
    return (f"{model.arch}, {c['num_attention_heads']}/{c['num_key_value_heads']} heads of "
            f"{head_dim(c)}, hidden {c['hidden_size']}, MLP {c['intermediate_size']}, "
            f"vocabulary {c['vocab_size']:,}, {c['num_hidden_layers']} layers")
