"""benchmarks/bench_index.py at tiny sizes: its whole path (synthetic vectors, a real index
file, a model built by benchmarks/checkpoint.py, index_folder against embed_corpus, the
report and its JSON) runs, so it cannot rot between full runs.

Run: python -m pytest tests/test_index_bench_smoke.py -q
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_index_runs_at_tiny_sizes(tmp_path):
    out = tmp_path / "index.json"
    cmd = [sys.executable, "bench_index.py", "--sizes", "500", "--dims", "64", "--queries",
           "3", "--files", "3", "--chunk-tokens", "32", "--out", str(out)]  # fmt: skip
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    proc = subprocess.run(cmd, cwd=ROOT / "benchmarks", env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    [row] = report["search"]
    assert row["items"] == 500 and row["planted_first"] == 1.0 and "sqlite_rank_ms" in row
    tp = report["throughput"]
    assert tp["chunks"] >= tp["files"] == 3 and tp["ratio"] > 0 and tp["cpu_ratio"] > 0
    assert tp["same"] and len(tp["ratios"]) == len(tp["cpu_ratios"]) >= 5  # the same texts
    assert "| 500 | 64 |" in proc.stdout
