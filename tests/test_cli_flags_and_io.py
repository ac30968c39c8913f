"""`mlx-jina` flags and I/O: --version, -o formats, input decoding and the text rule,
task names and --truncate-dim, help on every flag, and a Hub that can't be reached.

Run: python -m pytest tests/test_cli_flags_and_io.py -q

The Hub tests never touch the network: HF_ENDPOINT points at a closed port on 127.0.0.1
(connection refused) or at a "blackhole" there that accepts connections and never answers.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import mlx_jina
from mlx_jina.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["What is the capital of France?", "Mars is often called the Red Planet.", "hello"]
REPO = "jinaai/jina-embeddings-v5-text-small-retrieval"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def run(argv, capsys) -> tuple[str, str]:
    main([str(a) for a in argv])
    out = capsys.readouterr()
    return out.out, out.err


def usage_error(argv, capsys) -> str:
    """The one stderr line of a usage error (exit 2, nothing on stdout)."""
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in argv])
    out = capsys.readouterr()
    assert info.value.code == 2 and out.out == "", out
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and ": error: " in lines[0], out.err
    return lines[0]


def rows(text: str) -> np.ndarray:
    return np.array([json.loads(line) for line in text.splitlines()])


def cli(*argv, env: dict | None = None, stdin: bytes = b"", timeout: float = 60):
    """`python -m mlx_jina ...` in a real process; (returncode, stdout, stderr, seconds).
    An `env` value None removes that variable."""
    env = {k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None}
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "mlx_jina", *map(str, argv)], input=stdin, capture_output=True,
        env=env, cwd=ROOT, timeout=timeout,
    )  # fmt: skip
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode(), time.monotonic() - start


# ---------------------------------------------------------------------------
# --version


def test_version_prints_and_exits_0_without_mlx():
    """`mlx-jina --version` was a usage error."""
    script = (
        "import sys\nfrom mlx_jina.cli import main\n"
        "try:\n    main(['--version'])\nexcept SystemExit as e:\n    print('exit', e.code)\n"
        "print(any(m == 'mlx' or m.startswith('mlx.') for m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    lines = proc.stdout.splitlines()
    blas = [lines.pop(1)] if sys.platform.startswith("linux") else []
    assert lines == [f"mlx-jina {mlx_jina.__version__}", "exit 0", "False"]
    assert all(line.startswith("CPU BLAS: ") for line in blas)


# ---------------------------------------------------------------------------
# -o


@pytest.mark.parametrize("precision", ["float32", "int8", "binary"])
@pytest.mark.parametrize("suffix", [".npy", ".json", ".jsonl"])
def test_output_writes_exactly_the_named_file(tiny_qwen_base, qwen, capsys, tmp_path, suffix,
                                              precision):
    """-o out.json wrote out.json.npy and said "Saved ... to out.json"."""
    path = tmp_path / f"out{suffix}"
    _, err = run(["embed", "-m", tiny_qwen_base, "--task", "retrieval", "--precision",
                  precision, "-o", path, *TEXTS], capsys)  # fmt: skip
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    want = qwen.encode(TEXTS, precision=precision)
    if suffix == ".npy":
        got = np.load(path)
        assert got.dtype == want.dtype
    else:
        text = path.read_text()
        lines = text.splitlines()
        items = json.loads(text) if suffix == ".json" else [json.loads(x) for x in lines]
        if precision != "float32":
            assert all(type(x) is int for row in items for x in row)  # ints stay ints
        got = np.array(items)
    np.testing.assert_array_equal(got.astype(want.dtype), want)
    assert str(path) in err and {".npy": "NumPy", ".json": "JSON array", ".jsonl": "JSON lines"}[
        suffix
    ] in err


@pytest.mark.parametrize("name", ["out.txt", "out", "vectors.npz"])
def test_output_extension_refused_before_loading(tmp_path, capsys, name):
    """Anything but .npy, .json, .jsonl is refused, before the model (here: none) loads."""
    line = usage_error(["embed", "-m", tmp_path / "no-model", "-o", tmp_path / name, "a"], capsys)
    assert ".npy, .json, .jsonl" in line and "No model folder" not in line
    assert (Path(name).suffix or "no extension") in line
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------
# input: UTF-8 and the one text rule


class BytesStdin(io.TextIOWrapper):
    """A piped stdin holding `data` (its .buffer gives the raw bytes)."""

    def __init__(self, data: bytes):
        super().__init__(io.BytesIO(data), encoding="utf-8")


def test_non_utf8_stdin_is_one_line_naming_the_line(tiny_qwen_base, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", BytesStdin(b"fine\ncaf\xe9 au lait\n"))
    line = usage_error(["embed", "-m", tiny_qwen_base, "--task", "retrieval"], capsys)
    assert "line 2 of stdin is not UTF-8" in line and "byte 8" in line and "convert" in line


def test_non_utf8_file_in_a_real_process(tiny_qwen_base, tmp_path):
    """Piped Latin-1 ended in a traceback (exit 1); now one line, exit 2, stdin or -i."""
    data = "Zürich\nMünchen\n".encode("latin-1")
    code, out, err, _ = cli("embed", "-m", tiny_qwen_base, "--task", "retrieval", stdin=data)
    assert (code, out) == (2, "") and len(err.splitlines()) == 1, err
    assert "line 1 of stdin is not UTF-8" in err and "Traceback" not in err
    path = tmp_path / "latin1.txt"
    path.write_bytes(data)
    code, _, err, _ = cli("embed", "-m", tiny_qwen_base, "--task", "retrieval", "-i", path)
    assert code == 2 and len(err.splitlines()) == 1 and f"line 1 of {path} is not UTF-8" in err


@pytest.mark.parametrize(
    "name, content, words",
    [
        ("blank.txt", "one\ntwo\n\nthree\n", "line 3 of {path} is empty"),
        ("spaces.txt", "one\n   \n", "line 2 of {path} holds only whitespace"),
        ("crlf.txt", "one\r\n\r\ntwo\r\n", "line 2 of {path} is empty"),
        ("empty.jsonl", '"one"\n\n""\n', "line 3 of {path} is empty"),
        ("surrogate.jsonl", '"one"\n{"text": "bad \\ud800"}\n', "line 2 of {path} is not valid"),
        ("nothing.txt", "", "holds no texts"),
    ],
)
def test_bad_lines_are_refused_before_loading(tmp_path, capsys, name, content, words):
    """Blank lines were embedded (the server refuses them); a lone surrogate reached the
    tokenizer. The model folder here does not exist: the text error comes first."""
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    line = usage_error(["embed", "-m", tmp_path / "no-model", "-i", path], capsys)
    assert words.format(path=path) in line


@pytest.mark.parametrize("texts, words", [(["a", ""], "TEXT argument 2 is empty"),
                                          ([" \t"], "TEXT argument 1 holds only whitespace"),
                                          (["ok", "\udcff"], "TEXT argument 2 is not valid")])
def test_bad_text_arguments_are_named(tmp_path, capsys, texts, words):
    assert words in usage_error(["embed", "-m", tmp_path / "no-model", *texts], capsys)


def test_lines_split_only_at_newlines(tiny_qwen_base, qwen, capsys, tmp_path):
    """str.splitlines() cut a text at U+2028 or a form feed into two inputs."""
    texts = ["one\u2028two", "three\x0cfour", "five"]
    path = tmp_path / "texts.txt"
    path.write_bytes(("\n".join(texts) + "\n").encode())
    out, _ = run(["embed", "-m", tiny_qwen_base, "--task", "retrieval", "-i", path], capsys)
    np.testing.assert_array_equal(rows(out).astype(np.float32), qwen.encode(texts))


# ---------------------------------------------------------------------------
# one vocabulary: --task names, --truncate-dim


def test_truncate_dim_is_an_alias_of_dims(tiny_qwen_base, qwen, capsys):
    out, _ = run(["embed", "-m", tiny_qwen_base, "--task", "retrieval", "--truncate-dim", 32,
                  *TEXTS], capsys)  # fmt: skip
    np.testing.assert_array_equal(rows(out).astype(np.float32), qwen.encode(TEXTS, truncate_dim=32))


def test_task_takes_every_name(tiny_qwen_base, qwen, qwen_for, capsys):
    """--task took adapter names only; Jina's API names also pick the prompt."""
    from mlx_jina.tasks import TASK_NAMES, TASKS, parse_task

    for name in TASK_NAMES:
        out, _ = run(["embed", "-m", tiny_qwen_base, "--task", name, *TEXTS], capsys)
        adapter, prompt = parse_task(name)
        model = qwen_for(adapter)
        want = model.encode_query(TEXTS) if prompt == "query" else model.encode_document(TEXTS)
        got = rows(out)
        assert np.min(np.sum(got * want, axis=1)) >= 0.99999, name
        if name not in TASKS and prompt == "query":  # and differs from the document prompt
            assert np.max(np.sum(got * model.encode_document(TEXTS), axis=1)) < 0.99999


def test_task_and_prompt_name_must_agree(tiny_qwen_base, capsys):
    from mlx_jina.tasks import API_TASKS

    name = next(n for n, (_, prompt) in API_TASKS.items() if prompt == "query")
    line = usage_error(["embed", "-m", tiny_qwen_base, "--task", name, "--prompt-name",
                        "document", "a"], capsys)  # fmt: skip
    assert f"--task {name} means --prompt-name query" in line


def test_errors_name_the_flag_not_the_keyword(tiny_qwen_base, capsys):
    """"pass task=" is Python; the command line takes --task."""
    line = usage_error(["embed", "-m", tiny_qwen_base, "a"], capsys)
    assert "--task" in line and "task=" not in line


# ---------------------------------------------------------------------------
# help on every flag


def parsers() -> list[argparse.ArgumentParser]:
    from mlx_jina.cli import Parser
    from mlx_jina.conversion.options import configure_parser

    top = build_parser()
    subs = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    return [top, *subs.choices.values(), configure_parser(Parser(prog="mlx-jina convert"))]


def test_every_flag_has_help():
    missing = [f"{p.prog} {a.option_strings or a.dest}" for p in parsers() for a in p._actions
               if not isinstance(a, argparse._HelpAction) and not (a.help or "").strip()]
    assert missing == []


# ---------------------------------------------------------------------------
# a Hub that can't be reached


@contextlib.contextmanager
def blackhole():
    """An http://127.0.0.1 endpoint that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.settimeout(0.1)
    held, done = [], threading.Event()

    def accept():
        while not done.is_set():
            with contextlib.suppress(OSError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        done.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # closed when the block ends


@pytest.fixture
def hub_env(tmp_path):
    """A fresh HF_HOME and cache, online mode, no token: what a first run on a laptop sees."""
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(tmp_path / "hf" / "hub")}
    for name in ("HF_HUB_OFFLINE", "HF_HUB_ETAG_TIMEOUT", "HF_TOKEN"):
        env[name] = None
    return env


def cache(env: dict, folder: Path) -> None:
    """`folder` as REPO's snapshot COMMIT in huggingface_hub's cache layout."""
    root = Path(env["HF_HUB_CACHE"]) / f"models--{REPO.replace('/', '--')}"
    shutil.copytree(folder, root / "snapshots" / COMMIT)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(COMMIT)


@pytest.mark.parametrize("kind", ["refused", "blackhole"])
def test_unreachable_hub_fails_fast_with_one_line(hub_env, kind):
    """No network: 24.5 s and six retry lines before one error; now ~1-2.5 s and one line."""
    with (blackhole() if kind == "blackhole" else contextlib.nullcontext(closed_port())) as url:
        code, out, err, seconds = cli("embed", "-m", REPO, "hello",
                                      env={**hub_env, "HF_ENDPOINT": url})  # fmt: skip
    print(f"{kind}: {seconds:.2f} s")
    assert code == 2 and out == "" and len(err.splitlines()) == 1, err
    assert "is not in the Hugging Face cache and the Hub can't be reached" in err
    assert seconds < 5  # measured: refused ~1.0 s, blackhole ~2.4 s (1.5 s limit + start-up)


@pytest.mark.parametrize("kind", ["refused", "blackhole"])
def test_unreachable_hub_loads_a_cached_model(hub_env, tiny_qwen_merged, kind):
    """With the Hub unreachable, a cached repo (and a pinned revision) loads from the cache."""
    cache(hub_env, tiny_qwen_merged)
    want = mlx_jina.load(tiny_qwen_merged).encode(TEXTS)
    with (blackhole() if kind == "blackhole" else contextlib.nullcontext(closed_port())) as url:
        env = {**hub_env, "HF_ENDPOINT": url}
        for extra in ([], ["--revision", COMMIT]):
            code, out, err, seconds = cli("embed", "-m", REPO, *extra, *TEXTS, env=env)
            assert code == 0 and err == "", err
            np.testing.assert_array_equal(rows(out).astype(np.float32), want)
            assert seconds < 8


def test_hub_offline_still_uses_only_the_cache(hub_env, tiny_qwen_merged):
    cache(hub_env, tiny_qwen_merged)
    with blackhole() as url:
        env = {**hub_env, "HF_ENDPOINT": url, "HF_HUB_OFFLINE": "1"}
        code, out, err, seconds = cli("embed", "-m", REPO, *TEXTS, env=env)
    assert code == 0 and err == "" and seconds < 5, err
    assert len(out.splitlines()) == len(TEXTS)
    code, _, err, _ = cli("embed", "-m", REPO, "--revision", "v9", "a", env=env)
    assert code == 2 and "revision v9" in err and "HF_HUB_OFFLINE" in err


def test_listing_limit_follows_hf_hub_etag_timeout(monkeypatch):
    """The limit is ours unless the user set huggingface_hub's metadata timeout."""
    from mlx_jina.checkpoint import hub

    monkeypatch.delenv("HF_HUB_ETAG_TIMEOUT", raising=False)
    assert hub.listing_timeout() == hub.LISTING_TIMEOUT
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "7")
    assert hub.listing_timeout() == 7


def test_a_hung_listing_is_abandoned_in_process(monkeypatch):
    """Whatever hangs inside huggingface_hub (the request, or what it does before it), the
    listing gives up after the limit with a TimeoutError, which counts as unreachable."""
    from mlx_jina.checkpoint import hub

    entered, release = threading.Event(), threading.Event()

    class HungApi:  # hangs until the test is done
        def model_info(self, repo_id, revision=None, timeout=None):
            entered.set()
            release.wait()

    monkeypatch.setattr(hub, "LISTING_TIMEOUT", 0.2)
    monkeypatch.delenv("HF_HUB_ETAG_TIMEOUT", raising=False)
    try:
        with pytest.raises(TimeoutError) as info:
            hub.list_files(HungApi, "org/model", None)
        # the listing gave up while the call it made was still hung
        assert entered.is_set() and not release.is_set()
    finally:
        release.set()
    assert hub.is_connection_error(info.value)


@pytest.mark.server
def test_serve_task_takes_every_name(monkeypatch, capsys):
    """One vocabulary: `serve --task` takes Jina's API names too (they name the adapter);
    one that would make every request a query is refused in one line, naming the fix."""
    import mlx_jina.server
    from mlx_jina.cli import main
    from mlx_jina.tasks import API_TASKS, DEFAULT_PROMPT_NAME, TASK_NAMES

    seen = {}
    monkeypatch.setattr(mlx_jina.server, "serve", lambda model, **kw: seen.update(kw))
    for name in TASK_NAMES:
        adapter, prompt_name = API_TASKS.get(name, (name, None))
        if prompt_name not in (None, DEFAULT_PROMPT_NAME):
            with pytest.raises(SystemExit) as exit_:
                main(["serve", "-m", "some-folder", "--task", name])
            assert exit_.value.code == 2
            err = capsys.readouterr().err
            assert f"--task {name} would embed every request as a {prompt_name}" in err
            assert f"serve --task {adapter}" in err
            continue
        seen.clear()
        main(["serve", "-m", "some-folder", "--task", name])
        assert seen["task"] == adapter


def test_text_field_applies_without_out_dir(tiny_qwen_base, qwen, capsys, tmp_path):
    """`embed` lists --text-field, but only a corpus job (--out-dir) honoured it: plain
    `embed -i docs.jsonl --text-field body` refused every line. One reader serves both."""
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"id": i, "body": t}) + "\n" for i, t in enumerate(TEXTS)))
    out, _ = run(["embed", "-m", tiny_qwen_base, "--task", "retrieval", "-i", path,
                  "--text-field", "body"], capsys)  # fmt: skip
    np.testing.assert_array_equal(rows(out).astype(np.float32), qwen.encode(TEXTS))


# ---------------------------------------------------------------------------
# a reader that goes away: `mlx-jina info ... | head`


def to_closed_pipe(*argv, tmp_path=None) -> tuple[int, str]:
    """`python -m ARGV` with stdout a pipe whose reader is already gone; (code, stderr)."""
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run([sys.executable, *map(str, argv)], stdout=write,
                              stderr=subprocess.PIPE, cwd=tmp_path or ROOT, timeout=300)  # fmt: skip
    finally:
        os.close(write)
    return proc.returncode, proc.stderr.decode()


@pytest.mark.parametrize("command", ["info", "info-json", "embed", "version", "convert", "convert.py"])
def test_a_closed_pipe_ends_quietly(tiny_qwen_base, tmp_path, command):
    """`mlx-jina info ... | head` printed "Broken pipe" as an error (or Python's
    "Exception ignored ... BrokenPipeError" at exit). Every command that prints now stops
    quietly, with exit code 1, as cat does."""
    model = ["-m", tiny_qwen_base]
    argv = {
        "info": ["-m", "mlx_jina", "info", *model],
        "info-json": ["-m", "mlx_jina", "info", *model, "--json"],
        "embed": ["-m", "mlx_jina", "embed", *model, "--task", "retrieval", *TEXTS],
        "version": ["-m", "mlx_jina", "--version"],
        "convert": ["-m", "mlx_jina", "convert", "--hf-path", tiny_qwen_base, "--mlx-path",
                    tmp_path / "out", "--task", "retrieval"],
        "convert.py": [ROOT / "convert.py", "--hf-path", tiny_qwen_base, "--mlx-path",
                       tmp_path / "out", "--task", "retrieval"],
    }[command]  # fmt: skip
    code, err = to_closed_pipe(*argv, tmp_path=tmp_path)
    assert (code, err) == (1, "")


def test_a_stopped_stdin_corpus_job_is_not_told_to_resume():
    """The neighbour of load_embeddings' advice: a distributed job that lost a rank was
    told "run the same command to resume", which a job reading stdin can't do."""
    from mlx_jina.cli import resume_hint

    assert "can't resume" in resume_hint(argparse.Namespace(input="-"))
    assert "can't resume" in resume_hint(argparse.Namespace(input=None))
    assert "run the same command to resume" in resume_hint(argparse.Namespace(input="c.txt"))


# ---------------------------------------------------------------------------
# a mistyped local folder


def test_a_mistyped_folder_is_named_at_once(hub_env, tiny_qwen_merged, tmp_path):
    """`-m models/tiny-smal` (for models/tiny-small) was taken for a Hub id: after 3-4 s
    the user heard the Hub can't be reached, never that no such folder exists. Now, with
    models/ a folder here, the Hub is not even asked (a listening port stays untouched):
    one line names the missing folder, the close match and the Hub reading. A Hub repo
    of that name in the cache still loads; and where no such folder exists (modls/), the
    Hub is asked and the one line says both readings."""
    shutil.copytree(tiny_qwen_merged, tmp_path / "models" / "tiny-small")
    hub = socket.socket()
    hub.bind(("127.0.0.1", 0))
    hub.listen(8)
    hub.setblocking(False)
    env = {k: v for k, v in {**os.environ, **hub_env}.items() if v is not None}
    env["HF_ENDPOINT"] = f"http://127.0.0.1:{hub.getsockname()[1]}"

    def embed(model: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mlx_jina", "embed", "-m", model, "hi"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip

    try:
        run = embed("models/tiny-smal")
        with pytest.raises(BlockingIOError):
            hub.accept()  # nobody knocked
        lines = run.stderr.strip().splitlines()
        assert run.returncode == 2 and len(lines) == 1, run.stderr
        assert "No model folder at models/tiny-smal (did you mean models/tiny-small?)" in lines[0]
        assert "no Hub repo 'models/tiny-smal' in the Hugging Face cache" in lines[0]
        assert "hf download models/tiny-smal" in lines[0]
        assert embed("models/tiny-small").returncode == 0
        cache(hub_env, tiny_qwen_merged)  # REPO in the cache, with its owner a folder here
        (tmp_path / REPO.split("/")[0]).mkdir()
        assert embed(REPO).returncode == 0
        hub.close()  # now a closed port: the Hub can't be reached
        run = embed("modls/tiny-small")
        assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1, run.stderr
        assert "'modls/tiny-small' is not a local folder (there is no modls/ here)" in run.stderr
        assert "the Hub can't be reached" in run.stderr
    finally:
        hub.close()
