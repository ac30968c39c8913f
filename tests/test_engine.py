"""The encoding engine: batch planning, query-block attention, memory, streaming.

Run: pytest tests/test_engine.py
"""

import io
import random

import mlx.core as mx
import numpy as np
import pytest

import mlx_jina
from builders.reference import reference_embeddings
from mlx_jina.models import attention
from mlx_jina.encoding.batching import plan_batches

WORDS = "alpha beta gamma delta planet mars red river fox dog Paris capital".split()


def random_texts(rng: random.Random, n: int, max_words: int) -> list[str]:
    return [" ".join(rng.choices(WORDS, k=rng.randint(1, max_words))) for _ in range(n)]


# ---------------------------------------------------------------------------
# batch planning


def mixed_lengths(seed: int = 0) -> list[int]:
    """The benchmark's mix: short queries, 100-500-token passages, long documents."""
    rng = random.Random(seed)
    lengths = [rng.randint(8, 16) for _ in range(64)]
    lengths += [rng.randint(100, 500) for _ in range(48)]
    lengths += [2048, 4096, 4096]
    rng.shuffle(lengths)
    return lengths


@pytest.mark.parametrize(
    "batch_size,budget", [(32, 8192), (4, 1024), (1, 8192), (32, 100)]
)
def test_plan_covers_every_input_once_within_limits(batch_size, budget):
    """Each input lands in exactly one batch; batches respect batch_size, the token
    budget (an over-long input alone excepted) and the padding cap."""
    lengths = mixed_lengths()
    plan = plan_batches(lengths, batch_size, budget)
    assert sorted(plan.order) == list(range(len(lengths)))
    for batch in plan.batches:
        width = lengths[batch[0]]
        assert width == max(lengths[i] for i in batch)
        assert len(batch) <= batch_size
        assert len(batch) == 1 or len(batch) * width <= budget
        assert sum(width - lengths[i] for i in batch) <= 32
    assert plan.real_tokens == sum(lengths)
    assert plan.padded_tokens == sum(len(b) * lengths[b[0]] for b in plan.batches)


def test_plan_padding_efficiency_on_mixed_lengths():
    """Over 97% of computed tokens are real on the mixed corpus. Filling batches by
    the token budget alone (the previous planner) padded passages to a document's
    length here."""
    plan = plan_batches(mixed_lengths(), 32, 8192)
    assert plan.padding_efficiency >= 0.97
    # Equal lengths pack into full batches with no padding at all.
    same = plan_batches([100] * 64, 32, 8192)
    assert [len(b) for b in same.batches] == [32, 32] and same.padding_efficiency == 1.0


# ---------------------------------------------------------------------------
# order, bucketing and the two attention masks, against the torch reference


@pytest.mark.reference
@pytest.mark.parametrize(
    "name,base", [("qwen", "tiny_qwen_base"), ("nano", "tiny_eurobert_base")]
)
def test_order_restored_after_sorting(name, base, request):
    """Rows come back in input order although batches run longest first."""
    model = request.getfixturevalue(name)
    texts = random_texts(random.Random(1), 23, 40)
    ours = model.encode(texts, batch_size=4)
    plan = plan_batches(
        [len(t) for t in model.tokenize(["Document: " + t for t in texts])], 4, 8192
    )
    assert plan.order != sorted(plan.order)  # the batches really were reordered
    ref = reference_embeddings(
        request.getfixturevalue(base), texts, task="retrieval", prompt="Document: "
    )
    assert np.min(np.sum(ours * ref, axis=1)) >= 0.99999


@pytest.mark.parametrize("name", ["qwen", "nano"])
def test_outputs_identical_with_and_without_bucketing(name, request):
    """Length-bucketed batches give the same vectors as plain input-order batches padded
    to their longest row, and as each text alone (qwen3: no mask, right padding;
    eurobert: boolean padding mask, or none when a batch has no padding)."""
    model = request.getfixturevalue(name)
    texts = random_texts(random.Random(2), 17, 30)
    bucketed = model.encode(texts, batch_size=5, normalize_embeddings=False)
    ids = model.tokenize(["Document: " + t for t in texts])
    plain = np.concatenate(
        [np.array(model.engine.embed_batch(ids[i : i + 5])) for i in range(0, len(ids), 5)]
    )
    alone = np.stack([model.encode(t, normalize_embeddings=False) for t in texts])
    np.testing.assert_allclose(bucketed, plain, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(bucketed, alone, atol=1e-5, rtol=1e-5)


def test_last_stats_report_padding_efficiency(qwen):
    """last_stats counts the call's texts, batches, real and padded tokens."""
    texts = random_texts(random.Random(3), 9, 25)
    qwen.encode(texts, batch_size=3)
    lengths = [len(t) for t in qwen.tokenize(["Document: " + t for t in texts])]
    plan = plan_batches(lengths, 3, 8192)
    stats = qwen.last_stats
    assert (stats.texts, stats.batches) == (9, len(plan.batches))
    assert (stats.real_tokens, stats.padded_tokens) == (
        sum(lengths),
        plan.padded_tokens,
    )
    assert stats.padding_efficiency == pytest.approx(sum(lengths) / plan.padded_tokens)
    assert stats.seconds > 0 and stats.tokens_per_second > 0


# ---------------------------------------------------------------------------
# query-block attention


def full_attention(q, k, v, scale, mask):
    """Plain float64 numpy attention with K/V heads repeated by hand."""
    q, k, v = (np.array(t, dtype=np.float64) for t in (q, k, v))
    rep = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
    s = scale * q @ k.transpose(0, 1, 3, 2)
    if isinstance(mask, str):
        L, S = s.shape[-2:]
        s = np.where(np.tril(np.ones((L, S), bool), k=S - L), s, -np.inf)
    elif mask is not None:
        s = np.where(np.array(mask), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True)) @ v


@pytest.mark.parametrize("block", [1, 7, 32, 100])
@pytest.mark.parametrize("kind", ["causal", "keys", "per-query", "none"])
def test_query_block_attention_equals_full(kind, block):
    """Attending in query blocks (any block size, GQA 4:2) equals full attention to 1e-5
    in float32, for the causal mask, a key padding mask and a per-query mask."""
    rng = np.random.default_rng(0)
    B, H, Hkv, L, D = 2, 4, 2, 100, 16
    q, k, v = (
        mx.array(rng.standard_normal((B, h, L, D)), mx.float32) for h in (H, Hkv, Hkv)
    )
    mask = {
        "causal": "causal",
        "keys": mx.array(
            np.arange(L)[None, None, None] < np.array([L, 61])[:, None, None, None]
        ),
        "per-query": mx.array(rng.random((B, 1, L, L)) < 0.7)
        | mx.eye(L, dtype=mx.bool_),
        "none": None,
    }[kind]
    out = attention.scaled_dot_product_attention(
        q, k, v, scale=D**-0.5, mask=mask, block_size=block
    )
    np.testing.assert_allclose(
        np.array(out), full_attention(q, k, v, D**-0.5, mask), atol=1e-5
    )


@pytest.mark.parametrize("name", ["qwen", "nano"])
def test_blocked_model_matches_unblocked(name, request, monkeypatch):
    """A whole model run in 32-query blocks (forced by a tiny score budget) gives the
    vectors of the unblocked run, and its attention scores no longer dominate memory.
    Without `mx.depends` between blocks MLX would build many blocks' scores at once."""
    model = request.getfixturevalue(name)
    rows = [[(7 * i) % 300 + 4 for i in range(1024)], [5] * 700]
    mx.eval(model.engine.embed_batch(rows))  # warm up

    def run() -> tuple[np.ndarray, int]:
        mx.clear_cache()
        mx.reset_peak_memory()
        base = mx.get_active_memory()
        out = model.engine.embed_batch(rows)
        mx.eval(out)
        return np.array(out), mx.get_peak_memory() - base

    monkeypatch.setattr(attention, "CAUSAL_BLOCK", 1 << 30)  # one block: MLX's fallback
    full, full_peak = run()
    monkeypatch.setattr(attention, "SCORE_BUDGET", 4096)
    blocked, blocked_peak = run()
    np.testing.assert_allclose(blocked, full, atol=1e-5, rtol=1e-5)
    scores = 2 * 4 * 1024 * 1024 * 4  # one full float32 score matrix: 2 rows, 4 heads
    assert full_peak > scores > 2 * blocked_peak


def test_block_size_follows_the_budget():
    """On the CPU: no blocks while the scores fit, then blocks that keep them under the
    budget; causal blocks are capped so later blocks can skip keys."""
    assert attention.query_block_size(1, 4, 1000, 1000, causal=False) == 1000
    rows = attention.query_block_size(1, 16, 32768, 32768, causal=False)
    assert rows * 16 * 32768 <= attention.SCORE_BUDGET
    assert (
        attention.query_block_size(1, 4, 4096, 4096, causal=True)
        == attention.CAUSAL_BLOCK
    )


# ---------------------------------------------------------------------------
# memory, streaming, progress


def test_memory_stays_flat_across_1000_calls(qwen):
    """1,000 encode calls of varied shapes leak nothing, and the buffer cache stays
    under the limit set with set_cache_limit."""
    rng = random.Random(4)
    calls = [random_texts(rng, rng.randint(1, 4), 12) for _ in range(1000)]
    limit = 4 * 2**20
    previous = qwen.set_cache_limit(limit)
    try:
        for texts in calls[:50]:
            qwen.encode(texts)
        active = mx.get_active_memory()
        for i, texts in enumerate(calls[50:]):
            qwen.encode(texts)
            if i % 100 == 0:
                assert mx.get_cache_memory() <= limit
        assert mx.get_active_memory() <= active + 64 * 1024
        assert mx.get_cache_memory() <= limit
    finally:
        qwen.set_cache_limit(previous)
    with pytest.raises(ValueError, match="limit_bytes"):
        qwen.set_cache_limit(-1)


def test_large_job_clears_the_cache(qwen, monkeypatch):
    """After a job over LARGE_JOB_TOKENS the cached buffers are given back."""
    from mlx_jina.encoding import engine

    texts = random_texts(random.Random(5), 20, 30)
    qwen.encode(texts)
    kept = mx.get_cache_memory()
    monkeypatch.setattr(engine, "LARGE_JOB_TOKENS", 100)
    qwen.encode(texts)
    # What is left is the few small buffers freed after the forward passes.
    assert mx.get_cache_memory() < min(kept / 10, 64 * 1024)


@pytest.mark.parametrize("chunk_size", [1, 4, 100])
def test_generator_yields_the_vectors_of_encode(nano, chunk_size):
    """encode_iter over a one-pass generator yields encode's vectors, chunk by chunk,
    in input order."""
    texts = random_texts(random.Random(6), 10, 30)
    chunks = list(
        nano.encode_iter((t for t in texts), chunk_size=chunk_size, truncate_dim=32)
    )
    assert [len(c) for c in chunks] == [
        len(texts[i : i + chunk_size]) for i in range(0, 10, chunk_size)
    ]
    whole = nano.encode(texts, truncate_dim=32)
    np.testing.assert_allclose(np.concatenate(chunks), whole, atol=1e-6)


def test_generator_rejects_a_string_and_bad_chunk_size(nano):
    """A lone string would be iterated character by character; refuse it."""
    with pytest.raises(ValueError, match="not a str"):
        next(nano.encode_iter("hello"))
    with pytest.raises(ValueError, match="chunk_size"):
        next(nano.encode_iter(["hello"], chunk_size=0))


def test_progress_bar_on_request_and_off_by_default(qwen, monkeypatch):
    """show_progress_bar=True draws a tqdm bar on stderr counting texts; None draws
    nothing when stderr is not a terminal."""
    texts = random_texts(random.Random(7), 6, 10)
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    qwen.encode(texts, batch_size=2)
    assert err.getvalue() == ""
    qwen.encode(texts, batch_size=2, show_progress_bar=True)
    assert "Encoding" in err.getvalue() and "6/6" in err.getvalue()
    err.truncate(0)
    list(qwen.encode_iter(texts, chunk_size=4, show_progress_bar=True))
    assert "6/6" in err.getvalue()
