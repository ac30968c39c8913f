"""The LangChain, LlamaIndex and Chroma examples of the README and docs/integrations.md run
as written, offline, on a tiny local model, and print the document that encode_query /
encode_document rank first.

The examples are the ```python blocks after a `<!-- test: integrations -->` line; only
their `MODEL = "..."` line is rewritten (tests/test_docs.py runs the pages' other blocks).
Run: python -m pytest tests/test_readme_integrations.py
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).parent.parent
PAGES = {"README": ROOT / "README.md", "docs": ROOT / "docs" / "integrations.md"}
BLOCK = re.compile(r"<!-- test: integrations -->\s*```python\n(.*?)```", re.DOTALL)
MODEL_LINE = re.compile(r'^MODEL = "[^"\n]*"$', re.MULTILINE)

# Runs one block with every non-local connection refused, then reports its inputs.
RUNNER = """
import json, socket, sys
real_connect = socket.socket.connect
def connect(sock, address):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and host not in ("127.0.0.1", "::1", "localhost"):
        raise OSError(f"network access attempted: {address!r}")
    return real_connect(sock, address)
socket.socket.connect = connect
namespace = {"__name__": "__main__"}
exec(compile(open(sys.argv[1]).read(), "docs block", "exec"), namespace)
print("INPUTS " + json.dumps([namespace["docs"], namespace["question"]]))
"""


def blocks(page: str) -> list[str]:
    return BLOCK.findall(PAGES[page].read_text())


def framework(block: str) -> str | None:
    found = re.search(r"from mlx_jina\.integrations\.(\w+) import", block)
    return found and found.group(1)


def test_the_pages_have_one_example_per_framework():
    assert [framework(b) for b in blocks("README")] == ["langchain"]
    assert [framework(b) for b in blocks("docs")] == ["langchain", "llama_index", "chroma"]
    assert all(len(MODEL_LINE.findall(b)) == 1 for page in PAGES for b in blocks(page))


@pytest.fixture(scope="module")
def nano_retrieval(make_checkpoint, tiny_eurobert_base) -> Path:
    """A tiny stand-in for jina-embeddings-v5-text-nano-retrieval: EuroBERT, merged."""
    from builders.layouts import build_merged

    return make_checkpoint(build_merged, tiny_eurobert_base, "retrieval")


EXAMPLES = [("README", 0), ("docs", 0), ("docs", 1), ("docs", 2)]


@pytest.mark.parametrize(
    "page, index", EXAMPLES, ids=["README", "docs-langchain", "docs-llama_index", "docs-chroma"]
)
def test_example_runs(page, index, nano_retrieval, tmp_path):
    import mlx_jina

    folder = nano_retrieval
    code = MODEL_LINE.sub(f"MODEL = {str(folder)!r}", blocks(page)[index])
    (tmp_path / "block.py").write_text(code)
    (tmp_path / "runner.py").write_text(RUNNER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI")}
    env.update(HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, "runner.py", "block.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    *printed, inputs = proc.stdout.splitlines()
    docs, question = json.loads(inputs.removeprefix("INPUTS "))

    model = mlx_jina.load(folder)
    scores = model.encode_document(docs) @ model.encode_query(question)
    top, second = np.sort(scores)[::-1][:2]
    assert top - second > 1e-4, "near tie on the tiny model: the check could go either way"
    assert printed == [docs[int(np.argmax(scores))]]
