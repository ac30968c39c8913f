"""What `mlx-jina service` writes and runs, whatever the platform: files, commands, and
how both are carried out or only shown (--dry-run)."""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..atomic import replacing_file

# Every file `service install` writes holds this line (as a comment); a file without it
# is someone else's and is neither overwritten nor removed.
MARKER = "Written by `mlx-jina service install`; `mlx-jina service uninstall` removes it."
HIDDEN = "<hidden: the --api-key given>"  # what --dry-run shows in place of the key

# Where models come from: a service does not inherit the installing shell's environment,
# so without these it would look in the default cache, or go online where the user had
# HF_HUB_OFFLINE=1. Tokens are secrets and stay out (the unit file is world-readable).
CARRIED = ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE", "HF_ENDPOINT")


def carried_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The variables of CARRIED set (non-empty) where `service install` runs."""
    environ = os.environ if environ is None else environ
    return {name: environ[name] for name in CARRIED if environ.get(name)}


# (argv, capture output) -> the finished process; tests pass a fake one.
Runner = Callable[[list[str], bool], subprocess.CompletedProcess]


@dataclass(frozen=True)
class ServiceFile:
    path: Path
    content: bytes
    mode: int  # 0o600 for a file that holds the API key
    shown: str  # the content as --dry-run prints it: the key hidden


@dataclass(frozen=True)
class Step:
    argv: list[str]
    only_if: list[str] | None = None  # run only if this command succeeds (e.g. "is it loaded?")

    def describe(self) -> str:
        if self.only_if is None:
            return shlex.join(self.argv)
        return f"{shlex.join(self.argv)}  # if `{shlex.join(self.only_if)}` succeeds"


class CommandFailed(ChildProcessError):
    """A launchctl or systemctl command exited with an error."""

    def __init__(self, argv: list[str], result: subprocess.CompletedProcess):
        said = (result.stderr or result.stdout or "").strip() or "no output"
        super().__init__(f"`{shlex.join(argv)}` failed (exit {result.returncode}): {said}")


def run_command(argv: list[str], capture: bool = True) -> subprocess.CompletedProcess:
    """Run `argv` without a shell; captured output is text."""
    try:
        return subprocess.run(argv, capture_output=capture, text=True, check=False)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{argv[0]} was not found: this machine does not look like the platform asked "
            "for (--platform); --dry-run shows what would be done without running it."
        ) from None


def run_steps(steps: Iterable[Step], run: Runner) -> None:
    for step in steps:
        if step.only_if is not None and run(step.only_if, True).returncode != 0:
            continue
        result = run(step.argv, True)
        if result.returncode != 0:
            raise CommandFailed(step.argv, result)


def is_ours(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return MARKER.encode() in f.read(64 * 1024)
    except IsADirectoryError:
        return False


def refuse_foreign(paths: Iterable[Path]) -> None:
    """Raise if any of `paths` exists and was not written by `service install`."""
    for path in paths:
        if os.path.lexists(path) and (path.is_symlink() or not is_ours(path)):
            raise ValueError(
                f"{path} exists and was not written by `mlx-jina service install`; it is "
                "left as it is. Move it away if it is an old copy, then install again."
            )


def write(file: ServiceFile) -> None:
    """Write atomically, with its mode from the start (a key is never world-readable)."""
    with replacing_file(file.path, mode=file.mode) as f:
        f.write(file.content)


def show_files(files: Iterable[ServiceFile]) -> str:
    """--dry-run's report of the files, each as it would be written (the key hidden)."""
    parts = []
    for file in files:
        body = "".join(f"    {line}\n" for line in file.shown.splitlines())
        parts.append(f"Would write {file.path} (mode {file.mode:04o}):\n{body}")
    return "".join(parts)


def show_list(title: str, items: Iterable[Step | Path]) -> str:
    """--dry-run's report of commands or paths: `title`, then one indented line each."""
    lines = [f"    {i.describe() if isinstance(i, Step) else i}\n" for i in items]
    return f"{title}\n{''.join(lines)}" if lines else ""
