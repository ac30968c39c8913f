"""`convert --sweep`: every quantization choice measured against the float model.

For each choice (float, affine at every bit width MLX has, mxfp4, mxfp8, nvfp4, and the
mixed-precision recipes; group 64 where the mode allows a choice) it loads the model
quantized that way and embeds the built-in quality set (quality.py, which no choice was
fitted on): the weights' bytes and bits per weight, cosine to the float vectors (mean
and worst), how many of each text's 10 nearest neighbours stay, how many of each query's
10 best documents stay, and encode speed relative to float. It writes no model folder;
the table goes to stdout and, if asked, to a JSON file (written atomically).
"""

import json
import platform
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from .. import atomic
from ..checkpoint import hub
from ..checkpoint.quantization import (
    MODES,
    RECIPES,
    Quantization,
    input_size,
    quantized_layers,
)
from ..encoding.embedder import Embedder
from ..loading import load
from . import quality

GROUP_SIZE = 64  # the affine default, and what Jina used
K = 10


def sweep_choices() -> list[Quantization | None]:
    """None (float), then each mode at each of its bit widths, then the recipes."""
    choices: list[Quantization | None] = [None]
    for mode, spec in MODES.items():
        group_size = GROUP_SIZE if GROUP_SIZE in spec.group_sizes else spec.default_group_size
        choices += [Quantization(mode, bits, group_size) for bits in sorted(spec.bits, reverse=True)]
    choices += [Quantization("affine", r.low, GROUP_SIZE, name) for name, r in RECIPES.items()]
    return choices


def run_sweep(
    hf_path: str,
    task: str | None,
    *,
    dtype: str | None = None,
    revision: str | None = None,
    json_path: str | None = None,
) -> dict:
    """Measure every choice in `sweep_choices` on `hf_path`'s `task`; print the table,
    write the JSON to `json_path` if given, and return the report."""
    from .pipeline import recorded_source  # pipeline imports this module when it sweeps
    folder = hub.resolve(hf_path, revision=revision, task=task)
    if json_path is not None:
        target = Path(json_path).expanduser().resolve()
        if target.is_relative_to(folder.resolve()):
            raise ValueError(
                f"--sweep-json {json_path} lies inside the source {folder}; "
                "write it somewhere else (nothing is ever written into the source)."
            )
    reference = load(folder, task=task, dtype=dtype)
    if quantized_layers(reference.model):
        raise ValueError(f"{hf_path} is already quantized; sweep from float weights.")
    hidden = reference.model.args.hidden_size
    queries, documents = quality.texts_for(reference)
    print(f"[INFO] Sweep: {len(queries)} queries and {len(documents)} documents per choice")
    float_vectors, float_seconds = embed(reference, queries, documents)
    rows = []
    for quant in sweep_choices():
        if quant is not None and hidden % quant.group_size:
            print(f"[INFO] Skipping {quant.label}: group size does not divide hidden size {hidden}")
            continue
        if quant is None:
            embedder, vectors, seconds = reference, float_vectors, float_seconds
        else:
            embedder = load_quantized(folder, task, dtype, quant)
            vectors, seconds = embed(embedder, queries, documents)
        row = measure(embedder.model, quant, float_vectors, vectors, len(queries))
        row.update(encode_seconds=seconds, speed_vs_float=float_seconds / seconds)
        rows.append(row)
        print(f"[INFO] {row['weights']}: mean cosine {row['mean_cosine']:.4f}")
        del embedder
    source, source_revision = recorded_source(hf_path, folder, revision)
    report = {
        "source": source,  # a Hub id or the folder's name, never a local path
        "revision": source_revision,
        "task": reference.task,
        "dtype": str(reference.model.norm.weight.dtype).removeprefix("mlx.core."),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": f"{platform.system()} {platform.machine()}, MLX {mx.__version__}, "
        f"{mx.default_device()}",
        "texts": {"queries": len(queries), "documents": len(documents)},
        "rows": rows,
    }
    print(markdown_table(rows))
    if json_path is not None:
        with atomic.replacing_file(Path(json_path).expanduser()) as f:
            f.write((json.dumps(report, indent=2) + "\n").encode())
        print(f"[INFO] Wrote {json_path}")
    return report


def load_quantized(folder: Path, task: str | None, dtype: str | None, quant) -> Embedder:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # layers that stay float; the CPU speed note
        return load(
            folder, task=task, dtype=dtype, bits=None if quant.recipe else quant.bits,
            group_size=quant.group_size, mode=None if quant.recipe else quant.mode,
            recipe=quant.recipe,
        )  # fmt: skip


def embed(embedder: Embedder, queries: list[str], documents: list[str]) -> tuple[np.ndarray, float]:
    """The set's vectors (queries then documents) and the seconds they took, after a
    short warm-up so that first-call costs don't count."""
    embedder.encode_document(documents[:2])
    start = time.perf_counter()
    q = embedder.encode_query(queries)
    d = embedder.encode_document(documents)
    seconds = time.perf_counter() - start
    return np.concatenate([q, d]).astype(np.float32), seconds


def measure(
    model: nn.Module, quant: Quantization | None, reference: np.ndarray, vectors: np.ndarray, n_queries: int
) -> dict:
    """Sizes and fidelity of one choice; `reference` and `vectors` are queries then documents."""
    row = {
        "weights": "float" if quant is None else quant.label,
        "mode": None if quant is None else quant.mode,
        "bits": None if quant is None else quant.bits,
        "group_size": None if quant is None else quant.group_size,
        "recipe": None if quant is None else quant.recipe,
        "weight_bytes": sum(v.nbytes for _, v in tree_flatten(model.parameters())),
        "bits_per_weight": bits_per_weight(model),
    }
    row.update(quality.compare(reference, vectors, k=K))
    row[f"top{K}_retrieval"] = retrieval_agreement(reference, vectors, n_queries)
    return row


def bits_per_weight(model: nn.Module) -> float:
    """Stored bits per weight of the Linear and embedding layers (the ones quantization
    touches; float ones included): their tensors' bytes (packed words, scales, biases)
    over their float weights' element count."""
    stored = elements = 0
    for _, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Embedding, nn.QuantizedLinear, nn.QuantizedEmbedding)):
            for name in ("weight", "scales", "biases"):
                if isinstance(tensor := module.get(name), mx.array):
                    stored += tensor.nbytes
            elements += module.weight.shape[0] * input_size(module)
    return 8 * stored / elements


def retrieval_agreement(reference: np.ndarray, vectors: np.ndarray, n_queries: int) -> float:
    """Share of each query's K best documents (by float vectors) still in its K best."""
    def top(v: np.ndarray) -> np.ndarray:
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        scores = v[:n_queries] @ v[n_queries:].T
        return np.argsort(-scores, axis=1, kind="stable")[:, :K]

    want, got = top(reference), top(vectors)
    return float(np.mean([len(set(a) & set(b)) / K for a, b in zip(want, got)]))


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| weights | weight MB | bits/weight | mean cosine | worst cosine "
        f"| top-{K} neighbours kept | top-{K} retrieval kept | speed vs float |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['weights']} | {r['weight_bytes'] / 1e6:.2f} | {r['bits_per_weight']:.2f} "
            f"| {r['mean_cosine']:.4f} | {r['min_cosine']:.4f} | {r['top10_agreement']:.1%} "
            f"| {r[f'top{K}_retrieval']:.1%} | {r['speed_vs_float']:.2f}x |"
        )
    return "\n".join(lines)
