"""Which files of a folder get indexed: text, Markdown and source files, filtered by
include/exclude globs and every `.gitignore` on the way; binary, non-UTF-8 and oversize
files are skipped and counted, never read into the index.

The `.gitignore` rules cover what people write in practice: `#` comments, `!` negation,
a trailing `/` for folders only, a `/` inside or in front anchoring the pattern to the
`.gitignore`'s folder, and `*`, `?`, `[...]` and `**`. Symbolic links are never followed
(a link could lead out of the folder).
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

TEXT_SUFFIXES = frozenset("""
    .txt .md .markdown .mdx .rst .adoc .org .tex .csv .tsv .log
    .py .pyi .js .jsx .ts .tsx .mjs .cjs .go .rs .java .kt .kts .scala .swift .m .mm
    .c .h .cc .cpp .cxx .hpp .hh .cs .rb .php .pl .lua .r .jl .sh .bash .zsh .fish .ps1
    .sql .html .htm .css .scss .vue .svelte .json .jsonl .toml .yaml .yml .ini .cfg .xml
    .proto .graphql .dockerfile .el .clj .ex .exs .erl .hs .ml .dart .zig .nim
""".split())
SKIPPED_FOLDERS = frozenset({".git", ".hg", ".svn", "__pycache__", "node_modules", ".venv"})
SNIFF_BYTES = 8192


@dataclass
class Walk:
    """What a walk found: the files to index, and the ones skipped by reason."""

    files: dict[str, Path] = field(default_factory=dict)  # relative posix path -> file
    skipped: dict[str, list[str]] = field(default_factory=dict)  # reason -> relative paths

    def skip(self, reason: str, rel: str) -> None:
        self.skipped.setdefault(reason, []).append(rel)


def walk_folder(
    root: Path, include: tuple[str, ...] = (), exclude: tuple[str, ...] = (),
    max_file_bytes: int = 1 << 20,
) -> Walk:  # fmt: skip
    """The files under `root` to index, sorted by path. `include` globs replace the default
    suffix list; `exclude` globs and `.gitignore` rules remove files."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"No folder {root} to index.")
    walk = Walk()
    rules: list[tuple[str, list[_Rule]]] = []  # (folder relative to root, its .gitignore)
    for folder, dirs, names in os.walk(root):
        here = Path(folder)
        rel_dir = "" if here == root else here.relative_to(root).as_posix()
        rules = [(d, r) for d, r in rules if rel_dir == d or rel_dir.startswith(d + "/")
                 or d == ""]  # fmt: skip
        if (here / ".gitignore").is_file():
            rules.append((rel_dir, _read_gitignore(here / ".gitignore")))
        kept = []
        for d in sorted(dirs):
            rel = f"{rel_dir}/{d}".lstrip("/")
            if d in SKIPPED_FOLDERS or (here / d).is_symlink() or _ignored(rules, rel, True):
                continue
            if any(_glob(rel, g) for g in exclude):
                continue
            kept.append(d)
        dirs[:] = kept
        for name in sorted(names):
            rel = f"{rel_dir}/{name}".lstrip("/")
            path = here / name
            if name == ".gitignore" or _ignored(rules, rel, False):
                continue
            if any(_glob(rel, g) for g in exclude):
                continue
            if include and not any(_glob(rel, g) for g in include):
                continue
            if not include and Path(name).suffix.lower() not in TEXT_SUFFIXES:
                continue
            if path.is_symlink():
                walk.skip("symbolic link", rel)
            elif not path.is_file():
                walk.skip("not a regular file", rel)
            elif path.stat().st_size > max_file_bytes:
                walk.skip(f"over {max_file_bytes:,} bytes", rel)
            else:
                walk.files[rel] = path
    walk.files = dict(sorted(walk.files.items()))
    return walk


def read_text(path: Path) -> tuple[str | None, str | None]:
    """(text, None), or (None, why it is skipped): binary or not UTF-8."""
    data = path.read_bytes()
    if b"\x00" in data[:SNIFF_BYTES]:
        return None, "binary"
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as e:
        return None, f"not UTF-8 (byte {data[e.start]:#04x} at offset {e.start})"


def _glob(rel: str, pattern: str) -> bool:
    """A glob against the relative path, or against the file name if it has no '/'."""
    if "/" not in pattern.rstrip("/"):
        return fnmatch.fnmatchcase(rel.rsplit("/", 1)[-1], pattern.rstrip("/"))
    return _compile(pattern.strip("/")).fullmatch(rel) is not None


@dataclass(frozen=True)
class _Rule:
    regex: re.Pattern
    negate: bool
    folders_only: bool


def _read_gitignore(path: Path) -> list[_Rule]:
    rules = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.rstrip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        line = line[1:] if negate else line
        folders_only = line.endswith("/")
        line = line.rstrip("/")
        anchored = "/" in line
        line = line.lstrip("/")
        regex = _compile(line if anchored else f"**/{line}")
        rules.append(_Rule(regex, negate, folders_only))
    return rules


def _ignored(rules: list[tuple[str, list[_Rule]]], rel: str, is_dir: bool) -> bool:
    """Git's rule: the last matching pattern decides (a negation un-ignores)."""
    ignored = False
    for base, patterns in rules:
        sub = rel[len(base) + 1 :] if base else rel
        for rule in patterns:
            if rule.folders_only and not is_dir:
                continue
            if rule.regex.fullmatch(sub):
                ignored = not rule.negate
    return ignored


def _compile(pattern: str) -> re.Pattern:
    """A gitignore-style glob as a regex over '/'-separated paths."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and (j := pattern.find("]", i + 1)) > i:
            body = pattern[i + 1 : j].replace("\\", "\\\\")
            out.append("[^" + body[1:] + "]" if body.startswith("!") else "[" + body + "]")
            i = j + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))
