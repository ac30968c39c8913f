"""The reduced models of the benchmark and their random checkpoints."""

import json
from dataclasses import dataclass
from pathlib import Path

from checkpoint import LLAMA_TOKENIZER, QWEN_TOKENIZER, build, head_dim

# Reduced widths: the real small is 1024 wide, 16/8 heads of 128, 28 layers; nano 768
# wide, 12 heads of 64, 12 layers. MLX's Linux CPU build multiplies at a few GFLOP/s, so
# full-width models would take hours here. The real vocabularies stay.
SHAPES = {
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
# For the 4K-batch efficiency: small's real heads (128 wide, GQA 2:1), narrower.
WIDE_HEADS = dict(
    SHAPES["small"][1], hidden_size=256, intermediate_size=768, head_dim=128
)


@dataclass
class Model:
    """One random checkpoint: plain data, so it can travel to another process."""

    name: str
    arch: str  # "qwen3" (small's backbone) or "eurobert" (nano's)
    config: dict  # its config.json
    folder: Path

    @property
    def causal(self) -> bool:
        return self.arch == "qwen3"

    @property
    def layers(self) -> int:
        return self.config["num_hidden_layers"]


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


def describe(model: Model) -> str:
    c = model.config
    heads = f"{c['num_attention_heads']}/{c['num_key_value_heads']}"
    return (
        f"{heads} heads of {head_dim(c)}, hidden {c['hidden_size']}, "
        f"MLP {c['intermediate_size']}"
    )
