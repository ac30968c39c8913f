"""The corpora: bench_encode's mixed texts with the token ids every engine gets, and the
GPU check's random ids of lognormal lengths."""

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

PROMPT = "Document: "
QUERY = "what is the capital of france"


@dataclass
class CorpusSpec:
    queries: int  # of 6-14 words
    passages: int  # of 100-500 tokens
    docs: int
    doc_tokens: int
    # The subset the slow rows run (mlx_jina's 16-bit and quantized weights, which MLX's
    # CPU backend multiplies without BLAS): the first queries and passages in input order.
    subset_queries: int
    subset_passages: int


@dataclass
class Workload:
    """What one model's engines encode: plain data, so it can go to another process."""

    texts: list[str]
    kinds: list[str]  # "query", "passage" or "document", per text
    ids: list[list[int]]  # PROMPT + text, tokenized by mlx_jina; the peers get these
    query: str
    query_ids: list[int]
    subset: list[int]  # input indices of the slow rows' texts

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> "Workload":
        return cls(**json.loads(path.read_text()))

    def tokens(self, indices: list[int] | None = None) -> int:
        return sum(len(self.ids[i]) for i in (range(len(self.ids)) if indices is None else indices))


def single_token_words(embedder) -> list[str]:
    """Lower-case words of 3-8 letters that are one token after a space (from the
    tokenizer's own vocabulary), so a text of n words is n tokens."""
    vocab = embedder.tokenizer.get_vocab()
    words = sorted(t[1:] for t in vocab if t[:1] == "Ġ" and 3 <= len(t) - 1 <= 8
                   and t[1:].isascii() and t[1:].isalpha() and t[1:].islower())  # fmt: skip
    ids = embedder.tokenize(["x " + w for w in words])
    base = len(embedder.tokenize(["x"])[0])
    return [w for w, row in zip(words, ids, strict=True) if len(row) == base + 1]


def make_corpus(words: list[str], spec: CorpusSpec, seed: int = 0) -> tuple[list[str], list[str]]:
    """Texts and their kinds, shuffled."""
    rng = random.Random(seed)
    sizes = [(rng.randint(6, 14), "query") for _ in range(spec.queries)]
    sizes += [(rng.randint(100, 500), "passage") for _ in range(spec.passages)]
    sizes += [(spec.doc_tokens - 8, "document")] * spec.docs  # - 8: the prompt, specials
    rng.shuffle(sizes)
    texts = [" ".join(rng.choices(words, k=n)) for n, _ in sizes]
    return texts, [kind for _, kind in sizes]


def workload(embedder, texts: list[str], kinds: list[str], spec: CorpusSpec) -> Workload:
    want = {"query": spec.subset_queries, "passage": spec.subset_passages}
    subset = []
    for i, kind in enumerate(kinds):
        if want.get(kind, 0) > 0:
            subset.append(i)
            want[kind] -= 1
    ids = embedder.tokenize([PROMPT + t for t in texts])
    return Workload(texts, kinds, ids, QUERY, embedder.tokenize([PROMPT + QUERY])[0], subset)


def random_ids(n: int, vocab: int, max_len: int, seed: int = 0) -> Workload:
    """`n` rows of random token ids, lognormal lengths (median ~150) clipped to
    20..max_len: mostly passages, a tail of long documents (no texts: the ids alone)."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(5.0, 1.0, n).astype(int), 20, max_len)
    # Ids from 10 up: clear of the byte tokenizer's specials in tiny vocabularies.
    ids = [rng.integers(10, vocab, int(k)).tolist() for k in lengths]
    return Workload([], [], ids, QUERY, [], [])
