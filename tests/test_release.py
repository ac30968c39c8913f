"""The release artefacts: `python -m build` makes a wheel and an sdist that hold what an
install needs, and (run by .ci/run) each installs into a fresh environment and works.

Two parts:
- test_build_holds_what_an_install_needs builds both here, without network
  (--no-isolation), and reads their file lists and metadata.
- The tests marked `installed` run against an installed copy in a fresh virtual
  environment that has nothing but the package and pytest; .ci/run does that for the wheel
  and for the sdist, after `python tests/test_release.py fixture DIR` has written a tiny
  checkpoint and the vectors this checkout computes for it. Without MLX_JINA_RELEASE_MODEL
  they skip: in the source tree they would compare the checkout with itself.

Only the standard library, numpy and pytest at the top: the fresh environment has no more.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
TEXTS = ["Mars is often called the Red Planet.", "Which planet is red?"]
MODEL = os.environ.get("MLX_JINA_RELEASE_MODEL")
installed = pytest.mark.skipif(
    MODEL is None, reason="run by .ci/run against a fresh install (MLX_JINA_RELEASE_MODEL)"
)


def version() -> str:
    text = (ROOT / "mlx_jina" / "_version.py").read_text()
    return next(line.split('"')[1] for line in text.splitlines() if line.startswith("__version__"))


@pytest.mark.slow
def test_build_holds_what_an_install_needs(tmp_path):
    pytest.importorskip("build", reason="the test extra installs build")
    # From a clean copy: setuptools would reuse a stale *.egg-info file list in the checkout.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", "*.egg-info", "build", "dist", ".*venv*", "__pycache__", ".pytest_cache"))
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(tmp_path), str(source)],
        check=True, capture_output=True, timeout=600,
    )
    v = version()
    wheel, sdist = tmp_path / f"mlx_jina-{v}-py3-none-any.whl", tmp_path / f"mlx_jina-{v}.tar.gz"
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        metadata = z.read(f"mlx_jina-{v}.dist-info/METADATA").decode()
        entry_points = z.read(f"mlx_jina-{v}.dist-info/entry_points.txt").decode()
    assert {"mlx_jina/__init__.py", "mlx_jina/py.typed", "mlx_jina/server/app.py"} <= names
    assert f"mlx_jina-{v}.dist-info/licenses/LICENSE" in names
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/", "docs/"))]
    assert "mlx-jina = mlx_jina.cli:main" in entry_points
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    runtime = [r for r in requires if "extra ==" not in r]
    assert not [r for r in runtime if any(p in r for p in ("torch", "transformers", "peft"))]
    assert "# mlx-jina" in metadata  # the README is the long description
    with tarfile.open(sdist) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    needed = {"README.md", "LICENSE", "CHANGELOG.md", "pyproject.toml", "mlx_jina/py.typed",
              "docs/model-facts.md", "tests/conftest.py", "tests/test_release.py"}  # fmt: skip
    assert needed <= names, needed - names
    # every package module of the checkout is in both
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "mlx_jina").rglob("*.py")}
    assert modules <= names and modules <= {n for n in zipfile.ZipFile(wheel).namelist()}


# --- run against an installed copy -------------------------------------------------------


@installed
def test_the_installed_copy_is_the_one_imported():
    import mlx_jina

    assert ROOT not in Path(mlx_jina.__file__).resolve().parents, mlx_jina.__file__
    assert (Path(mlx_jina.__file__).parent / "py.typed").is_file()


@installed
def test_command_line_entry_point():
    bin_dir = Path(sys.executable).parent
    out = subprocess.run([bin_dir / "mlx-jina", "--version"], capture_output=True, text=True,
                         check=True, timeout=120).stdout  # fmt: skip
    import mlx_jina

    assert mlx_jina.__version__ in out


@installed
def test_installed_copy_embeds_like_the_checkout(tmp_path):
    """The vectors of the installed package equal those the checkout computed."""
    import mlx_jina

    model = mlx_jina.load(MODEL, task="retrieval")
    expected = np.load(Path(MODEL) / "expected.npy")
    got = np.stack([model.encode_document(TEXTS[0]), model.encode_query(TEXTS[1])])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)


@installed
def test_installed_cli_embeds(tmp_path):
    out = subprocess.run(
        [Path(sys.executable).parent / "mlx-jina", "embed", "-m", MODEL, "--task",
         "retrieval.query", TEXTS[1]],
        capture_output=True, text=True, check=True, timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    vector = np.array(json.loads(out.stdout))
    np.testing.assert_allclose(vector, np.load(Path(MODEL) / "expected.npy")[1], atol=1e-5)


def write_fixture(folder: Path) -> None:
    """A tiny base checkpoint (the test builders) and this checkout's vectors for TEXTS."""
    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT))
    from builders.layouts import build_base
    from builders.tokenizers import tiny_tokenizer_json

    import mlx_jina

    folder.mkdir(parents=True)
    tokenizer = tiny_tokenizer_json(folder / "tokenizer-source.json", add_eos=True)
    model_dir = build_base(folder / "model", "qwen3", tokenizer=tokenizer, seed=0)
    model = mlx_jina.load(str(model_dir), task="retrieval")
    vectors = np.stack([model.encode_document(TEXTS[0]), model.encode_query(TEXTS[1])])
    np.save(model_dir / "expected.npy", vectors)
    print(model_dir)


if __name__ == "__main__":
    if sys.argv[1:2] != ["fixture"] or len(sys.argv) != 3:
        sys.exit("usage: python tests/test_release.py fixture DIR")
    write_fixture(Path(sys.argv[2]))
