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
import os
import statistics
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from checkpoint import PUBLISHED, backbone_shapes
from internals import SAMPLE_WINDOWS, WINDOW, machine, model_identity, table, timed, write_json

# Qwen3-0.6B as published (the small model's backbone).
CONFIG = dict(PUBLISHED["qwen3"], architectures=["Qwen3Model"], model_type="qwen3", vocab_size=151669,
              rms_norm_eps=1e-6, rope_theta=1000000, max_position_embeddings=32768, hidden_act="silu",
              tie_word_embeddings=True, torch_dtype="float16")  # fmt: skip
TOKENIZER = {"version": "1.0", "model": {"type": "BPE", "vocab": {}, "merges": []}}


def write_folder(folder: Path, shards: int, seed: int = 0) -> list[str]:
    """config.json, tokenizer.json and the weights in `shards` files; their names."""
    write_json(folder / "config.json", CONFIG)
    write_json(folder / "tokenizer.json", TOKENIZER)
    rng = np.random.default_rng(seed)
    names = sorted(backbone_shapes(CONFIG, "qwen3").items())
    files = ["model.safetensors"] if shards == 1 else [
        f"model-{i + 1:05d}-of-{shards:05d}.safetensors" for i in range(shards)]  # fmt: skip
    for i, file in enumerate(files):
        save_file({k: (rng.standard_normal(s, np.float32) * 0.02).astype(np.float16) for k, s in names[i::shards]},
                  str(folder / file))  # fmt: skip
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
        first = timed(call)[1]
        warm = [timed(call)[1] for _ in range(args.repeats)]
        drop_from_cache(paths)
        hash_cold, hash_warm = timed(full_hash, paths)[1], timed(full_hash, paths)[1]
    tensors, med = len(backbone_shapes(CONFIG, "qwen3")), statistics.median(warm)
    print("\n".join(table(["measure", "value"], [
        ["folder", f"{size / 1e9:.2f} GB in {len(files)} file(s), {tensors} tensors"],
        ["identity, first call (cache dropped)", f"{first * 1e3:.1f} ms"],
        [f"identity, warm (median of {args.repeats})",
         f"{med * 1e3:.1f} ms (min {min(warm) * 1e3:.1f}, max {max(warm) * 1e3:.1f})"],
        ["full blake2b read, cold", f"{hash_cold * 1e3:.0f} ms"],
        ["full blake2b read, warm", f"{hash_warm * 1e3:.0f} ms"]])))  # fmt: skip
    if args.out:
        write_json(args.out, {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "machine": machine(),
            "command": "python " + " ".join(sys.argv), "folder_bytes": size, "weight_files": len(files),
            "tensors": tensors, "bytes_sampled": tensors * SAMPLE_WINDOWS * WINDOW, "identity_first_s": first,
            "identity_warm_median_s": med, "identity_warm_min_s": min(warm), "identity_warm_max_s": max(warm),
            "full_hash_cold_s": hash_cold, "full_hash_warm_s": hash_warm})  # fmt: skip


if __name__ == "__main__":
    main()
