"""The README and docs/ run as written: their code blocks, and their links.

Every ```python and ```bash block of README.md and docs/*.md runs, page by page, in the
order it appears, against tiny random checkpoints from the fixtures (hidden size 256, so
the pages' Matryoshka sizes up to 256 fit). Per page: one empty folder holding
corpus.txt and docs.jsonl; the python blocks share one interpreter (a block may use what
an earlier one defined); the bash blocks run in `bash -e` with `mlx-jina` meaning this
checkout's command; any connection outside 127.0.0.1 (or a Unix socket) from a python
block fails it, and HF_HUB_OFFLINE=1 keeps the commands off the Hub.

What is rewritten, and nothing else: the published Hub ids become local folders of the
same layout, `python convert.py` / `python examples/...` point into the checkout, and an
`mlx-jina serve` line is started in the background, each on a free port of its own (the
page's 127.0.0.1:8080, from its block to the next server's, becomes that port; its key is
$KEY, its served name the repo's last part), or on its `--uds` socket as written.

A block that cannot run here has `<!-- not-run: reason -->` on the line before it; a
block after `<!-- test: integrations -->` is left to tests/test_readme_integrations.py.
Links: a relative link must name a file of the repository, and a #fragment a heading of
that file, by GitHub's anchor rules. Run: python -m pytest tests/test_docs.py
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w-]*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*(?P<kind>not-run|test)\s*:\s*(?P<text>.*?)\s*-->\s*$")
HUB_ID = re.compile(r"jinaai/jina-embeddings-v5-text-(?P<size>small|nano)(?P<rest>[\w-]*)")
TASKS = ("retrieval", "text-matching", "classification", "clustering")
RUNNABLE = ("python", "bash")
PORT_IN_DOCS = "127.0.0.1:8080"
KEY = "docs-test-key"

# Wide enough for every Matryoshka size the pages use (256), small enough to stay tiny.
WIDE = {
    "qwen3": {"hidden_size": 256, "num_attention_heads": 4, "num_key_value_heads": 2,
              "head_dim": 64, "intermediate_size": 384},
    "eurobert": {"hidden_size": 256, "num_attention_heads": 4, "num_key_value_heads": 4,
                 "intermediate_size": 384},
}  # fmt: skip


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    marker: tuple[str, str] | None  # ("not-run", reason) or ("test", name)

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of `page`, with the marker comment on the line before each."""
    found, lines, i = [], page.read_text().splitlines(), 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening or not opening["lang"] and not _closes(lines, i):
            i += 1
            continue
        indent, start = len(opening["indent"]), i
        i += 1
        body = []
        while i < len(lines) and not re.match(r"^ *```\s*$", lines[i]):
            body.append(lines[i][indent:] if lines[i][:indent].isspace() else lines[i])
            i += 1
        before = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        mark = MARKER.match(before)
        marker = (mark["kind"], mark["text"]) if mark else None
        found.append(Block(page, start + 1, opening["lang"], "\n".join(body) + "\n", marker))
        i += 1
    return found


def _closes(lines: list[str], i: int) -> bool:
    return any(re.match(r"^ *```\s*$", line) for line in lines[i + 1:])


def runnable(page: Path) -> list[Block]:
    return [b for b in blocks(page) if b.lang in RUNNABLE and b.marker is None]


# ---------------------------------------------------------------------------
# the markers


def test_every_marker_gives_a_reason():
    for page in PAGES:
        for block in blocks(page):
            if block.marker:
                kind, text = block.marker
                assert text, f"{block.where}: say why the block is not run"
                assert kind == "not-run" or text == "integrations", f"{block.where}: {text!r}"
                assert block.lang in RUNNABLE, f"{block.where}: only code blocks take a marker"


def test_most_blocks_run():
    """`not-run` stays the exception, and every page with code has some that runs."""
    code = [b for page in PAGES for b in blocks(page) if b.lang in RUNNABLE]
    skipped = [b for b in code if b.marker and b.marker[0] == "not-run"]
    assert len(skipped) <= len(code) // 4, [b.where for b in skipped]
    assert runnable(PAGES[0]), "the README runs no block"


def test_block_parser_reads_markers_and_indented_fences(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# T\n\n<!-- not-run: needs a GPU -->\n```bash\nnvidia-smi\n```\n\n"
        "- item\n  ```python\n  x = 1\n      y = 2\n  ```\n\n```\nplain\n```\n"
    )
    found = blocks(page)
    assert [(b.lang, b.marker, b.code) for b in found] == [
        ("bash", ("not-run", "needs a GPU"), "nvidia-smi\n"),
        ("python", None, "x = 1\n    y = 2\n"),
        ("", None, "plain\n"),
    ]


# ---------------------------------------------------------------------------
# the links


LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\((?P<target>[^)\s]+)\)")


def without_fences(text: str) -> str:
    return re.sub(r"^ *```.*?^ *```", "", text, flags=re.DOTALL | re.MULTILINE)


def prose(text: str) -> str:
    """`text` without code blocks and inline code, where brackets are not links."""
    return re.sub(r"`[^`\n]*`", "", without_fences(text))


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens,
    a repeated heading numbered -1, -2, ..."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in without_fences(page.read_text()).splitlines():
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not heading:
            continue
        title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading[1])  # a link keeps its text
        slug = "".join(
            c for c in title.lower() if c in " -_" or unicodedata.category(c)[0] in "LN"
        ).replace(" ", "-")
        count = seen.get(slug, 0)
        found.add(f"{slug}-{count}" if count else slug)
        seen[slug] = count + 1
    return found


def broken_links(page: Path) -> list[str]:
    problems = []
    for match in LINK.finditer(prose(page.read_text())):
        target = match["target"]
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...: not fetched
            continue
        path, _, fragment = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            problems.append(f"{target}: no such file")
        elif ROOT not in file.parents and file != ROOT:
            problems.append(f"{target}: outside the repository")
        elif fragment and (file.suffix != ".md" or fragment not in anchors(file)):
            problems.append(f"{target}: no heading #{fragment} in {file.name}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve(page):
    assert broken_links(page) == []


def test_link_check_catches_missing_files_and_anchors(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "b.md").write_text("# Two words\n\n## `code` and punctuation: yes!\n")
    page = tmp_path / "a.md"
    page.write_text(
        "[ok](b.md) [ok](b.md#two-words) [ok](b.md#code-and-punctuation-yes) [ok](#here)\n"
        "[bad](c.md) [bad](b.md#three-words) [bad](#nowhere) [web](https://example.com)\n"
        "`[not a link](x.md)`\n\n# Here\n"
    )
    assert broken_links(page) == [
        "c.md: no such file",
        "b.md#three-words: no heading #three-words in b.md",
        "#nowhere: no heading #nowhere in a.md",
    ]


def test_the_pages_link_to_each_other():
    """Every page of docs/ is reachable from the README."""
    linked = {m["target"].partition("#")[0] for m in LINK.finditer(prose(PAGES[0].read_text()))}
    missing = [p.name for p in PAGES[1:] if f"docs/{p.name}" not in linked]
    assert missing == []


# ---------------------------------------------------------------------------
# the code blocks


@pytest.fixture(scope="module")
def hub(make_checkpoint, tiny_tokenizer_eos, tiny_tokenizer_bos_eos):
    """Hub id -> a local tiny folder of the same layout, built on first use."""
    from builders.layouts import build_base, build_merged, build_mlx_task, build_mlx_unified

    def base(size: str) -> Path:
        if size == "small":
            return make_checkpoint(build_base, "qwen3", tokenizer=tiny_tokenizer_eos, seed=0,
                                   config_overrides=WIDE["qwen3"])  # fmt: skip
        return make_checkpoint(build_base, "eurobert", tokenizer=tiny_tokenizer_bos_eos, seed=1,
                               rope_form="top", config_overrides=WIDE["eurobert"])  # fmt: skip

    def folder(match: re.Match) -> str:
        size, rest = match["size"], match["rest"].removeprefix("-")
        if not rest:
            return str(base(size))
        if rest in TASKS:
            return str(make_checkpoint(build_merged, base(size), rest))
        if rest == "mlx":
            return str(make_checkpoint(build_mlx_unified, base(size)))
        if rest.removesuffix("-mlx") in TASKS:
            return str(make_checkpoint(build_mlx_task, base(size), rest.removesuffix("-mlx")))
        raise AssertionError(f"{match[0]}: no local stand-in; add one to tests/test_docs.py")

    return folder


@pytest.mark.parametrize(
    "name, layout",
    [("small", "base"), ("nano-retrieval", "merged"), ("small-text-matching-mlx", "mlx-task"),
     ("nano-mlx", "mlx-unified")],
)  # fmt: skip
def test_stand_ins_have_the_layout_their_hub_id_names(hub, name, layout):
    folder = HUB_ID.sub(hub, f"jinaai/jina-embeddings-v5-text-{name}")
    info = subprocess.run(
        [sys.executable, "-m", "mlx_jina", "info", "-m", folder, "--json"],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    facts = json.loads(info.stdout)
    assert (facts["layout"], facts["dim"]) == (layout, 256)
    assert facts["backbone"] == ("qwen3" if name.startswith("small") else "eurobert")


# A block that would reach another machine must be marked not-run: the tests send traffic
# only to this machine (an IPv4 address outside 127/8, or ssh and --hosts/--hostfile).
OFF_MACHINE = re.compile(
    r"\b(?!127\.)\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b|\bssh\b|--hosts?\b|--hostfile\b"
)


def check_stays_local(block: Block) -> None:
    if found := OFF_MACHINE.search(block.code):
        raise AssertionError(
            f"{block.where} would reach another machine ({found[0]!r}); mark it "
            "<!-- not-run: reason --> on the line before it"
        )


def test_blocks_that_reach_other_machines_are_refused():
    def block(code: str) -> Block:
        return Block(ROOT / "README.md", 1, "bash", code, None)

    for code in ("mlx.launch --hosts 10.0.0.2,10.0.0.3 -- true\n", "ssh mac1.local true\n"):
        with pytest.raises(AssertionError, match="another machine"):
            check_stays_local(block(code))
    check_stays_local(block("curl http://127.0.0.1:8080/health\n"))
    # every block the docs tests run stays on this machine
    for page in PAGES:
        for b in runnable(page):
            check_stays_local(b)


def actions(page: Path, hub, ports: Iterator[int]) -> list[dict]:
    """What the runner does for `page`: python code, bash scripts and servers, in order.
    Each `mlx-jina serve` gets a port of its own: its block and those after it, up to the
    next server's, talk to it."""
    steps, port = [], next(ports)
    for block in runnable(page):
        check_stays_local(block)
        if block.lang == "bash" and any(
            c.startswith("mlx-jina serve") and "--uds" not in c for c in _commands(block.code)
        ):  # a server on a Unix socket takes no port
            port = next(ports)
        code = block.code.replace(PORT_IN_DOCS, f"127.0.0.1:{port}")
        if block.lang == "python":
            steps.append({"kind": "python", "where": block.where, "code": HUB_ID.sub(hub, code)})
            continue
        script: list[str] = []
        for command in _commands(code):
            if not command.startswith("mlx-jina serve"):
                script.append(command)
                continue
            if script:
                steps.append({"kind": "bash", "where": block.where, "code": "\n".join(script)})
                script = []
            served = HUB_ID.search(command)
            argv = shlex.split(HUB_ID.sub(hub, command), comments=True)[2:]
            if "--uds" not in argv:
                argv += ["--port", str(port)]
            if served and "--served-model-name" not in argv:
                argv += ["--served-model-name", served[0].split("/")[1]]
            steps.append({"kind": "serve", "where": block.where, "argv": argv})
        if script:
            steps.append({"kind": "bash", "where": block.where, "code": "\n".join(script)})
    for step in steps:
        if step["kind"] == "bash":
            code = HUB_ID.sub(hub, step["code"])
            code = re.sub(r"\bpython (convert\.py|examples/)", r'"$PYTHON" "$ROOT"/\1', code)
            step["code"] = code.replace("python -m mlx_jina", '"$PYTHON" -m mlx_jina')
    return steps


def _commands(code: str) -> list[str]:
    """Shell lines, with backslash continuations joined."""
    commands, current = [], ""
    for line in code.splitlines():
        current += line
        if current.endswith("\\"):
            current = current[:-1]
            continue
        if current.strip():
            commands.append(current.strip())
        current = ""
    return commands


# Runs a page's steps in its folder; prints one line per step so a failure names its block.
RUNNER = r"""
import json, os, socket, subprocess, sys, time, urllib.request
real_connect = socket.socket.connect
def connect(sock, address):
    host = address[0] if isinstance(address, tuple) else address
    local = sock.family == socket.AF_UNIX or host in ("127.0.0.1", "::1", "localhost")
    if isinstance(host, str) and not local:
        raise OSError(f"network access attempted: {address!r}")
    return real_connect(sock, address)
socket.socket.connect = connect
BASH = 'set -eo pipefail\nmlx-jina() { "$PYTHON" -m mlx_jina "$@"; }\n'
namespace, servers = {"__name__": "__main__"}, []
try:
    for step in json.load(open(sys.argv[1])):
        # on a line of its own: a block's output may not end its last line
        print("\nSTEP", step["kind"], step["where"], flush=True)
        if step["kind"] == "python":
            exec(compile(step["code"], step["where"], "exec"), namespace)
        elif step["kind"] == "bash":
            subprocess.run(["bash", "-c", BASH + step["code"]], check=True, timeout=600)
        else:
            argv = [os.path.expandvars(a) for a in step["argv"]]
            servers.append(subprocess.Popen([sys.executable, "-m", "mlx_jina", "serve", *argv]))
            uds = argv[argv.index("--uds") + 1] if "--uds" in argv else None
            port = None if uds else argv[argv.index("--port") + 1]
            deadline = time.monotonic() + 300
            while True:
                assert servers[-1].poll() is None, "mlx-jina serve exited"
                assert time.monotonic() < deadline, "mlx-jina serve did not answer /health"
                try:
                    if uds:  # bound once the model is loaded
                        with socket.socket(socket.AF_UNIX) as probe:
                            probe.connect(uds)
                    else:
                        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
                    break
                except OSError:
                    time.sleep(0.2)  # polling a starting server: no event to wait on
finally:
    for server in servers:
        server.terminate()
        server.wait(60)
print("DONE", flush=True)
"""


# What running a page's steps imports beyond the package: a server, the MCP SDK, and each
# Python block's top-level imports.
IMPORTED = re.compile(r"^\s*(?:from|import)\s+([A-Za-z_]\w*)", re.M)
COMMAND_MODULES = {"mlx-jina mcp": ("mcp",), "mlx-jina serve": ("starlette", "uvicorn")}
# The modules the extras bring (pyproject.toml): only their absence skips a page; any other
# missing module is a fault of the page, and it fails.
OPTIONAL = {
    "starlette", "uvicorn", "prometheus_client", "httpx", "openai", "requests", "mcp", "ollama",
    "langchain_core", "langchain_openai", "langchain_ollama", "llama_index", "chromadb",
    "torch", "transformers", "peft", "sentence_transformers",
}  # fmt: skip


def missing_modules(steps: list[dict]) -> list[str]:
    """The modules the steps need that this environment lacks (an extra not installed)."""
    needed = set()
    for step in steps:
        text = step.get("code", "")
        if step["kind"] == "serve":
            needed.update(COMMAND_MODULES["mlx-jina serve"])
        for command, modules in COMMAND_MODULES.items():
            if command in text:
                needed.update(modules)
        if step["kind"] == "python":
            needed.update(IMPORTED.findall(text))
    return sorted(m for m in needed & OPTIONAL if importlib.util.find_spec(m) is None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_ports() -> Iterator[int]:
    """Free ports, each once."""
    seen: set[int] = set()
    while True:
        if (port := free_port()) not in seen:
            seen.add(port)
            yield port


@pytest.mark.slow
@pytest.mark.parametrize(
    "page", [p for p in PAGES if runnable(p)], ids=lambda p: str(p.relative_to(ROOT))
)
def test_code_blocks_run(page, hub, tmp_path):
    steps = actions(page, hub, free_ports())
    if missing := missing_modules(steps):  # the quick loop: `pip install -e . pytest`
        pytest.skip(f"{page.name} needs {', '.join(missing)}: pip install -e '.[test]'")
    work = tmp_path / "work"
    work.mkdir()
    (work / "corpus.txt").write_text(
        "".join(f"Planet {i} has {i % 7} moons and a {i}-day year.\n" for i in range(40))
    )
    (work / "docs.jsonl").write_text(
        '{"text": "Mars is often called the Red Planet."}\n"Venus is the hottest planet."\n'
        '{"text": "Jupiter is the largest planet."}\n'
    )
    (tmp_path / "steps.json").write_text(json.dumps(steps))
    (tmp_path / "runner.py").write_text(RUNNER)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "CHROMA"))}
    env.update(
        HF_HUB_OFFLINE="1", KEY=KEY, OPENAI_API_KEY=KEY, CHROMA_OPENAI_API_KEY=KEY,
        PYTHON=sys.executable, ROOT=str(ROOT), TQDM_DISABLE="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )  # fmt: skip
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "runner.py"), str(tmp_path / "steps.json")],
        cwd=work, env=env, capture_output=True, text=True, timeout=1200,
    )
    ran = [line.split()[2] for line in proc.stdout.splitlines() if line.startswith("STEP ")]
    assert proc.returncode == 0, f"failed in {ran[-1] if ran else '?'}:\n{proc.stderr[-4000:]}"
    assert ran == [s["where"] for s in steps] and proc.stdout.rstrip().endswith("DONE")
