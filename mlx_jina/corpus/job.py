"""embed_corpus(): embed a corpus too large for memory into a folder, resumably.

The work is split in fixed-size shards of the input (shard i holds texts
i * shard_size ...). `shard_embedder` gives the work of one shard as a function
`embed_shard(texts) -> (vectors, tokens)` that touches no file; the scheduler below reads
the input, skips finished shards, calls it, and hands the result to the ShardStore
(shards.py), which accepts shards in any order. A later step can hand shards to other
processes (mx.distributed ranks) without changing either side.

Kill-safety: each shard file is written atomically and listed in the manifest only after
it is whole; the manifest itself is replaced atomically. A run killed at any moment (even
SIGKILL) is resumed by running the same call again: listed shards are checked and kept,
anything else is redone. Test hook: with MLX_JINA_CORPUS_KILL_AT=EVENT:N in the
environment, the process SIGKILLs itself at that point (events: shard-embedded,
shard-written, shard-recorded, final-appended, final-recorded, final-renamed); the tests
use it to kill the job between any two steps. It is read here and nowhere else.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import count as count_from
from itertools import islice
from pathlib import Path

import numpy as np

from .manifest import (
    FINAL,
    DamagedManifest,
    Manifest,
    is_job_file,
    job_files,
    job_lock,
    read_manifest,
    refuse_strangers,
    start_over,
)
from ..encoding.progress import progress_bar
from .reader import CorpusInput, open_corpus
from .settings import DEFAULT_SHARD_SIZE, check_job, check_options, job_settings
from .shards import ShardStore

KILL_HOOK = "MLX_JINA_CORPUS_KILL_AT"
FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
# Texts per encode call inside a shard (bounds the memory of one call); the progress
# bar moves after every batch within it.
PROGRESS_TEXTS = 1024

EmbedShard = Callable[[list[str]], "tuple[np.ndarray, int]"]


class JobWriteError(OSError):
    """A job's file could not be written (a full disk): the message names the file and
    what is kept; `errno` and `filename` are the cause's."""

    def __str__(self) -> str:
        return self.strerror


@dataclass(frozen=True)
class CorpusResult:
    """What `embed_corpus` did. `embedded_*` and `tokens` count this run's work only."""

    out_dir: Path
    rows: int  # rows in the finished job, in input order
    shards: int  # shards in the job
    embedded_texts: int
    embedded_shards: int
    tokens: int
    seconds: float
    shards_by_rank: dict[int, int] | None = None  # under mlx.launch: shards each rank embedded

    @property
    def reused_shards(self) -> int:
        return self.shards - self.embedded_shards

    def summary(self) -> str:
        rate = self.tokens / self.seconds if self.seconds > 0 else 0.0
        return (
            f"Embedded {self.embedded_texts:,} texts ({self.tokens:,} tokens, {rate:,.0f} "
            f"tokens/s) in {self.seconds:.1f} s: {self.embedded_shards} of {self.shards} "
            f"shards this run{self._ranks()}; {self.rows:,} rows in {self.out_dir / FINAL}"
        )

    def _ranks(self) -> str:
        if not self.shards_by_rank:
            return ""
        return " (by rank: " + ", ".join(f"{r}: {n}" for r, n in sorted(self.shards_by_rank.items())) + ")"


def embed_corpus(
    model_or_path,
    texts_or_path: str | os.PathLike | Iterable[str],
    out_dir: str | os.PathLike,
    *,
    shard_size: int | None = None,
    text_field: str = "text",
    jsonl: bool | None = None,
    force: bool = False,
    show_progress_bar: bool | None = None,
    load_options: dict | None = None,
    stall_timeout: float | None = None,
    **encode_kwargs,
) -> CorpusResult | None:
    """Embed a corpus into `out_dir`, shard by shard; run it again to resume. Under
    `mlx.launch`, rank 0 reads the input, hands shards to every rank and writes `out_dir`;
    the other ranks need only the model and return None.

    Args:
        model_or_path: An Embedder, or what `load` takes (loaded, after the input is
            checked, with `task=encode_kwargs.get("task")` and `load_options`).
        texts_or_path: A file (".jsonl": a JSON string or object per line; else a text
            per line), "-" for stdin (not resumable), or an iterable of strings.
        out_dir: The job's folder: new, empty, or holding this same job.
        shard_size: Texts per shard (default 10,000, or the job's own when resuming).
        text_field, jsonl: The JSON field holding the text; JSON lines (default: ".jsonl").
        force: Start over in a folder holding another job; deletes only the job's files.
        show_progress_bar: None shows one (texts, tokens/s, ETA) on a terminal.
        stall_timeout: Under mlx.launch, seconds a shard may take before the job stops:
            catches a frozen rank (default: no limit); above the slowest shard's time.
        **encode_kwargs: As in `encode` (task, prompt_name, truncate_dim, precision, ...).

    Returns:
        A CorpusResult (`.summary()`: the CLI's last line); `load_embeddings(out_dir)`
        reads the vectors, memory-mapped, in input order.

    Raises:
        ValueError: A bad text (named by line or index, before any work for files and
            lists), a folder holding another job (every difference named), bad options.
        ShardPoolError: Under mlx.launch, a rank was lost or failed (rerun to resume).
    """
    started = time.perf_counter()
    check_options(encode_kwargs, shard_size, stall_timeout)
    if (group := _launched_group()) is not None and group.rank() != 0:
        return _serve_rank(group, _model(model_or_path, encode_kwargs, load_options), encode_kwargs)
    corpus = open_corpus(texts_or_path, text_field=text_field, jsonl=jsonl)
    folder = _job_folder(out_dir, corpus)
    if corpus.scan().get("texts") == 0:  # every text checked before the model loads
        raise ValueError(f"{corpus.name} holds no texts; there is nothing to embed.")
    model = _model(model_or_path, encode_kwargs, load_options)
    fp, settings = job_settings(model, encode_kwargs)
    folder.mkdir(parents=True, exist_ok=True)
    store, done, tokens, by_rank = _embed_locked(
        folder, corpus, model, fp, settings, shard_size, force, encode_kwargs,
        show_progress_bar, stall_timeout,
    )  # fmt: skip
    return CorpusResult(folder, store.manifest.texts, store.manifest.shard_count, sum(done.values()),
                        len(done), tokens, time.perf_counter() - started, by_rank)  # fmt: skip


def _embed_locked(folder, corpus, model, fp, settings, shard_size, force, encode_kwargs,
                  show_progress_bar, stall_timeout):  # fmt: skip
    """The job under its folder's lock: prepare, verify, embed, join; a failed write
    names the file and how to go on."""
    with job_lock(folder):
        store = ShardStore(folder, _prepare(folder, settings, corpus, shard_size, force), fp)
        try:
            store.verify()  # listed shards whose files are gone are dropped, to be redone
            store.clean()
            done, tokens, by_rank = _run(corpus, store, model, encode_kwargs, show_progress_bar,
                                         stall_timeout, settings)  # fmt: skip
            store.join(_kill_point)
        except OSError as e:
            if e.filename is None or Path(e.filename).parent != folder:
                raise
            raise _write_error(e, store.manifest, corpus) from e
    return store, done, tokens, by_rank


def shard_embedder(model, encode_kwargs: dict, progress: Callable[[int], None] | None = None) -> EmbedShard:
    """The work of one shard, `embed_shard(texts) -> (vectors, tokens)`: a pure function
    of the texts (no files, no job state), so a scheduler may run it anywhere. It encodes
    PROGRESS_TEXTS texts at a time; `progress(n)` is called after every batch, so a bar
    moves within seconds of the start."""
    options = dict(encode_kwargs)

    def embed_shard(texts: list[str]) -> tuple[np.ndarray, int]:
        parts, tokens = [], 0
        for start in range(0, len(texts), PROGRESS_TEXTS):
            chunk = list(texts[start : start + PROGRESS_TEXTS])
            parts.append(model.encode(chunk, show_progress_bar=progress or False, **options))
            tokens += model.last_stats.real_tokens
        return np.concatenate(parts), tokens

    return embed_shard


def _serve_rank(group, model, encode_kwargs: dict) -> None:
    """A rank > 0 under mlx.launch needs only the model: rank 0 sends it the texts, once
    the ranks agree they hold the same model and settings."""
    from .rounds import serve

    serve(group, shard_embedder(model, encode_kwargs), job_settings(model, encode_kwargs)[1])


def _launched_group():
    from .rounds import init_group

    return init_group()


def _model(model_or_path, encode_kwargs: dict, load_options: dict | None):
    if isinstance(model_or_path, (str, os.PathLike)):
        from ..loading import load

        return load(model_or_path, task=encode_kwargs.get("task"), **(load_options or {}))
    if load_options:
        raise ValueError("load_options apply when model_or_path is a path; the model is loaded.")
    return model_or_path


def _job_folder(out_dir, corpus: CorpusInput) -> Path:
    folder = Path(out_dir).resolve()
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"out_dir {out_dir} is a file; pass a folder (new, or this job's).")
    if corpus.kind == "file" and corpus.source.parent == folder and is_job_file(corpus.source.name):
        raise ValueError(f"The input {corpus.name} is one of the job's own files; move it first.")
    return folder


def _write_error(e: OSError, manifest: Manifest, corpus: CorpusInput) -> JobWriteError:
    """A failed write as one line: the file, the cause, what is kept and how to go on."""
    done, total = len(manifest.shards), manifest.shard_count
    fix = "free some disk space, then " if e.errno in FULL else "fix that, then "
    if corpus.resumable:
        then = (f"The {done} finished shards (of {total or '?'}) are kept; {fix}run the "
                "same command again to resume.")  # fmt: skip
    else:
        what = "stdin" if corpus.kind == "stdin" else "a one-shot iterable"
        then = (f"A job that reads {what} can't resume: {fix}run it again with force=True "
                "(--force), or save the input to a file first, to make it resumable.")  # fmt: skip
    return JobWriteError(e.errno, f"Could not write {e.filename}: {e.strerror or e}. {then}")


def _read_manifest(folder: Path) -> Manifest | None:
    """read_manifest, and for a damaged one, what stands in the way of force=True."""
    try:
        return read_manifest(folder)
    except DamagedManifest as e:
        if strangers := job_files(folder, None, True)[1]:
            raise DamagedManifest(
                f"{e} With the manifest damaged, nothing proves that "
                f"{', '.join(strangers[:5])} are the job's: move them away first."
            ) from None
        raise


def _prepare(folder: Path, settings: dict, corpus: CorpusInput, shard_size, force: bool) -> Manifest:
    """The manifest to continue from: this job's (checked), or a new one. Files the
    manifest doesn't prove are the job's are never deleted or overwritten."""
    if force:
        start_over(folder)
        manifest = None
    else:
        manifest = _read_manifest(folder)
        if manifest is None and (strangers := job_files(folder, None, False)[1]):
            raise ValueError(
                f"{folder} holds embed-job files but no manifest ({', '.join(strangers[:5])}), "
                "so nothing proves they are a job's and they are never deleted: move them "
                "away, or choose another folder."
            )
    if manifest is not None:
        check_job(manifest, settings, corpus, shard_size, folder)
        refuse_strangers(folder, job_files(folder, manifest, True)[1], force=False)
        return manifest
    manifest = Manifest(settings, corpus.identity, shard_size or DEFAULT_SHARD_SIZE,
                        texts=corpus.identity.get("texts"))  # fmt: skip
    manifest.save(folder)
    return manifest


def _run(corpus: CorpusInput, store: ShardStore, model, encode_kwargs: dict, show,
         stall_timeout: float | None = None, settings: dict | None = None) -> tuple[dict, int, dict | None]:
    """Embed the unfinished shards; {index: texts} embedded, and tokens. Under mlx.launch
    the shards go to every rank (rounds.RoundPool); alone, they run here in order."""
    from .rounds import RoundPool, init_group

    manifest, done, tokens = store.manifest, {}, 0
    group = init_group()
    if manifest.complete:
        if group is not None:  # the other ranks wait for word: tell them there is no work
            RoundPool(group, settings=settings).close()
        return done, tokens, None
    bar, started = _bar(manifest, show), time.perf_counter()
    # Alone, the bar moves within a shard; with ranks, as each shard comes back.
    local = bar.update if bar is not None and group is None else None
    embed_shard = shard_embedder(model, encode_kwargs, local)
    read = {"texts": 0}
    try:
        with RoundPool(group, embed_shard, stall_timeout=stall_timeout, settings=settings) as pool:
            for index, vectors, n_tokens in pool.map(_pending(corpus.texts(), manifest, read)):
                _kill_point("shard-embedded", index)
                entry = store.write(index, vectors)
                _kill_point("shard-written", index)
                corpus.check_unchanged()  # never list a shard of an edited file
                store.record(index, entry, n_tokens)
                _kill_point("shard-recorded", index)
                done[index], tokens = len(vectors), tokens + n_tokens
                if bar is not None:
                    bar.update(0 if local else len(vectors))
                    bar.set_postfix_str(f"{tokens / max(time.perf_counter() - started, 1e-9):,.0f} tok/s")
    finally:
        if bar is not None:
            bar.close()
    if manifest.texts is None:  # stdin or an iterable: the count is known at its end
        if read["texts"] == 0:
            raise ValueError(f"{corpus.name} held no texts; there is nothing to embed.")
        manifest.texts = read["texts"]
        manifest.save(store.folder)
    return done, tokens, pool.shards_by_rank if group is not None else None


def _pending(texts, manifest: Manifest, read: dict) -> Iterator[tuple[int, list[str]]]:
    """(index, texts) of each unfinished shard, in input order; finished shards are read
    past, never re-embedded. Counts what it read in read["texts"]."""
    for index in count_from(0):
        if index in manifest.shards:
            read["texts"] += _skip(texts, manifest.shards[index]["rows"])
            continue
        chunk = list(islice(texts, manifest.shard_size))
        if not chunk:
            return
        read["texts"] += len(chunk)
        yield index, chunk


def _skip(texts, n: int) -> int:
    """Read past a finished shard's texts (still checked: the input is the same file)."""
    return sum(1 for _ in islice(texts, n))


def _bar(manifest: Manifest, show: bool | None):
    if manifest.complete:
        return None
    already = sum(s["rows"] for s in manifest.shards.values())
    return progress_bar(manifest.texts, show, True, "Embedding", initial=already)


def _kill_point(event: str, index: int) -> None:
    """The test hook (module docstring): SIGKILL this process at EVENT:N."""
    if os.environ.get(KILL_HOOK) == f"{event}:{index}":
        os.kill(os.getpid(), signal.SIGKILL)
