"""Turn a folder or a Hugging Face repo id into a local folder, downloading only what we read.

We fetch JSON, the tokenizer, adapter files and the one weight file needed: never the
repo's `.py` files, ONNX or GGUF exports.
"""

from pathlib import Path

from .weights import pick_weight_files

REPO_ID_HELP = "Pass a local folder or a Hub repo id such as jinaai/jina-embeddings-v5-text-small."


def check_source(path_or_repo: str | Path) -> None:
    """Refuse what is neither a folder path nor a repo id, before any file or network access."""
    if not isinstance(path_or_repo, (str, Path)):
        raise ValueError(
            f"path_or_repo must be a folder path or a Hub repo id (str or Path), not "
            f"{type(path_or_repo).__name__} {path_or_repo!r}"[:200] + f". {REPO_ID_HELP}"
        )
    # Path("") is the current folder: an empty setting must not load whatever is there.
    if isinstance(path_or_repo, str) and not path_or_repo.strip():
        raise ValueError(f"path_or_repo is empty ({path_or_repo!r}). {REPO_ID_HELP}")


def check_repo_id(repo: str) -> None:
    """A malformed id is the caller's typo, not a Hub outage: say so without the network."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo)
    except HFValidationError as e:
        spaces = " (it has leading or trailing spaces)" if repo != repo.strip() else ""
        raise ValueError(
            f"{repo!r} is not a local folder and not a valid Hub repo id{spaces}: "
            f"{str(e)[:200]} {REPO_ID_HELP}"
        ) from None


def expand(path_or_repo: str | Path) -> Path:
    """`~` expanded where it can be: `~nosuchuser` stays as written."""
    try:
        return Path(path_or_repo).expanduser()
    except RuntimeError:  # no such user's home
        return Path(path_or_repo)


def kind_of(path: Path) -> str | None:
    """Whether `path` is a "folder", a "file" or nothing (None)."""
    try:
        return "folder" if path.is_dir() else "file" if path.exists() else None
    except OSError as e:  # e.g. a name too long for the file system
        raise ValueError(f"{str(path)[:100]!r} is not a usable path ({e.strerror}).") from None


def is_local(path_or_repo: str | Path) -> bool:
    text = str(path_or_repo)
    return (
        isinstance(path_or_repo, Path)
        or kind_of(expand(text)) is not None
        or text.startswith((".", "/", "~"))
        or text.count("/") != 1
    )


def wanted_files(
    names: list[str], *, task: str | None = None, bits: int | None = None, all_tasks: bool = False
) -> list[str]:
    """The subset of a repo's files that loading needs."""
    wanted = [n for n in names if "/" not in n and n.endswith(".json")]
    wanted += pick_weight_files([n for n in names if "/" not in n], bits)
    for name in names:
        parts = name.split("/")
        if len(parts) != 3 or parts[0] != "adapters":
            continue
        if parts[2] == "adapter_config.json" or (
            parts[2] == "adapter_model.safetensors" and (all_tasks or parts[1] == task)
        ):
            wanted.append(name)
    return sorted(set(wanted))


def resolve(
    path_or_repo: str | Path,
    *,
    revision: str | None = None,
    task: str | None = None,
    bits: int | None = None,
    all_tasks: bool = False,
) -> Path:
    """A local folder holding the files needed to load `path_or_repo`."""
    check_source(path_or_repo)
    if is_local(path_or_repo):
        folder = expand(path_or_repo)
        kind = kind_of(folder)
        if kind == "file":
            raise ValueError(
                f"{folder} is a file, not a model folder. Pass the folder that holds "
                "config.json and the weights."
            )
        if kind is None:
            raise FileNotFoundError(f"No model folder at {folder}. {REPO_ID_HELP}")
        if revision is not None:
            raise ValueError(
                f"revision={revision!r} applies to Hub repos, but {folder} is a local folder."
            )
        return folder

    from huggingface_hub import HfApi, constants, snapshot_download

    repo = str(path_or_repo)
    check_repo_id(repo)
    if not constants.HF_HUB_OFFLINE:
        try:
            names = HfApi().list_repo_files(repo, revision=revision)
        except Exception as e:
            if not is_connection_error(e):
                raise ValueError(f"Could not list {repo!r} at revision {revision!r}: {e}") from None
        else:
            patterns = wanted_files(names, task=task, bits=bits, all_tasks=all_tasks)
            return Path(snapshot_download(repo, revision=revision, allow_patterns=patterns))
    # Offline (HF_HUB_OFFLINE=1 or no connection): use what the cache has.
    try:
        folder = snapshot_download(repo, revision=revision, local_files_only=True)
    except Exception as e:
        raise FileNotFoundError(
            f"{repo!r} (revision {revision or 'main'}) is not in the Hugging Face cache and the "
            f"Hub can't be reached ({type(e).__name__}). Download it once while online, or pass "
            "a local folder."
        ) from None
    return Path(folder)


def is_connection_error(e: Exception) -> bool:
    """True when the Hub was unreachable, as opposed to answering "no such repo"."""
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(e, HfHubHTTPError):
        return False
    names = {c.__name__ for c in type(e).__mro__}
    return isinstance(e, OSError) or bool(names & {"ConnectError", "TimeoutException"})
