"""The `mlx-jina` command: embed, info, convert, serve and its usage errors.

Run: python -m pytest tests/test_cli.py -q

Most tests call `mlx_jina.cli.main(argv)` in-process; the console script entry point,
`python -m mlx_jina` with piped stdin and `serve` run as real subprocesses.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
import re
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

import mlx_jina
from mlx_jina.cli import main

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["What is the capital of France?", "Mars is often called the Red Planet.", "hello"]


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(argv, capsys, stdin: str | None = None, monkeypatch=None) -> tuple[str, str]:
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    main([str(a) for a in argv])
    out = capsys.readouterr()
    return out.out, out.err


def rows(stdout: str) -> np.ndarray:
    return np.array([json.loads(line) for line in stdout.splitlines()])


# ---------------------------------------------------------------------------
# embed


def test_embed_args(tiny_qwen_base, qwen, capsys):
    """Texts as arguments: one JSON array per text, floats that read back exactly."""
    out, err = run(["embed", "-m", tiny_qwen_base, "--task", "retrieval", *TEXTS], capsys)
    assert len(out.splitlines()) == len(TEXTS) and err == ""
    np.testing.assert_array_equal(rows(out).astype(np.float32), qwen.encode(TEXTS))


def test_embed_options(tiny_qwen_base, qwen, capsys):
    """--prompt-name, --dims, --precision, --batch-size, --max-length reach encode."""
    argv = [
        "embed",
        "-m",
        tiny_qwen_base,
        "--task",
        "retrieval",
        "--prompt-name",
        "query",
        "--dims",
        "32",
        "--batch-size",
        "2",
        "--max-length",
        "64",
        *TEXTS,
    ]
    out, _ = run(argv, capsys)
    # the same batches: with OpenBLAS a float's last bit depends on the batch shape
    want = qwen.encode(TEXTS, prompt_name="query", truncate_dim=32, batch_size=2)
    np.testing.assert_array_equal(rows(out).astype(np.float32), want)
    out, _ = run(argv + ["--precision", "binary"], capsys)
    want = qwen.encode(TEXTS, prompt_name="query", truncate_dim=32, precision="binary")
    np.testing.assert_array_equal(rows(out), want)


def test_embed_stdin_and_files(tiny_qwen_base, qwen, capsys, monkeypatch, tmp_path):
    """Texts from stdin (piped or -i -), a text file (one per line) and a JSONL file."""
    base = ["embed", "-m", tiny_qwen_base, "--task", "retrieval"]
    want = qwen.encode(TEXTS)
    out, _ = run(base, capsys, stdin="\n".join(TEXTS) + "\n", monkeypatch=monkeypatch)
    np.testing.assert_array_equal(rows(out).astype(np.float32), want)
    out, _ = run(base + ["-i", "-"], capsys, stdin="\n".join(TEXTS), monkeypatch=monkeypatch)
    np.testing.assert_array_equal(rows(out).astype(np.float32), want)
    lines = tmp_path / "texts.txt"
    lines.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    out, _ = run(base + ["-i", lines], capsys)
    np.testing.assert_array_equal(rows(out).astype(np.float32), want)
    jsonl = tmp_path / "texts.jsonl"
    jsonl.write_text(
        f'{json.dumps(TEXTS[0])}\n{{"text": {json.dumps(TEXTS[1])}}}\n\n{json.dumps(TEXTS[2])}\n',
        encoding="utf-8",
    )
    out, _ = run(base + ["-i", jsonl], capsys)
    np.testing.assert_array_equal(rows(out).astype(np.float32), want)


def test_embed_npy_output(tiny_qwen_base, qwen, capsys, tmp_path):
    """-o saves one .npy array, prints nothing on stdout and one [INFO] line on stderr."""
    path = tmp_path / "out.npy"
    out, err = run(
        ["embed", "-m", tiny_qwen_base, "--task", "retrieval", "-o", path, *TEXTS], capsys
    )
    assert out == "" and err.startswith("[INFO] Saved 3 x 64 float32")
    np.testing.assert_array_equal(np.load(path), qwen.encode(TEXTS))


def test_embed_bits(tiny_qwen_base, capsys):
    """--bits quantizes at load, as load(bits=8) does."""
    out, _ = run(
        ["embed", "-m", tiny_qwen_base, "--task", "retrieval", "--bits", "8", *TEXTS], capsys
    )
    want = mlx_jina.load(tiny_qwen_base, task="retrieval", bits=8).encode(TEXTS)
    np.testing.assert_allclose(rows(out), want, atol=1e-6)


def test_python_m_pipes_stdin(tiny_qwen_base, qwen):
    """`echo ... | python -m mlx_jina embed` in a real process prints only JSON lines."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlx_jina",
            "embed",
            "-m",
            str(tiny_qwen_base),
            "--task",
            "retrieval",
        ],
        input="\n".join(TEXTS),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(rows(proc.stdout).astype(np.float32), qwen.encode(TEXTS))


def test_console_script_declared():
    """pyproject's `mlx-jina` script points at a callable (peers: entry points that don't exist)."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    scripts = pyproject.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    module, _, name = re.search(r'^mlx-jina = "(.+)"$', scripts, re.M).group(1).partition(":")
    assert module == "mlx_jina.cli" and name == "main" and callable(main)
    proc = subprocess.run(
        [sys.executable, "-m", "mlx_jina", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 0
    for command in ("embed", "convert", "serve", "info"):
        assert command in proc.stdout


# ---------------------------------------------------------------------------
# info


def test_info(tiny_qwen_base, capsys):
    """info reads the layout, backbone, tasks, sizes and files without loading the model."""
    out, _ = run(["info", "-m", tiny_qwen_base, "--json"], capsys)
    facts = json.loads(out)
    assert facts["layout"] == "base" and facts["backbone"] == "qwen3"
    assert facts["attention"] == "causal"
    assert facts["tasks"] == ["retrieval", "text-matching", "classification", "clustering"]
    assert facts["dim"] == 64 and facts["context"] == 32768 and facts["layers"] == 2
    assert facts["quantization"] == "none" and facts["dtypes"] == ["F32"]
    weights = load_file(tiny_qwen_base / "model.safetensors")
    assert facts["memory_bytes"] == sum(v.nbytes for v in weights.values())
    adapters = sum(
        v.nbytes
        for t in facts["tasks"]
        for v in load_file(tiny_qwen_base / "adapters" / t / "adapter_model.safetensors").values()
    )
    assert facts["multitask_memory_bytes"] == facts["memory_bytes"] + adapters
    assert (
        facts["files"]["model.safetensors"] == (tiny_qwen_base / "model.safetensors").stat().st_size
    )
    assert len(facts["files"]) == 5
    text, _ = run(["info", "-m", tiny_qwen_base], capsys)
    assert "layout:" in text and "qwen3 (causal attention)" in text
    assert "retrieval, text-matching, classification, clustering" in text


def test_info_other_layouts(tiny_eurobert_mlx_unified, tiny_qwen_mlx_task, capsys):
    """Unified -mlx (EuroBERT, bidirectional) and per-task -mlx folders are told apart."""
    facts = json.loads(run(["info", "-m", tiny_eurobert_mlx_unified, "--json"], capsys)[0])
    assert (facts["layout"], facts["backbone"], facts["attention"]) == (
        "mlx-unified",
        "eurobert",
        "bidirectional",
    )
    assert facts["dtypes"] == ["F16"] and facts["context"] == 8192
    facts = json.loads(run(["info", "-m", tiny_qwen_mlx_task, "--json"], capsys)[0])
    assert facts["layout"] == "mlx-task" and facts["backbone"] == "qwen3"


# ---------------------------------------------------------------------------
# convert


def test_convert_delegates(tiny_qwen_base, qwen, capsys, tmp_path):
    """`mlx-jina convert` runs the converter; its output embeds like the source."""
    out_dir = tmp_path / "converted"
    main(
        [
            "convert",
            "--hf-path",
            str(tiny_qwen_base),
            "--task",
            "retrieval",
            "--mlx-path",
            str(out_dir),
        ]
    )
    capsys.readouterr()
    converted = mlx_jina.load(out_dir)
    np.testing.assert_allclose(converted.encode(TEXTS), qwen.encode(TEXTS), atol=1e-6)


# ---------------------------------------------------------------------------
# usage errors


# Without the server extra, `serve` says so before it looks for the model.
SERVE_MISSING_MODEL = (
    "No model folder" if importlib.util.find_spec("starlette") else "needs its extra"
)


def usage_errors(base: Path, tmp: Path) -> list[tuple[str, list, str]]:
    bad_jsonl = tmp / "bad.jsonl"
    bad_jsonl.write_text("not json\n")
    ok = ["embed", "-m", base, "--task", "retrieval"]
    return [
        ("no command", [], "required: {embed,convert,serve,info,index,search,mcp,service}"),
        ("unknown command", ["bogus"], "invalid choice: 'bogus'"),
        ("no model", ["embed", "a"], "required: -m/--model"),
        ("no input on a terminal", ok, "no input: pass texts"),
        ("texts and -i", ok + ["-i", "f.txt", "a"], "not both"),
        ("missing file", ok + ["-i", tmp / "none.txt"], "no input file"),
        ("bad jsonl", ok + ["-i", bad_jsonl], "line 1 of"),
        ("missing model", ["embed", "-m", tmp / "nowhere", "a"], "No model folder"),
        ("several adapters, no task", ["embed", "-m", base, "a"], "--task"),
        ("bad task", ["embed", "-m", base, "--task", "search", "a"], "invalid choice: 'search'"),
        ("bad dim", ok + ["--dims", "8", "a"], "truncate_dim=8"),
        ("bad precision", ok + ["--precision", "int4", "a"], "precision='int4'"),
        ("zero batch", ok + ["--batch-size", "0", "a"], "'0' is not a positive integer"),
        ("bad bits", ok + ["--bits", "3", "a"], "invalid choice: 3"),
        ("serve missing model", ["serve", "-m", tmp / "nowhere"], SERVE_MISSING_MODEL),
        ("serve bad port", ["serve", "-m", base, "--port", "x"], "invalid int value: 'x'"),
        ("info missing model", ["info", "-m", tmp / "nowhere"], "No model folder"),
        ("convert no source", ["convert"], "required: --hf-path"),
        (
            "convert missing source",
            ["convert", "--hf-path", tmp / "nowhere", "--mlx-path", tmp / "out"],
            "No model folder",
        ),
    ]


@pytest.mark.parametrize("case", range(19))
def test_usage_error(tiny_qwen_base, tmp_path, capsys, monkeypatch, case):
    """Bad usage exits 2 with one stderr line naming the problem, no traceback."""
    name, argv, words = usage_errors(tiny_qwen_base, tmp_path)[case]
    monkeypatch.setattr(sys, "stdin", TTY())
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    assert exit_info.value.code == 2, name
    out = capsys.readouterr()
    assert out.out == ""
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], (name, out.err)
    assert lines[0].startswith("mlx-jina") and ": error: " in lines[0]


def test_usage_error_count(tiny_qwen_base, tmp_path):
    assert len(usage_errors(tiny_qwen_base, tmp_path)) == 19  # keep the parametrize in step


# ---------------------------------------------------------------------------
# serve


@pytest.mark.server
def test_serve_subprocess(tiny_qwen_base, qwen):
    """`python -m mlx_jina serve` starts, answers the OpenAI SDK with direct-encode vectors,
    enforces --api-key, and stops cleanly on SIGINT."""
    import httpx
    import openai

    from live_server import serve_process

    args = ["-m", str(tiny_qwen_base), "--task", "retrieval", "--log-level", "info"]
    with serve_process(args, {"MLX_JINA_API_KEY": "env-key"}) as (url, proc, lines):
        client = openai.OpenAI(base_url=url + "/v1", api_key="env-key", max_retries=0)
        result = client.embeddings.create(model=tiny_qwen_base.name, input=TEXTS)
        got = np.array([d.embedding for d in result.data], dtype=np.float32)
        np.testing.assert_allclose(got, qwen.encode(TEXTS), atol=1e-6)
        assert httpx.post(url + "/v1/embeddings", json={"input": "a"}).status_code == 401
    err = "".join(lines)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_info_refuses_broken_checkpoints_without_hanging(tiny_qwen_merged, tmp_path):
    """`info` parsed weight headers by hand: a FIFO in the weight file's place hung it and
    a bad config passed. It now checks the files as `load` does: one line, exit 2."""
    import shutil

    fifo = tmp_path / "fifo"
    shutil.copytree(tiny_qwen_merged, fifo)
    (fifo / "model.safetensors").unlink()
    os.mkfifo(fifo / "model.safetensors")
    layers = tmp_path / "layers"
    shutil.copytree(tiny_qwen_merged, layers)
    config = json.loads((layers / "config.json").read_text())
    config["num_hidden_layers"] = 100_000
    (layers / "config.json").write_text(json.dumps(config))
    for folder, words in ((fifo, "not a regular file"), (layers, "num_hidden_layers=100000")):
        proc = subprocess.run(
            [sys.executable, "-m", "mlx_jina", "info", "-m", str(folder)],
            capture_output=True, text=True, timeout=60, cwd=ROOT,
        )
        assert proc.returncode == 2 and words in proc.stderr, proc.stderr
        assert len(proc.stderr.splitlines()) == 1


def test_embed_output_is_atomic_and_never_the_input(tiny_qwen_base, qwen, capsys, tmp_path):
    """-o wrote in place (a kill left half an array) and could name the input file."""
    docs = tmp_path / "docs.txt"
    docs.write_text("\n".join(TEXTS))
    with pytest.raises(SystemExit) as e:
        main(["embed", "-m", str(tiny_qwen_base), "--task", "retrieval", "-i", str(docs),
              "-o", str(tmp_path / "." / "docs.txt")])
    assert e.value.code == 2 and "is the input file" in capsys.readouterr().err
    assert docs.read_text() == "\n".join(TEXTS)
    out = tmp_path / "vectors.npy"
    out.write_bytes(b"old")
    run(["embed", "-m", tiny_qwen_base, "--task", "retrieval", "-i", docs, "-o", out], capsys)
    np.testing.assert_array_equal(np.load(out), qwen.encode(TEXTS))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs.txt", "vectors.npy"]
