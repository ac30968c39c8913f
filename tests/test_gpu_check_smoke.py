"""benchmarks/gpu_check.py --smoke: the GPU check's whole path, on the CPU with tiny
models, so the check cannot rot between the sessions that get a GPU.

Run: python -m pytest tests/test_gpu_check_smoke.py -q
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRECISIONS = ("fp32", "bf16", "fp16", "8-bit", "4-bit")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("gpu_check")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    run = subprocess.run(  # noqa: PLW1510 - the exit code is checked below
        [sys.executable, "benchmarks/gpu_check.py", "--smoke", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads((out / "gpu_check.json").read_text()), (out / "gpu_check.md").read_text()


def test_every_section_is_there(smoke):
    result, _ = smoke
    for key in ("environment", "gpu_tests", "matmul", "checkpoints", "mlx", "torch", "notes"):
        assert key in result, key
    assert result["mode"].startswith("smoke")
    assert not [n for n in result["notes"] if "failed" in n or "skipped:" in n], result["notes"]
    assert result["matmul"]["tflops"] > 0
    assert "skipped" in result["gpu_tests"]["summary"]  # no GPU here: every test skips
    assert any("mlx-embeddings" in n for n in result["notes"])


def test_every_precision_has_sane_figures(smoke):
    result, _ = smoke
    for name, lengths in (("small", ("128", "512")), ("nano", ("128",))):
        rows = result["mlx"][name]
        assert set(rows) == set(PRECISIONS)
        for label, row in rows.items():
            assert row["tokens_per_s"] > 0 and row["real_tokens"] > 0, (name, label)
            assert 0 < row["matmul_fraction"], (name, label)
            assert 0 < row["p50_ms"] <= row["p99_ms"], (name, label)
            assert set(row["long"]) == set(lengths), (name, label)
            for n in lengths:
                cell = row["long"][n]
                assert cell.get("finite") and cell["peak_gib"] > 0, (name, label, cell)
            assert "vectors" not in row  # the report holds figures, not vectors


def test_torch_comparison_agrees(smoke):
    result, _ = smoke
    pytest.importorskip("transformers")
    for name in ("small", "nano"):
        row = result["torch"][name]
        assert row["tokens_per_s"] > 0 and row["mlx_ratio"] > 0, row
        assert row["cosine_min"] >= 0.999, row


def test_markdown_has_the_tables(smoke):
    _, md = smoke
    assert "# GPU check (smoke: CPU, tiny models)" in md
    assert "### mlx_jina, small" in md and "### mlx_jina, nano" in md
    assert "| weights | tokens/s |" in md and "| 4-bit |" in md
    assert "### transformers on torch" in md
    if importlib.util.find_spec("transformers") is not None:
        assert "| small | cpu / float32 |" in md
