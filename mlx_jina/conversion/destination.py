"""Where convert may write: never into its source, never the current directory, and with
--force only over an empty folder or an earlier mlx-jina output (which it then replaces
as a whole, atomic.py). One convert at a time per destination: `destination_lock`.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..atomic import remove_empty
from ..checkpoint import hub
from ..checkpoint.safetensors import read_json
from ..tasks import TASKS

TOKENIZER_CONFIG = "tokenizer_config.json"
TOKENIZER_FILES = ("tokenizer.json", TOKENIZER_CONFIG, "special_tokens_map.json")
QUALITY_FILE = "quantization_quality.json"
SENTENCE_TRANSFORMERS_FILE = "config_sentence_transformers.json"
OUTPUT_FILES = {"config.json", SENTENCE_TRANSFORMERS_FILE, "README.md", QUALITY_FILE}
OUTPUT_FILES |= set(TOKENIZER_FILES) | {"modules.json", "sentence_bert_config.json"}
# Subfolders of a sentence-transformers folder, and the files they hold.
OUTPUT_DIRS = {"1_Pooling": {"config.json"}, "2_Normalize": {"config.json"}}
IGNORED = {".DS_Store"}  # macOS Finder metadata, not the user's files

try:
    import fcntl
except ImportError:  # Windows: no flock, so no guard against two converts at once
    fcntl = None


def check_destination(hf_path: str, mlx_path: str) -> Path:
    """The output folder, refused before anything is downloaded or written if unsafe.
    What is in it is checked (`check_replaceable`) once its lock is held."""
    root = destination(mlx_path)
    # Check before downloading: a Hub id lives in its cache folder.
    refuse_overlap(source_folder(hf_path), root)
    refuse_cwd(root)
    return root


def lock_path(root: Path) -> Path:
    """`.NAME.lock` beside the output folder (which is swapped, so can't hold it)."""
    real = root.resolve()  # every spelling of one folder meets at one lock
    return real.parent / f".{real.name}.lock"


@contextmanager
def destination_lock(root: Path) -> Iterator[None]:
    """Hold the output folder's lock from the first check to the end of the upload, or
    refuse in one line: two converts into one folder would both say "Wrote" and only the
    last output would survive. The OS drops the lock when the process ends, even by
    SIGKILL, so a lock file left behind never blocks a later run. Parent folders made
    for the lock are removed again if the conversion fails."""
    lock = lock_path(root)
    made = [p for p in (lock.parent, *lock.parent.parents) if not p.exists()]
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = _locked(lock)
    except OSError as e:
        remove_empty(made)
        raise ValueError(
            f"Cannot write to {lock.parent} ({e.strerror}). "
            "Choose an --mlx-path in a folder you can write to."
        ) from None
    if fd is None:
        remove_empty(made)
        raise ValueError(
            f"Another convert is writing {root} (it holds {lock}); wait for it to finish, "
            "or choose another --mlx-path."
        )
    ok = False
    try:
        yield
        ok = True
    finally:
        lock.unlink(missing_ok=True)  # while still held: no other run holds this file
        os.close(fd)
        if not ok:
            remove_empty(made)


def _locked(lock: Path) -> int | None:
    """An open descriptor holding the flock on `lock`, or None when another process holds it."""
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is None:
            return fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except OSError:
            return fd  # a file system without flock: nothing to coordinate with
        try:  # the run before us may have unlinked the file we opened: lock the new one
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def destination(mlx_path: str) -> Path:
    """`mlx_path` as a Path, with `~` expanded; refuse paths that cannot be a folder."""
    if not str(mlx_path).strip():
        raise ValueError("--mlx-path is empty. Pass a folder, such as mlx_model.")
    root = Path(mlx_path).expanduser()
    for p in (root, *root.parents):
        if p.exists() and not p.is_dir():
            where = "" if p == root else f": {p}"
            raise ValueError(
                f"--mlx-path {root}{where} is a file, not a folder. "
                "Pass a folder path, or move the file away."
            )
    return root


def source_folder(hf_path: str) -> Path:
    """Where the source lives before any download: its folder, or the Hub cache's."""
    if hub.is_local(hf_path):
        return Path(hf_path).expanduser()
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE) / f"models--{hf_path.replace('/', '--')}"


def refuse_overlap(source: Path, root: Path) -> None:
    """Refuse an output that is, holds or is inside the source: the swap deletes it."""
    src, dst = source.resolve(), root.resolve()
    # A Hub snapshot's files are links into ../../blobs: check where each really lives.
    files = [*source.iterdir(), *source.glob("adapters/*/*")] if source.is_dir() else []
    if dst == src or src in dst.parents:
        relation = "is" if dst == src else "is inside"
    elif any(dst == f or dst in f.parents for f in [src, *map(Path.resolve, files)]):
        relation = "contains"
    else:
        return
    raise ValueError(
        f"--mlx-path {root} {relation} the source folder {src}, so converting would "
        f"overwrite the checkpoint it reads. Choose another --mlx-path, outside {src}."
    )


def refuse_cwd(root: Path) -> None:
    cwd = Path.cwd().resolve()
    if root.resolve() in (cwd, *cwd.parents):
        raise ValueError(
            f"--mlx-path {root} is or contains the current directory, and convert "
            "replaces the output folder as a whole. Pass a new folder, e.g. mlx_model."
        )


def check_replaceable(root: Path, force: bool) -> None:
    """Refuse a non-empty `root` without `force`, and all but our output with it."""
    if not root.is_dir() or not [p for p in root.iterdir() if p.name not in IGNORED]:
        return
    if not force:
        raise ValueError(
            f"{root} already exists and is not empty. Pass --force to replace it."
        )
    foreign = foreign_entries(root)
    if foreign:
        more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        raise ValueError(
            f"{root} is not an mlx-jina output (found {', '.join(foreign[:5])}{more}), "
            "and --force replaces the whole folder, so it only replaces an empty "
            "folder or an earlier mlx-jina output. Move those away, or choose another "
            "--mlx-path."
        )


def foreign_entries(folder: Path) -> list[str]:
    """What in `folder` mlx-jina did not write: [] for an earlier output."""
    names = sorted(p.name for p in folder.iterdir() if p.name not in IGNORED)
    if is_output(folder):
        return [n for n in names if not is_output_file(folder / n)]
    found = []
    for n in names:  # --task all: one output per task subfolder
        if n in TASKS and is_output(folder / n):
            found += [f"{n}/{m}" for m in foreign_entries(folder / n)]
        else:
            found.append(n)
    return found


def is_output(folder: Path) -> bool:
    try:
        return isinstance(read_json(folder / "config.json").get("mlx_jina"), dict)
    except (OSError, ValueError, AttributeError):
        return False


def is_output_file(path: Path) -> bool:
    name = path.name
    if name in OUTPUT_DIRS and path.is_dir() and not path.is_symlink():
        return all(
            p.name in OUTPUT_DIRS[name] and p.is_file() and not p.is_symlink()
            for p in path.iterdir()
        )
    ours = name in OUTPUT_FILES or (
        name.startswith("model") and name.endswith(".safetensors")
    )
    return ours and path.is_file()
