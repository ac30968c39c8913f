"""A model's identity by content: what its config, tokenizer and weights compute.

Two loads compute the same vectors when config.json (less its bookkeeping), tokenizer.json,
the weight tensors, the adapters merged and the load settings are the same, wherever the
folder lies and however its path is spelled. `model_identity` hashes exactly those, so
corpus jobs, ranks, embedding files, integrations and the server compare this string,
never a path.

Cheap on every load: every tensor's name, dtype and shape from the headers, plus its data
sampled in evenly spaced windows (a tensor of at most SAMPLE_WINDOWS * WINDOW bytes is read
whole), and the whole of config.json and tokenizer.json. A rebuilt or fine-tuned model
changes every window; a single edited value between windows is not seen (the trade-off
that keeps a 1.2 GB folder's identity at milliseconds instead of a full read).
"""

import hashlib
import json
import os
from pathlib import Path

from .safetensors import TOKENIZER_LIMIT, open_regular, read_header

SCHEME = "c1"  # bump when what is hashed changes: identities of other schemes never match
WINDOW = 1024
SAMPLE_WINDOWS = 16
# What is hashed, each part on its own: the identity hashes the parts' digests.
PARTS = ("weights", "config", "tokenizer", "adapters", "settings")
# config.json keys that describe where a file came from, not what it computes.
BOOKKEEPING = ("_name_or_path", "transformers_version", "torch_dtype", "dtype", "auto_map")
CONVERTER_BOOKKEEPING = ("source", "revision", "created", "version")


def model_identity(
    folder: Path,
    weight_files: list[str],
    adapters: dict[str, Path],
    settings: dict,
) -> str:
    """`SCHEME:` + 32 hex digits, from the folder's content and the load `settings`
    (tasks merged or attached, bits, group size, dtype, default task, prompts): equal only
    for loads that compute the same vectors."""
    return identity_of(identity_parts(folder, weight_files, adapters, settings))


def identity_parts(
    folder: Path, weight_files: list[str], adapters: dict[str, Path], settings: dict
) -> dict[str, str]:
    """A short digest of each part (PARTS): two identities that differ can say where."""
    parts = {name: hashlib.blake2b(digest_size=8) for name in PARTS}
    _add(parts["settings"], "settings", json.dumps(settings, sort_keys=True, default=str).encode())
    _add(parts["config"], "config", _config_bytes(folder / "config.json"))
    with open_regular(folder / "tokenizer.json", TOKENIZER_LIMIT) as f:
        _add(parts["tokenizer"], "tokenizer", hashlib.blake2b(f.read(TOKENIZER_LIMIT + 1)).digest())
    _add_tensors(parts["weights"], "weights", [folder / name for name in weight_files])
    for task in sorted(adapters):
        root = adapters[task]
        _add(parts["adapters"], f"adapter {task}", _json_bytes(root / "adapter_config.json"))
        _add_tensors(parts["adapters"], f"adapter {task}", [root / "adapter_model.safetensors"])
    return {name: h.hexdigest() for name, h in parts.items()}


def identity_of(parts: dict[str, str]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for name in PARTS:
        _add(h, name, parts[name].encode())
    return f"{SCHEME}:{h.hexdigest()}"


def differing_parts(a: dict | None, b: dict | None) -> list[str]:
    """The parts in which two loads differ, by name (PARTS); [] when either is unknown."""
    if not isinstance(a, dict) or not isinstance(b, dict):
        return []
    return [name for name in PARTS if a.get(name) != b.get(name)]


def comparable(a: str | None, b: str | None) -> bool:
    """Whether two identities can be compared: both known and of one scheme. Otherwise
    (a file from before identities, or from another scheme) the model is compared by name."""
    return a is not None and b is not None and a.split(":")[0] == b.split(":")[0]


def _add(h, label: str, data: bytes) -> None:
    # Length-prefixed, so no two different sequences of parts hash alike.
    for part in (label.encode(), data):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)


def _json_bytes(path: Path) -> bytes:
    if not path.exists():
        return b"absent"
    with open_regular(path, TOKENIZER_LIMIT) as f:
        return json.dumps(json.loads(f.read(TOKENIZER_LIMIT + 1)), sort_keys=True).encode()


def _config_bytes(path: Path) -> bytes:
    with open_regular(path, TOKENIZER_LIMIT) as f:
        config = json.loads(f.read(TOKENIZER_LIMIT + 1))
    config = {k: v for k, v in config.items() if k not in BOOKKEEPING}
    if isinstance(config.get("mlx_jina"), dict):
        meta = config["mlx_jina"]
        config["mlx_jina"] = {k: v for k, v in meta.items() if k not in CONVERTER_BOOKKEEPING}
    return json.dumps(config, sort_keys=True).encode()


def _add_tensors(h, label: str, paths: list[Path]) -> None:
    """Every tensor by name (whatever file or shard holds it): dtype, shape, sampled data."""
    located = []
    for path in paths:
        if not path.exists():
            continue  # the loader reports missing files; identity is computed after it
        for name, info in read_header(path).tensors.items():
            located.append((name, info, path))
    located.sort(key=lambda item: item[0])
    handles: dict[Path, int] = {}
    try:
        for name, info, path in located:
            fd = handles.get(path)
            if fd is None:
                fd = handles[path] = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            _add(h, f"{label} {name} {info.dtype} {list(info.shape)}", _sample(fd, info))
    finally:
        for fd in handles.values():
            os.close(fd)


def _sample(fd: int, info) -> bytes:
    size, start = info.nbytes, info.offset
    if size <= SAMPLE_WINDOWS * WINDOW:
        return os.pread(fd, size, start)
    # From the first byte to the last: i * (size - WINDOW) // (n - 1), not i * step, whose
    # rounding left up to n - 2 bytes at the end unread.
    last = SAMPLE_WINDOWS - 1
    return b"".join(
        os.pread(fd, WINDOW, start + i * (size - WINDOW) // last) for i in range(SAMPLE_WINDOWS)
    )
