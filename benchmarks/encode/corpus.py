"""The mixed benchmark corpus, and the token ids every engine gets."""

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

PROMPT = "Document: "
QUERY = "what is the capital of france"
WORDS = """the of and to in is was for on that with as by at from his her this which or
are be an were has had but not all one their they been more when who will would there
can about into time only new some could these two may first then do any like my now
over such our man me even most made after also did many before must through back years
where much your way well down should because each just those people how too little
state good very make world still own see men work long get here between both life being
under never day same another know while last might great old year off come since
against go came right used take three himself few house use during without again place
around however home small found thought went say part once general high upon school
every does got united left number course war until always away something fact water
though less public put think almost hand enough far took head yet government system
better set told nothing night end why called didn eyes find going look asked later
knew point next program city business give group toward young days let room president
side social given present several order national possible rather second face per among
form important often things looking early white case john become large big need four
within felt along children saw best church ever least power development light thing
seemed family interest want members others mind country area done although open god
service certain kind problem began different door thus help sense means whole matter
perhaps itself york times law human line above name example action company hands local
show five history whether gave either act feet across taken past quite anything seen
having death week experience body word half really field am car words already themselves
information tell together college shall money period held keep sure free real probably
seems political behind cannot miss question air office making brought whose special
heard major problems ago became federal moment study available known result street economic
boy position reason change south board individual job areas society west close turn love
community true court force full seem am red planet mars river capital paris""".split()


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
    """Words that are one token after a space, so a text of n words is n tokens."""
    ids = embedder.tokenize(["x " + w for w in WORDS])
    base = len(embedder.tokenize(["x"])[0])
    return [w for w, row in zip(WORDS, ids, strict=True) if len(row) == base + 1]


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
