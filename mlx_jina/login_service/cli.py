"""`mlx-jina service install|uninstall|status|logs`: its options and handlers.

Registered by mlx_jina/cli.py through `add_service_command`, which also hands over its
`build_parser` and `serve_adapter`, so that the serve options are checked by the real
`serve` parser (it lives in the layer above). `install` takes `serve`'s options as they
are: mlx_jina/cli.py passes the ones argparse does not know here on as
`args.serve_options`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from functools import partial

from ..arg_values import positive_int
from . import installer, plan
from .installer import PLATFORMS, this_platform

INSTALL_HELP = """\
Run `mlx-jina serve` at every login, and again after a crash: a LaunchAgent on macOS
(~/Library/LaunchAgents/io.github.mlx-jina.server.plist, logs in ~/Library/Logs/mlx-jina/),
a systemd user unit on Linux (~/.config/systemd/user/mlx-jina.service, logs in the
journal). Every other option is passed to `mlx-jina serve` as given, after that command's
own parser has checked it; relative paths are read from the current folder. An --api-key
goes in the service's environment (a 0600 file), never on its command line."""


def add_service_command(
    subs,
    add_options,
    build_parser: Callable[[], argparse.ArgumentParser],
    serve_adapter: Callable[[str | None], object],
) -> None:
    """Add `service` and its four subcommands to the `mlx-jina` subcommands."""
    check_serve = partial(check_serve_options, build_parser, serve_adapter)
    service = subs.add_parser("service", help="run `mlx-jina serve` at login (launchd, "
                              "systemd) and restart it after a crash")  # fmt: skip
    actions = service.add_subparsers(dest="action", metavar="{install,uninstall,status,logs}",
                                     help="what to do with the login service")
    actions.required = True
    where = [(("--platform",), dict(choices=PLATFORMS, default=this_platform(),
                                    help="macos (launchd) or linux (systemd); default: this "
                                    "machine's"))]  # fmt: skip
    dry_run = [(("--dry-run",), dict(action="store_true", help="print the files and "
                                     "commands, change nothing"))]  # fmt: skip
    tail = [
        (("-n", "--lines"), dict(type=positive_int, default=50, metavar="N",
                                 help="lines to print (default: 50)")),
        (("-f", "--follow"), dict(action="store_true", help="keep printing new lines")),
    ]  # fmt: skip
    commands = [
        ("install", "install and start the service; then the options of `mlx-jina serve`",
         run_install, (where, dry_run)),
        ("uninstall", "stop the service and remove its files", run_uninstall, (where, dry_run)),
        ("status", "is it running: pid, last exit code", run_status, (where,)),
        ("logs", "the server's latest log lines", run_logs, (where, tail)),
    ]  # fmt: skip
    for name, help_text, handler, tables in commands:
        extra = dict(description=INSTALL_HELP, usage="%(prog)s [--platform P] [--dry-run] "
                     "-m MODEL [serve options]") if name == "install" else {}  # fmt: skip
        p = add_options(actions.add_parser(name, help=help_text, allow_abbrev=False, **extra),
                        *tables)  # fmt: skip
        p.set_defaults(handler=handler, parser=p, check_serve=check_serve)
        if name == "install":
            p.set_defaults(serve_options=[])


def check_serve_options(build_parser, serve_adapter, argv: list[str]) -> argparse.Namespace:
    """`argv` parsed by the real `serve` parser (a usage error exits 2), so that a bad
    option fails when installing, not at the next login."""
    args, rest = build_parser().parse_known_args(["serve", *argv])
    if rest:
        args.parser.error(f"unrecognized arguments: {' '.join(rest)}")
    serve_adapter(args.task)
    return args


def _service(args: argparse.Namespace):
    if args.platform is None:
        raise ValueError(f"No login service for {sys.platform}; pass --platform macos or linux.")
    return installer.service_for(args.platform)


def run_install(args: argparse.Namespace) -> None:
    if not args.serve_options:
        raise ValueError("Name the model to serve: mlx-jina service install -m MODEL [options]")
    serve_args = args.check_serve(args.serve_options)  # a typo fails now, not at login
    if getattr(serve_args, "uds", None):
        from ..server.unix_socket import socket_path

        socket_path(serve_args.uds)  # too long, or no such folder: now too
    installer.install(_service(args), args.serve_options, run=plan.run_command, out=print,
                      dry_run=args.dry_run)  # fmt: skip


def run_uninstall(args: argparse.Namespace) -> None:
    installer.uninstall(_service(args), run=plan.run_command, out=print, dry_run=args.dry_run)


def run_status(args: argparse.Namespace) -> None:
    sys.exit(installer.status(_service(args), run=plan.run_command, out=print))


def run_logs(args: argparse.Namespace) -> None:
    service = _service(args)
    sys.exit(installer.logs(service, lines=args.lines, follow=args.follow, run=plan.run_command))
