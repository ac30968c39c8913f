"""`mlx-jina mcp`: the index as Model Context Protocol tools for agents (Claude Desktop,
Cursor, Zed, VS Code, ...), on stdio or streamable HTTP, with the official `mcp` SDK.

Tools: search, remember, forget, index_folder (only inside the --root folders), classify.
The model loads once, before the first request, and stays. Several servers may share one
index file: SQLite serializes their writes, and a write that waits too long fails with a
message saying so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .search import Index

INSTRUCTIONS = (
    "A local memory and document index on this computer (embeddings computed on-device). "
    "Use `search` before answering questions about the user's notes, files or earlier "
    "conversations; `remember` to store a fact worth keeping; `forget` to delete one by id; "
    "`index_folder` to add or refresh a folder of files; `classify` to pick labels for a text."
)
# Passages in results are cut to this many characters: results stay small for the agent.
RESULT_CHARS = 2000
MAX_K = 50


def build_server(index: Index, roots: list[str | Path] = (), **settings):
    """A FastMCP server exposing `index`; `roots` are the folders `index_folder` may read."""
    from mcp.server.fastmcp import FastMCP

    roots = [Path(r).expanduser().resolve() for r in roots]
    if missing := [str(r) for r in roots if not r.is_dir()]:
        raise FileNotFoundError(f"--root {missing[0]} is not a folder; pass existing folders.")
    server = FastMCP("mlx-jina", instructions=INSTRUCTIONS, **settings)

    @server.tool()
    def search(
        query: str, k: int = 5, filter: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Find the stored passages most relevant to `query` (a question or a description
        of what you need), best first. Each result has id, score (cosine similarity,
        higher is closer; about 0.3+ is usually relevant), text, metadata, and for file
        passages the source path and [first, last] line numbers. `filter` keeps only items
        whose metadata has these exact key/value pairs, e.g. {"kind": "preference"}."""
        if isinstance(k, int) and k > MAX_K:
            raise ValueError(f"k={k}; ask for at most {MAX_K} results, then refine the query.")
        hits = index.search(query, k, filter or None)
        for hit in hits:
            if len(hit["text"]) > RESULT_CHARS:
                hit["text"] = hit["text"][:RESULT_CHARS] + " [...]"
        return hits

    @server.tool()
    def remember(text: str, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        """Store `text` (a self-contained fact, note or summary: it is found later by
        meaning, without this conversation) with optional `metadata` (JSON object, e.g.
        {"kind": "preference", "project": "x"}) for filtering searches. Returns its id."""
        return {"id": index.add([text], [metadata or {}])[0]}

    @server.tool()
    def forget(id: str) -> dict[str, Any]:
        """Delete the stored item with this `id` (from `remember` or a search result).
        Returns whether it existed."""
        return {"forgotten": index.delete([id]) == 1}

    @server.tool()
    def index_folder(path: str) -> dict[str, Any]:
        """Index (or refresh) a folder of text, Markdown and source files so `search`
        finds their passages: new or changed files are embedded, deleted files dropped,
        .gitignore respected. Only folders inside the server's allowed roots. Returns
        counts of files embedded, unchanged, removed and skipped, and of chunks."""
        summary = index.index_folder(_inside_roots(path, roots), show_progress_bar=False)
        summary["skipped_files"] = {k: v[:20] for k, v in summary["skipped_files"].items()}
        return summary

    @server.tool()
    def classify(text: str, labels: list[str]) -> dict[str, Any]:
        """Zero-shot classification: which of `labels` (two or more short descriptions,
        e.g. ["bug report", "feature request", "question"]) fits `text` best. Returns
        the best label and every label's score (cosine similarity)."""
        return index.classify([text], labels)[0]

    return server


def _inside_roots(path: str, roots: list[Path]) -> Path:
    """`path` resolved (links followed), if it lies in one of `roots`; else ValueError."""
    if not roots:
        raise ValueError(
            "index_folder is off: the server was started without --root. Restart it with "
            "--root DIR for the folders it may index."
        )
    given = Path(path).expanduser()
    if ".." in given.parts:
        raise ValueError(f"path {path!r} contains '..'; pass a folder inside {_names(roots)}.")
    resolved = (given if given.is_absolute() else roots[0] / given).resolve()
    if not any(resolved == r or resolved.is_relative_to(r) for r in roots):
        raise ValueError(
            f"path {path!r} is outside the allowed roots ({_names(roots)}), or a link out of "
            "them; pass a folder inside one."
        )
    return resolved


def _names(roots: list[Path]) -> str:
    return ", ".join(str(r) for r in roots)


def serve(db: str, model: str | None = None, *, roots: list[str] = (), http: bool = False,
          host: str = "127.0.0.1", port: int = 8765, **options) -> None:  # fmt: skip
    """Open the index (loading its model once) and serve it until stdin closes or Ctrl-C."""
    index = Index(db, model, **options)
    try:
        server = build_server(index, roots, host=host, port=port, log_level="WARNING")
        server.run("streamable-http" if http else "stdio")
    finally:
        index.close()
