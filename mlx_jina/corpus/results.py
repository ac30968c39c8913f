"""`mlx_jina.load_embeddings`: an embedding file, or the folder of a finished embed job.

The folder's layout (its manifest, its result file) belongs to the corpus job, so this
reader lives here, above retrieval/store.py, which reads the files themselves.
"""

from __future__ import annotations

from pathlib import Path

from ..retrieval import store
from ..retrieval.store import EmbeddingFile, Fingerprint
from .manifest import finished_file


def load_embeddings(
    path: str | Path,
    expected: Fingerprint | None = None,
    *,
    force: bool = False,
    mmap: bool = False,
) -> EmbeddingFile:
    """Read an embedding file, or an embed job's folder; with `expected`, refuse one made
    with other settings.

    The file must match its own fingerprint (dtype, shape, finite vectors, well-formed
    safetensors), or it raises ValueError: it is damaged, and would search wrongly.

    Args:
        path: A file written by `save_embeddings`, or the `out_dir` of a finished
            `embed_corpus` job (its rows in input order, memory-mapped).
        expected: `fingerprint(model, ...)` for the model and settings you search with.
            Model, revision, task, prompt and dims must match.
        force: Load despite a mismatch (only when you know the vectors are compatible).
        mmap: Map the vectors (`np.memmap`, read-only) instead of reading them into
            memory; always so for a job's folder.
    """
    if not Path(path).is_dir():
        return store.load_embeddings(path, expected, force=force, mmap=mmap)
    file, rows = finished_file(Path(path))
    loaded = store.load_embeddings(file, expected, force=force, mmap=True)
    if len(loaded.embeddings) != rows:
        raise ValueError(
            f"{file} holds {len(loaded.embeddings)} rows; the job's manifest says {rows}. "
            "Run the job again with force=True."
        )
    return loaded
