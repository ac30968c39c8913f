"""A persistent local index in one SQLite file: remember, forget and search texts, keep
folders indexed, and classify, deduplicate and group with the same multitask model.

    from mlx_jina.index import Index
    with Index("notes.db", "jinaai/jina-embeddings-v5-text-small") as index:
        index.index_folder("~/notes")
        hits = index.search("How do I rotate the API keys?", k=5)

Names are imported on first use, so `mlx-jina --help` loads no MLX.
"""

from importlib import import_module

_EXPORTS = {"Index": "search", "load_model": "search", "IndexBusyError": "store",
            "SCHEMA_VERSION": "store"}  # fmt: skip
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mlx_jina.index' has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
