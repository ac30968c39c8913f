"""The index file: one SQLite database (WAL mode) of items, their vectors and the model's
fingerprint.

Every write is one transaction (`BEGIN IMMEDIATE` ... `COMMIT`) with `synchronous=FULL`,
so a kill at any moment leaves the file as of the last commit: it opens, passes
`PRAGMA integrity_check` and holds every committed item. Several processes may share a
file: SQLite's locks serialize the writers; a writer that waits longer than
`busy_timeout` seconds fails with `IndexBusyError`, never with a half-written item.

Vectors are stored per item as bytes: bit-packed signs (ubinary) for the first search
pass, int8 (the fixed default ranges) for rescoring, and optionally float16. Search reads
them into one matrix per kind, cached until any process changes the file.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCHEMA_VERSION = 1
APPLICATION_ID = 0x4D4A4958  # "MJIX": tells our files from other SQLite databases
SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE items (
    id TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    source TEXT,          -- the file a chunk came from, relative to the indexed folder
    first_line INTEGER,   -- the chunk's lines in that file, 1-based and inclusive
    last_line INTEGER,
    content_hash TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    ubinary BLOB NOT NULL,
    int8 BLOB NOT NULL,
    float16 BLOB
);
CREATE INDEX items_source ON items (source);
CREATE TABLE files (
    root TEXT NOT NULL,
    path TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    chunks INTEGER NOT NULL,
    indexed REAL NOT NULL,
    PRIMARY KEY (root, path)
);
"""


class IndexBusyError(TimeoutError):
    """Another process held the index's write lock longer than the busy timeout."""


@dataclass
class Item:
    """One stored text and where it came from."""

    id: str
    text: str
    metadata: dict
    source: str | None = None
    first_line: int | None = None
    last_line: int | None = None
    created: float | None = None
    updated: float | None = None

    def as_dict(self) -> dict:
        out = {"id": self.id, "text": self.text, "metadata": self.metadata}
        if self.source is not None:
            out.update(source=self.source, lines=[self.first_line, self.last_line])
        return out


@dataclass
class Vectors:
    """The stored vectors of every item, row i for `ids[i]`."""

    ids: list[str]
    ubinary: np.ndarray  # (n, ceil(dims / 8)) uint8
    int8: np.ndarray  # (n, dims) int8
    float16: np.ndarray | None  # (n, dims), where every item has them


class Store:
    """An open index file. Not for use from several threads at once: open one per thread."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 30.0):
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        if self.path.is_dir():
            raise ValueError(f"--db {self.path} is a folder; pass a file path (e.g. index.db).")
        if not self.path.parent.is_dir():
            raise FileNotFoundError(f"No folder {self.path.parent} to hold the index {self.path}.")
        if self.path.exists() and self.path.stat().st_size > 0:
            _check_header(self.path)
        self._cache: tuple[tuple[int, int], Vectors] | None = None
        self._writes = 0
        # Autocommit mode: transactions are ours, explicit, one per write.
        self.db = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None,
                                  check_same_thread=False)  # fmt: skip
        try:
            self._busy(self._setup)
        except BaseException:
            self.db.close()
            raise

    def _setup(self) -> None:
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        if self._version() == 0 and not self._tables():
            with self.transaction() as db:
                # Another process may have created it since we looked.
                if not self._tables():
                    for statement in SCHEMA.split(";"):
                        db.execute(statement)
                    db.execute(f"PRAGMA application_id={APPLICATION_ID}")
                    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        _check_version(self.path, self._version())

    def _version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    def _tables(self) -> int:
        return self.db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _busy(self, fn, *args):
        try:
            return fn(*args)
        except sqlite3.OperationalError as e:
            if "locked" in str(e) or "busy" in str(e):
                raise IndexBusyError(
                    f"The index {self.path} is busy: another process held it for more than "
                    f"{self.busy_timeout:g} s. Nothing was written; try again when that "
                    "process is done (or raise --busy-timeout)."
                ) from None
            raise

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write: everything inside commits together or not at all."""
        self._busy(self.db.execute, "BEGIN IMMEDIATE")
        try:
            yield self.db
            self._busy(self.db.execute, "COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise
        self._writes += 1

    # --- the fingerprint -----------------------------------------------------------------

    def meta(self, key: str) -> dict | None:
        row = self._busy(lambda: self.db.execute(
            "SELECT value FROM meta WHERE key = ?", (key,)).fetchone())  # fmt: skip
        return None if row is None else json.loads(row[0])

    def set_meta(self, key: str, value: dict) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    # --- items ---------------------------------------------------------------------------

    @staticmethod
    def write_items(db: sqlite3.Connection, items: list[Item], hashes: list[str],
                    vectors: dict[str, np.ndarray]) -> None:  # fmt: skip
        """Insert or replace `items` inside an open transaction (keeping `created`)."""
        now = time.time()
        f16 = vectors.get("float16")
        db.executemany(
            """INSERT INTO items (id, text, metadata, source, first_line, last_line,
                   content_hash, created, updated, ubinary, int8, float16)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (id) DO UPDATE SET text = excluded.text,
                   metadata = excluded.metadata, source = excluded.source,
                   first_line = excluded.first_line, last_line = excluded.last_line,
                   content_hash = excluded.content_hash, updated = excluded.updated,
                   ubinary = excluded.ubinary, int8 = excluded.int8,
                   float16 = excluded.float16""",
            [
                (it.id, it.text, json.dumps(it.metadata, ensure_ascii=False), it.source,
                 it.first_line, it.last_line, h, now, now, vectors["ubinary"][i].tobytes(),
                 vectors["int8"][i].tobytes(), None if f16 is None else f16[i].tobytes())
                for i, (it, h) in enumerate(zip(items, hashes))
            ],
        )  # fmt: skip

    def existing(self, ids: list[str]) -> set[str]:
        found = set()
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            rows = self.db.execute(
                f"SELECT id FROM items WHERE id IN ({','.join('?' * len(part))})", part)
            found.update(r[0] for r in rows)
        return found

    def delete(self, ids: list[str]) -> int:
        with self.transaction() as db:
            return sum(db.execute("DELETE FROM items WHERE id = ?", (i,)).rowcount for i in ids)

    def count(self) -> int:
        return self._busy(lambda: self.db.execute("SELECT count(*) FROM items").fetchone()[0])

    def items(self, ids: list[str]) -> dict[str, Item]:
        out = {}
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            rows = self.db.execute(
                f"SELECT {ITEM_COLUMNS} FROM items WHERE id IN ({','.join('?' * len(part))})",
                part,
            )
            out.update((row[0], _item(row)) for row in rows)
        return out

    def list(self, limit: int = 100, offset: int = 0, source: str | None = None) -> list[Item]:
        where, args = ("WHERE source = ?", [source]) if source is not None else ("", [])
        rows = self.db.execute(
            f"SELECT {ITEM_COLUMNS} FROM items {where} ORDER BY source, first_line, id "
            "LIMIT ? OFFSET ?", [*args, limit, offset])  # fmt: skip
        return [_item(row) for row in rows]

    def metadata_keys(self) -> set[str]:
        rows = self.db.execute("SELECT DISTINCT j.key FROM items, json_each(items.metadata) j")
        return {r[0] for r in rows}

    def matching(self, filter: dict) -> set[str]:
        """Ids of the items whose metadata holds every key of `filter` with that value."""
        where = " AND ".join("json_extract(metadata, ?) IS ?" for _ in filter)
        args = []
        for key, value in filter.items():
            if isinstance(value, (list, dict)):  # SQLite returns these as minified JSON
                value = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
            args += [json_path(key), value]
        return {r[0] for r in self.db.execute(f"SELECT id FROM items WHERE {where}", args)}

    def vectors(self) -> Vectors:
        """Every item's vectors, read once and cached until any process writes."""
        version = (self.db.execute("PRAGMA data_version").fetchone()[0], self._writes)
        if self._cache is None or self._cache[0] != version:
            self._cache = (version, self._read_vectors())
        return self._cache[1]

    def _read_vectors(self) -> Vectors:
        self.db.execute("BEGIN")  # one snapshot for all three columns
        try:
            rows = self.db.execute("SELECT id, ubinary, int8, float16 FROM items ORDER BY rowid")
            ids, ub, i8, f16 = [], [], [], []
            for id_, b, q, f in rows:
                ids.append(id_)
                ub.append(b)
                i8.append(q)
                f16.append(f)
        finally:
            self.db.execute("COMMIT")
        fp = self.meta("fingerprint") or {}
        dims = fp.get("dims", 0)
        width = (dims + 7) // 8
        ubinary = np.frombuffer(b"".join(ub), np.uint8).reshape(len(ids), width)
        int8 = np.frombuffer(b"".join(i8), np.int8).reshape(len(ids), dims)
        float16 = None
        if ids and all(f is not None for f in f16):
            float16 = np.frombuffer(b"".join(f16), np.float16).reshape(len(ids), dims)
        return Vectors(ids, ubinary, int8, float16)

    # --- files of indexed folders --------------------------------------------------------

    def files(self, root: str) -> dict[str, str]:
        """Relative path -> content hash of the files indexed under `root`."""
        rows = self.db.execute("SELECT path, content_hash FROM files WHERE root = ?", (root,))
        return dict(rows.fetchall())

    def integrity(self) -> str:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0]


ITEM_COLUMNS = "id, text, metadata, source, first_line, last_line, created, updated"


def _item(row) -> Item:
    id_, text, metadata, source, first, last, created, updated = row
    return Item(id_, text, json.loads(metadata), source, first, last, created, updated)


def json_path(key: str) -> str:
    """A metadata key as a JSON path naming exactly that key (dots and quotes included)."""
    return '$."' + key.replace('"', '\\"') + '"'


def _check_header(path: Path) -> None:
    """Refuse a file that is not SQLite before SQLite would call it 'not a database'."""
    with open(path, "rb") as f:
        head = f.read(100)
    if not head.startswith(b"SQLite format 3\x00"):
        raise ValueError(
            f"{path} is not an mlx-jina index (not a SQLite database). Pass another --db path."
        )
    app_id = int.from_bytes(head[68:72], "big")
    if app_id not in (0, APPLICATION_ID):
        raise ValueError(
            f"{path} is a SQLite database of another program (application id {app_id:#x}), not "
            "an mlx-jina index. Pass another --db path."
        )


def _check_version(path: Path, version: int) -> None:
    if version > SCHEMA_VERSION:
        raise ValueError(
            f"{path} has index schema version {version}; this mlx-jina reads version "
            f"{SCHEMA_VERSION}. Upgrade mlx-jina (pip install -U mlx-jina) to open it."
        )
    if version < 1:
        raise ValueError(
            f"{path} is a SQLite database without an mlx-jina index in it. Pass another --db path."
        )
