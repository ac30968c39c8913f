"""What the model identity (mlx_jina/checkpoint/identity.py) costs on a full-size folder.

    python benchmarks/bench_identity.py [--repeats 20] [--shards 1] [--out identity.json]

Writes a float16 random checkpoint with the real Qwen3-0.6B shapes (28 layers, hidden
1024, MLP 3072, 16 query / 8 key-value heads of 128, vocabulary 151,669: about 1.2 GB)
into a temporary folder with numpy and safetensors, then times `model_identity` on it:
the first call with the folder's pages dropped from the page cache (posix_fadvise, so
its windows come from the disk), then repeated calls (page cache warm). For scale, the
same folder read and hashed whole (blake2b), cold and warm: what a full content hash
would cost on every load.
"""

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from checkpoint import backbone_shapes
from internals import write_json
from mlx_jina.checkpoint.identity import SAMPLE_WINDOWS, WINDOW, model_identity

# Qwen3-0.6B as published (the small model's backbone).
CONFIG = {
    "architectures": ["Qwen3Model"], "model_type": "qwen3", "hidden_size": 1024,
    "intermediate_size": 3072, "num_hidden_layers": 28, "num_attention_heads": 16,
    "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151669, "rms_norm_eps": 1e-6,
    "rope_theta": 1000000, "max_position_embeddings": 32768, "hidden_act": "silu",
    "tie_word_embeddings": True, "torch_dtype": "float16",
}  # fmt: skip
TOKENIZER = {"version": "1.0", "model": {"type": "BPE", "vocab": {}, "merges": []}}


def write_folder(folder: Path, shards: int, seed: int = 0) -> list[str]:
    """config.json, tokenizer.json and the weights in `shards` files; their names."""
    (folder / "config.json").write_text(json.dumps(CONFIG))
    (folder / "tokenizer.json").write_text(json.dumps(TOKENIZER))
    rng = np.random.default_rng(seed)
    names = sorted(backbone_shapes(CONFIG, "qwen3").items())
    files = ["model.safetensors"] if shards == 1 else [
        f"model-{i + 1:05d}-of-{shards:05d}.safetensors" for i in range(shards)
    ]  # fmt: skip
    for i, file in enumerate(files):
        part = names[i::shards]
        tensors = {k: (rng.standard_normal(s, np.float32) * 0.02).astype(np.float16) for k, s in part}
        save_file(tensors, str(folder / file))
        del tensors
    return files


def drop_from_cache(paths: list[Path]) -> None:
    """Evict these files' pages (only theirs), so the next read comes from the disk."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def full_hash(paths: list[Path]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for path in paths:
        with open(path, "rb") as f:
            while block := f.read(1 << 24):
                h.update(block)
    return h.hexdigest()


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="warm calls timed (default 20)")
    parser.add_argument("--shards", type=int, default=1, help="weight files (default 1)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    settings = {"tasks": [], "multitask": False, "dtype": "mlx.core.float16", "quantized": []}
    with tempfile.TemporaryDirectory(prefix="bench-identity-") as tmp:
        folder = Path(tmp)
        files = write_folder(folder, args.shards)
        paths = [folder / f for f in files]
        size = sum(p.stat().st_size for p in paths)
        call = lambda: model_identity(folder, files, {}, settings)  # noqa: E731
        drop_from_cache(paths)
        first = timed(call)
        warm = [timed(call) for _ in range(args.repeats)]
        drop_from_cache(paths)
        hash_cold = timed(lambda: full_hash(paths))
        hash_warm = timed(lambda: full_hash(paths))
        tensors = len(backbone_shapes(CONFIG, "qwen3"))
    figures = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} {platform.processor() or platform.platform()}, "
        f"{os.cpu_count()} CPUs",
        "command": "python " + " ".join(sys.argv),
        "folder_bytes": size, "weight_files": len(files), "tensors": tensors,
        "bytes_sampled": tensors * SAMPLE_WINDOWS * WINDOW,
        "identity_first_s": first, "identity_warm_median_s": statistics.median(warm),
        "identity_warm_min_s": min(warm), "identity_warm_max_s": max(warm),
        "full_hash_cold_s": hash_cold, "full_hash_warm_s": hash_warm,
    }  # fmt: skip
    rows = [
        ("folder", f"{size / 1e9:.2f} GB in {len(files)} file(s), {tensors} tensors"),
        ("identity, first call (cache dropped)", f"{first * 1e3:.1f} ms"),
        (f"identity, warm (median of {args.repeats})",
         f"{statistics.median(warm) * 1e3:.1f} ms (min {min(warm) * 1e3:.1f}, max {max(warm) * 1e3:.1f})"),
        ("full blake2b read, cold", f"{hash_cold * 1e3:.0f} ms"),
        ("full blake2b read, warm", f"{hash_warm * 1e3:.0f} ms"),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    if args.out:
        write_json(args.out, figures)


if __name__ == "__main__":
    main()
