"""Folders into an index: new and changed files embedded (by content hash), deleted
files' chunks dropped, a batch of files per transaction. Mixed into `Index`, whose store,
model, tokenizer, `_token_counts` and `_embed` it uses."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from .chunks import chunk_text
from .folder import read_text, walk_folder
from .store import Item


class FolderIndexing:
    def index_folder(
        self,
        root: str | Path,
        *,
        include: tuple[str, ...] = (),
        exclude: tuple[str, ...] = (),
        max_file_bytes: int = 1 << 20,
        chunk_tokens: int = 512,
        overlap: int = 64,
        batch_texts: int = 1024,
        show_progress_bar: bool | None = None,
    ) -> dict:
        """Bring the index up to date with a folder: embed new and changed files (by
        content hash), drop the chunks of deleted ones. Files are written a batch (about
        `batch_texts` chunks) per transaction, so a killed run keeps every batch it
        finished, each file whole. Returns counts."""
        root = Path(root).resolve()
        chunk_tokens = min(chunk_tokens, self.model.max_length - 32)
        if not 0 <= overlap < chunk_tokens:
            raise ValueError(f"overlap={overlap} must be at least 0 and below {chunk_tokens}.")
        walk = walk_folder(root, include, exclude, max_file_bytes)
        settings = json.dumps({"chunk_tokens": chunk_tokens, "overlap": overlap}).encode()
        old = self.store.files(str(root))
        summary = {"embedded": 0, "unchanged": 0, "removed": 0, "skipped": 0, "chunks": 0,
                   "embedded_chunks": 0, "removed_chunks": 0}  # fmt: skip
        for rel in sorted(set(old) - set(walk.files)):
            summary["removed_chunks"] += self._drop_file(root, rel)
            summary["removed"] += 1
        pending: list[tuple[str, str, str, list]] = []
        bar = _bar(len(walk.files), show_progress_bar)
        for rel, path in walk.files.items():
            text, why = read_text(path)
            if why is not None:
                walk.skip(why, rel)
                if rel in old:  # it was text before: its old chunks no longer hold
                    summary["removed_chunks"] += self._drop_file(root, rel)
                bar and bar.update(1)
                continue
            digest = content_hash(settings + text.encode())
            if old.get(rel) == digest:
                summary["unchanged"] += 1
                summary["chunks"] += self._chunk_count(root, rel)
                bar and bar.update(1)
                continue
            chunks = chunk_text(text, self._token_counts, self._spans, chunk_tokens, overlap)
            pending.append((rel, text, digest, chunks))
            if sum(len(p[3]) for p in pending) >= batch_texts:
                self._write_files(root, pending, summary, bar)
                pending = []
        self._write_files(root, pending, summary, bar)
        if bar is not None:
            bar.close()
        summary["skipped"] = sum(len(v) for v in walk.skipped.values())
        summary["skipped_files"] = walk.skipped
        return summary

    def _spans(self, line: str) -> list[tuple[int, int]]:
        return self._tokenizer.encode(line, add_special_tokens=False).offsets

    def _write_files(self, root: Path, pending: list, summary: dict, bar) -> None:
        """Embed the chunks of several files in one call, then write them in one
        transaction: each file's old chunks out, the new ones and its hash in. A kill
        loses at most this batch's work, never part of a file."""
        if not pending:
            return
        texts = [text[c.start : c.end] for _, text, _, chunks in pending for c in chunks]
        vectors = self._embed(texts) if texts else {}
        row = 0
        with self.store.transaction() as db:
            for rel, text, digest, chunks in pending:
                source = str(root / rel)
                items = [Item(f"{source}#{n}", text[c.start : c.end],
                              {"path": rel, "root": str(root)}, source, c.first_line, c.last_line)
                         for n, c in enumerate(chunks)]  # fmt: skip
                part = {name: v[row : row + len(chunks)] for name, v in vectors.items()}
                row += len(chunks)
                db.execute("DELETE FROM items WHERE source = ?", (source,))
                if items:
                    hashes = [content_hash(i.text.encode()) for i in items]
                    self.store.write_items(db, items, hashes, part)
                db.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, julianday('now'))",
                           (str(root), rel, digest, len(chunks)))  # fmt: skip
        for _, _, _, chunks in pending:
            summary["embedded"] += 1
            summary["chunks"] += len(chunks)
            summary["embedded_chunks"] += len(chunks)
            if bar is not None:
                bar.update(1)

    def _drop_file(self, root: Path, rel: str) -> int:
        with self.store.transaction() as db:
            n = db.execute("DELETE FROM items WHERE source = ?", (str(root / rel),)).rowcount
            db.execute("DELETE FROM files WHERE root = ? AND path = ?", (str(root), rel))
        return n

    def _chunk_count(self, root: Path, rel: str) -> int:
        row = self.store.db.execute("SELECT chunks FROM files WHERE root = ? AND path = ?",
                                    (str(root), rel)).fetchone()  # fmt: skip
        return row[0] if row else 0


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _bar(total: int, show: bool | None):
    if show is None:
        show = sys.stderr.isatty() and total > 1
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="Indexing", unit="file", file=sys.stderr)
