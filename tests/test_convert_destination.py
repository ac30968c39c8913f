"""convert's output folder: in-place refusal, what --force may replace, atomic swap.

Run: python -m pytest tests/test_convert_destination.py -q

The kill tests run convert in a subprocess whose driver (written below, not hooks in
mlx_jina) SIGKILLs its own process at one step, then check what is at the destination.
"""

import fcntl
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import mlx_jina
from builders.layouts import TASKS
from mlx_jina import cli
from mlx_jina.conversion import QUALITY_FILE, main

REPO = Path(__file__).resolve().parents[1]

# argv: point, hf_path, mlx_path, task, dtype ("-" for None)
DRIVER = """
import os, signal, sys
import mlx_jina  # first, as in the test process: the same BLAS, so the same merged bytes
import mlx.core as mx
from mlx_jina.conversion import convert

try:
    from mlx_jina import atomic
except ImportError:  # before the fix: no swap step to patch
    atomic = None
point, src, dst, task, dtype = sys.argv[1:6]
saves = {"n": 0}
real_save, real_rename = mx.save_safetensors, os.rename
real_exchange = atomic and atomic.exchange


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def save(path, *args, **kwargs):
    saves["n"] += 1
    if point == "mid-weights":
        with open(path, "wb") as f:
            f.write(b"half a weight file")
        die()
    real_save(path, *args, **kwargs)
    if point == "after-weights" or (point == "after-2nd-task" and saves["n"] == 2):
        die()


def exchange(a, b):
    if point == "before-swap":
        die()
    if point == "no-exchange":
        return False
    done = real_exchange(a, b)
    if point == "after-swap":
        die()
    return done


def rename(a, b):
    real_rename(a, b)
    if point == "no-exchange" and ".old-" in os.fspath(b):
        die()  # between the fallback's two renames


mx.save_safetensors, os.rename = save, rename
if atomic:
    atomic.exchange = exchange
convert(src, dst, task=task, dtype=None if dtype == "-" else dtype, force=True)
"""


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (relative path -> bytes): 'exactly this folder'."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def leftovers(dst: Path) -> list[str]:
    return sorted(p.name for p in dst.parent.iterdir() if p.name != dst.name)


CASES = {
    # name: (task, dtype) of the old folder, then of the new one
    "single": (("retrieval", None), ("text-matching", None)),
    "all": (("all", "float16"), ("all", None)),
}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, tiny_qwen_base):
    """case -> (old snapshot, new snapshot), both converted under the name `out`."""
    made = {}
    for case, (old, new) in CASES.items():
        snaps = []
        for i, (task, dtype) in enumerate((old, new)):
            dst = tmp_path_factory.mktemp(f"{case}{i}") / "out"
            mlx_jina.convert(str(tiny_qwen_base), str(dst), task=task, dtype=dtype)
            if case == "single" and i == 0:
                # a stale report must not survive a conversion that writes none
                (dst / QUALITY_FILE).write_text('{"stale": true}\n')
            snaps.append(snapshot(dst))
        made[case] = tuple(snaps)
    return made


def write_snapshot(folder: Path, snap: dict[str, bytes]) -> None:
    for name, data in snap.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)


@pytest.mark.parametrize(
    "case,point,expect",
    [
        ("fresh", "mid-weights", None),
        ("single", "mid-weights", "old"),
        ("single", "after-weights", "old"),
        ("single", "before-swap", "old"),
        ("single", "after-swap", "new"),
        ("all", "after-2nd-task", "old"),
        ("single", "no-exchange", "restored"),
    ],
)
def test_sigkill_leaves_old_or_new_folder(
    outputs, tiny_qwen_base, tmp_path, case, point, expect
):
    """Killed at any step, convert --force leaves the complete old folder or the
    complete new one (never new weights under old metadata, never a half folder); the
    next run removes the leftovers and succeeds. Without an atomic exchange
    (no-exchange) the documented window is a missing folder, which the next run puts
    back."""
    old, new = outputs["single" if case == "fresh" else case]
    dst = tmp_path / "work" / "out"
    dst.parent.mkdir()
    if case != "fresh":
        write_snapshot(dst, old)
    task, dtype = CASES["single" if case == "fresh" else case][1]
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    argv = [point, str(tiny_qwen_base), str(dst), task, dtype or "-"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        [sys.executable, str(driver), *argv], env=env, cwd=tmp_path, check=False
    )
    assert run.returncode == -9, "the driver was meant to die by SIGKILL"

    if expect is None:
        assert not dst.exists()
    elif expect == "restored":
        from mlx_jina import atomic

        assert not dst.exists()
        atomic.clean_leftovers(dst)  # the first thing the next run does
        assert snapshot(dst) == old
    else:
        assert snapshot(dst) == (old if expect == "old" else new)
    assert all(name.startswith(".out.") for name in leftovers(dst)), "hidden only"

    if expect == "old" and case == "single":
        assert mlx_jina.load(dst).task == "retrieval"
    mlx_jina.convert(str(tiny_qwen_base), str(dst), task=task, dtype=dtype, force=True)
    assert snapshot(dst) == new
    assert leftovers(dst) == []


def test_cleanup_only_touches_our_leftovers(tmp_path):
    """Only `.NAME.tmp-<8 hex>` / `.NAME.old-<8 hex>` folders that no live run holds are
    removed; look-alikes and other names stay."""
    from mlx_jina import atomic

    dst = tmp_path / "out"
    ours = [".out.tmp-0123abcd", ".out.old-89abcdef"]
    keep = [".out.tmp-notours", ".out.tmp-0123abcd.bak", ".other.tmp-0123abcd", "x"]
    for name in ours + keep:
        (tmp_path / name).mkdir()
        (tmp_path / name / "f").write_text("x")
    (dst / "a").mkdir(parents=True)
    live = tmp_path / ".out.tmp-fedcba98"
    live.mkdir()
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a conversion still writing here
    try:
        atomic.clean_leftovers(dst)
    finally:
        os.close(fd)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        keep + ["out", live.name]
    )


def test_exchange_swaps_two_folders(tmp_path):
    """The OS call behind the swap really exchanges two folders in one step."""
    from mlx_jina import atomic

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "from-a").touch()
    if not atomic.exchange(tmp_path / "a", tmp_path / "b"):
        pytest.skip("no atomic exchange on this OS or file system")
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["from-a"]
    assert list((tmp_path / "a").iterdir()) == []


def test_interrupted_convert_cleans_up_at_once(
    tiny_qwen_base, outputs, tmp_path, monkeypatch
):
    """An exception or Ctrl-C while writing removes the temp folder right away and
    leaves the old folder as it was."""
    import mlx.core as mx

    old, _ = outputs["single"]
    dst = tmp_path / "out"
    write_snapshot(dst, old)

    def save(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(mx, "save_safetensors", save)
    with pytest.raises(KeyboardInterrupt):
        mlx_jina.convert(str(tiny_qwen_base), str(dst), task="clustering", force=True)
    assert snapshot(dst) == old and leftovers(dst) == []


def test_in_place_convert_is_refused(tiny_qwen_base, tmp_path, monkeypatch, capsys):
    """A destination that is, contains or lies inside the source is refused before any
    write (--force must never overwrite the source, as a SameFileError crash once showed),
    whether named directly, relatively, through a symlink or with ~."""
    src = tmp_path / "base"
    shutil.copytree(tiny_qwen_base, src)
    (tmp_path / "link").symlink_to(src)
    before = snapshot(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    for dst in [
        str(src),
        "base",
        "./link/",
        "~/base",
        str(tmp_path / "link" / "adapters"),
        str(src / "sub" / "out"),
        str(tmp_path),
    ]:
        with pytest.raises(ValueError, match=r"source folder .*another --mlx-path"):
            mlx_jina.convert("base", dst, task="retrieval", force=True)
        assert snapshot(tmp_path) == before, dst
    with pytest.raises(SystemExit) as e:
        main(["--hf-path", str(src), "--mlx-path", "link", "--task", "all", "--force"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert e.value.code == 2 and str(src.resolve()) in err and "link" in err
    # the symlinked files of a Hub snapshot count too: their real folder is the source
    blobs = tmp_path / "blobs"
    shutil.copytree(src, blobs)
    snap = tmp_path / "snap"
    snap.mkdir()
    for p in blobs.iterdir():
        (snap / p.name).symlink_to(p)
    with pytest.raises(ValueError, match=r"source folder"):
        mlx_jina.convert(str(snap), str(blobs), task="retrieval", force=True)


def fake_cache(cache: Path, repo: str, folder: Path, commit: str) -> Path:
    """Lay out `folder` as huggingface_hub's cache does; return the snapshot folder."""
    root = cache / f"models--{repo.replace('/', '--')}"
    shutil.copytree(folder, root / "snapshots" / commit)
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    return root / "snapshots" / commit


def test_hub_snapshot_destination_is_refused(tiny_qwen_base, tmp_path, monkeypatch):
    """A Hub id resolves to its snapshot folder in the cache; a destination inside it
    (or holding it) is refused like a local source."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    repo = "me/base"
    commit = "0123456789abcdef" * 2 + "01234567"
    snap = fake_cache(tmp_path, repo, tiny_qwen_base, commit)
    before = snapshot(tmp_path)
    for dst in [snap, snap / "mlx", snap.parent.parent]:
        with pytest.raises(ValueError, match=r"source folder"):
            mlx_jina.convert(repo, str(dst), task="retrieval", force=True)
    assert snapshot(tmp_path) == before
    out = mlx_jina.convert(repo, str(tmp_path / "ok"), task="retrieval")
    assert mlx_jina.load(out).task == "retrieval"


def test_force_replaces_only_earlier_outputs(tiny_qwen_base, outputs, tmp_path):
    """--force replaces the whole folder, so it only replaces an empty folder or an
    earlier mlx-jina output (one task, or task subfolders); anything else is refused,
    naming what was found, and left as it was."""
    old, _ = outputs["single"]
    args = {"hf_path": str(tiny_qwen_base), "task": "retrieval", "force": True}

    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"not an mlx-jina output.*notes\.txt"):
        mlx_jina.convert(mlx_path=str(user), **args)
    assert snapshot(user) == {"notes.txt": b"mine"}

    git = tmp_path / "git"
    write_snapshot(git, {**old, ".git/HEAD": b"ref"})
    with pytest.raises(ValueError, match=r"\.git"):
        mlx_jina.convert(mlx_path=str(git), **args)
    assert snapshot(git)[".git/HEAD"] == b"ref"

    mixed = tmp_path / "mixed"
    write_snapshot(mixed / "retrieval", old)
    (mixed / "notes").mkdir()
    with pytest.raises(ValueError, match=r"notes"):
        mlx_jina.convert(mlx_path=str(mixed), **args)

    earlier = tmp_path / "earlier"
    write_snapshot(earlier, old)
    (earlier / ".DS_Store").write_bytes(b"finder")  # macOS Finder metadata: ignored
    mlx_jina.convert(mlx_path=str(earlier), **args)
    assert QUALITY_FILE not in snapshot(earlier)  # no stale report survives

    tasks = tmp_path / "tasks"
    write_snapshot(tasks / "retrieval", old)
    write_snapshot(tasks / "clustering", old)
    mlx_jina.convert(mlx_path=str(tasks), **args)
    assert mlx_jina.load(tasks).task == "retrieval"

    (tmp_path / "empty").mkdir()
    mlx_jina.convert(mlx_path=str(tmp_path / "empty"), **{**args, "force": False})
    assert mlx_jina.load(tmp_path / "empty").task == "retrieval"


def test_mlx_path_mistakes_are_one_line_errors(
    tiny_qwen_base, tmp_path, monkeypatch, capsys
):
    """A file, an empty string, a file as parent, the current directory: each a clear
    ValueError (CLI: one line, exit 2), with nothing written."""
    src = str(tiny_qwen_base)
    (tmp_path / "file").write_text("x")
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    before = snapshot(tmp_path)
    cases = {
        str(tmp_path / "file"): r"is a file",
        "": r"empty",
        str(tmp_path / "file" / "out"): r"is a file",
        ".": r"current directory",
        str(tmp_path): r"current directory",
    }
    for dst, message in cases.items():
        with pytest.raises(ValueError, match=message):
            mlx_jina.convert(src, dst, task="retrieval", force=True)
        with pytest.raises(SystemExit) as e:
            main(["--hf-path", src, "--mlx-path", dst, "--task", "retrieval"])
        err = capsys.readouterr().err
        assert e.value.code == 2 and "Traceback" not in err
        last = err.strip().splitlines()[-1]  # argparse: usage, then one error line
        assert last.startswith("convert.py: error: ") and re.search(message, last)
    with pytest.raises(SystemExit) as e:  # the same through `mlx-jina convert`
        cli.main(["convert", "--hf-path", src, "--mlx-path", str(tmp_path / "file")])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert e.value.code == 2 and last.startswith("mlx-jina convert: error: ")
    assert snapshot(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "file"]


def test_missing_parents_are_created(tiny_qwen_base, tmp_path):
    """`--mlx-path models/small-ret` creates models/ like mkdir -p (as mlx-lm does)."""
    dst = tmp_path / "models" / "deep" / "small-ret"
    mlx_jina.convert(str(tiny_qwen_base), str(dst), task="retrieval")
    assert mlx_jina.load(dst).task == "retrieval"
    assert leftovers(dst) == []


def test_unwritable_parent_is_a_clear_error(tiny_qwen_base, tmp_path, monkeypatch):
    """A folder we cannot write to gives a ValueError naming it, and leaves no half
    output, temp folder or freshly made parent behind."""
    real_mkdir = os.mkdir

    def mkdir(path, *args, **kwargs):
        if ".tmp-" in os.fspath(path):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)  # root ignores chmod, so fake the refusal
    dst = tmp_path / "new" / "out"
    with pytest.raises(ValueError, match=r"Cannot write.*new.*Permission denied"):
        mlx_jina.convert(str(tiny_qwen_base), str(dst), task="retrieval")
    assert list(tmp_path.iterdir()) == []


class FakeHubApi:
    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, exist_ok=False, **kwargs):
        self.calls.append(("create_repo", repo_id))

    def upload_folder(self, folder_path, repo_id, **kwargs):
        assert (Path(folder_path) / "config.json").exists()
        self.calls.append(("upload_folder", repo_id, folder_path))


def test_failed_conversion_uploads_nothing(tiny_qwen_base, outputs, tmp_path):
    """--task all with a broken adapter fails before any upload (it used to upload the
    tasks before the broken one) and leaves the old folder as it was."""
    src = tmp_path / "base"
    shutil.copytree(tiny_qwen_base, src)
    (src / "adapters" / "clustering" / "adapter_model.safetensors").write_bytes(b"bad")
    dst = tmp_path / "out"
    old, _ = outputs["all"]
    write_snapshot(dst, old)
    api = FakeHubApi()
    with pytest.raises(ValueError, match=r"clustering.*corrupt"):
        mlx_jina.convert(
            str(src), str(dst), task="all", upload_repo="me/x", force=True, api=api
        )
    assert api.calls == []
    assert snapshot(dst) == old and leftovers(dst) == ["base"]


def test_info_lines_and_upload_name_the_final_folder(tiny_qwen_base, tmp_path, capsys):
    """Printed paths, the model card and the uploaded folder are the destination, never
    the hidden temp folder."""
    dst = tmp_path / "out"
    api = FakeHubApi()
    mlx_jina.convert(
        str(tiny_qwen_base), str(dst), task="all", upload_repo="me/x", api=api
    )
    out = capsys.readouterr().out
    assert f"[INFO] Wrote {dst / 'retrieval' / 'model.safetensors'}" in out
    assert ".tmp-" not in out
    uploads = [c[2] for c in api.calls if c[0] == "upload_folder"]
    assert uploads == [str(dst / t) for t in TASKS]
    assert ".tmp-" not in (dst / "retrieval" / "README.md").read_text()


# Blocks the first weight write until the test says go: a convert that holds its lock.
GATED_DRIVER = """
import sys
import mlx_jina
import mlx.core as mx
from mlx_jina.conversion import convert

real_save = mx.save_safetensors


def save(*args, **kwargs):
    print("at-gate", flush=True)
    sys.stdin.readline()
    real_save(*args, **kwargs)


mx.save_safetensors = save
convert(sys.argv[1], sys.argv[2], task=sys.argv[3], force=True)
"""


def convert_cli(*argv, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "mlx_jina", "convert", *map(str, argv)],
                          env=env, cwd=cwd, capture_output=True, text=True, timeout=300)  # fmt: skip


def test_two_converts_into_one_folder(tiny_qwen_base, tmp_path):
    """Two converts into the same new --mlx-path (or with --force) both exited 0 and printed
    "Wrote ..."; only the last output survived. Now the second, started while the first
    holds the destination, refuses in one line and writes nothing; the first finishes."""
    dst = tmp_path / "out"
    driver = tmp_path / "driver.py"
    driver.write_text(GATED_DRIVER)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = subprocess.Popen([sys.executable, str(driver), str(tiny_qwen_base), str(dst), "retrieval"],
                             env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert first.stdout.readline().strip() == "at-gate"  # the first is writing
        for extra in ([], ["--force"]):
            second = convert_cli("--hf-path", tiny_qwen_base, "--mlx-path", dst,
                                 "--task", "clustering", *extra)  # fmt: skip
            lines = second.stderr.strip().splitlines()
            assert second.returncode == 2 and "Wrote" not in second.stdout, second.stderr
            assert lines[-1].startswith("mlx-jina convert: error: Another convert is writing")
            assert "wait for it to finish, or choose another --mlx-path" in lines[-1]
        first.stdin.write("go\n")
        first.stdin.close()
        assert "[INFO] Wrote" in first.stdout.read() and first.wait(timeout=300) == 0
    finally:
        if first.poll() is None:
            first.kill()
    assert mlx_jina.load(dst).task == "retrieval"
    assert leftovers(dst) == ["driver.py"]  # the lock file goes with the run


def test_the_lock_covers_every_spelling_and_a_stale_lock_file_is_harmless(
    tiny_qwen_base, outputs, tmp_path
):
    """The lock is held by this test process; a convert --force in another process, given
    the destination by a relative path, is refused and the old output stays whole. A lock
    file left by a killed run (no process holds it) doesn't block the next run."""
    from mlx_jina.conversion.destination import destination_lock, lock_path

    old, new = outputs["single"]
    dst = tmp_path / "out"
    write_snapshot(dst, old)
    with destination_lock(dst):
        run = convert_cli("--hf-path", tiny_qwen_base, "--mlx-path", "out", "--task",
                          "text-matching", "--force", cwd=tmp_path)  # fmt: skip
        assert run.returncode == 2 and "Another convert is writing" in run.stderr
        assert snapshot(dst) == old
    lock_path(dst).write_text("")  # what SIGKILL leaves: the file, with no holder
    run = convert_cli("--hf-path", tiny_qwen_base, "--mlx-path", "out", "--task",
                      "text-matching", "--force", cwd=tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert snapshot(dst) == new and leftovers(dst) == []
