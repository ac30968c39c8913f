"""The mlx_jina internals the benchmarks use, imported here and nowhere else.

None of them is public API: when the package moves one, fix its path here. The
benchmarks also use these `Embedder` attributes: `model`, `tokenize`, `last_stats` and
`engine.embed_batch` (one batch's pooled vectors, not yet evaluated).
"""

from mlx_jina.models.attention import query_block_size, scaled_dot_product_attention
from mlx_jina.encoding.batching import plan_batches

__all__ = ["corpus_ranks", "percentile", "plan_batches", "query_block_size", "scaled_dot_product_attention", "server",
           "write_json", "write_report"]  # fmt: skip


def corpus_ranks():
    """(init_group, RoundPool, serve): the corpus job's scheduler over MLX ranks."""
    from mlx_jina.corpus.rounds import RoundPool, init_group, serve

    return init_group, RoundPool, serve


def server():
    """(Job, Limits, Worker) of the embedding server; needs the server extra."""
    from mlx_jina.server import Limits, Worker
    from mlx_jina.server.worker import Job

    return Job, Limits, Worker


def write_report(path, text: str) -> None:
    """Write a report file whole or not at all (beside it, then renamed over it)."""
    from mlx_jina.atomic import replacing_file

    with replacing_file(path) as f:
        f.write(text.encode("utf-8"))


def write_json(path, figures) -> None:
    """The figures as indented JSON, written whole or not at all."""
    import json

    write_report(path, json.dumps(figures, indent=1, default=str) + "\n")


def percentile(values: list[float], q: float) -> float:
    """The value at quantile `q` of `values` (nearest rank); NaN for none."""
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))] if values else float("nan")
