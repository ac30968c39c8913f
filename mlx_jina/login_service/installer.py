"""install, uninstall, status and logs, for either platform (launchd.py, systemd.py)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path

from .launchd import Launchd
from .plan import (
    Runner, carried_environment, refuse_foreign, run_steps, show_files, show_list, write,
)
from .systemd import Systemd

PLATFORMS = ("macos", "linux")
Out = Callable[[str], None]


def this_platform() -> str | None:
    if sys.platform == "darwin":
        return "macos"
    return "linux" if sys.platform.startswith("linux") else None


def service_for(platform: str, home: Path | None = None) -> Launchd | Systemd:
    """The platform's service files and commands for this user (`home`: default ~)."""
    home = Path.home() if home is None else home
    if platform == "macos":
        return Launchd(home, os.getuid())
    if platform == "linux":
        config = os.environ.get("XDG_CONFIG_HOME")
        return Systemd(Path(config) if config else home / ".config")
    raise ValueError(f"No login service for platform {platform!r}; pass --platform macos or linux.")


def split_api_key(argv: list[str]) -> tuple[list[str], str | None]:
    """(argv without --api-key and its value, the key): the key goes in the service's
    environment, not on a command line. Takes --api-key K, --api-key=K and the prefixes
    argparse accepts (--api K); the last one wins, as in argparse."""
    rest, key, i = [], None, 0
    while i < len(argv):
        name, eq, value = argv[i].partition("=")
        if len(name) >= 4 and "--api-key".startswith(name):  # "--ap" is already unique
            key, i = (value, i + 1) if eq else (argv[i + 1] if i + 1 < len(argv) else None, i + 2)
            continue
        rest.append(argv[i])
        i += 1
    return rest, key


def check_api_key(key: str) -> None:
    from ..server.app import check_api_key as check

    check(key)


def require_server_extra() -> None:
    needed = ("starlette", "uvicorn", "prometheus_client")
    missing = [m for m in needed if not importlib.util.find_spec(m)]
    if missing:
        raise ValueError(
            f"The service runs `mlx-jina serve`, which needs {', '.join(missing)}: "
            "pip install 'mlx-jina[server]' first."
        )


def install(service, serve_argv: list[str], *, run: Runner, out: Out, dry_run: bool = False,
            python: str | None = None, cwd: Path | None = None) -> None:  # fmt: skip
    """Write the service's files for `mlx-jina serve SERVE_ARGV` and start it. The options
    must have passed the real `serve` parser already (the CLI does that first)."""
    require_server_extra()
    argv, key = split_api_key(serve_argv)
    if key is not None:
        check_api_key(key)
    elif os.environ.get("MLX_JINA_API_KEY"):
        out("Note: MLX_JINA_API_KEY is set here, but the service won't see it; pass "
            "--api-key to install it with the service.")  # fmt: skip
    command = [python or sys.executable, "-m", "mlx_jina", "serve", *argv]
    files = service.files(command, Path.cwd() if cwd is None else cwd, key, carried_environment())
    refuse_foreign(service.owned())
    written = {f.path for f in files}
    stale = [p for p in service.owned() if p not in written and p.exists()]  # a key dropped
    steps = service.install_steps()
    if dry_run:
        report = show_files(files) + show_list("Would remove:", stale)
        out((report + show_list("Would run:", steps)).rstrip("\n"))
        return
    private = [f.path.parent for f in files if f.mode == 0o600]  # a key's folder too
    for folder in [*service.log_folders(), *private]:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for file in files:
        write(file)
    for path in stale:
        path.unlink()
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # its folder (the key's), if nothing else is there
    run_steps(steps, run)
    out(f"Installed {files[0].path}; the server runs now and at every login.\n"
        "See `mlx-jina service status` and `mlx-jina service logs`.")  # fmt: skip


def uninstall(service, *, run: Runner, out: Out, dry_run: bool = False) -> None:
    """Stop the service and remove every file install made (nothing that isn't ours)."""
    refuse_foreign(service.owned())
    before, removes, after = service.uninstall_steps()
    removes = [p for p in removes if p.exists()]
    main = service.owned()[0]
    if not main.exists():
        before, after = [], []  # nothing loaded from a file that is not there
        if not removes:
            out(f"Not installed: {main} does not exist.")
            return
    folders = [f for f in service.folders() if f.is_dir()]
    if dry_run:
        done = show_list("Would run:", before) + show_list("Would remove:", [*removes, *folders])
        out((done + show_list("Then run:", after)).rstrip("\n"))
        return
    run_steps(before, run)
    for path in removes:
        path.unlink()
    for folder in folders:
        try:
            folder.rmdir()  # only if empty: a file the user put there stays
        except OSError:
            out(f"Kept {folder}: it holds files install did not write.")
    run_steps(after, run)
    out(f"Uninstalled: removed {', '.join(map(str, removes))}.")


def status(service, *, run: Runner, out: Out) -> int:
    return service.status(run, out)


def logs(service, *, lines: int, follow: bool, run: Runner) -> int:
    try:
        return run(service.logs_command(lines, follow), False).returncode
    except KeyboardInterrupt:  # how --follow ends
        return 0
