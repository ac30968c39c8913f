"""What decides a job's vectors, and the check that a folder's job is this one.

The settings are the embedding fingerprint (the model's content identity, task, prompt,
dims, precision; the model's name and revision are recorded for people) plus what else
changes a vector: normalization, max_length, truncation, special-token splitting and the
weights (dtype, quantization bits). batch_size and max_batch_tokens only change how fast
it runs, so a resumed job may change them.
"""

from __future__ import annotations

from dataclasses import asdict

from ..checkpoint.identity import comparable, differing_parts
from ..retrieval.store import Fingerprint, fingerprint, same_model
from .manifest import Manifest, differences
from .reader import CorpusInput

DEFAULT_SHARD_SIZE = 10_000
ENCODE_OPTIONS = (
    "task", "prompt_name", "prompt", "truncate_dim", "precision", "normalize_embeddings",
    "max_length", "truncate", "split_special_tokens", "batch_size", "max_batch_tokens",
)  # fmt: skip
# The input's identity that must match; path and mtime may change (a moved or copied file).
INPUT_KEYS = ("kind", "format", "text_field", "size", "sha256", "texts")
PART_WORDS = {"settings": "load settings (tasks, dtype, bits, prompts)"}
# How the model is named and what it is; compared by model_differences, not one by one.
MODEL_KEYS = ("model", "revision", "identity", "model_parts")


def check_options(options: dict, shard_size: int | None = None, stall_timeout=None) -> None:
    """Refuse what encode() would not take here, before the model is loaded."""
    if shard_size is not None and (type(shard_size) is not int or shard_size < 1):
        raise ValueError(f"shard_size={shard_size!r}; use a positive integer (texts per shard).")
    if stall_timeout is not None and (type(stall_timeout) not in (int, float)
                                      or not 0 < stall_timeout < float("inf")):  # fmt: skip
        raise ValueError(f"stall_timeout={stall_timeout!r}; give seconds > 0, or None for no limit.")
    if unknown := sorted(set(options) - set(ENCODE_OPTIONS)):
        raise ValueError(
            f"embed_corpus got unknown option(s) {', '.join(unknown)}; it takes encode's "
            f"{', '.join(ENCODE_OPTIONS)}."
        )


def job_settings(model, options: dict) -> tuple[Fingerprint, dict]:
    """The fingerprint of the shard files and the job's settings, or a ValueError for a
    bad option, before any work."""
    check_options(options)
    fp = fingerprint(
        model, task=options.get("task"), prompt_name=options.get("prompt_name"),
        prompt=options.get("prompt"), truncate_dim=options.get("truncate_dim"),
        precision=options.get("precision", "float32"),
    )  # fmt: skip
    max_length = options.get("max_length")
    if max_length is not None and (type(max_length) is not int or not 1 <= max_length <= model.max_length):
        raise ValueError(
            f"max_length={max_length!r}; use an integer from 1 to the model's context of "
            f"{model.max_length} tokens."
        )
    for name in ("normalize_embeddings", "truncate", "split_special_tokens"):
        if not isinstance(options.get(name, False), bool):
            raise ValueError(f"{name}={options[name]!r}; use True or False.")
    settings = asdict(fp) | {
        "normalize_embeddings": options.get("normalize_embeddings", True),
        "max_length": max_length or model.max_length,
        "truncate": options.get("truncate", True),
        "split_special_tokens": options.get("split_special_tokens", False),
        "weights": weights_of(model),
        "model_parts": getattr(model, "identity_parts", None),  # says which part differs
    }
    return fp, settings


def weights_of(model) -> str:
    """The weights' dtype and quantization, e.g. "float16" or "float32, 4-bit"."""
    bits = sorted({m.bits for m in model.model.modules() if hasattr(m, "bits")})
    dtype = str(model.model.norm.weight.dtype).rsplit(".", 1)[-1]
    return dtype + "".join(f", {b}-bit" for b in bits)


def model_differences(theirs: dict, ours: dict) -> list[str]:
    """The model by its content identity: the same files under any path spelling are one
    model, other files under the same path are another. A job from a release before
    identities is compared by the name and revision it recorded."""
    old, new = theirs.get("identity"), ours.get("identity")
    if comparable(old, new):
        if old == new:
            return []
        parts = differing_parts(theirs.get("model_parts"), ours.get("model_parts"))
        what = ", ".join(PART_WORDS.get(p, p) for p in parts) or (
            "weights, config, tokenizer, adapters or load settings")
        return [
            f"model content: {ours['model']!r} is {new}, the job in the folder was embedded with "
            f"{theirs.get('model')!r} as {old} (they differ in: {what})"
        ]
    diffs = [] if same_model(theirs.get("model"), ours["model"]) else [
        f"model {ours['model']!r} (the job in the folder has {theirs.get('model')!r})"
    ]
    if theirs.get("revision") != ours.get("revision"):
        diffs.append(f"model revision {ours.get('revision')!r} (the job in the folder has "
                     f"{theirs.get('revision')!r})")  # fmt: skip
    return diffs


def check_job(
    manifest: Manifest, settings: dict, corpus: CorpusInput, shard_size: int | None, folder
) -> None:
    """Refuse to continue a folder's job with other settings or input, naming each
    difference; refuse to resume from or into an input that can't be read again."""
    old = manifest.input
    if old.get("kind") in ("stdin", "iterable") or not corpus.resumable:
        what = "stdin" if "stdin" in (old.get("kind"), corpus.kind) else "a one-shot iterable"
        raise ValueError(
            f"{folder} holds an unfinished or earlier job, and a job that reads {what} can't "
            "be resumed (it can't be read again or recognized). Pass force=True (--force) to "
            "start over, or use another folder; save the input to a file to make it resumable."
        )
    diffs = model_differences(manifest.settings, settings)
    theirs = {k: v for k, v in manifest.settings.items() if k not in MODEL_KEYS}
    ours = {k: v for k, v in settings.items() if k not in MODEL_KEYS}
    diffs += differences(theirs, ours, "setting")
    new = corpus.identity
    for key in INPUT_KEYS:
        if old.get(key) != new.get(key):
            if key == "sha256":
                diffs.append("input content (its sha256 differs: the file was edited or replaced)")
            else:
                diffs.append(f"input {key} {new.get(key)!r} (the job in the folder has {old.get(key)!r})")
    if shard_size is not None and shard_size != manifest.shard_size:
        diffs.append(f"shard_size {shard_size} (the job in the folder has {manifest.shard_size})")
    if diffs:
        raise ValueError(
            f"{folder} holds another embed job; it differs in: {'; '.join(diffs)}. Use another "
            "folder, or pass force=True (--force) to start over (only the job's own files are "
            "deleted)."
        )
