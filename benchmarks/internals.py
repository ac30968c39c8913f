"""The mlx_jina internals the benchmarks use, imported here and nowhere else.

None of them is public API: when the package moves one, fix its path here. The
benchmarks also use these `Embedder` attributes: `model`, `tokenize`, `last_stats` and
`engine.embed_batch` (one batch's pooled vectors, not yet evaluated).
"""

from mlx_jina.models.attention import query_block_size, scaled_dot_product_attention
from mlx_jina.encoding.batching import plan_batches

__all__ = ["corpus_ranks", "plan_batches", "query_block_size", "scaled_dot_product_attention", "server",
           "write_report"]  # fmt: skip


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
