"""The benchmark's models and their random checkpoints.

The table runs the published widths at reduced depth: the time per token of a width is
what the engines differ on, while every layer costs the same, so depth only scales the
run time. The extra sections (sections.py) keep their older, reduced widths.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from checkpoint import LLAMA_TOKENIZER, NANO, QWEN_TOKENIZER, SMALL, build, head_dim

WIDTH_KEYS = (
    "hidden_size",
    "intermediate_size",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
)


def widths(published: dict) -> dict:
    return {k: published[k] for k in WIDTH_KEYS if k in published}


# Qwen3-0.6B (hidden 1024, 16/8 heads of 128, MLP 3072) and EuroBERT-210m (hidden 768,
# 12/12 heads of 64, MLP 3072), as checkpoint.py writes the published configs.
REAL = {"small": ("qwen3", widths(SMALL)), "nano": ("eurobert", widths(NANO))}
# --smoke: tiny widths, so the whole path runs in seconds. The real vocabularies stay.
TINY = {
    "small": (
        "qwen3",
        dict(
            hidden_size=64,
            intermediate_size=128,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
        ),
    ),
    "nano": (
        "eurobert",
        dict(
            hidden_size=64,
            intermediate_size=128,
            num_attention_heads=4,
            num_key_value_heads=4,
        ),
    ),
}
# The extra sections' reduced widths (their figures in the README were taken at these).
REDUCED = {
    "small": (
        "qwen3",
        dict(
            hidden_size=128,
            intermediate_size=384,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
        ),
    ),
    "nano": (
        "eurobert",
        dict(
            hidden_size=128,
            intermediate_size=512,
            num_attention_heads=8,
            num_key_value_heads=8,
        ),
    ),
}
SHAPES = REDUCED  # the name sections.py reads
# For the 4K-batch section: small's real heads (128 wide, GQA 2:1), narrower.
WIDE_HEADS = dict(
    REDUCED["small"][1], hidden_size=256, intermediate_size=768, head_dim=128
)


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
        return dict(
            name=self.name, arch=self.arch, config=self.config, folder=str(self.folder)
        )

    @classmethod
    def from_json(cls, data: dict) -> "Model":
        return cls(data["name"], data["arch"], data["config"], Path(data["folder"]))


def build_model(
    root: Path, name: str, arch: str, layers: int, seed: int, **shape
) -> Model:
    """A random checkpoint in the merged per-task layout, with the real tokenizer."""
    tokenizer = QWEN_TOKENIZER if arch == "qwen3" else LLAMA_TOKENIZER
    folder = build(
        root / name,
        arch,
        tokenizer=tokenizer,
        tasks=(),
        seed=seed,
        num_hidden_layers=layers,
        **shape,
    )
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
    return (
        f"{heads} heads of {head_dim(c)}, hidden {c['hidden_size']}, "
        f"MLP {c['intermediate_size']}, vocabulary {c['vocab_size']:,}, "
        f"{c['num_hidden_layers']} layers"
    )
