"""What the check runs on: model shapes, random checkpoints, the corpus, device facts."""

import importlib.util
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from checkpoint import LLAMA_VOCAB, QWEN_VOCAB, TINY, build

# One row per precision: (label, mlx_jina.load keywords).
PRECISIONS = (
    ("fp32", dict(dtype="float32")),
    ("bf16", dict(dtype="bfloat16")),
    ("fp16", dict(dtype="float16")),
    ("8-bit", dict(bits=8, dtype="bfloat16")),
    ("4-bit", dict(bits=4, dtype="bfloat16")),
)
TASK = "retrieval"  # the adapter merged at load, by mlx_jina and by the torch reference


@dataclass
class Model:
    name: str  # "small" or "nano"
    arch: str  # "qwen3" or "eurobert"
    overrides: dict  # checkpoint.build keywords over the published shape
    long_inputs: tuple[int, ...]  # token lengths of the peak-memory inputs
    folder: Path | None = None
    config: dict | None = None


def models(smoke: bool) -> list[Model]:
    """Full size: Qwen3-0.6B (28 layers) and EuroBERT-210m (12), published vocabularies.
    --smoke: 2 layers, hidden 64, a 1,000-token vocabulary, short "long" inputs."""
    if not smoke:
        return [
            Model("small", "qwen3", {"vocab_size": QWEN_VOCAB}, (8192, 32768)),
            Model("nano", "eurobert", {"vocab_size": LLAMA_VOCAB}, (8192,)),
        ]
    tiny = dict(intermediate_size=128, vocab_size=1000)  # MLP 128: 4-bit groups of 64
    return [
        Model("small", "qwen3", TINY["qwen3"] | tiny, (128, 512)),
        Model("nano", "eurobert", TINY["eurobert"] | tiny, (128,)),
    ]


def build_checkpoints(root: Path, ms: list[Model], smoke: bool) -> dict:
    """Base-repo layout with all four adapters (r 32 / alpha 32 like Jina's; r 4 in
    --smoke), float16 files (half the bytes to write and read; every precision loads
    them). Returns seconds per model."""
    import json

    seconds = {}
    for i, m in enumerate(ms):
        t = time.perf_counter()
        lora = dict(r=4, lora_alpha=8) if smoke else {}
        m.folder = build(
            root / m.name, m.arch, seed=i, dtype="float16", **lora, **m.overrides
        )
        m.config = json.loads((m.folder / "config.json").read_text())
        seconds[m.name] = round(time.perf_counter() - t, 2)
    return seconds


def corpus(n: int, vocab: int, max_len: int, seed: int = 0) -> list[list[int]]:
    """`n` rows of random token ids, lognormal lengths (median ~150) clipped to
    20..max_len: mostly passages, a tail of long documents."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(5.0, 1.0, n).astype(int), 20, max_len)
    # Ids from 10 up: clear of the byte tokenizer's specials in --smoke vocabularies.
    return [rng.integers(10, vocab, int(k)).tolist() for k in lengths]


def device_facts() -> dict:
    """MLX's device, versions, and which optional peers are importable."""
    import mlx_jina  # noqa: F401 - before MLX: on Linux it loads the system BLAS
    import mlx.core as mx

    facts = {
        "mlx": mx.__version__,
        "python": platform.python_version(),
        "default_device": str(mx.default_device()),
        "gpu_available": bool(mx.is_available(mx.gpu)),
    }
    try:
        facts["device_info"] = {
            k: v if isinstance(v, (int, float, str)) else str(v)
            for k, v in mx.device_info().items()
        }
    except Exception as e:  # noqa: BLE001 - informative only
        facts["device_info"] = f"unavailable: {e}"
    for name in ("torch", "transformers", "peft", "mlx_embeddings", "starlette"):
        facts[name] = _version(name)
    try:
        import torch

        facts["torch_cuda"] = bool(torch.cuda.is_available())
        if facts["torch_cuda"]:
            facts["torch_device"] = torch.cuda.get_device_name(0)
    except ImportError:
        facts["torch_cuda"] = False
    return facts


def _version(name: str) -> str | None:
    if importlib.util.find_spec(name) is None:
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name.replace("_", "-"))
    except PackageNotFoundError:
        return "importable"
