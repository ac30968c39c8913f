"""The last layer at the pooled tokens only (`Model.embed`, the engine's `embed_batch`)
against the full computation (`Model.pool` of every token's final states), which
tests/test_parity.py ties to transformers. Run: pytest tests/test_pooled_last_layer.py"""

import mlx.core as mx
import numpy as np
import pytest

from mlx_jina.models import BACKBONES
from mlx_jina.models.attention import scaled_dot_product_attention
from mlx_jina.models.base import ModelArgs
from mlx_jina.models.decoder import Model

ARGS = dict(
    hidden_size=64,
    num_hidden_layers=3,
    intermediate_size=160,
    num_attention_heads=4,
    num_key_value_heads=2,  # grouped queries, as v5-small
    rms_norm_eps=1e-6,
    vocab_size=97,
    rope_theta=10000.0,
)
ROWS = [list(range(3, 22)), [5, 9, 2], list(range(40, 51)), [7]]  # padded on the right


def model(arch: str, dtype) -> Model:
    mx.random.seed(1)
    m = Model(ModelArgs.from_dict(ARGS), BACKBONES[arch])
    m.set_dtype(dtype)
    mx.eval(m.parameters())
    return m


def padded(rows):
    width = max(map(len, rows))
    ids = mx.array([row + [0] * (width - len(row)) for row in rows])
    return ids, np.array([len(row) for row in rows], dtype=np.int32)


def both(m: Model, rows) -> tuple[np.ndarray, np.ndarray]:
    ids, lengths = padded(rows)
    full = m.pool(m(ids, lengths), mx.array(lengths)).astype(mx.float32)
    pooled = m.embed(ids, lengths).astype(mx.float32)
    return np.array(full), np.array(pooled)


def assert_same(full: np.ndarray, pooled: np.ndarray, tol: float) -> None:
    assert pooled.shape == full.shape
    cos = (full * pooled).sum(1) / np.linalg.norm(full, axis=1) / np.linalg.norm(pooled, axis=1)
    assert cos.min() >= 0.9999999, cos
    assert np.abs(full - pooled).max() <= tol * np.abs(full).max()


@pytest.mark.parametrize("arch", ["qwen3", "eurobert"])
@pytest.mark.parametrize("dtype, tol", [(mx.float32, 1e-6), (mx.bfloat16, 1e-2)])
def test_pooled_equals_full_batched_and_alone(arch, dtype, tol):
    """Causal (the pooled query sees every earlier real token) and bidirectional (every
    real token): padded batches, each row alone, and an unpadded batch."""
    m = model(arch, dtype)
    assert_same(*both(m, ROWS), tol)
    for row in ROWS:
        assert_same(*both(m, [row]), tol)
    assert_same(*both(m, [ROWS[0], ROWS[0][::-1]]), tol)  # no padding: no mask at all


@pytest.mark.parametrize("arch", ["qwen3", "eurobert"])
def test_padding_never_leaks_into_the_pooled_token(arch):
    """What sits in the padding changes nothing: the key mask covers it."""
    m = model(arch, mx.float32)
    ids, lengths = padded(ROWS)
    noisy = np.array(ids)
    for r, n in enumerate(lengths):
        noisy[r, n:] = 50 + r
    a = np.array(m.embed(ids, lengths))
    b = np.array(m.embed(mx.array(noisy), lengths))
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_rope_offset_per_row_equals_offset_per_call():
    """The pooled query's RoPE: one offset per row equals rotating each row alone."""
    q = mx.random.normal((3, 4, 1, 16))
    positions = mx.array([7, 0, 130])
    out = mx.fast.rope(q, 16, traditional=False, base=1e4, scale=1.0, offset=positions)
    for r, p in enumerate([7, 0, 130]):
        alone = mx.fast.rope(q[r : r + 1], 16, traditional=False, base=1e4, scale=1.0, offset=p)
        np.testing.assert_allclose(np.array(out[r : r + 1]), np.array(alone), atol=1e-6)


@pytest.mark.parametrize("block_size", [None, 1, 4])
def test_single_query_attention_with_key_mask(block_size):
    """attention.py with one query per row and a (B, 1, 1, S) key mask, against numpy
    softmax over the allowed keys (grouped K/V)."""
    B, H, Hkv, S, D = 2, 4, 2, 9, 8
    q, k, v = (mx.random.normal(s) for s in [(B, H, 1, D), (B, Hkv, S, D), (B, Hkv, S, D)])
    lengths = np.array([9, 5])
    mask = mx.array(np.arange(S)[None] < lengths[:, None])[:, None, None, :]
    out = np.array(
        scaled_dot_product_attention(q, k, v, scale=D**-0.5, mask=mask, block_size=block_size)
    )
    qn, kn, vn = (np.array(t) for t in (q, k, v))
    kn, vn = np.repeat(kn, H // Hkv, axis=1), np.repeat(vn, H // Hkv, axis=1)
    for b, n in enumerate(lengths):
        s = qn[b] @ kn[b, :, :n].transpose(0, 2, 1) * D**-0.5
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        np.testing.assert_allclose(out[b], p @ vn[b, :, :n], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["qwen", "nano"])
def test_engine_vectors_and_token_embeddings(name, request):
    """The engine pools with the pooled last layer; token embeddings still get the full
    last layer (every token), whose last row is the same vector."""
    embedder = request.getfixturevalue(name)
    rows = embedder.tokenize(["a short one", "a somewhat longer text, with more words in it"])
    vectors = np.array(embedder.engine.embed_batch(rows))
    tokens = embedder.engine.token_batch(rows)
    assert [t.shape[0] for t in tokens] == [len(r) for r in rows]
    for vec, tok in zip(vectors, tokens):
        assert_same(np.array(tok[-1])[None], vec[None], 1e-5)
