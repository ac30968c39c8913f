"""macOS: a LaunchAgent that starts `mlx-jina serve` at login and again after a crash.

The agent is `~/Library/LaunchAgents/io.github.mlx-jina.server.plist`, written 0600
because it may hold the API key (EnvironmentVariables: launchd has no separate secrets
file); the server's output goes to `~/Library/Logs/mlx-jina/server.log`. It runs in the
user's GUI domain (`gui/<uid>`), loaded with `launchctl bootstrap`.

ProcessType is Interactive: apps wait on each answer, and a Background job runs at low
priority (efficiency cores, throttled I/O), which would slow every request; idle, the
server uses no CPU either way. KeepAlive restarts it after a crash, not after a clean exit.
"""

from __future__ import annotations

import plistlib
import re
from collections.abc import Callable
from pathlib import Path

from .plan import HIDDEN, MARKER, Runner, ServiceFile, Step

LABEL = "io.github.mlx-jina.server"


def plist_bytes(argv: list[str], cwd: Path, log: Path, env: dict[str, str]) -> bytes:
    """The agent's plist, with MARKER as an XML comment (launchd and plistlib skip it)."""
    agent = {
        "Label": LABEL,
        "ProgramArguments": argv,
        "WorkingDirectory": str(cwd),  # relative paths in argv mean what they did at install
        "EnvironmentVariables": env,
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},  # restart after a crash, not a clean exit
        "ProcessType": "Interactive",
        "StandardOutPath": str(log),
        "StandardErrorPath": str(log),
    }
    head, plist, rest = plistlib.dumps(agent, sort_keys=False).partition(b"<plist")
    return head + f"<!-- {MARKER} -->\n".encode() + plist + rest


class Launchd:
    platform = "macos"

    def __init__(self, home: Path, uid: int):
        self.plist = home / "Library" / "LaunchAgents" / f"{LABEL}.plist"
        self.log_dir = home / "Library" / "Logs" / "mlx-jina"
        self.log = self.log_dir / "server.log"
        self.domain = f"gui/{uid}"
        self.service = f"{self.domain}/{LABEL}"

    def owned(self) -> list[Path]:
        """The files install writes, which must carry MARKER to be replaced or removed."""
        return [self.plist]

    def files(
        self, argv: list[str], cwd: Path, api_key: str | None, carried: dict[str, str] | None = None
    ) -> list[ServiceFile]:
        def plist(key: str | None) -> bytes:
            env = {**(carried or {}), "PYTHONUNBUFFERED": "1"}  # log lines reach the file at once
            if key is not None:
                env["MLX_JINA_API_KEY"] = key  # not in argv, which `ps` shows to everyone
            return plist_bytes(argv, cwd, self.log, env)

        shown = plist(None if api_key is None else HIDDEN).decode()
        return [ServiceFile(self.plist, plist(api_key), 0o600, shown)]

    def log_folders(self) -> list[Path]:
        """Made by install (0700): launchd does not make a log's folder."""
        return [self.log_dir]

    def folders(self) -> list[Path]:
        """Removed by uninstall when empty."""
        return [self.log_dir]

    def install_steps(self) -> list[Step]:
        loaded = ["launchctl", "print", self.service]
        return [
            Step(["launchctl", "bootout", self.service], only_if=loaded),  # the old one
            Step(["launchctl", "enable", self.service]),  # undo a `launchctl disable`
            Step(["launchctl", "bootstrap", self.domain, str(self.plist)]),
        ]

    def uninstall_steps(self) -> tuple[list[Step], list[Path], list[Step]]:
        """(commands before removing, what to remove, commands after)."""
        loaded = ["launchctl", "print", self.service]
        stop = Step(["launchctl", "bootout", self.service], only_if=loaded)
        return [stop], [self.plist, self.log], []

    def status(self, run: Runner, out: Callable[[str], None]) -> int:
        """A summary of `launchctl print`; 0 if running, 3 if not (as systemctl does)."""
        result = run(["launchctl", "print", self.service], True)
        if result.returncode != 0:
            where = (f"installed ({self.plist}) but not loaded: run `mlx-jina service "
                     "install` again" if self.plist.exists() else "not installed")  # fmt: skip
            out(f"{LABEL}: {where}")
            return 3
        facts = dict(re.findall(r"^\t(state|pid|last exit code) = (.*)$", result.stdout, re.M))
        state = facts.get("state", "unknown state")
        line = f"{LABEL}: {state}"
        if "pid" in facts:
            line += f", pid {facts['pid']}"
        if "last exit code" in facts:
            line += f", last exit code {facts['last exit code']}"
        out(f"{line}\nagent: {self.plist}\nlog:   {self.log}")
        return 0 if state == "running" else 3

    def logs_command(self, lines: int, follow: bool) -> list[str]:
        if not self.log.exists():
            raise FileNotFoundError(
                f"No log at {self.log} yet: is the service installed? (mlx-jina service status)"
            )
        return ["tail", "-n", str(lines), *(["-F"] if follow else []), str(self.log)]
