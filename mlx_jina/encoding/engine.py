"""The encoding engine: token-id rows in, output vectors out, one model.

Rows are grouped into length-sorted batches under a token budget (batching.py), each
batch is one forward pass pooled by the backbone's rule, and `finish` cuts to the
Matryoshka size, normalizes and converts to the output precision.
"""

import time

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from ..models.decoder import Model
from ..models.lora import using_task
from ..retrieval.precision import PRECISIONS, normalize, quantize_embeddings
from ..tasks import MIN_DIM
from ..thread_streams import release_at_thread_exit
from .batching import BatchPlan, EncodeStats
from .progress import progress_bar

# The one case where another dtype helps: 16-bit values or activations that overflowed.
SWITCH_DTYPE = (
    "float16 overflows above 65504: load the model with dtype='bfloat16' or 'float32'."
)
# A job over this many padded tokens clears MLX's buffer cache and (on a terminal)
# shows a progress bar.
LARGE_JOB_TOKENS = 65536


class InputTypeError(TypeError, ValueError):
    """Wrong input type; a ValueError too, so callers can catch bad input in one place."""


class Engine:
    """Runs one model over token-id rows; thread-safe as long as the model is."""

    def __init__(self, model: Model, max_length: int):
        self.model, self.max_length = model, max_length

    @property
    def dim(self) -> int:
        return self.model.args.hidden_size

    def check(self, ids: list[list[int]], truncate_dim: int | None, precision: str) -> None:
        """Refuse bad rows and output options before any work is done."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision={precision!r}; choose one of {', '.join(PRECISIONS)}.")
        self.check_truncate_dim(truncate_dim)
        self.check_ids(ids)

    def check_truncate_dim(self, truncate_dim: int | None) -> int:
        if truncate_dim is None:
            return self.dim
        if not isinstance(truncate_dim, int) or not MIN_DIM <= truncate_dim <= self.dim:
            raise ValueError(
                f"truncate_dim={truncate_dim!r}; use an integer from {MIN_DIM} to the "
                f"embedding size {self.dim}, or None."
            )
        return truncate_dim

    def check_ids(self, ids: list[list[int]]) -> None:
        if not isinstance(ids, (list, tuple)):
            raise InputTypeError(f"ids must be a list of token id lists, got {type(ids).__name__}.")
        for i, row in enumerate(ids):
            if not isinstance(row, (list, tuple)) or not row:
                raise ValueError(f"ids[{i}] must be a non-empty list of token ids.")
            if len(row) > self.max_length:
                raise ValueError(
                    f"ids[{i}] has {len(row)} tokens, over the model's context of "
                    f"{self.max_length}. Cut or split it."
                )
            if min(row) < 0:
                raise ValueError(f"ids[{i}] holds the negative token id {min(row)}.")
        if ids:
            self.check_vocab(max(max(row) for row in ids))

    def check_vocab(self, top: int) -> None:
        vocab = self.model.args.vocab_size
        if top >= vocab:
            raise ValueError(
                f"Token id {top} is outside the model's {vocab}-row embedding table; "
                "the tokenizer doesn't match the model."
            )

    def padded(self, rows: list[list[int]]) -> tuple[mx.array, np.ndarray]:
        """`rows` right-padded to the longest as one (B, L) array, and the row lengths."""
        lengths = np.array([len(row) for row in rows], dtype=np.int32)
        ids = np.zeros((len(rows), int(lengths.max())), dtype=np.int32)
        for r, row in enumerate(rows):
            ids[r, : len(row)] = row
        self.check_vocab(int(ids.max()))
        release_at_thread_exit()  # every forward pass starts here: free this thread's streams as it ends
        return mx.array(ids), lengths

    def forward(
        self, rows: list[list[int]], task: str | None = None
    ) -> tuple[mx.array, np.ndarray]:
        """Final hidden states (B, L, D) of ONE forward pass over `rows`, right-padded to
        the longest, every token's (token embeddings need them all), and the row lengths.
        Builds the graph only."""
        ids, lengths = self.padded(rows)
        with using_task(task):  # LoRA layers read it while the graph is built
            return self.model(ids, lengths), lengths

    def embed_batch(self, rows: list[list[int]], task: str | None = None) -> mx.array:
        """Pooled float32 vectors of ONE forward pass over `rows` (graph only). The last
        layer runs at the pooled tokens only (`Model.embed`): the same vectors as pooling
        `forward`'s states, with less work."""
        ids, lengths = self.padded(rows)
        with using_task(task):
            return self.model.embed(ids, lengths).astype(mx.float32)

    def token_batch(self, rows: list[list[int]], task: str | None = None) -> list[mx.array]:
        """Per-token float32 states of ONE forward pass, one `(len(row), D)` array per
        row with the padding rows cut off (graph only)."""
        h, lengths = self.forward(rows, task)
        h = h.astype(mx.float32)
        return [h[r, : int(n)] for r, n in enumerate(lengths)]

    def run(
        self,
        ids: list[list[int]],
        plan: BatchPlan,
        task: str | None,
        show: bool | None,
        tokens: bool = False,
    ) -> tuple[mx.array | list[mx.array], EncodeStats]:
        """Pooled vectors in input order, evaluated (with `tokens`, per-token states: a
        list of arrays). Each batch's graph is built while the one before it computes."""
        start = time.perf_counter()
        large = len(plan.batches) > 8 or plan.padded_tokens > LARGE_JOB_TOKENS
        bar = progress_bar(len(ids), show, large)
        step = self.token_batch if tokens else self.embed_batch
        done: list = []
        try:
            for batch in plan.batches:
                out = step([ids[i] for i in batch], task)
                mx.async_eval(out)
                if done:  # wait for the batch before; keeps one graph in flight
                    mx.eval(done[-1])
                    if bar is not None:
                        bar.update(len(done[-1]))
                done.append(out)
            mx.eval(done[-1])
            if bar is not None:
                bar.update(len(done[-1]))
        finally:
            if bar is not None:
                bar.close()
        stats = EncodeStats(
            plan.real_tokens, plan.padded_tokens, texts=len(ids), batches=len(plan.batches),
            seconds=time.perf_counter() - start,
        )  # fmt: skip
        if tokens:
            out = [None] * len(ids)
            for i, row in zip(plan.order, (row for rows in done for row in rows)):
                out[i] = row
            self.check_token_states(out)
        elif len(done) == 1 and all(i == n for n, i in enumerate(plan.order)):
            out = done[0]  # one batch in input order (a single query): nothing to move
        else:
            out = mx.concatenate(done)[mx.array(np.argsort(plan.order))]
            mx.eval(out)
        if plan.padded_tokens > LARGE_JOB_TOKENS:
            # Give back the large job's buffers: MLX would keep them cached for reuse.
            mx.clear_cache()
        return out, stats

    def finish(
        self,
        emb: mx.array,
        *,
        truncate_dim: int | None = None,
        normalize_embeddings: bool = True,
        precision: str = "float32",
    ) -> mx.array:
        """Pooled vectors to output: cut to `truncate_dim`, normalize, then `precision`.

        Raises BrokenVectorsError (a FloatingPointError) when a vector is not finite or is
        all zeros (in any precision, at any size): such vectors never leave.
        """
        dim = self.check_truncate_dim(truncate_dim)
        # |x|.max keeps NaN and inf: a row is finite iff its peak is. A NaN anywhere in
        # the pooled vector means the model is broken, cut or not.
        peak = mx.abs(emb).max(axis=1)
        finite = mx.isfinite(peak)
        if dim < emb.shape[1]:
            emb = emb[:, :dim]
            peak = mx.abs(emb).max(axis=1)
        # An all-zero vector (say, a norm that overflowed inside the model) has no direction.
        ok = finite & (peak > 0)
        if normalize_embeddings:
            emb = unit_rows(emb, peak)
        out = emb.astype(mx.float16) if precision == "float16" else emb
        # Unnormalized vectors can overflow float16 (unit ones can't).
        fits = ok if out is emb or normalize_embeddings else mx.isfinite(mx.abs(out).max(axis=1))
        mx.eval(ok, fits, out)  # one sync for the checks and the output
        if not ok.all().item():
            raise self.broken_vectors(np.flatnonzero(~np.array(ok)), len(ok), np.array(finite))
        if not fits.all().item():
            bad = np.flatnonzero(~np.array(fits))
            raise BrokenVectorsError(
                f"{len(bad)} of {len(fits)} vectors (inputs {', '.join(map(str, bad[:5]))}) "
                "hold values over float16's 65504, unnormalized. Pass "
                "normalize_embeddings=True, or precision='float32'.",
                rows=bad.tolist(),
            )
        if precision not in ("float32", "float16"):
            # After the cut and normalization: the int8 ranges assume unit vectors.
            out = mx.array(quantize_embeddings(np.array(emb), precision))
            mx.eval(out)
        return out

    def check_token_states(self, rows: list[mx.array]) -> None:
        """The token-embedding form of `finish`'s check: every token's state finite and
        not all zeros."""
        peaks = [mx.abs(h).max(axis=1) for h in rows]  # NaN and inf propagate
        ok = mx.stack([(mx.isfinite(p) & (p > 0)).all() for p in peaks])
        finite = mx.stack([mx.isfinite(p).all() for p in peaks])
        mx.eval(ok, finite)
        if not ok.all().item():
            raise self.broken_vectors(np.flatnonzero(~np.array(ok)), len(rows), np.array(finite))

    def broken_vectors(self, bad: np.ndarray, n: int, finite: np.ndarray) -> "BrokenVectorsError":
        """The error for inputs `bad` (of `n`) whose vectors are not finite or all zeros,
        with the likely cause read from the weights."""
        what = "inf/NaN" if not finite[bad].all() else "all-zero"
        shown = ", ".join(map(str, bad[:5])) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        return BrokenVectorsError(
            f"The model produced {what} vectors for {len(bad)} of {n} inputs "
            f"(input{'s' if len(bad) > 1 else ''} {shown}, in the order given). "
            + weights_diagnosis(self.model),
            rows=bad.tolist(),
        )


class BrokenVectorsError(FloatingPointError):
    """Vectors that are not finite or are all zeros; `rows` are their inputs' positions."""

    def __init__(self, message: str, rows: list[int]):
        super().__init__(message)
        self.rows = rows


def unit_rows(x: mx.array, peak: mx.array) -> mx.array:
    """`normalize`, also for finite rows whose squared norm overflows (or underflows)
    float32: those are first scaled by 1 / their `peak` (largest |value|). Other rows are
    scaled by exactly 1, so their result is `normalize`'s to the bit."""
    x = x.astype(mx.float32)
    norm = mx.linalg.norm(x, axis=-1, keepdims=True)
    rescue = 1 / mx.maximum(peak[:, None], np.finfo(np.float32).tiny)
    return normalize(x * mx.where(mx.isfinite(norm) & (norm >= 1e-12), 1.0, rescue))


def weights_diagnosis(model: Model) -> str:
    """The likely cause of broken vectors, read from the weights: tensors holding NaN or
    inf, or float16 overflow (the only case where another dtype helps), or else the
    largest weight."""
    dtype = str(model.norm.weight.dtype).rsplit(".", 1)[-1]
    floats = [
        (name, w) for name, w in tree_flatten(model.parameters())
        if mx.issubdtype(w.dtype, mx.floating)
    ]  # fmt: skip
    stats = [(mx.isnan(w).sum(), mx.isinf(w).sum(), mx.abs(w).max()) for _, w in floats]
    mx.eval(stats)
    stats = [tuple(x.item() for x in row) for row in stats]
    bad = [(name, nan, inf) for (name, _), (nan, inf, _) in zip(floats, stats) if nan or inf]
    if bad:
        listed = ", ".join(f"{name} ({nan + inf} values)" for name, nan, inf in bad[:3])
        listed += f" and {len(bad) - 3} more tensors" if len(bad) > 3 else ""
        if dtype == "float16" and not any(nan for _, nan, _ in bad):
            return f"Weights hold inf in float16: {listed}. {SWITCH_DTYPE}"
        return (
            f"Weights hold NaN or inf: {listed}. The checkpoint (or a merged adapter) is "
            "damaged, and another dtype will not help: download or convert it again."
        )
    if dtype == "float16":
        return f"The activations overflowed in float16. {SWITCH_DTYPE}"
    peak, name = max(((row[2], name) for (name, _), row in zip(floats, stats)), default=(0, "-"))
    return (
        f"Likely cause: weights out of range for {dtype} arithmetic (largest |value| "
        f"{peak:.3g}, in {name}); another dtype will not help. Check the checkpoint's tensors."
    )

