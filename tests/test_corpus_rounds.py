"""mlx_jina.corpus.rounds: corpus shards over 4 ranks of `mlx.launch --backend ring` on
loopback, where rank 0 reaches only ranks 1 and 3 by send/recv: lockstep rounds over
all_sum / all_gather, against one process's `encode`; a rank killed mid-job (rank 2, no
neighbour of rank 0), a rank that fails, ranks that disagree on the mode; the corpus
job itself on 4 ranks, killed and resumed.

This file is also the launched script: `python tests/test_corpus_rounds.py MODE MODEL OUT`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from test_corpus_distributed import (  # noqa: E402
    SHARDS, _cosines, _corpus_file, _embed_job, _embedder, _failing, _launch, _run_pool,
    _shards_saved, corpus_shards, needs_ring,
)  # fmt: skip

RANKS = 4


# ---------------------------------------------------------------------------
# the launched side


def _rank0(mode: str, group, out: Path) -> None:
    from mlx_jina.corpus.distributed import ShardPoolError
    from mlx_jina.corpus.rounds import RoundPool, open_pool

    report: dict = {"runs": {}}
    for precision in ["float32", "ubinary"] if mode == "embed" else ["float32"]:
        local = _embedder(MODEL, precision) if mode != "kill" else None
        try:
            pool = open_pool(group, local, stall_timeout=3 if mode == "stall" else None)
            report["pool"] = type(pool).__name__
            assert isinstance(pool, RoundPool) or group.size() < RANKS
            report["runs"][precision] = _run_pool(pool, precision, out)
            pool.close()
        except ShardPoolError as exc:
            print(f"mlx-jina: {exc}", file=sys.stderr, flush=True)
            report["error"] = str(exc)
            break
        finally:
            out.write_text(json.dumps(report))
    sys.exit(1 if "error" in report else 0)


def main(mode: str, model_dir: str, out: str) -> None:
    global MODEL
    from mlx_jina.corpus.distributed import init_group
    from mlx_jina.corpus.rounds import serve

    MODEL = model_dir
    group = init_group()
    assert group is not None, "launch with mlx.launch"
    if mode == "disagree" and group.rank() == 1:
        os.environ["MLX_JINA_DIST_MODE"] = "peers"
    if group.rank() == 0:
        _rank0(mode, group, Path(out))
    for precision in ["float32", "ubinary"] if mode == "embed" else ["float32"]:
        embed = _embedder(model_dir, precision)
        if mode == "fail" and group.rank() == 3:
            embed = _failing
        if mode == "stall" and group.rank() == group.size() - 2:  # rank 2 of 4, 0 of 2: none
            embed = _freezing(embed)
        serve(group, embed)


def _freezing(embed):
    """A rank that answers its first shard, then hangs without dying (a sleeping Mac)."""
    calls = []

    def frozen(texts):
        calls.append(1)
        if len(calls) > 1:
            time.sleep(300)
        return embed(texts)

    return frozen


MODEL = ""


# ---------------------------------------------------------------------------
# without a launch: the wire format, the mode, the balance


def test_plan_and_vectors_survive_the_wire():
    from mlx_jina.corpus.rounds import (
        _pack_plan, _pack_vectors, _packed_size, _unpack_plan, _unpack_vectors,
    )

    shards = corpus_shards()
    plan = [(i % RANKS, index, texts) for i, (index, texts) in enumerate(shards)]
    payload = _pack_plan(plan)
    for rank in range(RANKS):
        want = [(index, texts) for r, index, texts in plan if r == rank]
        assert _unpack_plan(payload, len(plan), rank) == want
    rng = np.random.default_rng(0)
    results = [
        (3, rng.normal(size=(5, 7)).astype(np.float32), 40),
        (8, rng.normal(size=(2, 7)).astype(np.float16), 9),
        (1, rng.integers(-128, 127, size=(4, 3), dtype=np.int8), 1),
        (2, np.packbits(rng.normal(size=(3, 16)) > 0, axis=1), 12),  # binary precision
        (4, np.zeros((0, 7), np.float32), 0),  # an empty shard
    ]
    packed = np.zeros(_packed_size(results) + 5, np.uint8)  # a gather row: padded
    _pack_vectors(results, packed)
    back = _unpack_vectors(packed, len(results))
    for (i, v, t), (j, w, u) in zip(results, back):
        assert (i, t, v.dtype, v.shape) == (j, u, w.dtype, w.shape) and np.array_equal(v, w)


@pytest.mark.parametrize("value, size, want", [
    ("", 2, "peers"), ("auto", 3, "peers"), ("auto", 4, "rounds"), ("peers", 8, "peers"),
    ("rounds", 2, "rounds"),
])  # fmt: skip
def test_mode_follows_the_group_size_unless_told(value, size, want, monkeypatch):
    from mlx_jina.corpus.rounds import mode

    monkeypatch.setenv("MLX_JINA_DIST_MODE", value)
    assert mode(type("G", (), {"size": lambda self: size})()) == want


def test_a_bad_mode_is_refused_by_name(monkeypatch):
    from mlx_jina.corpus.rounds import mode

    monkeypatch.setenv("MLX_JINA_DIST_MODE", "ring")
    with pytest.raises(ValueError, match=r"MLX_JINA_DIST_MODE='ring'; choose one of auto, peers, rounds"):
        mode(type("G", (), {"size": lambda self: 4})())


def test_a_faster_rank_gets_more_shards_per_round():
    from mlx_jina.corpus.rounds import MAX_QUOTA, RoundPool

    pool = RoundPool.__new__(RoundPool)
    pool.quota = {0: 1, 1: 1, 2: 1, 3: 1}
    # status, shards, bytes, busy microseconds, tokens: rank 1 at 2x, rank 2 at 10x rank 3
    reports = np.array([[0, 1, 9, 1_000_000, 1000], [0, 1, 9, 500_000, 1000],
                        [0, 1, 9, 100_000, 1000], [0, 1, 9, 1_000_000, 1000]])  # fmt: skip
    pool._rebalance(reports)
    assert pool.quota == {0: 1, 1: 2, 2: MAX_QUOTA, 3: 1}
    reports[1, 1] = 0  # a rank with no shard this round keeps its quota
    pool._rebalance(reports)
    assert pool.quota[1] == 2


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), True, "5"])
def test_a_bad_stall_timeout_is_refused_by_name(value, tmp_path):
    import mlx_jina

    with pytest.raises(ValueError, match=r"stall_timeout=.*give seconds > 0, or None for no limit"):
        mlx_jina.embed_corpus("no-model", ["a text"], tmp_path / "job", stall_timeout=value)


@pytest.mark.parametrize("value", ["0", "-2", "nan", "inf", "soon"])
def test_a_bad_stall_timeout_flag_is_a_usage_error(value, tmp_path):
    cmd = [sys.executable, "-m", "mlx_jina", "embed", "-m", "x", "-i", "x.txt", "--out-dir",
           str(tmp_path), "--stall-timeout", value]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and f"{value!r} is not a positive number of seconds" in done.stderr


# ---------------------------------------------------------------------------
# 4 ranks on loopback


def _launch4(mode: str, model: Path, out: Path, ranks: int = RANKS, **env: str):
    done, seconds = _launch(mode, model, out, ranks=ranks, script=__file__, **env)
    return done, seconds, done.stdout + done.stderr


@needs_ring
def test_four_ranks_match_one_process(tiny_qwen_base, qwen, tmp_path):
    out = tmp_path / "report.json"
    done, _, output = _launch4("embed", tiny_qwen_base, out)
    report = json.loads(out.read_text())
    assert "error" not in report and report["pool"] == "RoundPool", output
    texts = [t for _, shard in corpus_shards() for t in shard]
    for precision in ["float32", "ubinary"]:
        run = report["runs"][precision]
        assert run["order"] == list(range(SHARDS))
        got = np.concatenate([v for _, v in sorted(_shards_saved(out, precision, SHARDS).items())])
        want = qwen.encode(texts, precision=precision)
        assert got.dtype == want.dtype and got.shape == want.shape
        if precision == "float32":
            assert _cosines(got, want).min() >= 0.99999
        else:
            assert np.unpackbits(got ^ want).sum() <= 2
        by_rank = {int(k): v for k, v in run["by_rank"].items()}
        assert sorted(by_rank) == [0, 1, 2, 3] and min(by_rank.values()) >= 1
        assert sum(by_rank.values()) == SHARDS


@needs_ring
def test_a_killed_rank_beyond_rank_0s_reach_ends_the_job(tiny_qwen_base, qwen, tmp_path):
    out = tmp_path / "report.json"
    # rank 2 (neighbours 1 and 3) dies at its second shard, in the second round
    done, seconds, output = _launch4("kill", tiny_qwen_base, out, MLX_JINA_DIST_TEST_KILL="2:1")
    assert seconds < 60, output
    report = json.loads(out.read_text())
    error = report.get("error", "")  # the ring fails first, or mlx.launch's SIGTERM does
    if "SIGTERM" not in error:  # round 2's plan: shards by each rank's measured speed
        assert error.startswith("a rank was lost in the round of shards 3 (rank 1), "), output
        assert "(rank 2)" in error and error.endswith("[ring] connection to a peer was lost")
    assert f"mlx-jina: {report['error']}" in output
    saved = _shards_saved(out, "float32", SHARDS)  # round 1 (3 shards: ranks 1-3) is intact
    assert sorted(saved) == [0, 1, 2]
    for index, texts in corpus_shards()[:3]:
        assert len(saved[index]) == len(texts)
        if texts:  # shard 2 is empty
            assert _cosines(saved[index], qwen.encode(texts)).min() >= 0.99999


@needs_ring
def test_a_failing_rank_reports_its_error(tiny_qwen_base, tmp_path):
    out = tmp_path / "report.json"
    _, seconds, output = _launch4("fail", tiny_qwen_base, out)
    report = json.loads(out.read_text())
    assert "rank 3 failed on shard" in report["error"], output
    assert "ValueError: no model here" in report["error"]
    assert seconds < 60


@needs_ring
@pytest.mark.parametrize("ranks", [3, 4])  # peers (rank 1 of 3 freezes), rounds (rank 2 of 4)
def test_a_frozen_rank_is_caught_by_the_stall_timeout(tiny_qwen_base, tmp_path, ranks):
    out = tmp_path / "report.json"
    done, seconds, output = _launch4("stall", tiny_qwen_base, out, ranks=ranks)
    assert seconds < 60, output
    error = json.loads(out.read_text())["error"]
    if ranks == 3:
        assert error.startswith("rank 1 gave no answer for shard ") and "in 3 s (stall_timeout)" in error
    else:
        assert error.startswith("the round of shards ") and "gave no answer in " in error, error
        assert "(stall_timeout 3 s per shard); a rank is frozen" in error


@needs_ring
def test_ranks_that_disagree_on_the_mode_stop_at_once(tiny_qwen_base, tmp_path):
    out = tmp_path / "report.json"
    done, seconds, output = _launch4("disagree", tiny_qwen_base, out)
    assert seconds < 60, output
    assert "the ranks disagree on MLX_JINA_DIST_MODE (rank 0: rounds, rank 1: peers, rank 2: rounds" in output, output


@needs_ring
def test_corpus_job_on_four_ranks_killed_and_resumed(tiny_qwen_base, qwen, tmp_path):
    """`mlx-jina embed --out-dir` under mlx.launch -n 4: rank 2 dies in round 2; the launch
    ends, finished shards stay; the same command on 4 ranks finishes the rest and equals
    encode, then once more (nothing left) ends at once on every rank."""
    import mlx_jina

    corpus, texts = _corpus_file(tmp_path)
    out = tmp_path / "job"
    start = time.monotonic()
    first = _embed_job(tiny_qwen_base, corpus, out, ranks=RANKS, MLX_JINA_DIST_TEST_KILL="2:1")
    assert time.monotonic() - start < 60
    output = first.stdout + first.stderr
    assert "Traceback" not in output, output
    assert "finished shards are kept: run the same command to resume" in output, output
    finished = len(json.loads((out / "manifest.json").read_text())["shards"])
    assert 1 <= finished < 9 and not (out / "embeddings.safetensors").exists()
    again = _embed_job(tiny_qwen_base, corpus, out, ranks=RANKS)
    assert f"{9 - finished} of 9 shards this run" in again.stderr, again.stdout + again.stderr
    got = mlx_jina.load_embeddings(out).embeddings
    want = qwen.encode_document(texts)
    assert got.shape == want.shape and _cosines(np.asarray(got), want).min() >= 0.99999
    start = time.monotonic()
    done = _embed_job(tiny_qwen_base, corpus, out, ranks=RANKS)
    assert time.monotonic() - start < 60 and "0 of 9 shards this run" in done.stderr, done.stderr


@needs_ring
def test_a_finished_job_rerun_on_two_ranks_ends(tiny_qwen_base, tmp_path):
    """Rank 0 had nothing to hand out and never told rank 1, which waited for word."""
    corpus, _ = _corpus_file(tmp_path)
    out = tmp_path / "job"
    assert _embed_job(tiny_qwen_base, corpus, out, ranks=1).returncode == 0
    start = time.monotonic()
    done = _embed_job(tiny_qwen_base, corpus, out, ranks=2)
    assert time.monotonic() - start < 60 and "0 of 9 shards this run" in done.stderr, done.stderr
    assert "rank 1 exited with code 1" not in done.stdout + done.stderr


if __name__ == "__main__":
    main(*sys.argv[1:])
