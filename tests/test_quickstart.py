"""The quickstart example runs offline on a local model folder. Run: pytest tests/test_quickstart.py"""

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parent.parent / "examples" / "quickstart.py"


def test_quickstart_runs_on_local_folder(tiny_qwen_base):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, str(EXAMPLE), "--model", str(tiny_qwen_base)],
        capture_output=True, text=True, env=env, timeout=120, check=True,
    ).stdout
    scores = {line.split(":")[0].strip(): float(line.split(":")[1]) for line in out.splitlines()}
    assert set(scores) == {"Mars", "Venus"}
    assert all(-1.0 <= s <= 1.0 for s in scores.values())
