"""Which models a server offers: `-m` entries, a `--models` JSON file, the Hugging Face cache.

`-m PATH_OR_REPO` is served under its folder or repo name, `-m NAME=PATH_OR_REPO` under
NAME. The global load settings (--task, --bits, ...) apply to every model; a `--models`
file gives settings per model (a relative folder is read from the file's folder):

    {"models": [{"name": "small", "source": "jinaai/jina-embeddings-v5-text-small",
                 "task": "retrieval", "bits": 4, "keep_alive": "10m"}]}

Every value is checked at start, so a typo is an error naming it, not a failed load at
the first request. Models already in the Hugging Face cache are offered too (loaded from
the cache, never downloaded by a request), unless their name or repo is taken.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..checkpoint import WEIGHT_DTYPES
from ..checkpoint.hub import expand, is_local
from ..encoding.embedder import Embedder
from ..loading import load
from ..tasks import DEFAULT_PROMPT_NAME, TASK_NAMES, parse_task
from .durations import keep_alive_seconds
from .registry import ModelSpec

# Settings a model may have in a --models file, with their JSON types.
SETTINGS = {"task": str, "multitask": bool, "bits": int, "dtype": str, "revision": str}
TYPE_WORDS = {str: "a string", bool: "true or false", int: "a whole number"}
KEYS = {"name", "source", "keep_alive", *SETTINGS}
BITS = (4, 8)  # as --bits takes them


def serving_adapter(task: str | None, what: str = "--task") -> str | None:
    """A task for the server: the adapter. Requests pick their prompt themselves, so a
    name that would make every request a query is refused rather than half honoured."""
    if task is None:
        return None
    if task not in TASK_NAMES:
        raise ValueError(f"{what} {task!r} is not a task; use one of {', '.join(TASK_NAMES)}.")
    adapter, prompt_name = parse_task(task)
    if prompt_name not in (None, DEFAULT_PROMPT_NAME):
        raise ValueError(
            f"{what} {task} would embed every request as a {prompt_name}; serve --task "
            f"{adapter}, and let clients ask for {prompt_name} vectors per request "
            '("input_type", or the model id with ":query")'
        )
    return adapter


def served_name(source: str) -> str:
    path = Path(source).expanduser()
    return path.resolve().name if path.exists() else str(source)


def split_entry(entry: str) -> tuple[str | None, str]:
    """`-m NAME=SOURCE` -> (NAME, SOURCE); a plain source (even one holding "=" after a
    "/") -> (None, source)."""
    name, sep, source = entry.partition("=")
    if not sep or "/" in name or Path(entry).expanduser().exists():
        return None, entry
    if not name.strip() or not source.strip():
        raise ValueError(f"-m {entry!r} needs a name and a model: -m NAME=PATH_OR_REPO.")
    return name.strip(), source.strip()


def loader(source: str, settings: dict[str, Any]) -> Callable[[], Embedder]:
    return lambda: load(source, **settings)


def check_found(source: str, what: str) -> None:
    """A local path that does not exist fails at start, not at the first request."""
    if is_local(source) and not expand(source).is_dir():
        raise FileNotFoundError(
            f"No model folder at {source!r} ({what}); give a folder that exists or a Hub "
            "repo id (org/name)."
        )


def specs_from(
    entries: Iterable[str],
    settings: dict[str, Any],
    models_file: str | Path | None = None,
    first_name: str | None = None,
) -> list[ModelSpec]:
    """The ModelSpecs for `-m` entries (with the global `settings`), then a --models
    file's. `first_name` (--served-model-name) names the first -m model, the default."""
    entries = list(entries)
    if first_name is not None and not entries:
        raise ValueError(
            "--served-model-name names the -m model; in a --models file give each model "
            'its "name".'
        )
    specs = []
    for i, entry in enumerate(entries):
        name, source = split_entry(entry)
        if i == 0 and first_name is not None:
            if name is not None and name != first_name:
                raise ValueError(
                    f"-m {entry!r} and --served-model-name {first_name!r} both name the "
                    "first model; give one of them."
                )
            name = first_name
        check_found(source, f"-m {entry}")
        specs.append(ModelSpec(name or served_name(source), loader(source, settings), source))
    if models_file is not None:
        specs += specs_from_file(Path(models_file).expanduser(), settings)
    return specs


def specs_from_file(path: Path, settings: dict[str, Any]) -> list[ModelSpec]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"--models {path}: no such file.") from None
    except (ValueError, OSError) as e:
        raise ValueError(f"--models {path} is not readable JSON ({e}).") from None
    items = data.get("models") if isinstance(data, dict) else data
    if isinstance(data, dict) and set(data) != {"models"}:
        raise ValueError(f'--models {path}: the top level holds only "models", not {sorted(data)}.')
    if not isinstance(items, list) or not items:
        raise ValueError(
            f'--models {path} must hold {{"models": [{{"source": ...}}, ...]}} with at least '
            "one model."
        )
    return [spec_from_item(item, i, path, settings) for i, item in enumerate(items)]


def spec_from_item(item: Any, i: int, path: Path, settings: dict[str, Any]) -> ModelSpec:
    where = f"--models {path}: models[{i}]"
    if not isinstance(item, dict) or not isinstance(item.get("source"), str):
        raise ValueError(f'{where} must be an object with a "source" (a folder or repo id).')
    if unknown := sorted(set(item) - KEYS):
        raise ValueError(f"{where} has unknown keys {unknown}; use {sorted(KEYS)}.")
    own = dict(settings)
    for key, kind in SETTINGS.items():
        if item.get(key) is not None:
            value = item[key]
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ValueError(f"{where}: {key}={value!r} must be {TYPE_WORDS[kind]}.")
            own[key] = value
    own["task"] = serving_adapter(own.get("task"), f"{where}: task")
    if own.get("bits") not in (None, *BITS):
        raise ValueError(f"{where}: bits={own['bits']!r}; use 4 or 8.")
    if own.get("dtype") not in (None, *WEIGHT_DTYPES):
        raise ValueError(f"{where}: dtype={own['dtype']!r}; use one of {', '.join(WEIGHT_DTYPES)}.")
    keep_alive = None
    if item.get("keep_alive") is not None:
        keep_alive = keep_alive_seconds(item["keep_alive"], f"{where}: keep_alive")
    name = item.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ValueError(f"{where}: name={name!r} must be a non-empty string.")
    source = item["source"].strip()
    beside = path.parent / expand(source)  # a relative folder: next to the file
    if source and not expand(source).is_absolute() and beside.is_dir():
        source = str(beside)
    check_found(source, f"{where}: source")
    return ModelSpec(
        name or served_name(source), loader(source, own), source=source, keep_alive=keep_alive
    )


def cached_specs(
    settings: dict[str, Any], taken: set[str], cache_dir: str | Path | None = None
) -> list[ModelSpec]:
    """Jina v5 models in the Hugging Face cache, loaded from there (never downloaded).

    A base repo with several adapters loads all of them (multitask) unless --task says
    which; a repo whose id, or name alone, is in `taken` (names and sources given at
    start) is left out.
    """
    specs = []
    for repo, folder in cached_jina_folders(cache_dir):
        if repo in taken or repo.rsplit("/", 1)[-1] in taken:
            continue
        own = dict(settings)
        adapters = folder / "adapters"
        if own.get("task") is None and adapters.is_dir() and len(list(adapters.iterdir())) > 1:
            own["multitask"] = True
        own.pop("revision", None)  # the cached snapshot is the revision
        specs.append(ModelSpec(repo, loader(str(folder), own), source=str(folder), cached=True))
    return specs


def cached_jina_folders(cache_dir: str | Path | None = None) -> list[tuple[str, Path]]:
    """(repo id, snapshot folder) of each cached model repo named jina-embeddings-v5 whose
    snapshot holds a config and weights (main's snapshot first, else the newest)."""
    try:
        from huggingface_hub import scan_cache_dir

        cache = scan_cache_dir(cache_dir)
    except Exception:  # no cache yet, or one we can't read: offer nothing from it
        return []
    found = []
    for repo in sorted(cache.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model" or "jina-embeddings-v5" not in repo.repo_id.lower():
            continue
        revisions = sorted(repo.revisions, key=lambda r: ("main" not in r.refs, -r.last_modified))
        for revision in revisions:
            folder = Path(revision.snapshot_path)
            weights = (p.is_file() for p in folder.glob("*.safetensors"))  # links resolve
            if (folder / "config.json").is_file() and any(weights):
                found.append((repo.repo_id, folder))
                break
    return found
