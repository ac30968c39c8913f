"""sentence-transformers habits on the Embedder: load(truncate_dim=), convert_to_tensor,
output_value="token_embeddings", device=, the ST properties and similarity functions,
ST keywords we refuse with a reason, Jina API task names, and the one text rule.

References are independent: the torch + transformers + peft model (builders/reference.py)
for vectors and hidden states, numpy for similarity functions, and plain `encode` calls
for the defaults the habits stand for.

Run: pytest tests/test_st_habits.py
"""

import mlx.core as mx
import numpy as np
import pytest
from builders.reference import (
    _reference_model,
    reference_embeddings,
    reference_token_ids,
)

import mlx_jina
from mlx_jina.tasks import API_TASKS, MIN_DIM, TASKS

TEXTS = [
    "short",
    "a somewhat longer sentence about the planet Mars and its two small moons",
    "x",
    "medium length text here",
]
# The Jina API names that pick a prompt, found from the table (not spelled here).
QUERY_TASK = next(n for n, (a, p) in API_TASKS.items() if n not in TASKS and p == "query")
PASSAGE_TASK = next(n for n, (a, p) in API_TASKS.items() if n not in TASKS and p == "document")


def cosines(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


# --- load(truncate_dim=) -----------------------------------------------------------


@pytest.fixture(scope="module")
def qwen48(tiny_qwen_base):
    return mlx_jina.load(tiny_qwen_base, task="retrieval", truncate_dim=48)


@pytest.mark.reference
def test_load_truncate_dim_is_every_calls_default(qwen48, qwen, tiny_qwen_base):
    """load(truncate_dim=48) cuts every encode path to 48, as the reference does."""
    ref_d = reference_embeddings(
        tiny_qwen_base, TEXTS, task="retrieval", prompt="Document: ", truncate_dim=48
    )
    ref_q = reference_embeddings(
        tiny_qwen_base, TEXTS, task="retrieval", prompt="Query: ", truncate_dim=48
    )
    assert qwen48.truncate_dim == 48 and qwen48.get_sentence_embedding_dimension() == 48
    outs = {
        "encode": (qwen48.encode(TEXTS), ref_d),
        "encode_document": (qwen48.encode_document(TEXTS), ref_d),
        "encode_query": (qwen48.encode_query(TEXTS), ref_q),
        "encode_iter": (np.concatenate(list(qwen48.encode_iter(TEXTS, chunk_size=3))), ref_d),
        "encode_ids": (
            qwen48.encode_ids(qwen48.tokenize(["Document: " + t for t in TEXTS])),
            ref_d,
        ),
    }
    for name, (ours, ref) in outs.items():
        assert ours.shape == (len(TEXTS), 48), name
        assert cosines(ours, ref).min() >= 0.99999, name
    assert qwen48.encode("one").shape == (48,)
    # the model's own cut, compared with the full model's vectors cut by hand
    full = qwen.encode(TEXTS, normalize_embeddings=False)[:, :48]
    np.testing.assert_allclose(qwen48.encode(TEXTS, normalize_embeddings=False), full, atol=1e-6)


def test_per_call_truncate_dim_overrides_the_default(qwen48, qwen):
    np.testing.assert_allclose(qwen48.encode(TEXTS, truncate_dim=64), qwen.encode(TEXTS), atol=1e-6)
    np.testing.assert_allclose(
        qwen48.encode(TEXTS, truncate_dim=32), qwen.encode(TEXTS, truncate_dim=32), atol=1e-6
    )


def test_truncate_dim_attribute_can_be_set_and_is_checked(tiny_qwen_base, qwen):
    model = mlx_jina.load(tiny_qwen_base, task="retrieval")
    assert model.truncate_dim is None and model.get_sentence_embedding_dimension() == 64
    model.truncate_dim = 32
    np.testing.assert_allclose(model.encode(TEXTS), qwen.encode(TEXTS, truncate_dim=32), atol=1e-6)
    with pytest.raises(ValueError, match=r"truncate_dim=65; use an integer from 32"):
        model.truncate_dim = 65
    assert model.truncate_dim == 32


@pytest.mark.parametrize("bad", [MIN_DIM - 1, 65, "64", 48.0, True])
def test_load_refuses_a_bad_truncate_dim(tiny_qwen_base, bad):
    with pytest.raises(ValueError, match=r"truncate_dim=.*use an integer from 32"):
        mlx_jina.load(tiny_qwen_base, task="retrieval", truncate_dim=bad)


# --- convert_to_tensor / convert_to_numpy ------------------------------------------


def test_convert_to_tensor_wins(qwen):
    want = qwen.encode(TEXTS)
    for kwargs in (
        {"convert_to_tensor": True},
        {"convert_to_tensor": True, "convert_to_numpy": True},
    ):
        out = qwen.encode(TEXTS, **kwargs)
        assert isinstance(out, mx.array) and out.shape == want.shape, kwargs
        np.testing.assert_allclose(np.array(out), want, atol=1e-6)
    one = qwen.encode("short", convert_to_tensor=True)
    assert isinstance(one, mx.array) and one.shape == (64,)
    assert isinstance(qwen.encode(TEXTS, convert_to_tensor=False), np.ndarray)


# --- output_value="token_embeddings" ------------------------------------------------


@pytest.mark.reference
@pytest.mark.parametrize(
    "name, folder", [("qwen", "tiny_qwen_base"), ("nano", "tiny_eurobert_base")]
)
def test_token_embeddings_are_the_final_hidden_states(name, folder, request):
    """Each text's rows equal the torch reference's last_hidden_state for that text
    alone; no padding rows; batched equals alone; the pooled (last) row points where
    the un-normalized sentence embedding does."""
    import torch

    model, folder = request.getfixturevalue(name), request.getfixturevalue(folder)
    tokens = model.encode(TEXTS, output_value="token_embeddings", batch_size=3)
    ids = reference_token_ids(folder / "tokenizer.json", TEXTS, prompt="Document: ")
    ref_model = _reference_model(folder, "retrieval")
    raw = model.encode(TEXTS, normalize_embeddings=False)
    assert isinstance(tokens, list) and len(tokens) == len(TEXTS)
    for i, (rows, row_ids) in enumerate(zip(tokens, ids)):
        assert isinstance(rows, np.ndarray) and rows.shape == (len(row_ids), model.dim), i
        with torch.no_grad():
            ref = ref_model(input_ids=torch.tensor([row_ids])).last_hidden_state[0].numpy()
        assert cosines(rows, ref).min() >= 0.99999, i
        alone = model.encode(TEXTS[i], output_value="token_embeddings")
        np.testing.assert_allclose(alone, rows, atol=1e-5)
        assert cosines(rows[-1], raw[i]) >= 0.99999, i  # last-token pooling


def test_token_embeddings_follow_prompt_and_tensor_options(qwen):
    query = qwen.encode_query(TEXTS, output_value="token_embeddings", convert_to_tensor=True)
    assert all(isinstance(rows, mx.array) for rows in query)
    pooled = qwen.encode_query(TEXTS, normalize_embeddings=False)
    assert min(cosines(np.array(rows[-1]), p) for rows, p in zip(query, pooled)) >= 0.99999
    assert qwen.encode([], output_value="token_embeddings") == []
    with pytest.raises(ValueError, match="precision='int8' applies to sentence embeddings"):
        qwen.encode(TEXTS, output_value="token_embeddings", precision="int8")


def test_output_value_none_and_unknown(qwen):
    with pytest.raises(TypeError, match="output_value=None .* not supported by mlx-jina because"):
        qwen.encode(TEXTS, output_value=None)
    with pytest.raises(ValueError, match="output_value='pooled'; use 'sentence_embedding' or"):
        qwen.encode(TEXTS, output_value="pooled")


# --- device= -----------------------------------------------------------------------


@pytest.mark.parametrize("device", [None, "cpu", "CPU", "cpu:0"])
def test_device_cpu_gives_the_same_vectors(qwen, device):
    np.testing.assert_allclose(qwen.encode(TEXTS, device=device), qwen.encode(TEXTS), atol=1e-6)


@pytest.mark.parametrize("device", ["gpu", "mps", "cuda", "cuda:0", "metal"])
def test_device_gpu_and_its_aliases(qwen, device):
    """The GPU where MLX has one; elsewhere a ValueError that names what is available."""
    if mx.is_available(mx.gpu):
        out = qwen.encode(TEXTS, device=device)
        assert cosines(out, qwen.encode(TEXTS, device="cpu")).min() >= 0.9999
    else:
        with pytest.raises(
            ValueError, match=rf"device={device!r}: this MLX build has no GPU. Available: cpu"
        ):
            qwen.encode(TEXTS, device=device)


@pytest.mark.parametrize("device", ["tpu", "cuda:1", "", 0])
def test_unknown_device(qwen, device):
    with pytest.raises(ValueError, match=r"device=.*use None, 'cpu' or 'gpu'"):
        qwen.encode(TEXTS, device=device)


# --- properties and similarity -------------------------------------------------------


def test_max_seq_length_is_the_default_max_length(tiny_qwen_base, qwen):
    model = mlx_jina.load(tiny_qwen_base, task="retrieval")
    assert model.max_seq_length == model.max_length
    texts = ["word " * 50, "short"]
    model.max_seq_length = 16
    with pytest.warns(UserWarning, match="max_length=16"):
        ours = model.encode(texts)
    with pytest.warns(UserWarning):
        want = qwen.encode(texts, max_length=16)
    np.testing.assert_allclose(ours, want, atol=1e-6)
    assert model.max_length == qwen.max_length  # the context is unchanged
    for bad in (0, model.max_length + 1, 2.5, "16"):
        with pytest.raises(ValueError, match=r"max_seq_length=.*from 1 to the model's context"):
            model.max_seq_length = bad


def _numpy_similarity(name, a, b):
    if name == "cosine":
        a = a / np.linalg.norm(a, axis=1, keepdims=True)
        b = b / np.linalg.norm(b, axis=1, keepdims=True)
        return a @ b.T
    if name == "dot":
        return a @ b.T
    p = 2 if name == "euclidean" else 1
    return np.array([[-(np.sum(np.abs(x - y) ** p) ** (1 / p)) for y in b] for x in a])


@pytest.mark.parametrize("name", ["cosine", "dot", "euclidean", "manhattan"])
def test_similarity_fn_name(tiny_qwen_base, name):
    model = mlx_jina.load(tiny_qwen_base, task="retrieval")
    assert model.similarity_fn_name == "cosine"
    model.similarity_fn_name = name
    a = model.encode(TEXTS, normalize_embeddings=False)
    b = model.encode_query(TEXTS[:3], normalize_embeddings=False)
    want = _numpy_similarity(name, a, b)
    np.testing.assert_allclose(model.similarity(a, b), want, rtol=1e-5, atol=1e-5)
    pairs = model.similarity_pairwise(a[:3], b)
    np.testing.assert_allclose(pairs, np.diag(want), rtol=1e-5, atol=1e-5)


def test_similarity_checks(qwen):
    with pytest.raises(ValueError, match="similarity_fn_name='jaccard'; choose one of cosine"):
        qwen.similarity_fn_name = "jaccard"
    with pytest.raises(ValueError, match=r"same shape, got \(4, 64\) and \(3, 64\)"):
        qwen.similarity_pairwise(qwen.encode(TEXTS), qwen.encode(TEXTS[:3]))


# --- ST keywords we refuse -----------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [{"pool": {}}, {"chunk_size": 8}, {"convert_to_sparse_tensor": True}, {"max_active_dims": 4}],
)
def test_st_keywords_we_cannot_honour(qwen, kwargs):
    name = next(iter(kwargs))
    with pytest.raises(
        TypeError, match=rf"sentence-transformers' {name}= is not supported by mlx-jina because"
    ):
        qwen.encode(TEXTS, **kwargs)
    with pytest.raises(TypeError, match=rf"{name}= is not supported"):
        qwen.encode_query(TEXTS, **kwargs)


def test_other_unknown_keywords_are_still_type_errors(qwen):
    with pytest.raises(
        TypeError, match=r"unexpected keyword argument 'normalise_embeddings'.*normalize_embeddings"
    ):
        qwen.encode(TEXTS, normalise_embeddings=True)
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'bogus'"):
        qwen.encode(TEXTS, bogus=1)


# --- Jina API task names -------------------------------------------------------------


@pytest.mark.reference
def test_api_task_names_pick_adapter_and_prompt(qwen, tiny_qwen_base):
    np.testing.assert_allclose(
        qwen.encode(TEXTS, task=QUERY_TASK), qwen.encode_query(TEXTS), atol=1e-6
    )
    np.testing.assert_allclose(
        qwen.encode(TEXTS, task=PASSAGE_TASK), qwen.encode_document(TEXTS), atol=1e-6
    )
    np.testing.assert_allclose(
        qwen.encode_query(TEXTS, task=QUERY_TASK), qwen.encode_query(TEXTS), atol=1e-6
    )
    ref = reference_embeddings(tiny_qwen_base, TEXTS, task="retrieval", prompt="Query: ")
    assert cosines(qwen.encode(TEXTS, task=QUERY_TASK), ref).min() >= 0.99999


def test_api_task_name_conflicting_with_a_prompt(qwen):
    with pytest.raises(ValueError, match=r"picks the 'query' prompt, not 'document'"):
        qwen.encode(TEXTS, task=QUERY_TASK, prompt_name="document")
    with pytest.raises(ValueError, match=r"picks the 'query' prompt, not 'document'"):
        qwen.encode_document(TEXTS, task=QUERY_TASK)
    with pytest.raises(ValueError, match=r"picks the 'document' prompt, and a literal prompt"):
        qwen.encode(TEXTS, task=PASSAGE_TASK, prompt="search: ")


def test_load_with_an_api_task_name(tiny_qwen_base, qwen):
    """load(task=<query name>) merges retrieval and makes the query prompt the default."""
    model = mlx_jina.load(tiny_qwen_base, task=QUERY_TASK)
    assert model.task == "retrieval" and model.default_prompt_name == "query"
    np.testing.assert_allclose(model.encode(TEXTS), qwen.encode_query(TEXTS), atol=1e-6)
    np.testing.assert_allclose(model.encode_document(TEXTS), qwen.encode_document(TEXTS), atol=1e-6)


def test_multitask_api_task_names(tiny_qwen_base, qwen):
    multi = mlx_jina.load(tiny_qwen_base, multitask=True)
    out = multi.encode(TEXTS, task=QUERY_TASK)
    assert cosines(out, qwen.encode_query(TEXTS)).min() >= 0.9999


@pytest.mark.parametrize("bad, error", [("search", ValueError), (3, TypeError)])
def test_unknown_task_lists_every_name(qwen, bad, error):
    with pytest.raises(error, match="task"):
        qwen.encode(TEXTS, task=bad)
    if isinstance(bad, str):
        with pytest.raises(
            ValueError, match=rf"Unknown task 'search'. Available tasks: .*{QUERY_TASK}"
        ):
            qwen.encode(TEXTS, task=bad)


def test_task_errors_name_every_interface(tiny_qwen_base):
    multi = mlx_jina.load(tiny_qwen_base, multitask=True)
    with pytest.raises(ValueError, match=r'task= .*CLI --task, server "task"'):
        multi.encode(TEXTS)


# --- the text rule -------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, words",
    [
        ("", r"sentences\[0\] is empty"),
        ("   ", r"sentences\[0\] holds only whitespace"),
        (["ok", ""], r"sentences\[1\] is empty"),
        (["ok", "\n\t"], r"sentences\[1\] holds only whitespace"),
        ("a\ud800b", r"sentences\[0\] is not valid text: character 1 is a lone surrogate"),
    ],
)
def test_the_text_rule(qwen, bad, words):
    """encode("") returned a vector of the prompt alone; "a\\ud800b" an opaque TypeError."""
    for call in (qwen.encode, qwen.encode_query, qwen.encode_document):
        with pytest.raises(ValueError, match=words):
            call(bad)
    with pytest.raises(ValueError, match=words):
        qwen.encode(bad, output_value="token_embeddings")


def test_text_rule_before_any_work(qwen):
    qwen.last_stats = None
    with pytest.raises(ValueError, match=r"sentences\[2\] is empty"):
        qwen.encode(["fine", "also fine", ""])
    assert qwen.last_stats is None


def test_encode_iter_counts_from_the_start_of_the_stream(qwen):
    stream = (t for t in ["a", "b", "c", "d", " "])
    chunks = qwen.encode_iter(stream, chunk_size=2)
    assert next(chunks).shape == (2, 64)
    with pytest.raises(ValueError, match=r"sentences\[4\] holds only whitespace"):
        list(chunks)
    with pytest.raises(TypeError, match=r"sentences\[3\] is NoneType"):
        list(qwen.encode_iter(["a", "b", "c", None], chunk_size=2))


def test_fingerprint_follows_the_load_defaults_and_task_names(tiny_qwen_base, tmp_path):
    """Neighbour of load(truncate_dim=) and the Jina task names: fingerprint(model) must
    describe what encode(...) returns. Before: it said the full size for a model loaded
    with truncate_dim=48, and the document prompt for task="retrieval.query", so
    save_embeddings refused encode's own vectors (or labelled queries as documents)."""
    import mlx_jina

    model = mlx_jina.load(tiny_qwen_base, task="retrieval", truncate_dim=48)
    texts = ["a red planet", "tides and the moon"]
    vectors = model.encode(texts)
    fp = mlx_jina.fingerprint(model)
    assert fp.dims == vectors.shape[1] == 48
    path = mlx_jina.save_embeddings(tmp_path / "docs.safetensors", vectors, fp)
    assert mlx_jina.load_embeddings(path, fp).embeddings.shape == (2, 48)
    queries = mlx_jina.fingerprint(model, task="retrieval.query")
    assert queries.prompt == mlx_jina.fingerprint(model, prompt_name="query").prompt
    assert queries.prompt != fp.prompt
    with pytest.raises(ValueError, match="picks the 'query' prompt"):
        mlx_jina.fingerprint(model, task="retrieval.query", prompt_name="document")


# --- what sentence-transformers users pass ------------------------------------------


@pytest.mark.reference
def test_encode_takes_a_generator_and_a_numpy_array_of_strings(qwen, tiny_qwen_base):
    """encode() refused a generator and a numpy array of strings, both of which
    sentence-transformers takes; each now gives the rows a list gives, in order."""
    want = reference_embeddings(tiny_qwen_base, TEXTS, task="retrieval", prompt="Document: ")
    inputs = {
        "generator": (t for t in TEXTS),
        "numpy str": np.array(TEXTS),
        "numpy object": np.array(TEXTS, dtype=object),
        "tuple": tuple(TEXTS),
        "dict keys": dict.fromkeys(TEXTS).keys(),
    }
    for name, sentences in inputs.items():
        got = qwen.encode(sentences)
        assert got.shape == (len(TEXTS), qwen.dim), name
        assert cosines(got, want).min() >= 0.9999, name
    np.testing.assert_array_equal(qwen.encode_query(np.array(TEXTS)), qwen.encode_query(TEXTS))
    np.testing.assert_array_equal(qwen.encode(np.str_("x")), qwen.encode("x"))  # one text: 1-D


@pytest.mark.parametrize("bad, words", [
    (np.array([TEXTS[:2], TEXTS[2:]]), "2-D numpy array of shape (2, 2)"),
    (set(TEXTS), "got set (unordered"),
    ({"a": 1}, "got dict"),
    (b"bytes", "got bytes"),
    (np.array([1.0, 2.0]), "sentences[0] is float"),
    ((t if i != 2 else 3 for i, t in enumerate(TEXTS)), "sentences[2] is int"),
])  # fmt: skip
def test_encode_refuses_what_has_no_order_or_no_text(qwen, bad, words):
    with pytest.raises(TypeError) as err:
        qwen.encode(bad)
    assert words in str(err.value) and isinstance(err.value, ValueError)


@pytest.mark.reference
def test_encode_query_with_prompt_name_or_prompt(qwen, tiny_qwen_base):
    """encode_query(texts, prompt_name=...) raised Python's raw "got multiple values for
    keyword argument 'prompt_name'". As in sentence-transformers, a prompt_name or prompt
    the caller passes wins over the method's own."""
    ref = {p: reference_embeddings(tiny_qwen_base, TEXTS, task="retrieval", prompt=p)
           for p in ("Query: ", "Document: ", "Topic: ")}  # fmt: skip
    calls = {
        "Query: ": [qwen.encode_query(TEXTS, prompt_name="query"),
                    qwen.encode_document(TEXTS, prompt_name="query")],
        "Document: ": [qwen.encode_query(TEXTS, prompt_name="document"),
                       qwen.encode_document(TEXTS, prompt_name="document")],
        "Topic: ": [qwen.encode_query(TEXTS, prompt="Topic: "),
                    qwen.encode_document(TEXTS, prompt="Topic: ")],
    }  # fmt: skip
    for prompt, outs in calls.items():
        for got in outs:
            assert cosines(got, ref[prompt]).min() >= 0.9999, prompt
    with pytest.raises(ValueError, match="Unknown prompt_name 'passage'. Valid names"):
        qwen.encode_query(TEXTS, prompt_name="passage")


def test_model_device_names_where_encode_runs(qwen):
    """`model.device` (an ST habit) raised AttributeError. It is MLX's default device, in
    the words `encode(device=...)` takes, so it can be passed back."""
    want = "gpu" if mx.default_device() == mx.gpu else "cpu"
    assert qwen.device == want
    np.testing.assert_array_equal(qwen.encode(TEXTS, device=qwen.device), qwen.encode(TEXTS))


def test_show_progress_bar_takes_a_function(qwen):
    """An app can follow progress itself: a function passed as show_progress_bar is
    called with each finished batch's count (the corpus job's bar moves this way)."""
    counts = []
    out = qwen.encode(TEXTS * 3, batch_size=2, show_progress_bar=counts.append)
    assert counts == [2] * 6 and len(out) == 12
    np.testing.assert_array_equal(out, qwen.encode(TEXTS * 3, batch_size=2))
