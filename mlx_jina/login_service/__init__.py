"""`mlx-jina service`: run `mlx-jina serve` at login and restart it after a crash.

plan.py: the files and commands of an install, run or only shown (--dry-run), and the
marker that tells our files from others'; launchd.py: the macOS LaunchAgent; systemd.py:
the Linux user unit; installer.py: install, uninstall, status and logs on either;
cli.py: the subcommand's options. No MLX is imported: the service runs the server, this
only writes its files.
"""
