"""Output precisions: float32/float16, scalar int8/uint8 and bit-packed binary/ubinary.

The formulas are sentence-transformers' `quantize_embeddings` (v6), so vectors move
between the two libraries unchanged:

* ubinary: `np.packbits(emb > 0, axis=-1)`, uint8, dim / 8 bytes.
* binary: ubinary - 128 as int8.
* uint8: `clip(floor((emb - start) / step), 0, 255)` with `step = (stop - start) / 255`
  per dimension, from `ranges = [[start...], [stop...]]`; int8 is that - 128.

Only the default int8/uint8 ranges differ: sentence-transformers takes them from the
batch (impossible for one query, and different for every batch). We use a fixed
symmetric range instead, `[-r, r]` in every dimension with `r = min(1, 12 / sqrt(dim))`:
components of a unit vector have a standard deviation of about `1 / sqrt(dim)`, so this
clips only 12-sigma outliers (a few dimensions of real models carry several times the
typical size) and leaves about 10 levels per sigma. A vector therefore quantizes the
same alone or in any batch. For a stored corpus, per-dimension ranges from
`calibration_embeddings=` (a sample of the corpus) are more precise.
"""

import math
from dataclasses import dataclass

import mlx.core as mx
import numpy as np


@dataclass(frozen=True)
class Precision:
    """One output precision: how its vectors are stored and named."""

    name: str
    dtype: str  # numpy dtype of the stored vectors
    packed: bool = False  # sign bits, 8 dimensions a byte (np.packbits order)
    scalar: bool = False  # one level per dimension, under per-dimension ranges
    api_names: tuple[str, ...] = ()  # names in the server's embedding_type / encoding_format

    def width(self, dim: int) -> int:
        """Stored values per vector of `dim` dimensions."""
        return (dim + 7) // 8 if self.packed else dim


TABLE = {
    p.name: p
    for p in (
        Precision("float32", "float32", api_names=("float", "base64")),
        Precision("float16", "float16"),
        Precision("int8", "int8", scalar=True, api_names=("int8",)),
        Precision("uint8", "uint8", scalar=True),
        Precision("binary", "int8", packed=True, api_names=("binary",)),
        Precision("ubinary", "uint8", packed=True, api_names=("ubinary",)),
    )
}
PRECISIONS = tuple(TABLE)
SCALAR_PRECISIONS = tuple(p.name for p in TABLE.values() if p.scalar)
BINARY_PRECISIONS = tuple(p.name for p in TABLE.values() if p.packed)
RANGE_SIGMAS = 12.0
# The bits of a byte, most significant first: np.packbits is big-endian.
BIT_SHIFTS = (7, 6, 5, 4, 3, 2, 1, 0)


def normalize(x: mx.array) -> mx.array:
    """Rows scaled to unit L2 length, in float32 (all-zero rows stay zero)."""
    x = x.astype(mx.float32)  # fp16 norms can overflow
    return x / mx.maximum(mx.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def default_ranges(dim: int) -> np.ndarray:
    """The fixed int8/uint8 ranges for unit vectors of size `dim`: shape (2, dim)."""
    r = min(1.0, RANGE_SIGMAS / math.sqrt(dim))  # a unit vector's components are in [-1, 1]
    return np.array([[-r] * dim, [r] * dim], dtype=np.float32)


def storage(dim: int, precision: str) -> tuple[np.dtype, int]:
    """The dtype and row width of `precision` vectors of `dim` dimensions: (int8, 4) for
    binary at 32. Files, search and encode() all follow this one rule."""
    check_precision(precision)
    p = TABLE[precision]
    return np.dtype(p.dtype), p.width(dim)


def bytes_per_vector(dim: int, precision: str) -> int:
    """Storage for one vector, e.g. 4096 bytes for float32 at dim 1024, 128 for binary."""
    dtype, width = storage(dim, precision)
    return width * dtype.itemsize


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}; choose one of {', '.join(PRECISIONS)}.")


def quantize_embeddings(
    embeddings: np.ndarray,
    precision: str,
    ranges: np.ndarray | None = None,
    calibration_embeddings: np.ndarray | None = None,
) -> np.ndarray:
    """Convert float embeddings (1-D or 2-D, unit rows) to `precision`.

    Args:
        embeddings: Float vectors, numpy or mx.array; the last axis is the dimension.
        precision: "float32", "float16", "int8", "uint8", "binary" or "ubinary".
        ranges: int8/uint8 only: per-dimension `[[min...], [max...]]`, shape (2, dim).
        calibration_embeddings: int8/uint8 only: take `ranges` as the per-dimension
            min and max of these vectors (a representative sample of your corpus).

    Returns:
        A numpy array: float32/float16 of the same shape, int8/uint8 of the same shape,
        or int8/uint8 bit-packed along the last axis (`ceil(dim / 8)` bytes).
    """
    check_precision(precision)
    embeddings = np.asarray(embeddings)
    if embeddings.dtype.kind not in "f":
        raise ValueError(
            f"Embeddings to quantize must be float, not {embeddings.dtype}. "
            "Quantize the float vectors that encode() returns."
        )
    if not (TABLE[precision].packed or TABLE[precision].scalar):
        return embeddings.astype(precision)
    bad = nonfinite_rows(embeddings.reshape(-1, embeddings.shape[-1]))
    if bad:
        # NaN > 0 is False and NaN casts to an arbitrary integer: the code would look valid.
        raise ValueError(
            f"{bad} vector(s) hold NaN or inf, which have no {precision} code. "
            "Find where they come from (a float16 overflow?) before quantizing."
        )
    if precision in BINARY_PRECISIONS:
        packed = np.packbits(embeddings > 0, axis=-1)
        # uint8 - 128 wraps, which is exactly the int8 value minus 128.
        return packed if precision == "ubinary" else (packed - 128).astype(np.int8)

    ranges = scalar_ranges(embeddings.shape[-1], ranges, calibration_embeddings)
    starts = ranges[0]
    steps = (ranges[1] - starts) / 255
    steps = np.where(steps == 0, 1, steps)
    levels = np.clip(np.floor((embeddings - starts) / steps), 0, 255)
    return levels.astype(np.uint8) if precision == "uint8" else (levels - 128).astype(np.int8)


def scalar_ranges(
    dim: int, ranges: np.ndarray | None = None, calibration_embeddings: np.ndarray | None = None
) -> np.ndarray:
    """The (2, dim) float32 int8/uint8 ranges: given, from calibration vectors, or the default."""
    if ranges is not None and calibration_embeddings is not None:
        raise ValueError("Pass ranges or calibration_embeddings, not both.")
    if calibration_embeddings is not None:
        calibration = np.atleast_2d(np.asarray(calibration_embeddings, dtype=np.float32))
        ranges = np.stack([calibration.min(axis=0), calibration.max(axis=0)])
    elif ranges is None:
        return default_ranges(dim)
    return check_ranges(ranges, dim)


def check_ranges(ranges: np.ndarray, dim: int) -> np.ndarray:
    """`ranges` as float32 (2, dim), refusing the wrong shape, NaN/inf and min > max."""
    with np.errstate(over="ignore"):  # what overflows float32 is refused below as inf
        ranges = np.asarray(ranges, dtype=np.float32)
    if ranges.shape != (2, dim):
        raise ValueError(
            f"ranges has shape {ranges.shape}; int8/uint8 need (2, {dim}): "
            "per-dimension minimums, then maximums."
        )
    if not np.isfinite(ranges).all():
        raise ValueError(
            f"ranges holds {np.count_nonzero(~np.isfinite(ranges))} NaN or inf values "
            "(float32); int8/uint8 need finite minimums and maximums."
        )
    flipped = np.flatnonzero(ranges[0] > ranges[1])
    if flipped.size:
        i = flipped[0]
        raise ValueError(
            f"ranges has a minimum above its maximum in {flipped.size} dimension(s), e.g. "
            f"dimension {i}: {ranges[0, i]} > {ranges[1, i]}. Pass [[min...], [max...]]."
        )
    return ranges


def nonfinite_rows(x: np.ndarray, chunk_size: int = 65536) -> int:
    """How many rows of a 2-D float array hold a NaN or inf; a chunk at a time, so a large
    corpus needs no full-size mask."""
    if x.dtype.kind != "f":
        return 0
    return sum(
        int(np.count_nonzero(~np.isfinite(x[i : i + chunk_size]).all(axis=1)))
        for i in range(0, x.shape[0], chunk_size)
    )


def dequantize_embeddings(
    embeddings: np.ndarray, precision: str, dim: int | None = None, ranges: np.ndarray | None = None
) -> np.ndarray:
    """Approximate float32 vectors back from quantized ones (not normalized).

    int8/uint8 map to the middle of their bin under `ranges` (default: the fixed ones);
    binary/ubinary map each bit to +1 or -1, `dim` (default 8 x bytes) trims the padding.
    """
    check_precision(precision)
    embeddings = np.asarray(embeddings)
    if TABLE[precision].packed:
        signs = np.array(unpack_signs(mx.array(np.atleast_2d(embeddings)), precision))
        signs = signs.reshape(*embeddings.shape[:-1], -1)
        return signs[..., : dim if dim is not None else signs.shape[-1]]
    if TABLE[precision].scalar:
        ranges = scalar_ranges(embeddings.shape[-1], ranges)
        return np.array(dequantize_levels(mx.array(embeddings), precision, ranges))
    return embeddings.astype(np.float32)


def unpack_signs(packed: mx.array, precision: str) -> mx.array:
    """Bit-packed rows -> +/-1 float32 rows, 8 per byte (padding bits included)."""
    packed = packed.view(mx.uint8)
    if precision == "binary":
        packed = mx.bitwise_xor(packed, 0x80)  # undo the int8 "- 128"
    bits = (packed[..., None] >> mx.array(BIT_SHIFTS, dtype=mx.uint8)) & 1
    return bits.reshape(*packed.shape[:-1], -1).astype(mx.float32) * 2 - 1


def dequantize_levels(x: mx.array, precision: str, ranges: np.ndarray) -> mx.array:
    """int8/uint8 codes -> the middle of their bins under `ranges`, float32."""
    steps = mx.array((ranges[1] - ranges[0]) / 255)
    levels = x.astype(mx.float32) + (128 if precision == "int8" else 0)
    return (levels + 0.5) * steps + mx.array(ranges[0])
