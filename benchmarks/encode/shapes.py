"""The benchmark's models and their random checkpoints.

The table runs the published widths at a given depth (2 layers and the published depth
by default): the time per token of a width is what the engines differ on; depth scales
every engine's layers alike, but not what runs once per text (tokenization, embedding,
pooling, mlx_jina's last layer at the pooled token only), hence both depths.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from checkpoint import LLAMA_TOKENIZER, PUBLISHED, QWEN_TOKENIZER, TINY, build, head_dim

DEPTH_KEY = "num_hidden_layers"


def widths(shape: dict) -> dict:
    return {k: v for k, v in shape.items() if k != DEPTH_KEY}


# Qwen3-0.6B (hidden 1024, 16/8 heads of 128, MLP 3072) and EuroBERT-210m (hidden 768,
# 12/12 heads of 64, MLP 3072); --smoke: the tests' tiny widths, real vocabularies.
REAL = {"small": ("qwen3", widths(PUBLISHED["qwen3"])),
        "nano": ("eurobert", widths(PUBLISHED["eurobert"]))}
# (MLP 128, not the tests' 96: the quantized rows need multiples of 64.)
TINY_SHAPES = {"small": ("qwen3", widths(TINY["qwen3"]) | {"intermediate_size": 128}),
               "nano": ("eurobert", widths(TINY["eurobert"]) | {"intermediate_size": 128})}
FULL_DEPTH = {"qwen3": PUBLISHED["qwen3"][DEPTH_KEY], "eurobert": PUBLISHED["eurobert"][DEPTH_KEY]}


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

    @property
    def layers(self) -> int:
        return self.config["num_hidden_layers"]

    def to_json(self) -> dict:
        return dict(name=self.name, arch=self.arch, config=self.config, folder=str(self.folder))

    @classmethod
    def from_json(cls, data: dict) -> "Model":
        return cls(data["name"], data["arch"], data["config"], Path(data["folder"]))


def build_model(
    root: Path, name: str, arch: str, layers: int | None, seed: int, **shape
) -> Model:
    """A random checkpoint in the merged per-task layout, with the real tokenizer;
    `layers` None: the published depth."""
    tokenizer = QWEN_TOKENIZER if arch == "qwen3" else LLAMA_TOKENIZER
    folder = build(root / name, arch, tokenizer=tokenizer, tasks=(), seed=seed,
                   num_hidden_layers=layers or FULL_DEPTH[arch], **shape)
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
    heads = f"{c['num_attention_heads']}/{c['num_key_value_heads']}"
    return (f"{heads} heads of {head_dim(c)}, hidden {c['hidden_size']}, MLP "
            f"{c['intermediate_size']}, vocabulary {c['vocab_size']:,}, {c['num_hidden_layers']} layers")
