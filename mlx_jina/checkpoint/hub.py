"""Turn a folder or a Hugging Face repo id into a local folder, downloading only what we read.

We fetch JSON, the tokenizer, adapter files and the one weight file needed: never the
repo's `.py` files, ONNX or GGUF exports.
"""

import difflib
import os
import threading
from pathlib import Path

from .weights import pick_weight_files

# Seconds to wait for the Hub's file listing, all in. huggingface_hub's list_repo_files
# waits without a limit and retries five times (about 25 s when the Hub can't be reached),
# and building its headers may first fetch an agent registry (up to 3 s); this listing asks
# once and stops waiting after this long: a cached model then loads from the cache. Long
# enough for a far-away link to answer, short enough that a dead one fails in about 2 s.
# HF_HUB_ETAG_TIMEOUT (huggingface_hub's limit for metadata requests), when set, replaces it.
LISTING_TIMEOUT = 1.5

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
            raise FileNotFoundError(f"No model folder at {folder}{did_you_mean(folder)}. {REPO_ID_HELP}")
        if revision is not None:
            raise ValueError(
                f"revision={revision!r} applies to Hub repos, but {folder} is a local folder."
            )
        return folder

    from huggingface_hub import HfApi, constants, snapshot_download

    repo = str(path_or_repo)
    check_repo_id(repo)
    owner = repo.split("/")[0]
    if kind_of(expand(owner)) == "folder":  # models/tiny-smal, with a models/ folder here
        return cached_or_missing_folder(repo, revision, owner)
    why = "HF_HUB_OFFLINE is set"
    if not constants.HF_HUB_OFFLINE:
        try:
            names = list_files(HfApi, repo, revision)
        except Exception as e:
            if not is_connection_error(e):
                raise ValueError(
                    f"Could not list {repo!r} at revision {revision!r} on the Hub ({e}), and it "
                    f"is not a local folder either (there is no {owner}/ here)."
                ) from None
            why = unreachable_reason(e)
        else:
            patterns = wanted_files(names, task=task, bits=bits, all_tasks=all_tasks)
            return Path(snapshot_download(repo, revision=revision, allow_patterns=patterns))
    # Offline (HF_HUB_OFFLINE=1 or no connection): use what the cache has.
    try:
        folder = snapshot_download(repo, revision=revision, local_files_only=True)
    except Exception:
        raise FileNotFoundError(
            f"{repo!r} is not a local folder (there is no {owner}/ here), and as a Hub repo "
            f"(revision {revision or 'main'}) it is not in the Hugging Face cache and the "
            f"Hub can't be reached ({why}). Download it once while online, or pass a local folder."
        ) from None
    return Path(folder)


def cached_or_missing_folder(repo: str, revision: str | None, owner: str) -> Path:
    """`OWNER/NAME` where OWNER is a local folder: most likely a mistyped folder, so say so
    at once, without waiting on the Hub. A Hub repo of that name still loads from the cache."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo, revision=revision, local_files_only=True))
    except Exception:
        pass
    raise FileNotFoundError(
        f"No model folder at {repo}{did_you_mean(expand(repo))}, and no Hub repo {repo!r} in "
        f"the Hugging Face cache; the Hub was not asked, since {owner}/ is a local folder. "
        f"If you meant the Hub repo, download it first (hf download {repo})."
    )


def did_you_mean(folder: Path) -> str:
    """" (did you mean models/tiny-small?)" for a close folder name beside `folder`, or ""."""
    try:
        names = [p.name for p in folder.parent.iterdir() if p.is_dir()] if folder.parent.is_dir() else []
    except OSError:
        return ""
    close = difflib.get_close_matches(folder.name, names, n=1, cutoff=0.75)
    return f" (did you mean {folder.parent / close[0]}?)" if close else ""


def listing_timeout() -> float:
    """LISTING_TIMEOUT, or HF_HUB_ETAG_TIMEOUT where the user set it."""
    try:
        value = float(os.environ.get("HF_HUB_ETAG_TIMEOUT", ""))
    except ValueError:
        return LISTING_TIMEOUT
    return value if value > 0 else LISTING_TIMEOUT


def list_files(api_class, repo: str, revision: str | None) -> list[str]:
    """The repo's file names from one model_info request (list_repo_files would retry with
    backoff), abandoned after listing_timeout() seconds with a TimeoutError."""
    limit, result = listing_timeout(), {}

    def ask() -> None:
        try:
            info = api_class().model_info(repo, revision=revision, timeout=limit)
            result["names"] = [sibling.rfilename for sibling in info.siblings or []]
        except Exception as e:
            result["error"] = e

    # A daemon thread: the wall-clock limit also covers what happens before the request,
    # and a request still hanging there never holds up the exit.
    thread = threading.Thread(target=ask, name="mlx-jina hub listing", daemon=True)
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {limit:g} s")
    if "error" in result:
        raise result["error"]
    return result["names"]


def unreachable_reason(e: Exception) -> str:
    """Why the listing failed, in a few words, with what to change on a slow connection."""
    if any("Timeout" in c.__name__ for c in type(e).__mro__):
        return (
            f"no answer within {listing_timeout():g} s; on a slow connection set "
            "HF_HUB_ETAG_TIMEOUT=10"
        )
    return f"{type(e).__name__}: {str(e)[:100]}" if str(e) else type(e).__name__


def is_connection_error(e: Exception) -> bool:
    """True when the Hub was unreachable, as opposed to answering "no such repo"."""
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(e, HfHubHTTPError):
        return False
    names = {c.__name__ for c in type(e).__mro__}
    return isinstance(e, OSError) or bool(names & {"ConnectError", "TimeoutException"})
