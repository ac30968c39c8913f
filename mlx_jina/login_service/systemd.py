"""Linux: a systemd user unit that starts `mlx-jina serve` at login and after a crash.

The unit is `~/.config/systemd/user/mlx-jina.service` (under $XDG_CONFIG_HOME if set); its
output goes to the user's journal. An API key is not put in the unit (0644, and shown by
`systemctl show`) but in `~/.config/mlx-jina/service.env`, 0600, read via EnvironmentFile=.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from .plan import HIDDEN, MARKER, Runner, ServiceFile, Step

UNIT = "mlx-jina.service"
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _plain(value: str, what: str) -> str:
    if CONTROL.search(value):
        raise ValueError(f"{what} {value!r} holds a line break or control character, which a "
                         "unit file can't carry; pass it without one.")  # fmt: skip
    return value.replace("%", "%%")  # % starts a specifier ("%h")


def quoted(text: str, what: str) -> str:
    """`text` in double quotes, with backslash and quote escaped (C-style) and % doubled
    (specifiers): a word of ExecStart= or an Environment= assignment."""
    return '"' + _plain(text, what).replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote(arg: str, executable: bool = False) -> str:
    """`arg` as one word of ExecStart=: quoted, and in arguments $ doubled (variable
    expansion, which systemd does not apply to the executable's path)."""
    word = quoted(arg, "The argument")
    return word if executable else word.replace("$", "$$")


def environment_line(name: str, value: str) -> str:
    """`Environment="NAME=value"`, quoted (systemd expands no $ variables there)."""
    return f"Environment={quoted(f'{name}={value}', 'The variable')}"


def unit_text(
    argv: list[str], cwd: Path, env_file: Path | None, carried: dict[str, str] | None = None
) -> str:
    exec_start = " ".join([quote(argv[0], executable=True), *map(quote, argv[1:])])
    service = [
        f"ExecStart={exec_start}",
        f"WorkingDirectory={_plain(str(cwd), 'The folder')}",  # relative paths in argv
        "Environment=PYTHONUNBUFFERED=1",  # log lines reach the journal as they happen
        *(environment_line(k, v) for k, v in (carried or {}).items()),
    ]
    if env_file is not None:
        service.append(f"EnvironmentFile={_plain(str(env_file), 'The path')}")
    service += ["Restart=on-failure", "RestartSec=5"]
    return "\n".join([
        f"# {MARKER}",
        "[Unit]",
        "Description=mlx-jina embedding server (mlx-jina serve)",
        "",
        "[Service]",
        *service,
        "",
        "[Install]",
        "WantedBy=default.target",
        "",
    ])  # fmt: skip


def env_text(api_key: str) -> str:
    """The EnvironmentFile: the key double-quoted, with the characters that are special
    there (backslash, quote, $, backtick) escaped."""
    escaped = re.sub(r'([\\"$`])', r"\\\1", api_key)
    return f'# {MARKER}\nMLX_JINA_API_KEY="{escaped}"\n'


class Systemd:
    platform = "linux"

    def __init__(self, config_home: Path):
        self.unit = config_home / "systemd" / "user" / UNIT
        self.env_dir = config_home / "mlx-jina"
        self.env_file = self.env_dir / "service.env"

    def owned(self) -> list[Path]:
        """The files install writes, which must carry MARKER to be replaced or removed."""
        return [self.unit, self.env_file]

    def files(
        self, argv: list[str], cwd: Path, api_key: str | None, carried: dict[str, str] | None = None
    ) -> list[ServiceFile]:
        env_file = None if api_key is None else self.env_file
        unit = unit_text(argv, cwd, env_file, carried)
        files = [ServiceFile(self.unit, unit.encode(), 0o644, unit)]
        if api_key is not None:
            files.append(
                ServiceFile(self.env_file, env_text(api_key).encode(), 0o600, env_text(HIDDEN))
            )
        return files

    def log_folders(self) -> list[Path]:
        return []  # the journal keeps the log

    def folders(self) -> list[Path]:
        """Removed by uninstall when empty (install makes the key's, 0700, with the key)."""
        return [self.env_dir]

    def install_steps(self) -> list[Step]:
        # restart, not `enable --now`: a reinstall must replace a running server
        return [
            Step(["systemctl", "--user", "daemon-reload"]),
            Step(["systemctl", "--user", "enable", UNIT]),
            Step(["systemctl", "--user", "restart", UNIT]),
        ]

    def uninstall_steps(self) -> tuple[list[Step], list[Path], list[Step]]:
        """(commands before removing, what to remove, commands after)."""
        stop = [Step(["systemctl", "--user", "disable", "--now", UNIT])]
        return stop, [self.unit, self.env_file], [Step(["systemctl", "--user", "daemon-reload"])]

    def status(self, run: Runner, out: Callable[[str], None]) -> int:
        """systemctl's own report, and its exit code (0 running, 3 not, 4 no such unit)."""
        return run(["systemctl", "--user", "status", "--no-pager", UNIT], False).returncode

    def logs_command(self, lines: int, follow: bool) -> list[str]:
        return ["journalctl", "--user", "-u", UNIT, "-n", str(lines), "--no-pager",
                *(["-f"] if follow else [])]  # fmt: skip
