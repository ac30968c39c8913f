"""Before any shard, every rank proves it runs rank 0's job: the same model, by content,
and the same settings.

Each Mac loads the model from its own disk, so a path names nothing: another checkpoint
at the same path (other weights, another backbone of the same width) would embed its
shards with other vectors and the job would still end with a normal summary. So each
rank condenses what decides its vectors (the job's settings from settings.py, with the
model's content identity in place of its path) into a fixed-size digest, and one
`all_gather` shows every rank every rank's digest. A rank that differs from rank 0 stops
the job on every rank, naming the rank and what differs, before any text is sent.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from .errors import ShardPoolError

IDENTITY_WORDS = 6  # the identity's text, up to 48 ASCII bytes ("c1:" + 32 hex)
PAIRS = 17  # (key hash, value hash) slots: more than the settings hold
WORDS = IDENTITY_WORDS + 2 * PAIRS
# Recorded for people, not compared: a path may be spelled differently on each Mac
# (the identity compares the content), and a rank may run another mlx_jina release.
NOT_COMPARED = ("model", "revision", "version")


def compared(settings: dict) -> dict:
    """The settings that must agree: all but the names, when the content identity is known."""
    names = NOT_COMPARED if settings.get("identity") else ("version",)
    return {key: value for key, value in settings.items() if key not in names}


def digest(settings: dict) -> np.ndarray:
    """The rank's WORDS int64 words: its identity's text, then a hash per setting."""
    words = np.zeros(WORDS, np.int64)
    identity = str(settings.get("identity") or "").encode("ascii", "replace")[: 8 * IDENTITY_WORDS]
    words[:IDENTITY_WORDS] = np.frombuffer(identity.ljust(8 * IDENTITY_WORDS, b"\0"), np.int64)
    items = sorted(compared(settings).items())
    if len(items) > PAIRS:
        raise ValueError(f"{len(items)} settings to agree on; the digest holds {PAIRS}.")
    for slot, (key, value) in enumerate(items):
        words[IDENTITY_WORDS + 2 * slot : IDENTITY_WORDS + 2 * slot + 2] = [_hash(key), _hash(value)]
    return words


def _hash(value) -> int:
    text = json.dumps(value, sort_keys=True, default=str).encode("utf-8")
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little", signed=True)


def _fields(words: np.ndarray) -> tuple[str, dict[int, int]]:
    identity = words[:IDENTITY_WORDS].tobytes().rstrip(b"\0").decode("ascii", "replace")
    pairs = words[IDENTITY_WORDS:].reshape(PAIRS, 2).tolist()
    return identity, {key: value for key, value in pairs if key or value}


def disagreement(digests: np.ndarray, settings: dict) -> str | None:
    """One line naming each rank that differs from rank 0 and how, or None when all agree.
    `digests`: the gathered (ranks, WORDS) array; `settings`: this rank's (for names)."""
    names = {_hash(key): key for key in compared(settings)} | {_hash("identity"): "identity"}
    identity0, fields0 = _fields(digests[0])
    problems = []
    for rank in range(1, len(digests)):
        identity, fields = _fields(digests[rank])
        keys = sorted(set(fields0) | set(fields), key=lambda k: names.get(k, ""))
        differ = [names.get(k, "a setting this release does not know") for k in keys
                  if fields0.get(k) != fields.get(k)]  # fmt: skip
        if not differ:
            continue
        words = [f"model content (identity {identity or 'unknown'}; rank 0 has {identity0 or 'unknown'})"
                 if key == "identity" else key for key in differ]  # fmt: skip
        problems.append(f"rank {rank} differs from rank 0 in {', '.join(words)}")
    if not problems:
        return None
    return (
        f"the ranks do not run the same job: {'; '.join(problems)}. Give every rank the same "
        "model files and the same options"
    )


def agree(group, settings: dict, gather) -> None:
    """Raise ShardPoolError on every rank unless all ranks' settings match rank 0's.
    `gather(array) -> (ranks, ...) array` is the scheduler's all_gather."""
    digests = gather(digest(settings)).reshape(group.size(), WORDS)
    if (problem := disagreement(digests, settings)) is not None:
        raise ShardPoolError(problem, resumable=False)
