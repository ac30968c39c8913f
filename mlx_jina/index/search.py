"""`Index`: an index file plus the model that embeds into it. Remember, forget, search,
index folders, classify.

Stored texts are embedded with the retrieval adapter and the document prompt, queries with
the query prompt; the index records the model's fingerprint (content identity, task,
prompt, dims) and refuses any other model. Search is exact: binary (Hamming) over every
item, the best `k * rescore_multiplier` rescored with the int8 vectors (`semantic_search`).
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from ..encoding.texts import check_texts
from ..retrieval.precision import quantize_embeddings
from ..retrieval.search import semantic_search
from ..retrieval.store import Fingerprint, check_fingerprint, fingerprint
from ..tasks import RETRIEVAL
from .indexing import FolderIndexing, content_hash
from .store import Item, Store
from . import tasks

SEARCH_PRECISIONS = ("binary", "int8", "float16")
FILE_SETTINGS = ("chunk_tokens", "overlap")


def load_model(source: str | Path, multitask: bool = True, **load_options):
    """The model with all four adapters (multitask), or its one task if it holds only one
    (or `multitask=False`)."""
    from ..loading import load

    if not multitask:
        return load(source, task=RETRIEVAL, **load_options)
    try:
        return load(source, task=RETRIEVAL, multitask=True, **load_options)
    except ValueError as e:
        if "holds one task only" not in str(e):
            raise
    return load(source, task=RETRIEVAL, **load_options)


class Index(FolderIndexing):
    """A persistent local index in one SQLite file.

    Args:
        db: The index file (created if missing).
        model: An Embedder, a model folder or repo id, or None to load the index's own.
        dims: Matryoshka size of the stored vectors (a new index only; default: full).
        float16: Also store float16 vectors (a new index only), for `precision="float16"`.
        max_tokens: The longest text `add`/`upsert` accepts, in tokens; longer ones are
            refused (split them, or index them as files, which are chunked).
        busy_timeout: Seconds a write waits for another process's lock before failing.
        load_options: For `load` when the model is loaded here (bits, dtype, revision).
    """

    def __init__(
        self,
        db: str | Path,
        model=None,
        *,
        dims: int | None = None,
        float16: bool = False,
        max_tokens: int = 8192,
        busy_timeout: float = 30.0,
        **load_options,
    ):
        if model is None and not Path(db).is_file():
            raise FileNotFoundError(
                f"No index at {db}. Build one first: mlx-jina index DIR --db {db} -m MODEL "
                "(or Index(db, model) in Python)."
            )
        created = not Path(db).exists()
        self.store = Store(db, busy_timeout=busy_timeout)
        try:
            self._open(model, dims, float16, load_options)
        except BaseException:
            # A bad model or setting leaves no empty index behind (unless another process
            # has written to it meanwhile).
            created = created and self.store.meta("fingerprint") is None
            self.store.close()
            if created:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{db}{suffix}").unlink(missing_ok=True)
            raise
        self.max_tokens = min(max_tokens, self.model.max_length)
        self._tokenizer = Tokenizer.from_str(self.model.tokenizer.to_str())
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()

    def _open(self, model, dims, float16, load_options) -> None:
        saved = self.store.meta("fingerprint")
        load_options = {k: v for k, v in load_options.items() if v is not None}
        if model is None:
            if saved is None:
                raise ValueError(
                    f"{self.store.path} is a new index: pass the model to embed with (-m MODEL)."
                )
            model = saved["load"]["source"]
            load_options = {**saved["load"]["options"], **load_options}
        if isinstance(model, (str, Path)):
            model = load_model(model, **load_options)
            source, options = str(model.source), {**load_options, "multitask": model.multitask}
        else:
            source, options = model.source, {"multitask": bool(model.multitask)}
        self.model = model
        if saved is None:
            self.dims = dims or model.dim
            self.float16 = float16
            record = {
                "document": asdict(self._fingerprint()),
                "dims": self.dims,
                "precisions": ["ubinary", "int8"] + (["float16"] if float16 else []),
                "load": {"source": source, "options": options},
            }
            self.store.set_meta("fingerprint", record)
            return
        self.dims, self.float16 = saved["dims"], "float16" in saved["precisions"]
        if dims is not None and dims != self.dims:
            raise ValueError(
                f"{self.store.path} holds {self.dims}-dimensional vectors, not {dims}. Leave "
                "--dims out, or index into a new --db."
            )
        found = Fingerprint(**{k: v for k, v in saved["document"].items()
                               if k in Fingerprint.__dataclass_fields__})  # fmt: skip
        try:
            check_fingerprint(found, self._fingerprint(), where=str(self.store.path))
        except ValueError as e:
            raise ValueError(
                f"{e} Open it with the model it was built with ({saved['load']['source']}; "
                "leave -m out and the index loads it), or index into a new --db."
            ) from None

    def _fingerprint(self) -> Fingerprint:
        return fingerprint(self.model, task=RETRIEVAL, prompt_name="document",
                           truncate_dim=self.dims)  # fmt: skip

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- items ---------------------------------------------------------------------------

    def add(self, texts: list[str], metadata: list[dict] | None = None,
            ids: list[str] | None = None) -> list[str]:  # fmt: skip
        """Store new texts; returns their ids (new random ones unless given). An id that is
        already stored is refused: use `upsert` to replace it."""
        ids, items = self._items(texts, metadata, ids)
        taken = self.store.existing(ids)
        if taken:
            raise ValueError(
                f"{len(taken)} id(s) are already in the index (e.g. {sorted(taken)[0]!r}); "
                "use upsert to replace them, or other ids."
            )
        self._write(items)
        return ids

    def upsert(self, texts: list[str], metadata: list[dict] | None = None,
               ids: list[str] | None = None) -> list[str]:  # fmt: skip
        """Store texts, replacing the items of the same ids."""
        ids, items = self._items(texts, metadata, ids)
        self._write(items)
        return ids

    def _items(self, texts, metadata, ids) -> tuple[list[str], list[Item]]:
        if isinstance(texts, str):
            raise ValueError("texts must be a list of strings; wrap one text in a list.")
        check_texts(texts, "texts")
        metadata = [{}] * len(texts) if metadata is None else list(metadata)
        ids = [uuid.uuid4().hex for _ in texts] if ids is None else list(ids)
        if len(metadata) != len(texts) or len(ids) != len(texts):
            raise ValueError(
                f"{len(texts)} texts, {len(metadata)} metadata and {len(ids)} ids; pass one "
                "of each per text."
            )
        for i, (m, id_) in enumerate(zip(metadata, ids)):
            check_metadata(m, f"metadata[{i}]")
            if not isinstance(id_, str) or not id_:
                raise ValueError(f"ids[{i}] is {id_!r}; use a non-empty string.")
        if len(set(ids)) != len(ids):
            raise ValueError("ids repeat an id; pass each once.")
        for i, n in enumerate(self._token_counts(texts)):
            if n > self.max_tokens:
                raise ValueError(
                    f"texts[{i}] is {n:,} tokens; the index embeds at most {self.max_tokens:,} "
                    "per item, and the rest would be lost. Split it into passages, or save it "
                    "as a file and index the folder (files are chunked)."
                )
        return ids, [Item(i, t, m) for i, t, m in zip(ids, texts, metadata)]

    def _token_counts(self, texts: list[str]) -> list[int]:
        # encode_batch_fast (tokenizers >= 0.21) skips the character offsets: a third faster.
        encode = getattr(self._tokenizer, "encode_batch_fast", self._tokenizer.encode_batch)
        return [len(e.ids) for e in encode(texts, add_special_tokens=False)]

    def _embed(self, texts: list[str]) -> dict[str, np.ndarray]:
        v = self.model.encode(texts, task=RETRIEVAL, prompt_name="document",
                              truncate_dim=self.dims)  # fmt: skip
        out = {"ubinary": quantize_embeddings(v, "ubinary"), "int8": quantize_embeddings(v, "int8")}
        if self.float16:
            out["float16"] = v.astype(np.float16)
        return out

    def _write(self, items: list[Item]) -> None:
        if not items:
            return
        vectors = self._embed([it.text for it in items])
        hashes = [content_hash(it.text.encode()) for it in items]
        with self.store.transaction() as db:
            self.store.write_items(db, items, hashes, vectors)

    def delete(self, ids: list[str]) -> int:
        """Remove these items; returns how many were stored."""
        if isinstance(ids, str):
            ids = [ids]
        return self.store.delete(list(ids))

    def count(self) -> int:
        return self.store.count()

    def list(self, limit: int = 100, offset: int = 0) -> list[Item]:
        return self.store.list(limit, offset)

    def get(self, ids: list[str]) -> list[Item]:
        found = self.store.items(list(ids))
        return [found[i] for i in ids if i in found]

    # --- search --------------------------------------------------------------------------

    def search(self, query: str, k: int = 10, filter: dict | None = None, *,
               precision: str = "binary", rescore_multiplier: int = 4) -> list[dict]:  # fmt: skip
        """The `k` stored items best matching `query`, best first: dicts with id, score
        (cosine), text, metadata (and source and lines for file chunks).

        filter: `{key: value}` pairs every result's metadata must hold (exact values).
        precision: "binary" (Hamming, then int8 rescoring), "int8", or "float16" (if stored).
        """
        if not isinstance(query, str):
            raise ValueError(f"query is {type(query).__name__}; pass a string.")
        check_texts([query], "query")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k={k!r}; use a positive integer (the number of results).")
        if precision not in SEARCH_PRECISIONS or (precision == "float16" and not self.float16):
            have = [p for p in SEARCH_PRECISIONS if p != "float16" or self.float16]
            raise ValueError(f"precision={precision!r}; this index searches {', '.join(have)}.")
        allowed = self._filtered(filter) if filter else None
        if allowed is not None and not allowed:
            return []
        q = self.model.encode(query, task=RETRIEVAL, prompt_name="query", truncate_dim=self.dims)
        return rank(self.store, q, k, allowed, precision, rescore_multiplier)

    def _filtered(self, filter: dict) -> set[str]:
        if not isinstance(filter, dict):
            raise ValueError(f"filter={filter!r}; pass an object of metadata key -> value.")
        known = self.store.metadata_keys()
        missing = sorted(set(filter) - known)
        if missing:
            raise ValueError(
                f"filter key {missing[0]!r} is in no item's metadata; the keys stored are "
                f"{', '.join(sorted(known)) or 'none'}."
            )
        return self.store.matching(filter)

    # --- the other adapters --------------------------------------------------------------

    def classify(self, texts: list[str], labels: list[str]) -> list[dict]:
        """Zero-shot labels with the classification adapter (see index.tasks.classify)."""
        return tasks.classify(self.model, texts, labels)

    def near_duplicates(self, threshold: float = 0.95, limit: int = 10_000) -> list[dict]:
        """Pairs of stored items whose text matching vectors are at least `threshold` alike."""
        items = self.store.list(limit)
        pairs = tasks.near_duplicates(self.model, [it.text for it in items], threshold)
        return [{"ids": [items[i].id, items[j].id], "score": round(s, 6)} for i, j, s in pairs]

    def clusters(self, k: int, limit: int = 10_000) -> dict[int, list[str]]:
        """Stored items grouped by the clustering adapter: group -> ids."""
        items = self.store.list(limit)
        groups: dict[int, list[str]] = {}
        for item, c in zip(items, tasks.clusters(self.model, [it.text for it in items], k)):
            groups.setdefault(c, []).append(item.id)
        return groups


def rank(store: Store, query: np.ndarray, k: int, allowed: set[str] | None = None,
         precision: str = "binary", rescore_multiplier: int = 4) -> list[dict]:  # fmt: skip
    """The `k` best stored items for a float query vector, among `allowed` ids if given."""
    vectors = store.vectors()
    rows = np.arange(len(vectors.ids))
    if allowed is not None:
        rows = rows[np.isin(vectors.ids, list(allowed))]
    if len(rows) == 0:
        return []
    if precision == "binary":
        hits = semantic_search(query, _rows(vectors.ubinary, rows), k, corpus_precision="ubinary",
                               rescore_embeddings=_rows(vectors.int8, rows),
                               rescore_multiplier=rescore_multiplier)[0]  # fmt: skip
    else:
        corpus = vectors.int8 if precision == "int8" else vectors.float16
        hits = semantic_search(query, _rows(corpus, rows), k, corpus_precision=precision)[0]
    ids = [vectors.ids[rows[h["corpus_id"]]] for h in hits]
    items = store.items(ids)
    return [
        {"score": round(h["score"], 6), **items[i].as_dict()}
        for h, i in zip(hits, ids)
        if i in items  # forgotten by another process since the vectors were read
    ]


def check_metadata(metadata, name: str = "metadata") -> None:
    if not isinstance(metadata, dict):
        raise ValueError(f"{name} is {type(metadata).__name__}; pass an object (a dict).")
    try:
        json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} is not JSON: {e}. Use strings, numbers, lists and objects.")


def _rows(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return x if len(rows) == len(x) else x[rows]



def display_path(source: str) -> str:
    """A file path relative to the working folder when it lies inside it."""
    try:
        return os.path.relpath(source) if not os.path.relpath(source).startswith("..") else source
    except ValueError:  # another drive (Windows)
        return source
