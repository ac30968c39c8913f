"""The packing prototype (benchmarks/packing/) gives mlx_jina's own vectors.

Packed rows (per-token RoPE positions, attention kept inside each text by a
block-diagonal mask or by per-text spans) against `Embedder.encode` of the same texts,
padded and batched as mlx_jina plans them, on tiny float32 checkpoints of both
backbones. Also the planner and FLOP accounting against direct counts.

Run: python -m pytest tests/test_packing_benchmark.py -q
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import mlx_jina  # noqa: F401  (before mlx: it picks the faster BLAS)
import mlx.core as mx
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from packing import flops  # noqa: E402
from packing.forward import packed_embed  # noqa: E402
from packing.layout import block_mask, pack, pack_plan  # noqa: E402

PROMPT = "Document: "


def texts(n: int, seed: int) -> list[str]:
    """Texts of very different lengths, one a single character, two the same length."""
    rng = random.Random(seed)
    words = "the river capital paris planet mars school water light city".split()
    sizes = [1, 3, 3, 9, 20, 47] + [rng.randint(1, 60) for _ in range(n - 6)]
    out = [" ".join(rng.choices(words, k=k)) for k in sizes]
    out[0] = "x"
    return out


def packed_vectors(embedder, ids: list[list[int]], attention: str, budget: int) -> np.ndarray:
    """Unit vectors in input order, rows packed under `budget` tokens."""
    out = np.zeros((len(ids), embedder.dim), dtype=np.float32)
    for row_ids in pack_plan([len(r) for r in ids], budget):
        v = packed_embed(embedder.model, pack([ids[i] for i in row_ids]), attention)
        out[row_ids] = np.array(v)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.mark.parametrize("name", ["qwen", "nano"])
@pytest.mark.parametrize("attention", ["mask", "segments"])
def test_packed_matches_encode(request, name: str, attention: str):
    embedder = request.getfixturevalue(name)
    assert embedder.model.norm.weight.dtype == mx.float32
    sample = texts(24, seed=len(name))
    reference = embedder.encode(sample, prompt=PROMPT)
    ids = embedder.tokenize([PROMPT + t for t in sample])
    lengths = [len(r) for r in ids]
    # A budget that makes several rows of several texts each, and one of all of them.
    for budget in (max(lengths) + 40, sum(lengths)):
        got = packed_vectors(embedder, ids, attention, budget)
        cos = (got * reference).sum(axis=1)
        assert cos.min() >= 0.99999, (name, attention, budget, cos.min())


def test_texts_do_not_leak_into_each_other(qwen):
    """Changing one text of a row leaves the other texts' vectors as they were."""
    ids = qwen.tokenize([PROMPT + t for t in texts(6, seed=3)])
    before = np.array(packed_embed(qwen.model, pack(ids), "mask"))
    ids[2] = [t + 1 for t in ids[2]]
    after = np.array(packed_embed(qwen.model, pack(ids), "mask"))
    keep = [0, 1, 3, 4, 5]
    np.testing.assert_allclose(after[keep], before[keep], rtol=1e-5, atol=1e-5)
    assert not np.allclose(after[2], before[2])


def test_layout_positions_and_mask():
    row = pack([[5, 6, 7], [8], [9, 10]])
    assert row.positions.tolist() == [0, 1, 2, 0, 0, 1]
    assert row.last.tolist() == [2, 3, 5]
    mask = np.array(block_mask(row, causal=True, dtype=mx.float32))[0, 0]
    seen = mask == 0
    # Causal within a text: token 2 sees 0..2; text 2's tokens see only text 2.
    assert seen[2].tolist() == [True, True, True, False, False, False]
    assert seen[5].tolist() == [False, False, False, False, True, True]
    bidirectional = np.array(block_mask(row, causal=False, dtype=mx.float32))[0, 0] == 0
    assert bidirectional[0].tolist() == [True, True, True, False, False, False]


def test_pack_plan_fills_rows_under_the_budget():
    rng = np.random.default_rng(0)
    lengths = np.clip(rng.lognormal(5.0, 1.0, 500).astype(int), 20, 2000).tolist()
    rows = pack_plan(lengths, 8192)
    assert sorted(i for r in rows for i in r) == list(range(500))
    assert all(sum(lengths[i] for i in r) <= 8192 for r in rows)
    # First-fit decreasing: at most one row more than a perfect split.
    assert len(rows) <= -(-sum(lengths) // 8192) + 1
    assert pack_plan([9000, 10], 8192) == [[0], [1]]  # too long: a row of its own


def test_flop_accounting_against_direct_sums():
    """Padded: rows x width tokens through the linears, width² (half, causal) of
    attention; packed: real tokens, and the full T² square per packed row."""
    cfg = {"hidden_size": 8, "intermediate_size": 16, "num_attention_heads": 2,
           "num_key_value_heads": 1, "head_dim": 4, "num_hidden_layers": 3}  # fmt: skip
    lengths = [10, 9, 3, 2]
    per_token = 2 * (8 * 8 + 2 * 8 * 4 + 8 * 8 + 3 * 8 * 16)
    plans = {"padded": [[0, 1], [2, 3]], "mask": [[0, 1, 2, 3]], "segments": [[0, 1, 2, 3]]}
    got = flops.plan_flops(cfg, True, lengths, plans)
    assert got["padded"].linear == 3 * per_token * (2 * 10 + 2 * 3)
    assert got["mask"].linear == got["segments"].linear == 3 * per_token * 24
    unit = 4 * 2 * 4 * 3  # 4 * heads * head_dim, times layers
    assert got["padded"].attention == unit * (2 * 10 * 11 / 2 + 2 * 3 * 4 / 2)
    assert got["mask"].attention == unit * 24 * 24  # no kernel skips a masked block
    assert got["segments"].attention == unit * sum(n * (n + 1) / 2 for n in lengths)
