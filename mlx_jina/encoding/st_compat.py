"""sentence-transformers habits: the names ST users type, what each means here, and what
mlx-jina refuses (with the reason, not Python's generic "unexpected keyword argument").

`STHabits` is a mixin for the Embedder: `truncate_dim`, `max_seq_length`, `device`,
`get_sentence_embedding_dimension`, `similarity_fn_name`, `similarity`,
`similarity_pairwise`. `check_keywords` sorts a call's unknown keywords.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import mlx.core as mx
import numpy as np

# ST keyword -> why mlx-jina can't honour it. Anything not here and not a parameter is
# still an ordinary TypeError that names it.
UNSUPPORTED = {
    "pool": "MLX runs one process per machine on its unified memory, so there is no "
    "multi-process pool to hand work to; call encode (or encode_iter) directly",
    "chunk_size": "it sizes the pieces sent to a multi-process pool, which MLX doesn't "
    "use; to stream a large corpus, use encode_iter(texts, chunk_size=...)",
    "convert_to_sparse_tensor": "it belongs to sparse (SPLADE) encoders; these "
    "embeddings are dense",
    "max_active_dims": "it belongs to sparse (SPLADE) encoders; these embeddings are dense",
    "save_to_cpu": "it belongs to sparse (SPLADE) encoders; MLX's arrays already live in "
    "memory the CPU shares",
    "target_devices": "it spreads work over several processes and devices; MLX uses one "
    "device per call (device=)",
}

OUTPUT_VALUES = ("sentence_embedding", "token_embeddings")

# What `device=` takes: MLX has a CPU and a GPU (Metal on a Mac, CUDA on Linux), so the
# PyTorch names Mac and Linux users type mean MLX's GPU.
DEVICES = {"cpu": "cpu", "gpu": "gpu", "mps": "gpu", "cuda": "gpu", "metal": "gpu"}


def check_keywords(method: str, kwargs: dict[str, Any], known: Callable[[], list[str]]) -> None:
    """Refuse `kwargs` (the keywords `method` has no parameter for): the ST ones with
    the reason, the rest as Python would, plus a close match when there is one."""
    for name in kwargs:
        if name in UNSUPPORTED:
            raise TypeError(
                f"sentence-transformers' {name}= is not supported by mlx-jina because "
                f"{UNSUPPORTED[name]}."
            )
        close = difflib.get_close_matches(name, known(), n=1)
        hint = f" Did you mean {close[0]}=?" if close else ""
        raise TypeError(f"{method}() got an unexpected keyword argument {name!r}.{hint}")


def check_output_value(output_value: str | None) -> str:
    if output_value is None:
        raise TypeError(
            "sentence-transformers' output_value=None (both outputs as dicts) is not "
            "supported by mlx-jina because each output has its own call: use "
            "output_value='sentence_embedding' or 'token_embeddings'."
        )
    if output_value not in OUTPUT_VALUES:
        raise ValueError(
            f"output_value={output_value!r}; use {' or '.join(map(repr, OUTPUT_VALUES))}."
        )
    return output_value


def device_context(device: str | None) -> AbstractContextManager:
    """A context that runs MLX on `device` ("cpu", "gpu", or the aliases "mps", "cuda",
    "metal", each optionally ":0"); None keeps MLX's default device."""
    if device is None:
        return nullcontext()
    name = device.lower() if isinstance(device, str) else None
    if name is not None and name.endswith(":0"):
        name = name[:-2]  # one device of each kind: "cuda:0" is the GPU
    if name not in DEVICES:
        raise ValueError(
            f"device={device!r}; use None, 'cpu' or 'gpu' ('mps', 'cuda' and 'metal' mean "
            "'gpu' too)."
        )
    target = mx.gpu if DEVICES[name] == "gpu" else mx.cpu
    if not mx.is_available(target):
        have = [d for d, dev in (("cpu", mx.cpu), ("gpu", mx.gpu)) if mx.is_available(dev)]
        raise ValueError(
            f"device={device!r}: this MLX build has no GPU. Available: {', '.join(have)}."
        )
    return mx.stream(target)


def _rows(x: np.ndarray | mx.array | list) -> np.ndarray:
    # int8/uint8 arrays are quantized codes (levels, or packed sign bits): as numbers
    # they would give plausible but wrong scores, and which kind they are is unknown.
    if str(getattr(x, "dtype", "")).rsplit(".", 1)[-1] in ("int8", "uint8"):
        raise ValueError(
            f"similarity takes float vectors, not {x.dtype} codes (int8/uint8 levels or "
            "binary/ubinary bits). Pass the float vectors, or search the codes with "
            "semantic_search(..., corpus_precision=...)."
        )
    return np.atleast_2d(np.asarray(x, dtype=np.float32))


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def _distances(a: np.ndarray, b: np.ndarray, ord: int) -> np.ndarray:
    """-||a_i - b_j|| for every pair, a few rows of `a` at a time to bound memory."""
    out = np.empty((len(a), len(b)), dtype=np.float32)
    step = max(1, 2**24 // max(1, b.size))
    for i in range(0, len(a), step):
        diff = a[i : i + step, None, :] - b[None, :, :]
        out[i : i + step] = -np.linalg.norm(diff, ord=ord, axis=-1)
    return out


# Name -> (matrix of every pair, row i with row i); larger is more similar, as in ST.
SIMILARITIES = {
    "cosine": (lambda a, b: _unit(a) @ _unit(b).T, lambda a, b: np.sum(_unit(a) * _unit(b), -1)),
    "dot": (lambda a, b: a @ b.T, lambda a, b: np.sum(a * b, -1)),
    "euclidean": (
        lambda a, b: _distances(a, b, 2),
        lambda a, b: -np.linalg.norm(a - b, ord=2, axis=-1),
    ),
    "manhattan": (
        lambda a, b: _distances(a, b, 1),
        lambda a, b: -np.linalg.norm(a - b, ord=1, axis=-1),
    ),
}


class STHabits:
    """The sentence-transformers surface an Embedder offers besides `encode`.

    Needs `dim`, `max_length` (the context), `engine.check_truncate_dim` from the host.
    """

    dim: int
    max_length: int
    _truncate_dim: int | None = None
    _max_seq_length: int | None = None
    _similarity_fn_name: str = "cosine"

    @property
    def truncate_dim(self) -> int | None:
        """The default Matryoshka size for every encode call (None: full size)."""
        return self._truncate_dim

    @truncate_dim.setter
    def truncate_dim(self, value: int | None) -> None:
        self.engine.check_truncate_dim(value)
        self._truncate_dim = value

    @property
    def device(self) -> str:
        """Where `encode` runs unless told otherwise (`device=`): MLX's default device,
        "gpu" (Metal on a Mac) or "cpu". Process-wide in MLX, not per model."""
        return "gpu" if mx.default_device() == mx.gpu else "cpu"

    def get_sentence_embedding_dimension(self) -> int:
        """The size of the vectors `encode` returns by default (honours `truncate_dim`)."""
        return self._truncate_dim or self.dim

    @property
    def max_seq_length(self) -> int:
        """Tokens per input before it is cut: the default for `encode(max_length=)`."""
        return self._max_seq_length or self.max_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not 1 <= value <= self.max_length
        ):
            raise ValueError(
                f"max_seq_length={value!r}; use an integer from 1 to the model's context "
                f"of {self.max_length} tokens."
            )
        self._max_seq_length = value

    @property
    def similarity_fn_name(self) -> str:
        """What `similarity` computes: "cosine" (default), "dot", "euclidean" or
        "manhattan" (the last two negated distances, so larger is closer)."""
        return self._similarity_fn_name

    @similarity_fn_name.setter
    def similarity_fn_name(self, value: str) -> None:
        if value not in SIMILARITIES:
            raise ValueError(
                f"similarity_fn_name={value!r}; choose one of {', '.join(SIMILARITIES)}."
            )
        self._similarity_fn_name = value

    def similarity(self, a, b) -> np.ndarray:
        """`similarity_fn_name` between every row of `a` and every row of `b` (1-D inputs
        are one row): an `(len(a), len(b))` array."""
        return SIMILARITIES[self._similarity_fn_name][0](_rows(a), _rows(b))

    def similarity_pairwise(self, a, b) -> np.ndarray:
        """`similarity_fn_name` between row i of `a` and row i of `b`: `(n,)`."""
        a, b = _rows(a), _rows(b)
        if a.shape != b.shape:
            raise ValueError(
                f"similarity_pairwise needs two arrays of the same shape, got {a.shape} "
                f"and {b.shape}."
            )
        return SIMILARITIES[self._similarity_fn_name][1](a, b)
