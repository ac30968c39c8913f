"""The bytes a corpus job's ranks exchange: a round's plan (texts) and its vectors.

Every message is one uint8 array: a table of int64 fields, then the payload. Texts go
as UTF-8, vectors at their output precision (float32, float16, int8, uint8, bit-packed
binary) with a small header saying how to rebuild them, so nothing is converted twice.
"""

from __future__ import annotations

import numpy as np

DTYPES = [np.float32, np.float16, np.int8, np.uint8, np.int32, np.int64, np.bool_]
META = 6  # per shard in a report: index, tokens, dtype code, ndim, d0, d1

Plan = list[tuple[int, int, list[str]]]  # (rank, shard index, texts) per shard
Result = tuple[int, np.ndarray, int]  # (shard index, vectors, tokens)


def texts_blob(texts: list[str]) -> bytes:
    """Texts in one blob: their UTF-8 byte lengths (int64), then the bytes."""
    encoded = [t.encode("utf-8") for t in texts]
    return np.array([len(b) for b in encoded], dtype=np.int64).tobytes() + b"".join(encoded)


def blob_texts(blob: bytes, n: int) -> list[str]:
    """The `n` texts of a `texts_blob`."""
    ends = (np.cumsum(np.frombuffer(blob[: 8 * n], dtype=np.int64)) + 8 * n).tolist()
    starts = [8 * n] + ends[:-1]
    return [blob[a:b].decode("utf-8") for a, b in zip(starts, ends)]


def pack_plan(plan: Plan) -> np.ndarray:
    """[rank, index, texts, bytes] per shard, then each shard's `texts_blob`."""
    table, blobs = [], []
    for rank, index, texts in plan:
        blob = texts_blob(texts)
        table.append([rank, index, len(texts), len(blob)])
        blobs.append(blob)
    head = np.array(table, dtype=np.int64).tobytes()
    return np.frombuffer(head + b"".join(blobs), dtype=np.uint8)


def unpack_plan(payload: np.ndarray, shards: int, me: int) -> list[tuple[int, list[str]]]:
    """Rank `me`'s (index, texts) pairs of the round."""
    raw = payload.tobytes()
    table = np.frombuffer(raw[: 32 * shards], dtype=np.int64).reshape(shards, 4)
    mine, offset = [], 32 * shards
    for rank, index, n, size in table.tolist():
        if rank == me:
            mine.append((index, blob_texts(raw[offset : offset + size], n)))
        offset += size
    return mine


def checked(vectors: np.ndarray) -> np.ndarray:
    """`vectors` as the wire carries them (contiguous), or a TypeError."""
    vectors = np.ascontiguousarray(vectors)
    if vectors.dtype.type not in DTYPES or vectors.ndim not in (1, 2):
        raise TypeError(f"cannot send vectors of dtype {vectors.dtype}, shape {vectors.shape}")
    return vectors


def packed_size(results: list[Result]) -> int:
    return sum(8 * META + vectors.nbytes for _, vectors, _ in results)


def pack_vectors(results: list[Result], into: np.ndarray) -> None:
    """Each shard's meta and vectors, written straight into the gather's uint8 buffer."""
    offset = 0
    for index, vectors, tokens in results:
        shape = list(vectors.shape) + [0] * (2 - vectors.ndim)
        layout = [DTYPES.index(vectors.dtype.type), vectors.ndim, *shape]
        meta = np.array([index, tokens, *layout], dtype=np.int64)
        for part in (meta, vectors):
            into[offset : offset + part.nbytes] = part.reshape(-1).view(np.uint8)
            offset += part.nbytes


def unpack_vectors(raw, shards: int) -> list[Result]:
    """`raw`: bytes or a uint8 array (a row of the gather); the vectors are copied out."""
    results, offset = [], 0
    for _ in range(shards):
        index, tokens, code, ndim, d0, d1 = np.frombuffer(raw, np.int64, META, offset).tolist()
        offset += 8 * META
        shape = (d0, d1)[:ndim]
        flat = np.frombuffer(raw, DTYPES[code], int(np.prod(shape)), offset)
        offset += flat.nbytes
        results.append((index, flat.reshape(shape).copy(), tokens))
    return results
