"""Resumable sharded corpus jobs (mlx_jina/corpus/): embed_corpus, load_embeddings(DIR).

Every finished job is compared with the independent reference, `encode` of the whole
corpus in one call: same row count and order, cosine >= 0.99999 per row. The kill tests
run the job in a subprocess that SIGKILLs itself at a chosen step (the job's test hook
MLX_JINA_CORPUS_KILL_AT=EVENT:N), then resume it here.

Run: python -m pytest tests/test_corpus.py -q
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mlx_jina

TASK = "retrieval"  # the task the `qwen` fixture is loaded for
SHARD = 3
TEXTS = [f"text {i}: " + "word " * (i % 5) + "end" for i in range(10)]  # 4 shards: 3+3+3+1
KILL_SCRIPT = (
    "import sys, mlx_jina\n"
    "mlx_jina.embed_corpus(sys.argv[1], sys.argv[2], sys.argv[3], shard_size=int(sys.argv[4]),"
    " task=sys.argv[5])\n"
)


@pytest.fixture
def corpus(tmp_path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    return path


def assert_matches_reference(out: Path, model, texts, **encode_kwargs) -> np.ndarray:
    """The job's rows equal `encode` of the whole corpus: count, order, cosine."""
    loaded = mlx_jina.load_embeddings(out)
    reference = model.encode(list(texts), **encode_kwargs)
    assert loaded.embeddings.shape == reference.shape
    cosine = np.sum(np.asarray(loaded.embeddings) * reference, axis=1)
    assert cosine.min() >= 0.99999, cosine
    return loaded.embeddings


def job_files(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir())


# Kill point -> shards the resumed run must still embed (of 4; shard 1 is where it dies).
KILLS = {
    "shard-embedded:1": 3,  # vectors in memory only: shard 1 is redone
    "shard-written:1": 3,  # file in place, not listed: never trusted, redone
    "shard-recorded:1": 2,  # listed: kept
    "final-appended:1": 0,  # joining: the half-appended result is cut back
    "final-recorded:2": 0,  # joined shard 2 still on disk: deleted, not appended twice
    "final-renamed:0": 0,  # result in place, manifest not yet complete
}


@pytest.mark.parametrize("point", list(KILLS))
def test_sigkill_at_any_step_then_resume(point, qwen, tiny_qwen_base, corpus, tmp_path):
    out = tmp_path / "job"
    argv = [sys.executable, "-c", KILL_SCRIPT, str(tiny_qwen_base), str(corpus), str(out),
            str(SHARD), TASK]  # fmt: skip
    env = os.environ | {"MLX_JINA_CORPUS_KILL_AT": point}
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with pytest.raises(ValueError, match="not finished"):
        mlx_jina.load_embeddings(out)
    result = mlx_jina.embed_corpus(qwen, corpus, out)
    assert result.embedded_shards == KILLS[point]
    assert result.embedded_texts == sum(len(TEXTS[i * SHARD:(i + 1) * SHARD])
                                        for i in range(4 - KILLS[point], 4))  # fmt: skip
    assert (result.rows, result.shards) == (len(TEXTS), 4)
    assert_matches_reference(out, qwen, TEXTS)
    assert job_files(out) == ["embeddings.safetensors", "manifest.json"]
    again = mlx_jina.embed_corpus(qwen, corpus, out)  # finished: nothing is redone
    assert (again.embedded_shards, again.embedded_texts) == (0, 0)


# Dies in the middle of writing shard 1's file: the test patches the store's tensor
# writer (in the child only) to write half its bytes, flush them and SIGKILL itself.
MID_WRITE_SCRIPT = """
import io, os, signal, sys
import mlx_jina.retrieval.store as store
real, calls = store.write_tensors, []
def half_then_die(f, header, tensors):
    calls.append(1)
    if len(calls) < 2:
        return real(f, header, tensors)
    buffer = io.BytesIO()
    real(buffer, header, tensors)
    f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    f.flush()
    os.fsync(f.fileno())
    os.kill(os.getpid(), signal.SIGKILL)
store.write_tensors = half_then_die
import mlx_jina
mlx_jina.embed_corpus(sys.argv[1], sys.argv[2], sys.argv[3], shard_size=int(sys.argv[4]),
                      task=sys.argv[5])
"""


def test_sigkill_inside_a_shard_write_then_resume(qwen, tiny_qwen_base, corpus, tmp_path):
    """Killed with half of shard 1's file on disk (a temp file beside it), the
    rerun deletes the leftover, embeds shards 1-3 again and ends equal to `encode`."""
    out = tmp_path / "job"
    argv = [sys.executable, "-c", MID_WRITE_SCRIPT, str(tiny_qwen_base), str(corpus), str(out),
            str(SHARD), TASK]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    leftovers = [n for n in job_files(out) if n.endswith(".tmp")]
    assert len(leftovers) == 1 and (out / leftovers[0]).stat().st_size > 0, job_files(out)
    result = mlx_jina.embed_corpus(qwen, corpus, out)
    assert (result.embedded_shards, result.rows) == (3, len(TEXTS))
    assert_matches_reference(out, qwen, TEXTS)
    assert job_files(out) == ["embeddings.safetensors", "manifest.json"]


def test_leftovers_of_a_killed_write_are_not_trusted(qwen, corpus, tmp_path):
    """What a killed run leaves and the manifest proves is the job's (the pending shard,
    of its recorded size and sha256, and a temp file of the job's write) is deleted and
    redone. A file with the job's name that the manifest doesn't prove (a listed shard
    whose bytes changed, an unlisted shard) used to be deleted or overwritten too; now the
    run stops naming them and leaves them as they were. Moved away, the job redoes them."""
    from mlx_jina.corpus.shards import expected_record

    out = tmp_path / "job"
    mlx_jina.embed_corpus(qwen, TEXTS[:9], out, shard_size=SHARD)  # a list: resumable
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["complete"], manifest["final"] = False, None  # as if killed before joining
    (out / "embeddings.safetensors").unlink()
    fp = mlx_jina.fingerprint(qwen)
    shards = [out / f"shard-00000{i}.safetensors" for i in range(3)]
    for i, path in enumerate(shards):
        mlx_jina.save_embeddings(path, qwen.encode(TEXTS[3 * i:3 * i + 3]), fp)
    record = {"file": shards[0].name, "rows": 3, "tokens": 1, "bytes": shards[0].stat().st_size}
    manifest["shards"] = {"0": record | {"sha256": "0" * 64}}  # its bytes changed since
    pending = expected_record(fp, qwen.encode(TEXTS[6:9]), shards[2].name)
    manifest["pending"] = pending  # killed after writing shard 2, before listing it
    assert pending["sha256"] == mlx_jina.corpus.manifest.file_sha256(shards[2])
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / ".shard-000002.safetensors.0badc0de.tmp").write_bytes(b"half a shard")
    (out / "notes.txt").write_text("not the job's")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ValueError) as err:
        mlx_jina.embed_corpus(qwen, TEXTS[:9], out)
    assert "holds shard-000000.safetensors, shard-000001.safetensors: the job's names" in str(err.value)
    assert "Move them away" in str(err.value)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    for path in shards[:2]:
        path.rename(tmp_path / path.name)
    result = mlx_jina.embed_corpus(qwen, TEXTS[:9], out)
    assert result.embedded_shards == 3  # 0 and 1 (moved away) and 2 (pending: not listed)
    assert_matches_reference(out, qwen, TEXTS[:9])
    assert job_files(out) == ["embeddings.safetensors", "manifest.json", "notes.txt"]


def test_force_deletes_only_what_the_manifest_proves(qwen, corpus, tmp_path):
    """An out_dir holding a user's manifest.json and a file named shard-000009.safetensors:
    force=True deleted both, though it says it deletes only the job's files. Now a
    manifest the job did not write is refused (with or without force), and so is a file
    with a job's name that the manifest doesn't list; nothing is deleted. A real job's
    files go, by their recorded size and sha256, and the user's files stay."""
    out = tmp_path / "job"
    out.mkdir()
    (out / "manifest.json").write_text('{"name": "my dataset", "files": 12}\n')
    (out / "shard-000009.safetensors").write_bytes(b"the user's own shard")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    for force in (False, True):
        with pytest.raises(ValueError, match="was not written by an embed job") as err:
            mlx_jina.embed_corpus(qwen, corpus, out, shard_size=SHARD, force=force)
        assert "Move it away, or choose another out_dir" in str(err.value)
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    with pytest.raises(ValueError, match="not written by an embed job"):
        mlx_jina.load_embeddings(out)
    (out / "manifest.json").unlink()
    for force in (False, True):
        with pytest.raises(ValueError, match="shard-000009.safetensors") as err:
            mlx_jina.embed_corpus(qwen, corpus, out, shard_size=SHARD, force=force)
        assert "Move them away" in str(err.value) or "move them away" in str(err.value)
    assert (out / "shard-000009.safetensors").read_bytes() == b"the user's own shard"
    # a real job in the folder: --force deletes its files but not the stranger beside them
    job = tmp_path / "job2"
    mlx_jina.embed_corpus(qwen, corpus, job, shard_size=SHARD)
    (job / "shard-000009.safetensors").write_bytes(b"the user's own shard")
    (job / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="--force deletes only files the job's manifest proves"):
        mlx_jina.embed_corpus(qwen, corpus, job, shard_size=4, force=True)
    assert job_files(job) == ["embeddings.safetensors", "manifest.json", "notes.txt",
                              "shard-000009.safetensors"]  # fmt: skip
    (job / "shard-000009.safetensors").unlink()
    result = mlx_jina.embed_corpus(qwen, corpus, job, shard_size=4, force=True)
    assert result.embedded_texts == len(TEXTS) and (job / "notes.txt").read_text() == "mine"
    # a result replaced by someone else's file is not the job's either
    (job / "embeddings.safetensors").write_bytes(b"someone else's")
    with pytest.raises(ValueError, match="embeddings.safetensors: the job's names"):
        mlx_jina.embed_corpus(qwen, corpus, job, force=True)
    assert (job / "embeddings.safetensors").read_bytes() == b"someone else's"


@pytest.mark.parametrize("cut", [0, 25, -10])
def test_a_damaged_manifest_names_the_remedy_and_the_remedy_works(qwen, corpus, tmp_path, cut):
    """A truncated manifest said "not valid JSON" with no way out. It is recognized as the
    job's own, damaged: the message says to pass force=True (--force), naming the files
    to move away first (nothing proves a damaged manifest's files are the job's), and
    doing just that starts the job over."""
    out = tmp_path / "job"
    mlx_jina.embed_corpus(qwen, corpus, out, shard_size=SHARD)
    raw = (out / "manifest.json").read_bytes()
    (out / "manifest.json").write_bytes(raw[:cut] if cut >= 0 else raw[:cut])
    with pytest.raises(ValueError) as err:
        mlx_jina.embed_corpus(qwen, corpus, out)
    message = str(err.value)
    assert "manifest.json is damaged" in message and "force=True (--force)" in message
    assert "embeddings.safetensors are the job's: move them away first" in message
    with pytest.raises(ValueError, match="--force"):
        mlx_jina.load_embeddings(out)
    (out / "embeddings.safetensors").rename(tmp_path / "old.safetensors")
    result = mlx_jina.embed_corpus(qwen, corpus, out, force=True)
    assert result.embedded_texts == len(TEXTS)
    assert_matches_reference(out, qwen, TEXTS)


def test_a_full_disk_names_the_file_and_the_rerun_resumes(qwen, corpus, tmp_path, monkeypatch):
    """A full disk said only "[Errno 28] No space left on device". Now the error names the
    file, says the finished shards are kept and that the same command resumes, which it
    does: only the shards not yet written are embedded."""
    import errno

    import mlx_jina.retrieval.store as store

    real, calls = store.write_tensors, []

    def full_at_third(f, header, tensors):
        calls.append(1)
        if len(calls) < 3:
            return real(f, header, tensors)
        f.write(header[:10])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store, "write_tensors", full_at_third)
    out = tmp_path / "job"
    with pytest.raises(OSError) as err:
        mlx_jina.embed_corpus(qwen, corpus, out, shard_size=SHARD)
    assert err.value.errno == errno.ENOSPC
    assert str(err.value) == (
        f"Could not write {out / 'shard-000002.safetensors'}: No space left on device. The 2 "
        "finished shards (of 4) are kept; free some disk space, then run the same command "
        "again to resume."
    )
    assert job_files(out) == ["manifest.json", "shard-000000.safetensors", "shard-000001.safetensors"]
    monkeypatch.setattr(store, "write_tensors", real)
    result = mlx_jina.embed_corpus(qwen, corpus, out)
    assert result.embedded_shards == 2 and result.rows == len(TEXTS)
    assert_matches_reference(out, qwen, TEXTS)
    # the neighbour: a generator can't be read again, so the advice is --force, not resume
    calls.clear()
    monkeypatch.setattr(store, "write_tensors", full_at_third)
    with pytest.raises(OSError) as err:
        mlx_jina.embed_corpus(qwen, (t for t in TEXTS), tmp_path / "gen", shard_size=SHARD)
    assert "can't resume: free some disk space, then run it again with force=True" in str(err.value)
    assert "resume." not in str(err.value)


def embed_cli(*argv, stdin: str = "", env: dict | None = None, limit: int | None = None):
    """`python -m mlx_jina embed ...` in a real process; `limit`: RLIMIT_FSIZE in bytes."""
    import resource

    def set_limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run([sys.executable, "-m", "mlx_jina", "embed", *map(str, argv)],
                          input=stdin, capture_output=True, text=True, timeout=300,
                          env=os.environ | (env or {}), preexec_fn=set_limit if limit else None)  # fmt: skip


def test_a_killed_stdin_job_is_told_what_works(qwen, tiny_qwen_base, tmp_path):
    """load_embeddings told a killed stdin job to "run the same command again", which is
    then refused (stdin can't be read again). It now says to rerun with --force (or save
    the input to a file), and that does work."""
    out = tmp_path / "job"
    argv = ["-m", tiny_qwen_base, "--task", TASK, "-i", "-", "--out-dir", out, "--shard-size", SHARD]
    stdin = "\n".join(TEXTS) + "\n"
    killed = embed_cli(*argv, stdin=stdin, env={"MLX_JINA_CORPUS_KILL_AT": "shard-recorded:1"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with pytest.raises(ValueError) as err:
        mlx_jina.load_embeddings(out)
    message = str(err.value)
    assert "not finished (2 of ? shards)" in message and "can't be resumed" in message
    assert "run the same command again" not in message
    assert "force=True (--force)" in message and "save the input to a file" in message
    again = embed_cli(*argv, stdin=stdin)  # what it used to advise: refused
    assert again.returncode == 2 and "can't be resumed" in again.stderr
    forced = embed_cli(*argv, "--force", stdin=stdin)  # what it advises now
    assert forced.returncode == 0, forced.stderr
    assert_matches_reference(out, qwen, TEXTS)


def test_a_file_size_limit_while_joining_is_named_and_resumed(qwen, tiny_qwen_base, tmp_path):
    """A real write failure in a real process (RLIMIT_FSIZE: the joined result may not
    grow past 8 KB, the shards fit): one line naming the file, that the finished shards
    are kept and that the same command resumes; it does, embedding nothing again."""
    texts = [f"text {i}: " + "word " * (i % 7) + "end" for i in range(40)]
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(texts) + "\n")
    out = tmp_path / "job"
    argv = ["-m", tiny_qwen_base, "--task", TASK, "-i", path, "--out-dir", out, "--shard-size", 10]
    limited = embed_cli(*argv, limit=8192)
    lines = limited.stderr.strip().splitlines()
    assert limited.returncode == 2 and len(lines) == 1, limited.stderr
    assert f"Could not write {out / '.embeddings.safetensors.partial'}: File too large" in lines[0]
    assert "The 4 finished shards (of 4) are kept" in lines[0]
    assert "run the same command again to resume" in lines[0]
    resumed = embed_cli(*argv)
    assert resumed.returncode == 0, resumed.stderr
    assert "0 of 4 shards this run" in resumed.stderr
    assert_matches_reference(out, qwen, texts)


@pytest.mark.parametrize("change, named", [
    (dict(task="clustering"), "setting task 'clustering'"),
    (dict(truncate_dim=32), "setting dims 32"),
    (dict(precision="int8"), "setting precision 'int8'"),
    (dict(prompt_name="query"), "setting prompt 'Query: '"),
    (dict(shard_size=4), "shard_size 4"),
])  # fmt: skip
def test_another_setting_is_refused_naming_it(change, named, qwen, qwen_for, corpus, tmp_path):
    out = tmp_path / "job"
    mlx_jina.embed_corpus(qwen, corpus, out, shard_size=SHARD)
    model = qwen_for(change.pop("task")) if "task" in change else qwen
    with pytest.raises(ValueError, match="holds another embed job") as err:
        mlx_jina.embed_corpus(model, corpus, out, **change)
    assert named in str(err.value)
    # force=True starts over, deleting only the job's files
    (out / "notes.txt").write_text("mine")
    result = mlx_jina.embed_corpus(model, corpus, out, force=True, **change)
    assert result.embedded_texts == len(TEXTS) and (out / "notes.txt").read_text() == "mine"
    if "shard_size" not in change:
        assert_matches_reference(out, model, TEXTS, **change)


def test_another_model_is_refused(qwen, nano, corpus, tmp_path):
    out = tmp_path / "job"
    mlx_jina.embed_corpus(qwen, corpus, out, shard_size=SHARD)
    with pytest.raises(ValueError) as err:
        mlx_jina.embed_corpus(nano, corpus, out)
    assert (f"model content: {nano.source!r} is {nano.identity}, the job in the folder was "
            f"embedded with {qwen.source!r} as {qwen.identity}") in str(err.value)


def test_a_job_from_before_identities_is_compared_by_name(qwen, nano, corpus, tmp_path):
    """A manifest without the model's identity (an older release) resumes under the
    model's name, and refuses another name."""
    out = tmp_path / "job"
    mlx_jina.embed_corpus(qwen, TEXTS[:6], out, shard_size=SHARD)
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["settings"]["identity"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=f"model {nano.source!r} \\(the job in the folder has"):
        mlx_jina.embed_corpus(nano, TEXTS[:6], out)
    assert mlx_jina.embed_corpus(qwen, TEXTS[:6], out).embedded_shards == 0


def test_an_edited_input_is_refused(qwen, corpus, tmp_path):
    out = tmp_path / "job"
    mlx_jina.embed_corpus(qwen, corpus, out, shard_size=SHARD)
    corpus.write_text(corpus.read_text() + "one more line\n")
    with pytest.raises(ValueError) as err:
        mlx_jina.embed_corpus(qwen, corpus, out)
    message = str(err.value)
    assert "input content" in message and f"input texts {len(TEXTS) + 1}" in message


def test_stdin_runs_but_refuses_to_resume(qwen, tmp_path, monkeypatch):
    out = tmp_path / "job"
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(TEXTS)))
    result = mlx_jina.embed_corpus(qwen, "-", out, shard_size=SHARD)
    assert result.rows == len(TEXTS)
    assert_matches_reference(out, qwen, TEXTS)
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(TEXTS)))
    with pytest.raises(ValueError, match="stdin can't be resumed"):
        mlx_jina.embed_corpus(qwen, "-", out)


@pytest.mark.parametrize("bad, message", [
    (b"   ", r"line 7 of .*corpus.txt holds only whitespace"),
    (b"caf\xe9", r"line 7 of .*corpus.txt is not UTF-8"),
])  # fmt: skip
def test_a_bad_line_is_refused_before_any_work(bad, message, corpus, tmp_path):
    lines = corpus.read_bytes().splitlines()
    corpus.write_bytes(b"\n".join(lines[:6] + [bad] + lines[6:]) + b"\n")
    out = tmp_path / "job"
    # No model is loaded (this one does not exist) and no folder made: the check comes first.
    with pytest.raises(ValueError, match=message):
        mlx_jina.embed_corpus(tmp_path / "no-such-model", corpus, out)
    assert not out.exists()


def test_jsonl_with_a_named_field(qwen, tmp_path):
    path = tmp_path / "docs.jsonl"
    rows = [json.dumps({"id": i, "body": t}) for i, t in enumerate(TEXTS)]
    path.write_text("\n".join(rows[:4] + [""] + rows[4:]) + "\n")  # a blank line is skipped
    out = tmp_path / "job"
    with pytest.raises(ValueError, match="line 1 of .* has no 'text' field"):
        mlx_jina.embed_corpus(qwen, path, out)
    mlx_jina.embed_corpus(qwen, path, out, text_field="body", shard_size=4)
    assert_matches_reference(out, qwen, TEXTS)


def test_result_is_memory_mapped_and_searchable(qwen, corpus, tmp_path):
    out = tmp_path / "job"
    mlx_jina.embed_corpus(qwen, corpus, out, shard_size=SHARD, precision="int8")
    loaded = mlx_jina.load_embeddings(out, mlx_jina.fingerprint(qwen, precision="int8"))
    assert isinstance(loaded.embeddings, np.memmap) and not loaded.embeddings.flags.owndata
    assert loaded.embeddings.dtype == np.int8
    reference = qwen.encode(TEXTS, precision="int8")
    assert np.abs(loaded.embeddings.astype(int) - reference).max() <= 1  # rounding at .5
    queries = qwen.encode_query(["text 3", "word end"])
    mapped = mlx_jina.semantic_search(queries, loaded, top_k=3)  # the file knows it is int8
    in_memory = mlx_jina.semantic_search(queries, np.array(loaded.embeddings), top_k=3,
                                         corpus_precision="int8")
    assert mapped == in_memory


def test_a_damaged_result_is_refused(qwen, corpus, tmp_path):
    """The mapped result is checked like any embedding file: a NaN row is refused."""
    out = tmp_path / "job"
    mlx_jina.embed_corpus(qwen, corpus, out, shard_size=SHARD)
    final = out / "embeddings.safetensors"
    data = bytearray(final.read_bytes())
    data[-4:] = np.array([np.nan], dtype="<f4").tobytes()  # the last row's last value
    final.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="1 of 10 rows hold NaN"):
        mlx_jina.load_embeddings(out)


def test_a_generator_streams_and_an_unfinished_job_does_not_load(qwen, tmp_path):
    out = tmp_path / "job"
    result = mlx_jina.embed_corpus(qwen, (t for t in TEXTS), out, shard_size=4)
    assert (result.rows, result.shards) == (len(TEXTS), 3)
    assert_matches_reference(out, qwen, TEXTS)
    unfinished = tmp_path / "other"
    unfinished.mkdir()
    (unfinished / "shard-000000.safetensors").write_bytes(b"x")
    with pytest.raises(ValueError, match="without manifest.json"):
        mlx_jina.load_embeddings(unfinished)
    with pytest.raises(ValueError, match="holds embed-job files but no manifest"):
        mlx_jina.embed_corpus(qwen, TEXTS, unfinished)


def test_cli_handler_runs_the_job_and_prints_a_summary(qwen, tiny_qwen_base, corpus, tmp_path, capsys):
    """run_corpus takes `mlx-jina embed`'s namespace plus add_corpus_options' flags."""
    import argparse

    from mlx_jina.cli import build_parser
    from mlx_jina.corpus.cli import add_corpus_options, run_corpus

    out = tmp_path / "job"
    args = build_parser().parse_args(["embed", "-m", str(tiny_qwen_base), "--task", TASK,
                                      "-i", str(corpus)])  # fmt: skip
    flags = add_corpus_options(argparse.ArgumentParser()).parse_args(
        ["--out-dir", str(out), "--shard-size", "4"]
    )
    run_corpus(argparse.Namespace(**vars(args) | vars(flags)))
    summary = capsys.readouterr().err.strip().splitlines()[-1]
    assert summary.startswith(f"Embedded {len(TEXTS)} texts (") and "3 of 3 shards" in summary
    assert_matches_reference(out, qwen, TEXTS)


def test_an_input_edited_during_the_run_is_never_recorded(qwen, corpus, tmp_path, monkeypatch):
    """The neighbour of the edited-input refusal: a file edited while the job reads it.
    Before: the job went on and joined shards of two different files. Now the shard
    read after the edit is not listed, the run stops naming the cause, the rerun is
    refused (the input differs) and force=True gives `encode` of the new file."""
    from mlx_jina.corpus.shards import ShardStore

    real_write = ShardStore.write

    def write_then_edit(self, index, vectors):
        entry = real_write(self, index, vectors)
        if index == 1:
            before = corpus.stat().st_mtime_ns
            corpus.write_text("\n".join(TEXTS[::-1]) + "\n", encoding="utf-8")
            # a new mtime even on a coarse clock, set rather than waited for
            os.utime(corpus, ns=(before + 10**9, before + 10**9))
        return entry

    monkeypatch.setattr(ShardStore, "write", write_then_edit)
    out = tmp_path / "job"
    with pytest.raises(ValueError, match="changed while it was being embedded"):
        mlx_jina.embed_corpus(qwen, corpus, out, shard_size=SHARD)
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["shards"]) == ["0"]
    monkeypatch.setattr(ShardStore, "write", real_write)
    with pytest.raises(ValueError, match="input"):
        mlx_jina.embed_corpus(qwen, corpus, out)
    mlx_jina.embed_corpus(qwen, corpus, out, force=True)
    assert_matches_reference(out, qwen, TEXTS[::-1])


def test_a_corpus_file_reads_as_embed_i_reads_it(qwen, tmp_path):
    """The corpus reader was a second line reader beside `embed -i`'s: it split lines with
    str.splitlines() (a text holding U+2028 or a form feed became two rows, every later
    row shifted) and kept a byte-order mark in the first text. Both now use one reader."""
    from mlx_jina.encoding.textio import read_texts

    texts = ["one\u2028two", "three\x0cfour", "five"]
    path = tmp_path / "corpus.txt"
    path.write_bytes(b"\xef\xbb\xbf" + ("\n".join(texts) + "\n").encode())
    assert read_texts([], str(path), False) == texts
    out = tmp_path / "job"
    mlx_jina.embed_corpus(qwen, path, out)
    assert_matches_reference(out, qwen, texts)


def test_a_missing_input_is_file_not_found(qwen, tmp_path):
    """A missing input file raised ValueError; it is a FileNotFoundError (what Python
    raises for a missing file), and a folder is still a ValueError. Nothing is created."""
    out = tmp_path / "job"
    with pytest.raises(FileNotFoundError, match="No input file .*nope.txt"):
        mlx_jina.embed_corpus(qwen, tmp_path / "nope.txt", out)
    with pytest.raises(ValueError, match="is a folder"):
        mlx_jina.embed_corpus(qwen, tmp_path, out)
    assert not out.exists()


def test_the_progress_bar_moves_after_the_first_batch(qwen, corpus, tmp_path, monkeypatch):
    """A corpus job's bar first moved after 1,024 texts (about 27 s on a laptop): it was
    updated per encode call, not per batch. Now every batch moves it, the first one too."""
    import tqdm.auto

    updates = []

    class Recorder:
        format_dict = {"elapsed": 1.0}

        def __init__(self, *args, **kwargs):
            pass

        def update(self, n=1):
            updates.append(n)

        def set_postfix_str(self, text):
            pass

        def close(self):
            pass

    monkeypatch.setattr(tqdm.auto, "tqdm", Recorder)
    out = tmp_path / "job"
    mlx_jina.embed_corpus(qwen, corpus, out, shard_size=8, batch_size=2, show_progress_bar=True)
    moved = [n for n in updates if n]
    assert moved[0] <= 2 and sum(moved) == len(TEXTS), updates
    assert len(moved) >= len(TEXTS) // 2


def on_a_zero_column_terminal(argv: list, cwd: Path) -> tuple[int, str]:
    """Run `argv` with stderr on a new pseudo-terminal, which reports 0 columns and 0 rows
    until someone sets its size; (exit code, what it showed)."""
    import pty
    import threading

    master, slave = pty.openpty()
    assert os.get_terminal_size(slave).columns == 0
    shown = []

    def read():
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the other side is closed
                return
            if not data:
                return
            shown.append(data)

    reader = threading.Thread(target=read)
    reader.start()
    proc = subprocess.run([sys.executable, "-m", "mlx_jina", *map(str, argv)], stderr=slave,
                          stdout=subprocess.DEVNULL, cwd=cwd, timeout=300)  # fmt: skip
    os.close(slave)
    reader.join(timeout=30)
    os.close(master)
    return proc.returncode, b"".join(shown).decode()


def test_a_zero_column_terminal_gets_plain_progress_lines(tiny_qwen_base, corpus, tmp_path):
    """On a terminal that reports 0 columns, tqdm printed nothing at all, for a corpus job
    and for a large `embed`. Both now print plain progress lines there."""
    model = ["-m", tiny_qwen_base, "--task", TASK, "-i", corpus, "--batch-size", 1]
    code, shown = on_a_zero_column_terminal(["embed", *model, "--out-dir", tmp_path / "job"], tmp_path)
    lines = [l for l in shown.splitlines() if l.startswith("Embedding: ")]
    assert code == 0 and lines, shown
    assert lines[-1].startswith(f"Embedding: {len(TEXTS)} of {len(TEXTS)} texts (100%)")
    code, shown = on_a_zero_column_terminal(["embed", *model], tmp_path)  # 10 batches: large
    lines = [l for l in shown.splitlines() if l.startswith("Encoding: ")]
    assert code == 0 and lines, shown
    assert lines[-1].startswith(f"Encoding: {len(TEXTS)} of {len(TEXTS)} texts (100%)")


# ---------------------------------------------------------------------------
# the model is compared by its content, not by the spelling of its path


def killed_job(model: str, corpus: Path, out: Path, cwd: Path) -> None:
    """A job started from `cwd` with `model` as given, SIGKILLed after shard 1 is listed."""
    argv = [sys.executable, "-c", KILL_SCRIPT, model, str(corpus), str(out), str(SHARD), TASK]
    env = os.environ | {"MLX_JINA_CORPUS_KILL_AT": "shard-recorded:1"}
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def cli_embed(model: str, corpus: Path, out: Path, cwd: Path, *flags: str):
    argv = [sys.executable, "-m", "mlx_jina", "embed", "-m", model, "--task", TASK,
            "-i", str(corpus), "--out-dir", str(out), *flags]  # fmt: skip
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_a_model_rebuilt_in_place_is_refused(tiny_tokenizer_eos, corpus, tmp_path, monkeypatch):
    """Killed, then the model folder rebuilt with other weights at the same path: the
    resume was accepted and mixed shards of both models. Now it is refused in one line
    that names the model's content and the way out."""
    from builders.layouts import build_base

    build_base(tmp_path / "models" / "m", "qwen3", tokenizer=tiny_tokenizer_eos, seed=0)
    out = tmp_path / "job"
    killed_job("models/m", corpus, out, cwd=tmp_path)
    build_base(tmp_path / "models" / "m", "qwen3", tokenizer=tiny_tokenizer_eos, seed=7)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as err:
        mlx_jina.embed_corpus("models/m", corpus, out, task=TASK)
    message = str(err.value)
    assert "\n" not in message and "model content: 'models/m' is c1:" in message
    assert "(they differ in: weights, adapters)" in message  # the adapters were rebuilt too
    assert "force=True (--force)" in message and "another folder" in message
    cli = cli_embed("models/m", corpus, out, tmp_path)
    assert cli.returncode == 2 and "model content" in cli.stderr and "--force" in cli.stderr
    assert cli_embed("models/m", corpus, out, tmp_path, "--force").returncode == 0
    assert_matches_reference(out, mlx_jina.load("models/m", task=TASK), TEXTS)


@pytest.mark.parametrize("spelling, how", [
    ("./models/m/", "api"),
    ("{tmp}/models/m", "api"),
    ("{tmp}/models/m", "cli"),
    ("./models/m/", "cli"),
    ("elsewhere/copy", "api"),  # another path, the same files
])  # fmt: skip
def test_the_same_model_spelled_another_way_resumes(spelling, how, qwen, tiny_qwen_base, corpus,
                                                   tmp_path, monkeypatch):  # fmt: skip
    import shutil

    shutil.copytree(tiny_qwen_base, tmp_path / "models" / "m")
    shutil.copytree(tiny_qwen_base, tmp_path / "elsewhere" / "copy")
    out = tmp_path / "job"
    killed_job("models/m", corpus, out, cwd=tmp_path)
    model = spelling.format(tmp=tmp_path)
    if how == "cli":
        proc = cli_embed(model, corpus, out, tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert "2 of 4 shards this run" in proc.stderr
    else:
        monkeypatch.chdir(tmp_path)
        result = mlx_jina.embed_corpus(model, corpus, out, task=TASK)
        assert (result.embedded_shards, result.rows) == (2, len(TEXTS))
    assert_matches_reference(out, qwen, TEXTS)
