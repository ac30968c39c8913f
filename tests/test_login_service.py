"""`mlx-jina service install|uninstall|status|logs` on both platforms, against a temporary
HOME and a fake command runner: no launchctl or systemctl ever runs.

Run: python -m pytest tests/test_login_service.py -q

The plist is read back with plistlib; the unit is checked by the real `systemd-analyze
verify` (skipped where it is missing) and the key file by bash, whose double-quote rules
systemd's EnvironmentFile follows.
"""

from __future__ import annotations

import os
import plistlib
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mlx_jina.cli import main
from mlx_jina.login_service import installer, plan
from mlx_jina.login_service.plan import CARRIED
from mlx_jina.login_service.launchd import LABEL, Launchd
from mlx_jina.login_service.systemd import UNIT, Systemd, quote, unit_text

KEY = 'k3y "with" $HOME `and` \\ specials'
SERVE = ["-m", "jinaai/jina-embeddings-v5-text-nano-retrieval", "--port", "8090"]
UID = os.getuid()
AGENT = f"gui/{UID}/{LABEL}"


class FakeRunner:
    """Records every command; answers from `results` (argv tuple -> (code, stdout, stderr))."""

    def __init__(self, results: dict | None = None):
        self.calls: list[list[str]] = []
        self.results = results or {}

    def __call__(self, argv: list[str], capture: bool = True) -> subprocess.CompletedProcess:
        self.calls.append(list(argv))
        code, out, err = self.results.get(tuple(argv), (0, "", ""))
        return subprocess.CompletedProcess(argv, code, out, err)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("MLX_JINA_API_KEY", raising=False)
    for name in CARRIED:  # the tests' own settings would be carried into the files
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return home


@pytest.fixture
def runner(monkeypatch) -> FakeRunner:
    fake = FakeRunner()
    monkeypatch.setattr(plan, "run_command", fake)
    return fake


def files_under(folder: Path) -> dict[str, int]:
    """relative path -> mode, of every file (not folder) under `folder`."""
    return {
        str(p.relative_to(folder)): stat.S_IMODE(p.lstat().st_mode)
        for p in sorted(folder.rglob("*"))
        if not p.is_dir()
    }


def cli(*argv: str) -> None:
    main(["service", *argv])


# ---------------------------------------------------------------------------
# --dry-run


@pytest.mark.parametrize("platform", ["macos", "linux"])
def test_dry_run_prints_the_files_and_commands_and_changes_nothing(
    platform, home, runner, capsys
):
    cli("install", "--platform", platform, "--dry-run", *SERVE, "--api-key", KEY)
    out = capsys.readouterr().out
    command = [sys.executable, "-m", "mlx_jina", "serve", *SERVE]
    if platform == "macos":
        plist = home / "Library" / "LaunchAgents" / f"{LABEL}.plist"
        assert f"Would write {plist} (mode 0600):" in out
        shown = out.split(":\n", 1)[1].split("Would run:")[0]
        agent = plistlib.loads("".join(line[4:] + "\n" for line in shown.splitlines()).encode())
        assert agent["ProgramArguments"] == command
        assert out.split("Would run:\n")[1].splitlines() == [
            f"    launchctl bootout {AGENT}  # if `launchctl print {AGENT}` succeeds",
            f"    launchctl enable {AGENT}",
            f"    launchctl bootstrap gui/{UID} {plist}",
        ]
    else:
        unit = home / ".config" / "systemd" / "user" / UNIT
        assert f"Would write {unit} (mode 0644):" in out
        assert f"Would write {home}/.config/mlx-jina/service.env (mode 0600):" in out
        assert "    ExecStart=" + " ".join(f'"{a}"' for a in command) in out.splitlines()
        assert out.split("Would run:\n")[1].splitlines() == [
            "    systemctl --user daemon-reload",
            f"    systemctl --user enable {UNIT}",
            f"    systemctl --user restart {UNIT}",
        ]
    assert "hidden: the --api-key given" in out and "k3y" not in out
    assert files_under(home) == {} and runner.calls == []
    cli("uninstall", "--platform", platform, "--dry-run")
    assert "Not installed" in capsys.readouterr().out


def test_dry_run_of_an_uninstall(home, runner, capsys):
    cli("install", "--platform", "linux", *SERVE, "--api-key", KEY)
    before = files_under(home)
    runner.calls.clear()
    capsys.readouterr()
    cli("uninstall", "--platform", "linux", "--dry-run")
    config = home / ".config"
    assert capsys.readouterr().out.splitlines() == [
        "Would run:",
        f"    systemctl --user disable --now {UNIT}",
        "Would remove:",
        f"    {config}/systemd/user/{UNIT}",
        f"    {config}/mlx-jina/service.env",
        f"    {config}/mlx-jina",
        "Then run:",
        "    systemctl --user daemon-reload",
    ]
    assert files_under(home) == before and runner.calls == []


# ---------------------------------------------------------------------------
# the files


def test_the_plist_round_trips_with_the_expected_keys(home, runner):
    cli("install", "--platform", "macos", *SERVE, "--api-key", KEY, "--log-level", "warning")
    plist = home / "Library" / "LaunchAgents" / f"{LABEL}.plist"
    log = str(home / "Library" / "Logs" / "mlx-jina" / "server.log")
    with open(plist, "rb") as f:
        agent = plistlib.load(f)
    assert agent == {
        "Label": LABEL,
        "ProgramArguments": [sys.executable, "-m", "mlx_jina", "serve", *SERVE,
                             "--log-level", "warning"],  # fmt: skip
        "WorkingDirectory": str(home.parent),
        "EnvironmentVariables": {"PYTHONUNBUFFERED": "1", "MLX_JINA_API_KEY": KEY},
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ProcessType": "Interactive",
        "StandardOutPath": log,
        "StandardErrorPath": log,
    }
    assert files_under(home) == {f"Library/LaunchAgents/{LABEL}.plist": 0o600}
    assert stat.S_IMODE((home / "Library" / "Logs" / "mlx-jina").stat().st_mode) == 0o700


@pytest.fixture
def odd_python(tmp_path) -> Path:
    """A real executable at a path with a space, a % and a $ (each special in a unit file)."""
    folder = tmp_path / "py 100% $HOME dir"
    folder.mkdir()
    exe = folder / "python"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    return exe


def verify(unit: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=120)  # fmt: skip


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_the_unit_passes_systemd_analyze_verify(tmp_path, odd_python):
    odd = ["-m", "a model/with space", "--served-model-name", 'q"uote\\d 50% $USER ${X}']
    unit = tmp_path / "units" / UNIT
    unit.parent.mkdir()
    service = Systemd(tmp_path / "config")
    (file,) = service.files([str(odd_python), "-m", "mlx_jina", "serve", *odd], tmp_path, None)
    unit.write_bytes(file.content)
    result = verify(unit)
    assert result.returncode == 0, result.stderr
    assert UNIT not in result.stderr  # no warning about this unit either
    # The check is real: an executable that is not there fails it.
    unit.write_text(unit_text([str(tmp_path / "missing python"), "-m", "x"], tmp_path, None))
    result = verify(unit)
    assert result.returncode != 0 and "missing python" in result.stderr


def test_exec_start_words_follow_systemd_quoting():
    assert quote("plain") == '"plain"'
    assert quote('a "b"') == '"a \\"b\\""'
    assert quote("c:\\x") == '"c:\\\\x"'
    assert quote("50% $HOME") == '"50%% $$HOME"'  # a specifier, a variable: both literal
    assert quote("/opt/$x/python", executable=True) == '"/opt/$x/python"'  # never expanded
    with pytest.raises(ValueError, match="line break"):
        quote("two\nlines")


def test_the_key_is_in_no_world_readable_file(home, runner):
    for platform in ("macos", "linux"):
        cli("install", "--platform", platform, *SERVE, f"--api-key={KEY}")
    holding = []
    for path in (p for p in home.rglob("*") if p.is_file()):
        if KEY.encode() in path.read_bytes() or b"k3y" in path.read_bytes():
            holding.append(path)
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    env = home / ".config" / "mlx-jina" / "service.env"
    assert sorted(holding) == sorted([env, home / "Library/LaunchAgents" / f"{LABEL}.plist"])
    assert stat.S_IMODE(env.parent.stat().st_mode) == 0o700
    unit = (home / ".config" / "systemd" / "user" / UNIT).read_text()
    assert f"EnvironmentFile={env}" in unit and "api" not in unit.split("ExecStart=")[1]
    # systemd reads double-quoted values by POSIX shell rules: bash reads the same key back
    script = f'set -a; . "{env}"; printf %s "$MLX_JINA_API_KEY"'
    read = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"]})  # fmt: skip
    assert read.stdout == KEY


# ---------------------------------------------------------------------------
# the commands


@pytest.mark.parametrize("loaded", [True, False])
def test_macos_commands(home, loaded):
    fake = FakeRunner({("launchctl", "print", AGENT): (0 if loaded else 113, "", "")})
    service = Launchd(home, UID)
    installer.install(service, SERVE, run=fake, out=lambda s: None)
    plist = str(service.plist)
    bootout = [["launchctl", "bootout", AGENT]] if loaded else []
    assert fake.calls == [
        ["launchctl", "print", AGENT],
        *bootout,
        ["launchctl", "enable", AGENT],
        ["launchctl", "bootstrap", f"gui/{UID}", plist],
    ]
    fake.calls.clear()
    installer.uninstall(service, run=fake, out=lambda s: None)
    assert fake.calls == [["launchctl", "print", AGENT], *bootout]


def test_linux_commands(home):
    fake = FakeRunner()
    service = installer.service_for("linux")
    installer.install(service, SERVE, run=fake, out=lambda s: None)
    assert fake.calls == [["systemctl", "--user", "daemon-reload"],
                          ["systemctl", "--user", "enable", UNIT],
                          ["systemctl", "--user", "restart", UNIT]]  # fmt: skip
    fake.calls.clear()
    installer.uninstall(service, run=fake, out=lambda s: None)
    assert fake.calls == [["systemctl", "--user", "disable", "--now", UNIT],
                          ["systemctl", "--user", "daemon-reload"]]  # fmt: skip


def test_a_failing_command_is_reported_with_its_stderr(home, monkeypatch, capsys):
    bootstrap = ("launchctl", "bootstrap", f"gui/{UID}",
                 str(home / "Library" / "LaunchAgents" / f"{LABEL}.plist"))  # fmt: skip
    fake = FakeRunner({("launchctl", "print", AGENT): (113, "", ""),
                       bootstrap: (5, "", "Bootstrap failed: 5: Input/output error\n")})
    monkeypatch.setattr(plan, "run_command", fake)
    with pytest.raises(SystemExit) as stop:
        cli("install", "--platform", "macos", *SERVE)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    said = "Bootstrap failed: 5: Input/output error"
    assert f"`{' '.join(bootstrap)}` failed (exit 5): {said}" in err


def test_status_and_logs(home, runner, capsys):
    service = Launchd(home, UID)
    printed = (  # launchctl print's layout: top-level facts one tab in, nested ones deeper
        f"{AGENT} = {{\n\tactive count = 1\n\tstate = running\n\tprogram = x\n\targuments"
        " = {\n\t\tstate = nested\n\t}\n\tpid = 4242\n\tlast exit code = 0\n}\n"
    )
    fake = FakeRunner({("launchctl", "print", AGENT): (0, printed, "")})
    lines: list[str] = []
    assert installer.status(service, run=fake, out=lines.append) == 0
    assert lines[0].splitlines()[0] == f"{LABEL}: running, pid 4242, last exit code 0"
    fake.results[("launchctl", "print", AGENT)] = (113, "", "Could not find service")
    assert installer.status(service, run=fake, out=lines.append) == 3
    assert lines[-1] == f"{LABEL}: not installed"
    with pytest.raises(FileNotFoundError, match="No log at"):
        service.logs_command(10, False)
    service.log.parent.mkdir(parents=True)
    service.log.write_text("a line\n")
    assert service.logs_command(10, True) == ["tail", "-n", "10", "-F", str(service.log)]
    with pytest.raises(SystemExit) as stop:
        cli("logs", "--platform", "linux", "-n", "7", "--follow")
    assert stop.value.code == 0
    assert runner.calls == [["journalctl", "--user", "-u", UNIT, "-n", "7", "--no-pager", "-f"]]


# ---------------------------------------------------------------------------
# what is refused, and what is left behind


@pytest.mark.parametrize("bad", [["--prot", "9000"], ["--bits", "3"], [], ["--port"]])
def test_a_bad_serve_option_fails_before_anything_is_written(home, runner, capsys, bad):
    model = ["-m", "some/model"] if bad else []
    with pytest.raises(SystemExit) as stop:
        cli("install", "--platform", "linux", *model, *bad)
    assert stop.value.code == 2
    assert "error:" in capsys.readouterr().err
    assert files_under(home) == {} and runner.calls == []


def test_a_unix_socket_path_that_cannot_work_fails_at_install(home, runner, capsys):
    with pytest.raises(SystemExit):
        cli("install", "--platform", "macos", *SERVE, "--uds", "no/such/folder/s.sock")
    assert "mkdir -p" in capsys.readouterr().err
    assert files_under(home) == {} and runner.calls == []


@pytest.mark.parametrize("platform", ["macos", "linux"])
def test_install_then_uninstall_leaves_nothing_behind(platform, home, runner):
    cli("install", "--platform", platform, *SERVE, "--api-key", KEY)
    cli("install", "--platform", platform, *SERVE, "--api-key", "another")  # a reinstall
    assert files_under(home)
    if platform == "macos":  # launchd would have written the log by now
        (home / "Library" / "Logs" / "mlx-jina" / "server.log").write_text("started\n")
    cli("uninstall", "--platform", platform)
    assert files_under(home) == {}
    assert not (home / "Library" / "Logs" / "mlx-jina").exists()
    assert not (home / ".config" / "mlx-jina").exists()


def test_a_reinstall_without_the_key_removes_its_file(home, runner):
    cli("install", "--platform", "linux", *SERVE, "--api-key", KEY)
    cli("install", "--platform", "linux", *SERVE)
    assert list(files_under(home)) == [f".config/systemd/user/{UNIT}"]
    assert not (home / ".config" / "mlx-jina").exists()
    assert "EnvironmentFile" not in (home / ".config" / "systemd" / "user" / UNIT).read_text()


@pytest.mark.parametrize("platform", ["macos", "linux"])
def test_a_file_that_is_not_ours_is_neither_replaced_nor_removed(platform, home, runner, capsys):
    service = installer.service_for(platform)
    mine = service.owned()[0]
    mine.parent.mkdir(parents=True)
    mine.write_text("the user's own service\n")
    for action in (["install", *SERVE], ["uninstall"]):
        with pytest.raises(SystemExit) as stop:
            cli(action[0], "--platform", platform, *action[1:])
        assert stop.value.code == 2
        assert "was not written by `mlx-jina service install`" in capsys.readouterr().err
        assert mine.read_text() == "the user's own service\n"
    assert runner.calls == []


def test_api_key_forms_are_all_taken_out_of_argv():
    for given in (["--api-key", "K"], ["--api-key=K"], ["--api", "K"], ["--ap=K"]):
        assert installer.split_api_key(["-m", "x", *given, "--port", "1"]) == (
            ["-m", "x", "--port", "1"], "K")  # fmt: skip
    assert installer.split_api_key(["--api-key", "A", "--api-key", "B"]) == ([], "B")
    assert installer.split_api_key(["--allowed-hosts", "a"]) == (["--allowed-hosts", "a"], None)


# ---------------------------------------------------------------------------
# the installing shell's Hugging Face settings


ODD_CACHE = '/Volumes/My Disk/hf "cache" 100% $HOME'


def test_the_hugging_face_settings_of_the_installing_shell_are_carried(home, runner, monkeypatch):
    """A service does not inherit the shell: without these it would look in the default
    cache (and download again) or go online where the user said HF_HUB_OFFLINE=1."""
    monkeypatch.setenv("HF_HOME", ODD_CACHE)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")  # a secret: never written
    cli("install", "--platform", "macos", *SERVE)
    with open(home / "Library" / "LaunchAgents" / f"{LABEL}.plist", "rb") as f:
        env = plistlib.load(f)["EnvironmentVariables"]
    assert env == {"HF_HOME": ODD_CACHE, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    cli("install", "--platform", "linux", *SERVE)
    unit = (home / ".config" / "systemd" / "user" / UNIT).read_text()
    assert 'Environment="HF_HOME=/Volumes/My Disk/hf \\"cache\\" 100%% $HOME"' in unit
    assert 'Environment="HF_HUB_OFFLINE=1"' in unit and "hf_secret" not in unit


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_carried_settings_keep_the_unit_valid(tmp_path, odd_python):
    unit = tmp_path / "units" / UNIT
    unit.parent.mkdir()
    argv = [str(odd_python), "-m", "mlx_jina", "serve", "-m", "x"]
    unit.write_text(unit_text(argv, tmp_path, None, {"HF_HOME": ODD_CACHE, "HF_HUB_OFFLINE": "1"}))
    result = verify(unit)
    assert result.returncode == 0, result.stderr
    assert UNIT not in result.stderr
