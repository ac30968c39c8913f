"""FLOPs of the matrix products each engine executes on one padded batch.

Linear layers count 2 FLOPs per weight per computed token; attention 4 per (query, key)
pair per head dimension (q·k and p·v). The peers compute every layer at every token and
full score matrices. mlx_jina's CPU path differs twice: causal attention in query blocks
skips the keys after each block, and the last layer computes keys and values at every
token but the rest (query, output, MLP, attention) at the pooled token only.
"""

from checkpoint import head_dim, linear_shapes
from internals import query_block_size

KV = ("self_attn.k_proj", "self_attn.v_proj")


def linear_flops(config: dict, names=None) -> int:
    """Per token: 2 × the weights of the named projections (default: all seven)."""
    shapes = linear_shapes(config)
    return 2 * sum(o * i for n, (o, i) in shapes.items() if names is None or n in names)


def attention_flops(config: dict, pairs: int) -> int:
    return 4 * config["num_attention_heads"] * head_dim(config) * pairs


def block_pairs(config: dict, causal: bool, rows: int, width: int) -> int:
    """(query, key) pairs one row computes in mlx_jina's CPU query-block attention."""
    step = query_block_size(rows, config["num_attention_heads"], width, width, causal)
    if not causal or step >= width:
        return width * width
    return sum((min(s + step, width) - s) * min(s + step, width) for s in range(0, width, step))


def full_forward(config: dict, rows: int, width: int) -> float:
    """Every layer at every token, full score matrices: the peers."""
    per_row = width * linear_flops(config) + attention_flops(config, width * width)
    return float(config["num_hidden_layers"] * rows * per_row)


def mlx_jina_forward(config: dict, causal: bool, rows: int, width: int) -> float:
    """mlx_jina's `encode` on the CPU: query blocks, last layer at the pooled token."""
    earlier = width * linear_flops(config) + attention_flops(config, block_pairs(config, causal, rows, width))
    kv = linear_flops(config, KV)
    last = width * kv + (linear_flops(config) - kv) + attention_flops(config, width)
    return float(rows * ((config["num_hidden_layers"] - 1) * earlier + last))


def batches_flops(config: dict, batches: list[list[int]], lengths: list[int],
                  mlx_jina_cpu: bool = False, causal: bool = False) -> float:
    """FLOPs of a whole pass, each batch padded to its longest row: every layer at every
    token with full score matrices (the peers, a fused GPU kernel), or `mlx_jina_cpu`."""
    widths = [(len(b), max(lengths[i] for i in b)) for b in batches]
    if mlx_jina_cpu:
        return sum(mlx_jina_forward(config, causal, rows, width) for rows, width in widths)
    return sum(full_forward(config, rows, width) for rows, width in widths)
