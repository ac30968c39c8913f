"""Turn a folder or a Hugging Face repo id into a local folder, downloading only what we read.

We fetch JSON, the tokenizer, adapter files and the one weight file needed: never the
repo's `.py` files, ONNX or GGUF exports.
"""

from pathlib import Path

from .weights import pick_weight_files

REPO_ID_HELP = "Pass a local folder or a Hub repo id such as jinaai/jina-embeddings-v5-text-small."


def is_local(path_or_repo: str | Path) -> bool:
    text = str(path_or_repo)
    return (
        isinstance(path_or_repo, Path)
        or Path(text).expanduser().exists()
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
    if is_local(path_or_repo):
        folder = Path(path_or_repo).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"No model folder at {folder}. {REPO_ID_HELP}")
        if revision is not None:
            raise ValueError(
                f"revision={revision!r} applies to Hub repos, but {folder} is a local folder."
            )
        return folder

    from huggingface_hub import HfApi, constants, snapshot_download

    repo = str(path_or_repo)
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
