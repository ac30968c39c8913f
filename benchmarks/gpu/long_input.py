"""Child process of gpu_check.py: peak memory of one long input per length.

    python benchmarks/gpu/long_input.py FOLDER LOAD_KWARGS_JSON LENGTH [LENGTH ...]

Prints one JSON line per length as it finishes ({"tokens", "peak_gib", "seconds"}), so
the lengths before an out-of-memory abort still report.
"""

import json
import sys
import time

import mlx_jina  # before MLX: on Linux it loads the system BLAS
import mlx.core as mx
import numpy as np


def main(folder: str, kwargs: str, *lengths: str) -> None:
    embedder = mlx_jina.load(folder, task="retrieval", **json.loads(kwargs))
    vocab = embedder.model.args.vocab_size
    rng = np.random.default_rng(0)
    for n in map(int, lengths):
        row = rng.integers(10, vocab, n).tolist()
        mx.clear_cache()
        mx.reset_peak_memory()
        t = time.perf_counter()
        out = embedder.engine.embed_batch([row], "retrieval")
        mx.eval(out)
        seconds = time.perf_counter() - t
        ok = bool(np.isfinite(np.array(out)).all())
        peak = mx.get_peak_memory() / 2**30
        print(json.dumps({"tokens": n, "peak_gib": round(peak, 3),
                          "seconds": round(seconds, 3), "finite": ok}), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
