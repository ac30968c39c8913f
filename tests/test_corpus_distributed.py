"""mlx_jina.corpus.distributed: shards embedded over 2 ranks (`mlx.launch --backend ring`
on loopback) against one process's `encode`, a rank killed mid-job, a rank that fails.

This file is also the launched script: `python tests/test_corpus_distributed.py MODE
MODEL OUT` runs one rank (rank 0 writes OUT, a JSON report, and one .npy per shard).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import mlx_jina  # before MLX: the launched ranks multiply with OpenBLAS too
import numpy as np
import pytest

LAUNCH_TIMEOUT = 120
SHARDS = 12


def corpus_shards() -> list[tuple[int, list[str]]]:
    """Shards of varied texts: non-ASCII and control characters, one empty shard."""
    words = ["alpha", "bêta", "γάμμα", "デルタ", "epsilon 🚀", "zeta"]
    texts = [" ".join(words[(i + k) % 6] for k in range(1 + i % 7)) for i in range(40)]
    texts[5] = "\x00 ünï\ncödé\t"  # control bytes and accents pack as UTF-8 too
    cuts = [0, 3, 7, 7, 12, 15, 20, 24, 28, 31, 35, 38, 40]  # shard 2 is empty
    return [(i, texts[a:b]) for i, (a, b) in enumerate(pairwise(cuts))]


# ---------------------------------------------------------------------------
# the launched side


def _embedder(model_dir: str, precision: str):
    model = mlx_jina.load(model_dir, task="retrieval")

    def embed(texts: list[str]) -> tuple[np.ndarray, int]:
        vectors = model.encode(texts, precision=precision, batch_size=4)
        return vectors, model.last_stats.real_tokens if texts else 0

    return embed


def _failing(texts: list[str]) -> tuple[np.ndarray, int]:
    raise ValueError("no model here")


def _run_pool(pool, precision: str, out: Path) -> dict:
    """One pool's map; each shard saved as it completes, as the corpus writer does."""
    got = {}
    for index, vectors, tokens in pool.map(corpus_shards()):
        np.save(f"{out}.tmp.npy", vectors)
        os.replace(f"{out}.tmp.npy", f"{out}.{precision}.{index}.npy")
        got[index] = tokens
    return {"order": sorted(got), "tokens": [got[i] for i in sorted(got)],
            "by_rank": pool.shards_by_rank}  # fmt: skip


def _rank0(mode: str, group, embed_for, out: Path) -> None:
    """Rank 0 of the launched job; writes OUT (a JSON report) before it exits."""
    from mlx_jina.corpus.distributed import ShardPool, ShardPoolError

    report: dict = {"runs": {}}
    start = time.monotonic()
    for precision in ["float32", "ubinary"] if mode == "embed" else ["float32"]:
        local = None if mode == "kill" else embed_for(precision)  # kill: rank 1 does all
        pool = ShardPool(group, local)
        try:
            report["runs"][precision] = _run_pool(pool, precision, out)
        except ShardPoolError as exc:  # the one line a corpus job prints
            print(f"mlx-jina: {exc}", file=sys.stderr, flush=True)
            report["error"] = str(exc)
            break
        finally:
            report["seconds"] = time.monotonic() - start
            out.write_text(json.dumps(report))
            pool.close()
    sys.exit(1 if "error" in report else 0)


def main(mode: str, model_dir: str, out: str) -> None:
    from mlx_jina.corpus.distributed import init_group, serve_shards

    group = init_group()
    assert group is not None, "launch with mlx.launch"
    if mode == "ring4":  # no model: ranks echo zeros
        zeros = lambda texts: (np.zeros((len(texts), 2), np.float32), 0)
        if group.rank() == 0:
            _rank0(mode, group, lambda precision: zeros, Path(out))
        serve_shards(group, zeros)
    elif group.rank() == 0:
        _rank0(mode, group, lambda precision: _embedder(model_dir, precision), Path(out))
    elif mode == "embed":
        for precision in ["float32", "ubinary"]:  # one pool per precision
            serve_shards(group, _embedder(model_dir, precision))
    else:
        serve_shards(group, _embedder(model_dir, "float32") if mode == "kill" else _failing)


# ---------------------------------------------------------------------------
# the tests


def _ring_available() -> str | None:
    if shutil.which("mlx.launch") is None:
        return "mlx.launch is not on PATH"
    import mlx.core as mx

    return None if mx.distributed.is_available() else "MLX has no distributed backend"


needs_ring = pytest.mark.skipif(_ring_available() is not None, reason=str(_ring_available()))


def _launch(
    mode: str, model: Path, out: Path, ranks: int = 2, script: str = __file__, **env: str
) -> tuple[subprocess.CompletedProcess, float]:
    """`script MODE MODEL OUT` on `ranks` ranks of a loopback ring: (its run, seconds)."""
    cmd = ["mlx.launch", "-n", str(ranks), "--backend", "ring", "--", sys.executable,
           script, mode, str(model), str(out)]  # fmt: skip
    start = time.monotonic()
    done = subprocess.run(
        cmd, check=False, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT,
        env={**os.environ, **env},
    )  # fmt: skip
    return done, time.monotonic() - start


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def _shards_saved(out: Path, precision: str, count: int) -> dict[int, np.ndarray]:
    names = {i: Path(f"{out}.{precision}.{i}.npy") for i in range(count)}
    return {i: np.load(path) for i, path in names.items() if path.exists()}


@needs_ring
def test_two_ranks_match_one_process(tiny_qwen_base, qwen, tmp_path):
    out = tmp_path / "report.json"
    done, _ = _launch("embed", tiny_qwen_base, out)
    assert out.exists(), done.stdout + done.stderr
    report = json.loads(out.read_text())
    assert "error" not in report, report
    shards = corpus_shards()
    texts = [t for _, shard in shards for t in shard]
    for precision in ["float32", "ubinary"]:
        run = report["runs"][precision]
        assert run["order"] == list(range(len(shards)))
        saved = _shards_saved(out, precision, len(shards))
        got = [saved[i] for i in range(len(shards))]
        assert [len(g) for g in got] == [len(s) for _, s in shards]
        got = np.concatenate(got)
        want = qwen.encode(texts, precision=precision)
        assert got.dtype == want.dtype and got.shape == want.shape
        if precision == "float32":
            assert _cosines(got, want).min() >= 0.99999
        else:  # sign bits: a float32 sign flip near 0 may differ, at most a few bits
            bits = np.unpackbits(got ^ want).sum()
            assert bits <= 2, bits
        assert sum(run["tokens"]) > 0
        by_rank = {int(k): v for k, v in run["by_rank"].items()}
        assert by_rank[0] >= 1 and by_rank[1] >= 1 and sum(by_rank.values()) == len(shards)


@needs_ring
def test_killed_rank_ends_the_job(tiny_qwen_base, qwen, tmp_path):
    out = tmp_path / "report.json"
    # rank 0 does not embed here, so rank 1 takes shard 0, then dies holding shard 1
    done, seconds = _launch("kill", tiny_qwen_base, out, MLX_JINA_DIST_TEST_KILL="1:1")
    output = done.stdout + done.stderr
    assert seconds < 60, output
    report = json.loads(out.read_text())
    assert report["error"] == "rank 1 was lost holding shard 1: [ring] connection to a peer was lost"
    assert f"mlx-jina: {report['error']}\n" in output
    # mlx.launch exits 0 whatever its ranks do; rank 0 exits 1, or -15 when the
    # launcher's SIGTERM (sent once rank 1 died) lands while it shuts down
    assert "rank 1 exited with code -9" in output, output
    assert "rank 0 exited with code 1" in output or "rank 0 exited with code -15" in output
    saved = _shards_saved(out, "float32", SHARDS)  # the shard done before is intact
    assert list(saved) == [0]
    want = qwen.encode(corpus_shards()[0][1])
    assert _cosines(saved[0], want).min() >= 0.99999


@needs_ring
def test_failing_rank_reports_its_error(tiny_qwen_base, tmp_path):
    out = tmp_path / "report.json"
    _, seconds = _launch("fail", tiny_qwen_base, out)
    report = json.loads(out.read_text())
    assert "rank 1 failed on shard" in report["error"], report
    assert "ValueError: no model here" in report["error"]
    assert seconds < 60


@needs_ring
def test_ring_beyond_neighbours_is_explained(tmp_path):
    """Rank 0 of 4 cannot reach rank 2 over the ring backend: a clear error, no hang."""
    out = tmp_path / "report.json"
    done, seconds = _launch("ring4", Path("-"), out, ranks=4)
    output = done.stdout + done.stderr
    assert seconds < 60, output
    assert "MLX_JINA_DIST_MODE=peers takes at most 3 ranks with --backend ring" in output, output


def test_alone_runs_in_process():
    from mlx_jina.corpus.distributed import ShardPool, init_group

    assert init_group() is None  # not launched: no group, no set-up
    pool = ShardPool(None, lambda texts: (np.full((len(texts), 2), len(texts)), 7))
    got = list(pool.map(corpus_shards()))
    assert [i for i, _, _ in got] == list(range(SHARDS))
    assert all(v.shape == (len(s), 2) for (_, v, _), (_, s) in zip(got, corpus_shards()))
    assert pool.shards_by_rank == {0: SHARDS}
    with pytest.raises(ValueError, match="no rank to embed with"):
        ShardPool(None)


# ---------------------------------------------------------------------------
# the corpus job itself under mlx.launch: `mlx-jina embed --out-dir` on 2 ranks


def _corpus_file(tmp_path: Path) -> tuple[Path, list[str]]:
    texts = [f"passage {i}: {'ünïcödé ' if i % 5 == 0 else ''}topic {i % 7}" for i in range(36)]
    path = tmp_path / "corpus.txt"
    path.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    return path, texts


def _embed_job(model: Path, corpus: Path, out: Path, ranks: int, **env: str):
    cli = [sys.executable, "-m", "mlx_jina", "embed", "-m", str(model), "--task", "retrieval",
           "-i", str(corpus), "--out-dir", str(out), "--shard-size", "4"]  # fmt: skip
    cmd = ["mlx.launch", "-n", str(ranks), "--backend", "ring", "--", *cli] if ranks > 1 else cli
    return subprocess.run(cmd, check=False, capture_output=True, text=True,
                          timeout=LAUNCH_TIMEOUT, env={**os.environ, **env})  # fmt: skip


@needs_ring
def test_corpus_job_on_two_ranks_equals_one_process(tiny_qwen_base, qwen, tmp_path):
    """The same command under mlx.launch writes the same folder as one process;
    both ranks embed shards; only rank 0 reads the input and writes the output."""
    corpus, texts = _corpus_file(tmp_path)
    two = _embed_job(tiny_qwen_base, corpus, tmp_path / "two", ranks=2)
    one = _embed_job(tiny_qwen_base, corpus, tmp_path / "one", ranks=1)
    assert one.returncode == 0, one.stderr
    summary = [line for line in two.stdout.splitlines() + two.stderr.splitlines()
               if "by rank:" in line]  # fmt: skip
    assert len(summary) == 1, two.stdout + two.stderr
    by_rank = dict(part.split(": ") for part in summary[0].split("by rank: ")[1].split(")")[0].split(", "))
    assert int(by_rank["0"]) >= 1 and int(by_rank["1"]) >= 1
    assert sum(map(int, by_rank.values())) == 9  # 36 texts in shards of 4
    got = mlx_jina.load_embeddings(tmp_path / "two").embeddings
    alone = mlx_jina.load_embeddings(tmp_path / "one").embeddings
    want = qwen.encode_document(texts)
    assert got.shape == want.shape == alone.shape
    assert _cosines(np.asarray(got), want).min() >= 0.99999
    assert _cosines(np.asarray(got), np.asarray(alone)).min() >= 0.99999


@needs_ring
def test_corpus_job_with_a_killed_rank_resumes(tiny_qwen_base, qwen, tmp_path):
    """Rank 1 dies holding its first shard (it always gets one: its thread asks at once,
    while rank 0 could finish every later shard alone): the launch ends (no hang), rank 0
    names the lost rank, finished shards stay and the lost one is never listed; the same
    command again (here on one process) embeds only the rest and equals encode."""
    corpus, texts = _corpus_file(tmp_path)
    out = tmp_path / "job"
    start = time.monotonic()
    first = _embed_job(tiny_qwen_base, corpus, out, ranks=2, MLX_JINA_DIST_TEST_KILL="1:0")
    assert time.monotonic() - start < 60
    output = first.stdout + first.stderr
    assert "rank 1 was lost holding shard" in output, output
    manifest = json.loads((out / "manifest.json").read_text())
    finished = len(manifest["shards"])
    assert finished < 9 and not (out / "embeddings.safetensors").exists()
    again = _embed_job(tiny_qwen_base, corpus, out, ranks=1)
    assert again.returncode == 0, again.stderr
    assert f"{9 - finished} of 9 shards this run" in again.stderr, again.stderr
    got = mlx_jina.load_embeddings(out).embeddings
    want = qwen.encode_document(texts)
    assert got.shape == want.shape
    assert _cosines(np.asarray(got), want).min() >= 0.99999


if __name__ == "__main__":
    main(*sys.argv[1:])
