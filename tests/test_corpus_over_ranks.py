"""A corpus job over the ranks of `mlx.launch --backend ring` on loopback (2 and 4 ranks):
the same vectors as one process's `encode`; a killed, failing or frozen rank ends the job
with one line and exit status 1; ranks holding another model refuse before any shard.

This file is also the launched script. `python tests/test_corpus_over_ranks.py pool MODEL
OUT` runs one rank of a bare RoundPool (rank 0 writes OUT, a JSON report, and one .npy
per shard); `... cli ARGS` runs `mlx-jina ARGS`. Faults are injected here, from outside
the package, by wrapping each rank's shard function as the environment says:
TEST_KILL_AT="rank:n" (SIGKILL at that rank's shard n+1), TEST_FAIL_RANK, TEST_FREEZE_RANK
(answers one shard, then blocks forever), and TEST_CWD_RANK<k> (that rank runs in another
working directory, so the same relative model path names another folder there).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
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


def _rank() -> int:
    return int(os.environ.get("MLX_RANK", "0"))


def _faulty(embed):
    """`embed`, with the fault the environment asks of this rank."""
    rank, calls = _rank(), []
    who, _, at = os.environ.get("TEST_KILL_AT", "").partition(":")

    def wrapped(texts):
        calls.append(1)
        if who and int(who) == rank and len(calls) == int(at) + 1:
            os.kill(os.getpid(), signal.SIGKILL)  # die holding a shard
        if os.environ.get("TEST_FAIL_RANK") == str(rank):
            raise ValueError("no model here")
        if os.environ.get("TEST_FREEZE_RANK") == str(rank) and len(calls) > 1:
            threading.Event().wait()  # a sleeping Mac: never answers, never dies
        return embed(texts)

    return wrapped


def _embedder(model_dir: str, precision: str):
    model = mlx_jina.load(model_dir, task="retrieval")

    def embed(texts: list[str]) -> tuple[np.ndarray, int]:
        vectors = model.encode(texts, precision=precision, batch_size=4)
        return vectors, model.last_stats.real_tokens if texts else 0

    return _faulty(embed)


def _pool_rank0(group, model_dir: str, out: Path) -> None:
    from mlx_jina.corpus.errors import ShardPoolError, exit_on
    from mlx_jina.corpus.rounds import RoundPool

    report: dict = {"runs": {}}
    stall = float(os.environ.get("TEST_STALL_TIMEOUT", "0")) or None
    for precision in ["float32", "ubinary"] if not os.environ.get("TEST_ONE_RUN") else ["float32"]:
        local = None if os.environ.get("TEST_KILL_AT") else _embedder(model_dir, precision)
        try:
            with RoundPool(group, local, stall_timeout=stall) as pool:
                got = {}
                for index, vectors, tokens in pool.map(corpus_shards()):
                    np.save(f"{out}.tmp.npy", vectors)  # saved as it comes, as the job does
                    os.replace(f"{out}.tmp.npy", f"{out}.{precision}.{index}.npy")
                    got[index] = tokens
                report["runs"][precision] = {"order": sorted(got), "tokens": sum(got.values()),
                                             "by_rank": pool.shards_by_rank}  # fmt: skip
        except ShardPoolError as exc:
            report["error"] = str(exc)
            out.write_text(json.dumps(report))
            exit_on(exc)
    out.write_text(json.dumps(report))


def _pool(model_dir: str, out: str) -> None:
    from mlx_jina.corpus.errors import ShardPoolError, exit_on
    from mlx_jina.corpus.rounds import init_group, serve

    group = init_group()
    assert group is not None, "launch with mlx.launch"
    if group.rank() == 0:
        return _pool_rank0(group, model_dir, Path(out))
    try:
        for precision in ["float32", "ubinary"] if not os.environ.get("TEST_ONE_RUN") else ["float32"]:
            serve(group, _embedder(model_dir, precision))
    except ShardPoolError as exc:
        exit_on(exc)
    except ValueError as exc:  # this rank's own failure, reported to rank 0 already
        exit_on(ShardPoolError(f"rank {group.rank()}: {exc}"))


def _cli(argv: list[str]) -> None:
    """`mlx-jina ARGV` on this rank, with the faults and working directory asked for."""
    from mlx_jina.cli import main
    from mlx_jina.corpus import job

    if cwd := os.environ.get(f"TEST_CWD_RANK{_rank()}"):
        os.chdir(cwd)
    make = job.shard_embedder
    job.shard_embedder = lambda *args, **kwargs: _faulty(make(*args, **kwargs))
    main(argv)


# ---------------------------------------------------------------------------
# helpers of the tests


@pytest.fixture(scope="module")
def qwen_other_weights(tmp_path_factory, tiny_tokenizer_eos) -> Path:
    """tiny_qwen_base's config and tokenizer with other random weights."""
    from builders.layouts import build_base

    return build_base(tmp_path_factory.mktemp("qwen_other"), "qwen3", tokenizer=tiny_tokenizer_eos, seed=11)


def _ring_available() -> str | None:
    if shutil.which("mlx.launch") is None:
        return "mlx.launch is not on PATH"
    import mlx.core as mx

    return None if mx.distributed.is_available() else "MLX has no distributed backend"


needs_ring = pytest.mark.skipif(_ring_available() is not None, reason=str(_ring_available()))


def _launch(args: list[str], ranks: int, cwd=None, **env: str) -> tuple[subprocess.CompletedProcess, str]:
    """This file with `args` on `ranks` ranks of a loopback ring: (its run, its output)."""
    cmd = ["mlx.launch", "-n", str(ranks), "--backend", "ring", "--", sys.executable,
           str(Path(__file__).resolve()), *args]  # fmt: skip
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=cwd,
                          timeout=LAUNCH_TIMEOUT, env={**os.environ, **env})  # fmt: skip
    return done, done.stdout + done.stderr


def _launch_pool(model: Path, out: Path, ranks: int, **env: str) -> tuple[dict, str]:
    done, output = _launch(["pool", str(model), str(out)], ranks, **env)
    assert out.exists(), output
    return json.loads(out.read_text()), output


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def _shards_saved(out: Path, precision: str) -> dict[int, np.ndarray]:
    names = {i: Path(f"{out}.{precision}.{i}.npy") for i in range(SHARDS)}
    return {i: np.load(path) for i, path in names.items() if path.exists()}


def _exit_codes(output: str) -> dict[int, int]:
    """What mlx.launch says of each rank that did not exit 0 (it exits 0 itself)."""
    found = re.findall(r"Node with rank (\d+) exited with code (-?\d+)", output)  # may interleave
    return {int(rank): int(code) for rank, code in found}


def _error_lines(output: str) -> list[str]:
    """Every "mlx-jina: ..." line of the ranks. Interleaved output: mlx.launch's own
    "[WARN] Node with rank 1 exited ..." (colour codes, no newline) may stand before one."""
    return [line[line.index("mlx-jina: ") :] for line in output.splitlines() if "mlx-jina: " in line]


def _one_line_and_exit_1(output: str) -> str:
    """Rank 0's one error line; rank 0 exited 1 (not -6, not -15) after printing it. (A
    rank > 0 that sees the ring break prints its own, "mlx-jina: rank N: ...".)"""
    lines = [line for line in _error_lines(output) if not re.match(r"mlx-jina: rank \d+: ", line)]
    assert len(lines) == 1, output
    assert "terminate called" not in output and "Traceback" not in output, output
    assert _exit_codes(output).get(0) == 1, output
    return lines[0]


# ---------------------------------------------------------------------------
# without a launch: the wire format, the balance, the agreement, running alone


def test_plan_and_vectors_survive_the_wire():
    from mlx_jina.corpus.wire import pack_plan, pack_vectors, packed_size, unpack_plan, unpack_vectors

    plan = [(i % 4, index, texts) for i, (index, texts) in enumerate(corpus_shards())]
    payload = pack_plan(plan)
    for rank in range(4):
        want = [(index, texts) for r, index, texts in plan if r == rank]
        assert unpack_plan(payload, len(plan), rank) == want
    rng = np.random.default_rng(0)
    results = [
        (3, rng.normal(size=(5, 7)).astype(np.float32), 40),
        (8, rng.normal(size=(2, 7)).astype(np.float16), 9),
        (1, rng.integers(-128, 127, size=(4, 3), dtype=np.int8), 1),
        (2, np.packbits(rng.normal(size=(3, 16)) > 0, axis=1), 12),  # binary precision
        (4, np.zeros((0, 7), np.float32), 0),  # an empty shard
    ]
    packed = np.zeros(packed_size(results) + 5, np.uint8)  # a gather row: padded
    pack_vectors(results, packed)
    back = unpack_vectors(packed, len(results))
    for (i, v, t), (j, w, u) in zip(results, back):
        assert (i, t, v.dtype, v.shape) == (j, u, w.dtype, w.shape) and np.array_equal(v, w)


def test_a_faster_rank_gets_more_shards_per_round():
    from mlx_jina.corpus.rounds import MAX_QUOTA, RoundPool

    pool = RoundPool(None, lambda texts: (np.zeros((len(texts), 2)), 0))
    pool.quota = {0: 1, 1: 1, 2: 1, 3: 1}
    # status, shards, bytes, busy microseconds, tokens: rank 1 at 2x, rank 2 at 10x rank 3
    reports = np.array([[0, 1, 9, 1_000_000, 1000], [0, 1, 9, 500_000, 1000],
                        [0, 1, 9, 100_000, 1000], [0, 1, 9, 1_000_000, 1000]])  # fmt: skip
    pool._rebalance(reports)
    assert pool.quota == {0: 1, 1: 2, 2: MAX_QUOTA, 3: 1}
    reports[1, 1] = 0  # a rank with no shard this round keeps its quota
    pool._rebalance(reports)
    assert pool.quota[1] == 2


def test_alone_runs_in_process():
    from mlx_jina.corpus.rounds import RoundPool, init_group

    assert init_group() is None  # not launched: no group, no set-up
    pool = RoundPool(None, lambda texts: (np.full((len(texts), 2), len(texts)), 7))
    got = list(pool.map(corpus_shards()))
    assert [i for i, _, _ in got] == list(range(SHARDS))
    assert all(v.shape == (len(s), 2) for (_, v, _), (_, s) in zip(got, corpus_shards()))
    assert pool.shards_by_rank == {0: SHARDS}
    pool.close()
    with pytest.raises(ValueError, match="no rank to embed with"):
        RoundPool(None)


def _settings(**changes) -> dict:
    base = {"model": "models/m", "revision": None, "task": "retrieval", "prompt": "Document: ",
            "dims": 1024, "precision": "float32", "version": "0.1.0", "identity": "c1:" + "a" * 32,
            "normalize_embeddings": True, "max_length": 512, "truncate": True,
            "split_special_tokens": False, "weights": "float32"}  # fmt: skip
    return base | changes


def _disagreement(*ranks: dict) -> str | None:
    from mlx_jina.corpus.agreement import digest, disagreement

    return disagreement(np.stack([digest(s) for s in ranks]), ranks[0])


def test_ranks_agree_on_the_same_job_under_any_path_spelling():
    same = _settings(model="/Users/b/models/m/", version="0.2.0")  # a path, a release: not compared
    assert _disagreement(_settings(), same, _settings()) is None


def test_a_rank_with_other_content_or_settings_is_named():
    other = _settings(identity="c1:" + "b" * 32, precision="int8")
    problem = _disagreement(_settings(), _settings(), other)
    assert problem.startswith("the ranks do not run the same job: rank 2 differs from rank 0 in ")
    assert f"model content (identity c1:{'b' * 32}; rank 0 has c1:{'a' * 32})" in problem
    assert "precision" in problem and "rank 1" not in problem
    for key, value in [("task", "clustering"), ("prompt", "Query: "), ("dims", 256),
                       ("max_length", 64), ("weights", "float32, 4-bit")]:  # fmt: skip
        assert f"rank 1 differs from rank 0 in {key}." in _disagreement(_settings(), _settings(**{key: value}))


def test_without_an_identity_the_model_name_is_compared():
    a, b = _settings(identity=None), _settings(identity=None, model="models/other")
    assert "in model." in _disagreement(a, b)


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), True, "5"])
def test_a_bad_stall_timeout_is_refused_by_name(value, tmp_path):
    with pytest.raises(ValueError, match=r"stall_timeout=.*give seconds > 0, or None for no limit"):
        mlx_jina.embed_corpus("no-model", ["a text"], tmp_path / "job", stall_timeout=value)


@pytest.mark.parametrize("value", ["0", "-2", "nan", "inf", "soon"])
def test_a_bad_stall_timeout_flag_is_a_usage_error(value, tmp_path):
    cmd = [sys.executable, "-m", "mlx_jina", "embed", "-m", "x", "-i", "x.txt", "--out-dir",
           str(tmp_path), "--stall-timeout", value]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and f"{value!r} is not a positive number of seconds" in done.stderr


# ---------------------------------------------------------------------------
# the scheduler on 2 and 4 ranks


@needs_ring
@pytest.mark.parametrize("ranks", [2, 4])
def test_ranks_match_one_process(tiny_qwen_base, qwen, tmp_path, ranks):
    out = tmp_path / "report.json"
    report, output = _launch_pool(tiny_qwen_base, out, ranks)
    assert "error" not in report, output
    texts = [t for _, shard in corpus_shards() for t in shard]
    for precision in ["float32", "ubinary"]:
        run = report["runs"][precision]
        assert run["order"] == list(range(SHARDS)) and run["tokens"] > 0
        got = np.concatenate([v for _, v in sorted(_shards_saved(out, precision).items())])
        want = qwen.encode(texts, precision=precision)
        assert got.dtype == want.dtype and got.shape == want.shape
        if precision == "float32":
            assert _cosines(got, want).min() >= 0.99999
        else:  # sign bits: a float32 sign flip near 0 may differ, at most a few bits
            assert np.unpackbits(got ^ want).sum() <= 2
        by_rank = {int(k): v for k, v in run["by_rank"].items()}
        assert sorted(by_rank) == list(range(ranks)) and min(by_rank.values()) >= 1
        assert sum(by_rank.values()) == SHARDS


@needs_ring
@pytest.mark.parametrize("ranks, killed", [(2, 1), (4, 2)])  # rank 2 of 4: no neighbour of rank 0
def test_a_killed_rank_ends_the_job(tiny_qwen_base, qwen, tmp_path, ranks, killed):
    out = tmp_path / "report.json"
    # rank 0 does not embed here: round 1 gives each other rank one shard; the killed
    # rank dies holding its second, in round 2
    report, output = _launch_pool(tiny_qwen_base, out, ranks, TEST_KILL_AT=f"{killed}:1", TEST_ONE_RUN="1")
    line = _one_line_and_exit_1(output)
    assert _exit_codes(output)[killed] == -9
    error = report["error"]  # the ring fails first, or mlx.launch's SIGTERM does
    assert line.startswith(f"mlx-jina: {error}")
    if "SIGTERM" not in error:
        assert error.startswith("a rank was lost in the round of shards "), error
        assert f"(rank {killed})" in error and error.endswith("[ring] connection to a peer was lost")
    saved = _shards_saved(out, "float32")  # round 1 is intact
    assert sorted(saved) == list(range(ranks - 1))
    for index, texts in corpus_shards()[: ranks - 1]:
        assert len(saved[index]) == len(texts)
        if texts:  # shard 2 is empty
            assert _cosines(saved[index], qwen.encode(texts)).min() >= 0.99999


@needs_ring
@pytest.mark.parametrize("ranks", [2, 4])
def test_a_failing_rank_reports_its_error(tiny_qwen_base, tmp_path, ranks):
    out = tmp_path / "report.json"
    report, output = _launch_pool(tiny_qwen_base, out, ranks, TEST_FAIL_RANK=str(ranks - 1), TEST_ONE_RUN="1")
    line = _one_line_and_exit_1(output)
    assert f"rank {ranks - 1} failed on shard" in report["error"], output
    assert "ValueError: no model here" in line


@needs_ring
@pytest.mark.parametrize("ranks", [2, 4])
def test_a_frozen_rank_is_caught_by_the_stall_timeout(tiny_qwen_base, tmp_path, ranks):
    out = tmp_path / "report.json"
    start = time.monotonic()
    report, output = _launch_pool(tiny_qwen_base, out, ranks, TEST_FREEZE_RANK=str(ranks - 1),
                                  TEST_STALL_TIMEOUT="3", TEST_ONE_RUN="1")  # fmt: skip
    assert time.monotonic() - start < LAUNCH_TIMEOUT - 10, output  # ended, not killed by timeout
    line = _one_line_and_exit_1(output)
    assert "the round of shards " in line and "gave no answer in " in line, output
    assert "(stall_timeout 3 s per shard); a rank is frozen" in report["error"]


@needs_ring
def test_the_retired_mode_variable_is_ignored_with_a_warning(tiny_qwen_base, tmp_path):
    out = tmp_path / "report.json"
    report, output = _launch_pool(tiny_qwen_base, out, 2, MLX_JINA_DIST_MODE="peers", TEST_ONE_RUN="1")
    assert "error" not in report and report["runs"]["float32"]["order"] == list(range(SHARDS))
    assert "MLX_JINA_DIST_MODE is ignored: corpus jobs always run in rounds" in output, output


# ---------------------------------------------------------------------------
# the corpus job itself: `mlx-jina embed --out-dir` under mlx.launch


def _corpus_file(tmp_path: Path) -> tuple[Path, list[str]]:
    texts = [f"passage {i}: {'ünïcödé ' if i % 5 == 0 else ''}topic {i % 7}" for i in range(36)]
    path = tmp_path / "corpus.txt"
    path.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    return path, texts


def _embed_args(model, corpus: Path, out: Path) -> list[str]:
    return ["embed", "-m", str(model), "--task", "retrieval", "-i", str(corpus), "--out-dir",
            str(out), "--shard-size", "4"]  # fmt: skip


def _embed_job(model, corpus: Path, out: Path, ranks: int, cwd=None, **env: str) -> tuple[subprocess.CompletedProcess, str]:
    if ranks > 1:
        return _launch(["cli", *_embed_args(model, corpus, out)], ranks, cwd=cwd, **env)
    cmd = [sys.executable, "-m", "mlx_jina", *_embed_args(model, corpus, out)]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=cwd, timeout=LAUNCH_TIMEOUT)
    return done, done.stdout + done.stderr


@needs_ring
def test_corpus_job_on_two_ranks_equals_one_process(tiny_qwen_base, qwen, tmp_path):
    """The same command under mlx.launch writes the same folder as one process; both
    ranks embed shards; only rank 0 reads the input and writes the output."""
    corpus, texts = _corpus_file(tmp_path)
    two, output = _embed_job(tiny_qwen_base, corpus, tmp_path / "two", ranks=2)
    one, _ = _embed_job(tiny_qwen_base, corpus, tmp_path / "one", ranks=1)
    assert one.returncode == 0, one.stderr
    summary = [line for line in output.splitlines() if "by rank:" in line]
    assert len(summary) == 1, output
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
@pytest.mark.parametrize("ranks", [2, 4])
def test_corpus_job_with_a_killed_rank_resumes(tiny_qwen_base, qwen, tmp_path, ranks):
    """Rank 1 dies in round 2: the launch ends (no hang) with one line and exit 1, finished
    shards stay and the lost round is never listed; the same command again on the same
    ranks embeds only the rest and equals encode; once more, nothing left, it ends at once."""
    corpus, texts = _corpus_file(tmp_path)
    out = tmp_path / "job"
    _, output = _embed_job(tiny_qwen_base, corpus, out, ranks, TEST_KILL_AT="1:1")
    line = _one_line_and_exit_1(output)
    assert line.endswith("finished shards are kept: run the same command to resume"), output
    finished = len(json.loads((out / "manifest.json").read_text())["shards"])
    assert 1 <= finished < 9 and not (out / "embeddings.safetensors").exists()
    again, output = _embed_job(tiny_qwen_base, corpus, out, ranks)
    assert f"{9 - finished} of 9 shards this run" in output, output
    got = mlx_jina.load_embeddings(out).embeddings
    want = qwen.encode_document(texts)
    assert got.shape == want.shape and _cosines(np.asarray(got), want).min() >= 0.99999
    done, output = _embed_job(tiny_qwen_base, corpus, out, ranks)
    assert "0 of 9 shards this run" in output and not _exit_codes(output), output


@needs_ring
@pytest.mark.slow
def test_a_killed_rank_never_aborts_rank_0(tiny_qwen_base, tmp_path):
    """Rank 0 used to die of SIGABRT ("terminate called without an active exception", exit
    -6) in about 1 run in 5 after a lost rank, or of the launcher's SIGTERM (-15)."""
    corpus, _ = _corpus_file(tmp_path)
    codes = []
    for attempt in range(20):
        out = tmp_path / f"job{attempt}"
        _, output = _embed_job(tiny_qwen_base, corpus, out, 2, TEST_KILL_AT="1:1")
        codes.append(_exit_codes(output).get(0))
        assert "terminate called" not in output, output
    assert codes == [1] * 20, codes


@needs_ring
def test_a_finished_job_rerun_on_two_ranks_ends(tiny_qwen_base, tmp_path):
    """Rank 0 had nothing to hand out and must still tell rank 1, which waits for word."""
    corpus, _ = _corpus_file(tmp_path)
    out = tmp_path / "job"
    assert _embed_job(tiny_qwen_base, corpus, out, ranks=1)[0].returncode == 0
    _, output = _embed_job(tiny_qwen_base, corpus, out, ranks=2)
    assert "0 of 9 shards this run" in output and not _exit_codes(output), output


@needs_ring
@pytest.mark.parametrize("other", ["weights", "backbone"])
def test_a_rank_holding_another_model_at_the_same_path_refuses(
    tiny_qwen_base, tiny_eurobert_base, qwen_other_weights, tmp_path, other
):
    """The same command on both ranks, `-m models/m`; in rank 1's working directory that
    path holds other weights, or a EuroBERT checkpoint. Every rank refuses before any
    shard, naming rank 1 and the model's content; nothing is written."""
    corpus, _ = _corpus_file(tmp_path)
    here, there = tmp_path / "rank0", tmp_path / "rank1"
    shutil.copytree(tiny_qwen_base, here / "models" / "m")
    shutil.copytree(qwen_other_weights if other == "weights" else tiny_eurobert_base, there / "models" / "m")
    out = tmp_path / "job"
    _, output = _embed_job("models/m", corpus, out, 2, cwd=here, TEST_CWD_RANK1=str(there))
    lines = _error_lines(output)
    assert len(lines) == 2, output  # one per rank, the same line
    assert lines[0] == lines[1] and "rank 1 differs from rank 0 in " in lines[0], output
    assert "model content (identity c1:" in lines[0] and "finished shards" not in lines[0]
    assert _exit_codes(output) == {0: 1, 1: 1}, output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["shards"] == {}


if __name__ == "__main__":
    mode, *rest = sys.argv[1:]
    _pool(*rest) if mode == "pool" else _cli(rest)
