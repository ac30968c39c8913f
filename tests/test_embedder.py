"""Embedder.encode contracts: shapes, order, prompts, Matryoshka, truncation, errors.

Run: pytest tests/test_embedder.py
"""

import json
import warnings

import mlx.core as mx
import numpy as np
import pytest

import mlx_jina
from builders.reference import reference_embeddings, reference_token_ids

MIXED = [
    "short",
    "a somewhat longer sentence about the planet Mars and its two small moons",
    "x",
    "Les documents longs et les requêtes courtes partagent un lot. " * 5,
    "medium length text here",
]


def test_str_gives_1d_list_gives_2d(qwen):
    """A string is one vector; a list is a matrix in input order; rows have unit norm."""
    one = qwen.encode("hello")
    many = qwen.encode(["hello", "world"])
    assert one.shape == (qwen.dim,) and many.shape == (2, qwen.dim)
    assert one.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(many, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(one, many[0], atol=1e-6)


@pytest.mark.parametrize("truncate_dim", [None, 32])
def test_empty_list(qwen, truncate_dim):
    """[] gives an empty (0, dim) matrix, not an error."""
    out = qwen.encode([], truncate_dim=truncate_dim)
    assert out.shape == (0, truncate_dim or qwen.dim) and out.dtype == np.float32


@pytest.mark.parametrize("name", ["qwen", "nano"])
def test_batch_invariance(name, request):
    """A text alone equals the same text inside batches of mixed lengths."""
    model = request.getfixturevalue(name)
    together = model.encode(MIXED)
    alone = np.stack([model.encode(t) for t in MIXED])
    small_batches = model.encode(MIXED, batch_size=2, max_batch_tokens=64)
    for other in (alone, small_batches):
        assert np.min(np.sum(together * other, axis=1)) >= 0.99999


@pytest.mark.reference
def test_order_is_restored(nano, tiny_eurobert_base):
    """Length sorting inside encode doesn't leak into the output order."""
    ours = nano.encode(MIXED, batch_size=2)
    ref = reference_embeddings(tiny_eurobert_base, MIXED, task="retrieval", prompt="Document: ")
    np.testing.assert_array_less(0.99999, np.sum(ours * ref, axis=1))


@pytest.mark.parametrize("k", [32, 48])
def test_matryoshka_cut_then_normalize(qwen, k):
    """truncate_dim=k equals normalize(full[:k])."""
    full = qwen.encode(MIXED, normalize_embeddings=False)
    cut = full[:, :k] / np.linalg.norm(full[:, :k], axis=1, keepdims=True)
    np.testing.assert_allclose(qwen.encode(MIXED, truncate_dim=k), cut, atol=1e-6)


@pytest.mark.parametrize("bad", [31, 0, 65, "64", 40.0])
def test_truncate_dim_out_of_range(qwen, bad):
    with pytest.raises(ValueError, match=r"truncate_dim=.*from 32 to the embedding size 64"):
        qwen.encode("x", truncate_dim=bad)


def test_normalize_off_keeps_raw_pooled_vector(qwen):
    """normalize_embeddings=False returns the pooled state: same direction, norm not 1."""
    raw = qwen.encode(MIXED, normalize_embeddings=False)
    unit = qwen.encode(MIXED)
    norms = np.linalg.norm(raw, axis=1)
    assert np.all(np.abs(norms - 1) > 1e-3)
    np.testing.assert_allclose(raw / norms[:, None], unit, atol=1e-6)


def test_prompts_for_retrieval_and_symmetric_tasks(tiny_qwen_base):
    """Retrieval has Query:/Document:; the other adapters use Document: for every name."""
    retrieval = mlx_jina.load(tiny_qwen_base, task="retrieval")
    assert retrieval.prompts == {"query": "Query: ", "document": "Document: "}
    assert retrieval.default_prompt_name == "document"
    for task in ("text-matching", "classification", "clustering"):
        model = mlx_jina.load(tiny_qwen_base, task=task)
        assert model.prompts == {"query": "Document: ", "document": "Document: "}
        np.testing.assert_array_equal(model.encode_query(MIXED), model.encode_document(MIXED))


@pytest.mark.reference
def test_prompt_choices(qwen, tiny_qwen_base):
    """Default is document; encode_query uses Query:; prompt= is literal and wins; "" is none."""
    ref = {
        p: reference_embeddings(tiny_qwen_base, MIXED, task="retrieval", prompt=p)
        for p in ("Query: ", "Document: ", "", "search: ")
    }
    cases = [
        (qwen.encode(MIXED), "Document: "),
        (qwen.encode_document(MIXED), "Document: "),
        (qwen.encode_query(MIXED), "Query: "),
        (qwen.encode(MIXED, prompt=""), ""),
        (qwen.encode(MIXED, prompt="search: "), "search: "),
    ]
    for ours, prompt in cases:
        assert np.min(np.sum(ours * ref[prompt], axis=1)) >= 0.99999, prompt
    with pytest.warns(UserWarning, match="using prompt"):
        both = qwen.encode(MIXED, prompt_name="query", prompt="")
    np.testing.assert_allclose(both, cases[3][0], atol=1e-6)


def test_unknown_prompt_name_lists_valid_names(qwen):
    with pytest.raises(ValueError, match="Unknown prompt_name 'passage'. Valid names: document, query"):
        qwen.encode("x", prompt_name="passage")


@pytest.mark.reference
def test_truncation_warns_with_count_and_keeps_specials(qwen, tiny_qwen_base):
    """Over-long inputs are cut to max_length with a counted warning; EOS stays last."""
    texts = ["word " * 50, "short", "another " * 40]
    with pytest.warns(UserWarning, match=r"2 of 3 inputs were longer than max_length=16"):
        ours = qwen.encode(texts, max_length=16)
    ids = qwen.tokenize(["Document: " + t for t in texts], max_length=16)
    expected = reference_token_ids(tiny_qwen_base / "tokenizer.json", texts, prompt="Document: ", max_length=16)
    assert ids == expected and all(len(row) <= 16 for row in ids)
    assert {row[-1] for row in ids} == {2}  # the tiny tokenizer's <|eos|> survives the cut
    ref = reference_embeddings(tiny_qwen_base, texts, task="retrieval", prompt="Document: ", max_length=16)
    assert np.min(np.sum(ours * ref, axis=1)) >= 0.99999


def test_no_warning_when_nothing_is_cut(qwen):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        qwen.encode(["short"], max_length=16)


def test_truncate_false_raises(qwen):
    with pytest.raises(ValueError, match=r"1 of 2 inputs are longer than max_length=8 .*input 0"):
        qwen.encode(["word " * 20, "hi"], max_length=8, truncate=False)


@pytest.mark.parametrize("bad", [0, -1, 10**6, 2.5])
def test_max_length_bounds(qwen, bad):
    with pytest.raises(ValueError, match="max_length=.*model's context"):
        qwen.encode("x", max_length=bad)


@pytest.mark.parametrize(
    "bad, words",
    [
        (42, "sentences must be a string or a list of strings, got int"),
        (["ok", None], r"sentences\[1\] is NoneType, not a string"),
        ({"a": 1}, "got dict"),
    ],
)
def test_bad_input_types(qwen, bad, words):
    """Wrong types raise an error that is both a TypeError and a ValueError."""
    with pytest.raises(ValueError, match=words):
        qwen.encode(bad)
    with pytest.raises(TypeError):
        qwen.encode(bad)


def test_empty_text_without_prompt_or_specials(qwen_base_odd):
    """A text with zero tokens can't be pooled: a clear error, never NaN. encode refuses
    an empty text before tokenizing (the text rule; it used to embed the prompt alone);
    tokenize, which the server also uses, still refuses a row with no tokens."""
    model = mlx_jina.load(qwen_base_odd, task="retrieval")  # tokenizer adds no specials
    for prompt in ("", None):
        with pytest.raises(ValueError, match=r"sentences\[1\] is empty"):
            model.encode(["fine", ""], prompt=prompt)
    with pytest.raises(ValueError, match="Input 1 has no tokens"):
        model.tokenize(["fine", ""])


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"batch_size": 0}, "batch_size=0"),
        ({"max_batch_tokens": 0}, "max_batch_tokens=0"),
        ({"precision": "float64"}, "precision='float64'"),
    ],
)
def test_bad_options(qwen, kwargs, words):
    with pytest.raises(ValueError, match=words):
        qwen.encode("x", **kwargs)


def test_convert_to_numpy_false_gives_mx_array(qwen):
    out = qwen.encode(["a", "b"], convert_to_numpy=False)
    assert isinstance(out, mx.array) and out.shape == (2, qwen.dim)
    np.testing.assert_allclose(np.array(out), qwen.encode(["a", "b"]), atol=1e-6)


def test_similarity_is_cosine(qwen):
    q = qwen.encode_query(["red planet"])
    d = qwen.encode_document(MIXED)
    np.testing.assert_allclose(qwen.similarity(q, d), q @ d.T, atol=1e-6)
    raw = np.array([[3.0, 4.0]]), np.array([[4.0, 3.0], [0.0, 2.0]])
    np.testing.assert_allclose(qwen.similarity(*raw), [[0.96, 0.8]], atol=1e-6)


def test_properties(qwen, nano, tiny_qwen_base):
    context = json.loads((tiny_qwen_base / "config.json").read_text())["max_position_embeddings"]
    assert (qwen.dim, qwen.max_length, qwen.task) == (64, context, "retrieval")
    assert len(qwen.tasks) == 4 and nano.dim == 64
    assert "retrieval" in repr(qwen)


def test_non_finite_output_raises(tiny_qwen_merged):
    """float16 overflow gives a FloatingPointError that names the fix, not NaN vectors."""
    model = mlx_jina.load(tiny_qwen_merged, dtype="float16")
    down = model.model.layers[-1].mlp.down_proj
    down.weight = mx.full(down.weight.shape, 6e4, mx.float16)
    with pytest.raises(FloatingPointError, match="dtype='bfloat16'"):
        model.encode(["overflow please"], normalize_embeddings=False)


def test_token_id_outside_table(tiny_qwen_merged):
    """A tokenizer bigger than the embedding table is caught before indexing."""
    model = mlx_jina.load(tiny_qwen_merged)
    model.model.args.vocab_size = 5
    with pytest.raises(ValueError, match="outside the model's 5-row embedding table"):
        model.encode("hello")


def test_process_exits_cleanly_after_encoding_in_a_thread(tiny_qwen_base):
    """Loading and encoding in a worker thread (as the server does) or a thread pool made
    processes abort at exit with "terminate called without an active exception" (an MLX
    teardown race): about half at first; 3 of 30 with only a synchronize at exit, 7 of 30
    once MLX multiplied with OpenBLAS. Each thread's streams are now cleared as it ends
    (mlx_jina/thread_streams.py): 0 of 100 measured. Twelve runs in a row must exit with 0."""
    import subprocess
    import sys

    one_thread = (
        "import sys, threading, mlx_jina\n"
        "def work():\n"
        "    mlx_jina.load(sys.argv[1], task='retrieval').encode(['hello world'] * 4)\n"
        "t = threading.Thread(target=work); t.start(); t.join()\n"
    )
    pool = (
        "import sys, mlx_jina\nfrom concurrent.futures import ThreadPoolExecutor\n"
        "m = mlx_jina.load(sys.argv[1], task='retrieval')\n"
        "with ThreadPoolExecutor(3) as ex:\n"
        "    list(ex.map(lambda t: m.encode([t] * 3), ['a b', 'c d', 'e f', 'g h']))\n"
    )
    for script in [one_thread] * 8 + [pool] * 4:
        proc = subprocess.run(
            [sys.executable, "-c", script, str(tiny_qwen_base)],
            capture_output=True, text=True, timeout=60,
        )
        assert proc.returncode == 0, proc.stderr[-300:]
