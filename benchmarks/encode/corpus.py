"""The mixed benchmark corpus, and the token ids every engine gets."""

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

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
        rows = self.ids if indices is None else [self.ids[i] for i in indices]
        return sum(map(len, rows))


def single_token_words(embedder) -> list[str]:
    """Lower-case words of 3-8 letters that are one token after a space (from the
    tokenizer's own vocabulary), so a text of n words is n tokens."""
    vocab = embedder.tokenizer.get_vocab()
    words = sorted(t[1:] for t in vocab if t[:1] == "Ġ" and 3 <= len(t) - 1 <= 8
                   and t[1:].isascii() and t[1:].isalpha() and t[1:].islower())
    ids = embedder.tokenize(["x " + w for w in words])
    base = len(embedder.tokenize(["x"])[0])
    return [w for w, row in zip(words, ids, strict=True) if len(row) == base + 1]


def make_corpus(
    words: list[str], spec: CorpusSpec, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Texts and their kinds, shuffled."""
    rng = random.Random(seed)
    sizes = [(rng.randint(6, 14), "query") for _ in range(spec.queries)]
    sizes += [(rng.randint(100, 500), "passage") for _ in range(spec.passages)]
    # doc_tokens - 8: room for the prompt and special tokens
    sizes += [(spec.doc_tokens - 8, "document")] * spec.docs
    rng.shuffle(sizes)
    texts = [" ".join(rng.choices(words, k=n)) for n, _ in sizes]
    return texts, [kind for _, kind in sizes]


def subset(kinds: list[str], spec: CorpusSpec) -> list[int]:
    want = {"query": spec.subset_queries, "passage": spec.subset_passages}
    out = []
    for i, kind in enumerate(kinds):
        if want.get(kind, 0) > 0:
            out.append(i)
            want[kind] -= 1
    return out


def workload(
    embedder, texts: list[str], kinds: list[str], spec: CorpusSpec
) -> Workload:
    ids = embedder.tokenize([PROMPT + t for t in texts])
    query_ids = embedder.tokenize([PROMPT + QUERY])[0]
    return Workload(texts, kinds, ids, QUERY, query_ids, subset(kinds, spec))
