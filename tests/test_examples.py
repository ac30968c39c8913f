"""Smoke tests: each script in examples/ runs offline on a tiny local model and prints
results that agree with the torch reference.

Run: python -m pytest tests/test_examples.py -q
"""

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from builders.reference import reference_embeddings

ROOT = Path(__file__).resolve().parent.parent


def run(script: str, *args: str) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *map(str, args)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture
def docs(tmp_path):
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    words = ("the quick brown fox jumps over lazy dog machine learning models vectors paris "
             "france capital planet mars red").split()
    rng = np.random.default_rng(0)
    for i in range(3):
        text = " ".join(rng.choice(words, 120 + 60 * i))
        (folder / f"doc{i}.md").write_text(text)
    (folder / "sub" / "note.txt").write_text("Mars is the red planet.")
    (folder / "ignored.pdf").write_text("not a text file")
    return folder


def rag(docs: Path, model: Path, index: Path, *args: str) -> str:
    return run("rag.py", "--docs", docs, "--index", index, "--model", model,
               "--chunk-tokens", 48, "--overlap", 8, "--top-k", 3, *args)


@pytest.mark.reference
def test_rag_finds_the_float_top_passages(docs, tiny_qwen_base, tmp_path):
    """Chunk, embed, store, search and rescore: the printed passages and scores are the float
    top 3 of the torch reference. (A random tiny model's sign bits barely tell its vectors
    apart, so every chunk is rescored here; test_search checks the binary first pass.)"""
    index = tmp_path / "index"
    out = rag(docs, tiny_qwen_base, index, "--rescore-multiplier", 100, "which planet is red?")
    assert "indexed 4 files: 4 embedded, 0 unchanged, 0 removed" in out

    manifest = json.loads((index / "manifest.json").read_text())
    passages = [(name, a, b) for name, f in manifest["files"].items() for a, b in f["spans"]]
    texts = [(docs / name).read_text()[a:b] for name, a, b in passages]
    d = reference_embeddings(tiny_qwen_base, texts, task="retrieval", prompt="Document: ")
    q = reference_embeddings(tiny_qwen_base, ["which planet is red?"], task="retrieval",
                             prompt="Query: ")
    best = np.argsort(-(q @ d.T)[0])[:3]
    printed = re.findall(r"^\s+\d\. (\S+)  (\S+) \[chars (\d+)-(\d+)\]$", out, re.M)
    assert [(n, int(a), int(b)) for _, n, a, b in printed] == [passages[i] for i in best]
    assert np.allclose([float(s) for s, *_ in printed], (q @ d.T)[0][best], atol=5e-3)


def test_rag_chunks_overlap_and_fit(docs, tiny_qwen_base, tmp_path):
    """Chunks are token windows of at most --chunk-tokens that overlap their neighbours."""
    from tokenizers import Tokenizer

    index = tmp_path / "index"
    rag(docs, tiny_qwen_base, index)
    tok = Tokenizer.from_file(str(tiny_qwen_base / "tokenizer.json"))
    files = json.loads((index / "manifest.json").read_text())["files"]
    assert sorted(files) == ["doc0.md", "doc1.md", "doc2.md", "sub/note.txt"]
    long = files["doc2.md"]["spans"]
    assert len(long) >= 3
    text = (docs / "doc2.md").read_text()
    assert long[0][0] == 0 and long[-1][1] == len(text.rstrip())
    for (a, b), (c, _) in zip(long, long[1:]):
        assert c < b  # overlap
    for a, b in long:
        assert len(tok.encode(text[a:b], add_special_tokens=False).ids) <= 48 + 2


def test_rag_reindexes_only_changed_files(docs, tiny_qwen_base, tmp_path):
    """Re-runs embed nothing when nothing changed, then only the edited file; the result
    equals a fresh index of the same folder."""
    index = tmp_path / "index"
    rag(docs, tiny_qwen_base, index)
    assert "0 embedded, 4 unchanged, 0 removed" in rag(docs, tiny_qwen_base, index)
    (docs / "doc1.md").write_text((docs / "doc1.md").read_text() + " mars red planet")
    (docs / "doc0.md").unlink()
    assert "1 embedded, 2 unchanged, 1 removed" in rag(docs, tiny_qwen_base, index)

    fresh = tmp_path / "fresh"
    rag(docs, tiny_qwen_base, fresh)
    for name in ("binary.safetensors", "int8.safetensors"):
        from safetensors.numpy import load_file

        assert np.array_equal(load_file(index / name)["embeddings"],
                              load_file(fresh / name)["embeddings"])
    assert json.loads((index / "manifest.json").read_text()) == json.loads(
        (fresh / "manifest.json").read_text()
    )


def test_classify_predicts_the_label_of_an_identical_example(tiny_eurobert_base, tmp_path):
    """With one example per label, an example's own text is 1.0 from its centroid."""
    train = tmp_path / "train.tsv"
    train.write_text("planets\tMars is the red planet.\ncities\tParis is the capital of France.\n"
                     "animals\tThe quick brown fox jumps over the lazy dog.\n")
    texts = ["The quick brown fox jumps over the lazy dog.", "Mars is the red planet."]
    out = run("classify.py", "--model", tiny_eurobert_base, "--train", train, *texts)
    rows = [line.split("\t") for line in out.splitlines()]
    assert [(label, text) for label, _, text in rows] == [("animals", texts[0]), ("planets", texts[1])]
    assert all(float(score) > 0.9999 for _, score, _ in rows)
    assert len(run("classify.py", "--model", tiny_eurobert_base).splitlines()) == 2  # built-in demo


def test_cluster_groups_identical_texts(tiny_eurobert_base, tmp_path):
    """Three texts, three copies each, k = 3: each cluster is one text's copies."""
    texts = ["Mars is red.", "Paris is in France.", "The fox jumps."]
    lines = tmp_path / "lines.txt"
    lines.write_text("\n".join(texts * 3))
    out = run("cluster.py", "--model", tiny_eurobert_base, "--k", 3, "--input", lines)
    clusters = [set(re.findall(r"^  \S+  (.+)$", block, re.M))
                for block in out.split("cluster ")[1:]]
    assert sorted(map(sorted, clusters)) == sorted([[t] for t in texts])
    assert out.count("(3 texts)") == 3


@pytest.mark.reference
def test_matryoshka_table(tiny_qwen_base):
    """Bytes per vector and the top-3 overlap at 32 dims agree with the reference."""
    out = run("matryoshka.py", "--model", tiny_qwen_base)
    rows = {int(r[0]): r[1:] for r in re.findall(r"^\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)$",
                                                   out, re.M)}
    assert rows[64] == ("256", "64", "8", "1.00") and rows[32][:3] == ("128", "32", "4")

    # The script's built-in texts, read without running it.
    source = ast.parse((ROOT / "examples" / "matryoshka.py").read_text())
    lists = {n.targets[0].id: ast.literal_eval(n.value) for n in source.body
             if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") in ("CORPUS", "QUERIES")}
    corpus, queries = lists["CORPUS"], lists["QUERIES"]
    kept = []
    for dims in (None, 32):
        d = reference_embeddings(tiny_qwen_base, corpus, task="retrieval", prompt="Document: ",
                                 truncate_dim=dims)
        q = reference_embeddings(tiny_qwen_base, queries, task="retrieval", prompt="Query: ",
                                 truncate_dim=dims)
        kept.append([set(np.argsort(-row)[:3]) for row in q @ d.T])
    overlap = np.mean([len(a & b) / 3 for a, b in zip(*kept)])
    assert rows[32][3] == f"{overlap:.2f}"


def test_rag_index_survives_a_kill_mid_write(docs, tiny_qwen_base, tmp_path):
    """The index is three files. Killed after writing the new vectors but before the new
    manifest, the next run reused rows by the old manifest's offsets from the new vectors:
    silently wrong passages. The index folder is now replaced as a whole."""
    index = tmp_path / "index"
    rag(docs, tiny_qwen_base, index)
    (docs / "doc0.md").write_text("Venus is hot. " * 40)  # more chunks: rows move
    driver = tmp_path / "driver.py"
    driver.write_text(
        "import os, runpy, signal, sys\n"
        "import mlx_jina\n"
        "save, calls = mlx_jina.save_embeddings, []\n"
        "def dying(*a, **k):\n"
        "    calls.append(1)\n"
        "    if len(calls) == 2:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return save(*a, **k)\n"
        "mlx_jina.save_embeddings = dying\n"
        "sys.argv = sys.argv[1:]\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(driver), str(ROOT / "examples" / "rag.py"), "--docs", str(docs),
         "--index", str(index), "--model", str(tiny_qwen_base), "--chunk-tokens", "48",
         "--overlap", "8"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == -9, proc.stderr
    (docs / "doc1.md").write_text("Mercury is small. " * 30)  # another change: run again
    rag(docs, tiny_qwen_base, index)
    fresh = tmp_path / "fresh"
    rag(docs, tiny_qwen_base, fresh)
    for name in ("binary", "int8"):
        got = mlx_jina_load(index / f"{name}.safetensors")
        want = mlx_jina_load(fresh / f"{name}.safetensors")
        np.testing.assert_array_equal(got, want)
    assert json.loads((index / "manifest.json").read_text()) == json.loads(
        (fresh / "manifest.json").read_text()
    )


def mlx_jina_load(path: Path) -> np.ndarray:
    import mlx_jina

    return mlx_jina.load_embeddings(path).embeddings


def test_rag_refuses_an_index_folder_holding_other_files(docs, tiny_qwen_base, tmp_path):
    """--index is replaced as a whole when it is written: a folder of yours is refused."""
    index = tmp_path / "mine"
    index.mkdir()
    (index / "notes.txt").write_text("keep me")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "rag.py"), "--docs", str(docs), "--index",
         str(index), "--model", str(tiny_qwen_base)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 2 and "notes.txt" in proc.stderr
    assert (index / "notes.txt").read_text() == "keep me"


def run_failing(script: str, *args: str) -> str:
    """Run an example that must fail: exit 1 and one stderr line, no traceback."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *map(str, args)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 1 and proc.stdout == "", proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{script}: error: "), proc.stderr
    return lines[0]


# Each example and the adapter it needs.
NEEDS = {"classify.py": "classification", "cluster.py": "clustering",
         "matryoshka.py": "retrieval", "quickstart.py": "retrieval", "rag.py": "retrieval"}


@pytest.mark.parametrize("script", sorted(NEEDS))
def test_examples_say_in_one_line_when_the_folder_lacks_their_task(script, tiny_eurobert_mlx_task,
                                                                   docs, tmp_path):
    """classify.py on a text-matching -mlx folder ended in a 10-line traceback. (The folder's
    name tells its task, as in Jina's repos; the fixture's own name tells none.)"""
    import shutil

    model = tmp_path / "tiny-text-matching-mlx"
    shutil.copytree(tiny_eurobert_mlx_task, model)
    extra = ["--docs", docs, "--index", tmp_path / "index"] if script == "rag.py" else []
    line = run_failing(script, "--model", model, *extra)
    assert "text-matching" in line and f"needs the {NEEDS[script]} adapter" in line


def test_examples_take_the_unified_and_per_task_layouts(tiny_qwen_mlx_unified, tiny_qwen_mlx_task,
                                                        docs, tmp_path):
    """A unified -mlx folder serves every example; a per-task folder those of its task."""
    assert len(run("classify.py", "--model", tiny_qwen_mlx_unified).splitlines()) == 2
    assert "cluster 0" in run("cluster.py", "--model", tiny_qwen_mlx_unified)
    for model in (tiny_qwen_mlx_unified, tiny_qwen_mlx_task):  # the latter: retrieval only
        assert "top 3 at 64 dims" in run("matryoshka.py", "--model", model)
        assert "indexed 4 files" in rag(docs, model, tmp_path / model.name)


def test_quickstart_scores_match_the_library(tiny_qwen_mlx_task):
    """quickstart.py on a per-task -mlx folder prints encode_query . encode_document."""
    import mlx_jina

    out = run("quickstart.py", "--model", tiny_qwen_mlx_task)
    model = mlx_jina.load(tiny_qwen_mlx_task)
    source = ast.parse((ROOT / "examples" / "quickstart.py").read_text())
    strings = [n.value for n in ast.walk(source) if isinstance(n, ast.Constant)
               and isinstance(n.value, str) and n.value.startswith(("Which planet", "Mars is often", "Venus is the"))]
    q, d = model.encode_query(strings[:1]), model.encode_document(strings[1:])
    printed = [float(line.split(":")[1]) for line in out.splitlines()]
    np.testing.assert_allclose(printed, (q @ d.T)[0], atol=1e-4)


def test_examples_read_files_with_one_line_errors(tiny_qwen_base, tmp_path):
    """A missing or non-UTF-8 input file is one line, not a traceback."""
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("Zürich\n".encode("latin-1"))
    assert "can't read" in run_failing("cluster.py", "--model", tiny_qwen_base, "--input", bad)
    missing = tmp_path / "none.txt"
    assert "can't read" in run_failing("matryoshka.py", "--model", tiny_qwen_base, "--corpus",
                                       missing)
    assert "can't read" in run_failing("classify.py", "--model", tiny_qwen_base, "--train", missing)


def test_rag_takes_dims_as_an_alias(docs, tiny_qwen_base, tmp_path):
    """--dims (the CLI's word) and --truncate-dim build the same index."""
    rag(docs, tiny_qwen_base, tmp_path / "a", "--dims", 32)
    rag(docs, tiny_qwen_base, tmp_path / "b", "--truncate-dim", 32)
    from safetensors.numpy import load_file

    a, b = (load_file(tmp_path / x / "int8.safetensors")["embeddings"] for x in "ab")
    assert a.shape[1] == 32 and np.array_equal(a, b)
