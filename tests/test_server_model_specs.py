"""Which models `mlx-jina serve` offers: -m (repeated, NAME=PATH), --models FILE,
--served-model-name, --keep-alive, --max-loaded-models, and the Jina v5 models in the
Hugging Face cache. Every bad value is a one-line error at start naming it.

Run: python -m pytest tests/test_server_model_specs.py -q

The command runs through `main()` with uvicorn's Server.run replaced by a stand-in that
keeps the app, so no port is bound; the cache test starts a real `mlx-jina serve`
process on 127.0.0.1 with HF_HUB_CACHE on a fake cache and HF_HUB_OFFLINE=1.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn

import mlx_jina
from builders.layouts import build_merged
from live_server import serve_process
from mlx_jina.cli import main
from mlx_jina.server.durations import FOREVER
from mlx_jina.server.model_specs import cached_jina_folders
from mlx_jina.server import build_registry  # not .serve: that binds the module as `serve`
from vector_checks import assert_same

ROOT = Path(__file__).resolve().parent.parent
DOCS = ["Mars is often called the Red Planet.", "Paris is the capital of France."]
NANO_REPO = "jinaai/jina-embeddings-v5-text-nano-retrieval"


def served(monkeypatch, argv: list) -> object:
    """`mlx-jina serve ARGV --no-cached-models`, up to where uvicorn would run: the registry."""
    apps = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda server: apps.append(server.config.app))
    main(["serve", *map(str, argv), "--no-cached-models"])  # stops the workers as it ends
    return apps[0].state.models


def refused(capsys, argv: list) -> str:
    """The one error line `mlx-jina serve ARGV` exits 2 with."""
    with pytest.raises(SystemExit) as exit_:
        main(["serve", *map(str, argv), "--no-cached-models"])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mlx-jina serve: error: "), lines
    return lines[0]


def embed(registry, name: str) -> np.ndarray:
    async def run():
        async with registry.use(name) as used:
            body = await used.service.embed({"input": DOCS})
        await registry.close()
        return np.array([d["embedding"] for d in body["data"]])

    return asyncio.run(run())


# ---------------------------------------------------------------------------
# -m, NAME=PATH, --served-model-name


def test_several_models_first_loaded_others_on_demand(monkeypatch, tiny_qwen_base, tiny_eurobert_base):
    registry = served(monkeypatch, ["-m", tiny_qwen_base, "-m", f"nano={tiny_eurobert_base}",
                                    "--task", "retrieval", "--keep-alive", "90s",
                                    "--max-loaded-models", "2"])  # fmt: skip
    assert [s.spec.name for s in registry.slots] == [tiny_qwen_base.name, "nano"]
    assert [s.state for s in registry.slots] == ["loaded", "unloaded"]  # the first at start
    assert registry.slots[1].spec.source == str(tiny_eurobert_base)
    assert (registry.keep_alive, registry.max_loaded) == (90.0, 2)
    one = ["-m", tiny_qwen_base, "--task", "retrieval"]
    assert served(monkeypatch, [*one, "--keep-alive", "-1"]).keep_alive == FOREVER
    assert served(monkeypatch, one).keep_alive == 300.0  # Ollama's 5m


def test_served_model_name_names_the_first_model(monkeypatch, capsys, tiny_qwen_base, tiny_eurobert_base):
    registry = served(monkeypatch, ["-m", tiny_qwen_base, "-m", tiny_eurobert_base, "--task",
                                    "retrieval", "--served-model-name", "first"])  # fmt: skip
    assert [s.spec.name for s in registry.slots] == ["first", tiny_eurobert_base.name]
    line = refused(capsys, ["-m", f"a={tiny_qwen_base}", "--served-model-name", "b"])
    assert "'a=" in line and "'b'" in line and "both name the first model" in line


def test_bad_flags_are_refused_naming_the_value(capsys, tiny_qwen_base, tiny_eurobert_base, tmp_path):
    m = ["-m", tiny_qwen_base]
    for value in ("soon", "5x", "nan", "1h5", "inf", ""):
        line = refused(capsys, [*m, "--keep-alive", value])
        assert f"--keep-alive={value!r} is not a duration" in line and '"5m"' in line
    assert "'0' is not a positive integer" in refused(capsys, [*m, "--max-loaded-models", "0"])
    line = refused(capsys, ["-m", f"x={tiny_qwen_base}", "-m", f"x={tiny_eurobert_base}"])
    assert "Two models are served as 'x'" in line and "-m NAME=PATH" in line
    line = refused(capsys, ["-m", tiny_qwen_base, "-m", tmp_path / "nowhere"])
    assert "No model folder at" in line and "nowhere" in line
    assert "needs a name and a model" in refused(capsys, ["-m", "x="])
    line = refused(capsys, ["--models", write(tmp_path, [{"source": str(tiny_qwen_base)}]),
                            "--served-model-name", "b"])  # fmt: skip
    assert "--served-model-name names the -m model" in line


# ---------------------------------------------------------------------------
# --models FILE


def write(folder: Path, content, name: str = "models.json") -> Path:
    path = folder / name
    path.write_text(content if isinstance(content, str) else json.dumps({"models": content}))
    return path


def test_models_file_gives_each_model_its_settings(monkeypatch, tmp_path, tiny_qwen_base,
                                                   tiny_eurobert_base):  # fmt: skip
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "nano").symlink_to(tiny_eurobert_base)
    path = write(tmp_path, [
        {"name": "nano-match", "source": "models/nano", "task": "text-matching",
         "keep_alive": "10m"},  # a folder beside the file
        {"source": str(tiny_eurobert_base), "task": "retrieval.passage", "keep_alive": -1},
    ])  # fmt: skip
    monkeypatch.chdir(ROOT)  # not the file's folder
    registry = served(monkeypatch, ["-m", tiny_qwen_base, "--task", "retrieval", "--models", path])
    names = [s.spec.name for s in registry.slots]
    assert names == [tiny_qwen_base.name, "nano-match", tiny_eurobert_base.name]
    assert [s.spec.keep_alive for s in registry.slots] == [None, 600.0, FOREVER]
    want = mlx_jina.load(tiny_eurobert_base, task="text-matching").encode_document(DOCS)
    assert_same(embed(registry, "nano-match"), want)
    # only a file: its first model is the default
    registry = served(monkeypatch, ["--models", path])
    assert registry.default.spec.name == "nano-match"


@pytest.mark.parametrize(
    "content, words",
    [
        (None, "no such file"),
        ("{not json", "is not readable JSON"),
        ('{"models": {}}', 'must hold {"models": [{"source": ...}, ...]}'),
        ('{"models": []}', "at least one model"),
        ('{"models": [{"source": "S"}], "extra": 1}', "the top level holds only \"models\""),
        ('{"models": ["S"]}', 'models[0] must be an object with a "source"'),
        ('{"models": [{"source": 5}]}', 'models[0] must be an object with a "source"'),
        ('{"models": [{"source": "S", "bitz": 4}]}', "unknown keys ['bitz']"),
        ('{"models": [{"source": "S", "bits": "4"}]}', "bits='4' must be a whole number"),
        ('{"models": [{"source": "S", "bits": 3}]}', "bits=3; use 4 or 8"),
        ('{"models": [{"source": "S", "multitask": "yes"}]}', "multitask='yes' must be true or false"),
        ('{"models": [{"source": "S", "dtype": "int8"}]}', "dtype='int8'; use one of float16"),
        ('{"models": [{"source": "S", "task": "search"}]}', "task 'search' is not a task"),
        ('{"models": [{"source": "S", "task": "retrieval.query"}]}', "would embed every request as a query"),
        ('{"models": [{"source": "S", "name": ""}]}', "name='' must be a non-empty string"),
        ('{"models": [{"source": "S", "keep_alive": "5 minutes"}]}',
         "keep_alive='5 minutes' is not a duration"),
        ('{"models": [{"source": "S", "keep_alive": true}]}', "keep_alive=True is not a duration"),
        ('{"models": [{"source": "/nowhere/model"}]}', "No model folder at '/nowhere/model'"),
        ('{"models": [{"name": "x", "source": "S"}, {"name": "x", "source": "S"}]}',
         "Two models are served as 'x'"),
    ],
)  # fmt: skip
def test_a_bad_models_file_is_refused_at_start(capsys, tmp_path, tiny_qwen_base, content, words):
    path = tmp_path / "models.json"
    if content is not None:
        path.write_text(content.replace('"S"', json.dumps(str(tiny_qwen_base))))
    line = refused(capsys, ["--models", path])
    assert words in line, line
    assert str(path) in line or "Two models" in words, line  # the registry names the sources


# ---------------------------------------------------------------------------
# the Hugging Face cache


def cache_repo(cache: Path, repo: str, folder: Path | None, kind: str = "models") -> Path:
    """`folder`'s files as the Hub cache lays out a download of `repo`: blobs, a snapshot
    of links to them, refs/main naming the snapshot; None: a snapshot with no files."""
    root = cache / f"{kind}--{repo.replace('/', '--')}"
    sha = "0123456789abcdef0123456789abcdef01234567"
    snapshot = root / "snapshots" / sha
    snapshot.mkdir(parents=True)
    (root / "blobs").mkdir()
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(sha)
    files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder else []
    for i, file in enumerate(files):
        blob = root / "blobs" / f"{i:040x}"
        shutil.copyfile(file, blob)
        link = snapshot / file.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return snapshot


@pytest.fixture(scope="module")
def nano_retrieval(make_checkpoint, tiny_eurobert_base) -> Path:
    return make_checkpoint(build_merged, tiny_eurobert_base, "retrieval")


@pytest.fixture
def fake_cache(tmp_path, nano_retrieval, tiny_qwen_base) -> Path:
    cache = tmp_path / "hub"
    cache_repo(cache, NANO_REPO, nano_retrieval)
    cache_repo(cache, "someone/other-embedder", tiny_qwen_base)  # not a Jina v5 model
    cache_repo(cache, "jinaai/jina-embeddings-v5-text-small", None)  # broken: no files
    cache_repo(cache, "jinaai/jina-embeddings-v5-text-small-mlx", tiny_qwen_base, "datasets")
    return cache


def test_the_cache_lists_only_loadable_jina_models(fake_cache, tiny_qwen_base, tiny_eurobert_base):
    assert [repo for repo, _ in cached_jina_folders(fake_cache)] == [NANO_REPO]
    assert cached_jina_folders(fake_cache.parent / "no-cache-here") == []

    def names(entries: list[str]) -> list[str]:
        registry = build_registry(entries, cache_dir=fake_cache)
        return [s.spec.name for s in registry.slots]

    assert names([str(tiny_qwen_base)]) == [tiny_qwen_base.name, NANO_REPO]
    # a name taken by -m (whole, or its last part), or the same repo: not listed twice
    assert names([f"jina-embeddings-v5-text-nano-retrieval={tiny_eurobert_base}"]) == [
        "jina-embeddings-v5-text-nano-retrieval"
    ]
    assert names([f"nano={NANO_REPO}"]) == ["nano"]
    assert names([NANO_REPO]) == [NANO_REPO]


def test_a_cached_model_loads_on_request_offline(fake_cache, tmp_path, tiny_qwen_base, nano_retrieval):
    """A real `mlx-jina serve` with HF_HUB_CACHE on the fake cache and the Hub off: the
    cached model is listed, unloaded, and loads on its first request."""
    env = {"HF_HUB_CACHE": str(fake_cache), "HF_HOME": str(tmp_path / "home"),
           "HF_HUB_OFFLINE": "1"}  # fmt: skip
    args = ["-m", str(tiny_qwen_base), "--task", "retrieval"]
    with serve_process(args, env, wait=120) as (url, _, _):
        models = {m["id"]: m["loaded"] for m in httpx.get(url + "/v1/models").json()["data"]}
        assert models[NANO_REPO] is False and models[tiny_qwen_base.name] is True
        r = httpx.post(url + "/v1/embeddings", json={"model": "jina-embeddings-v5-text-nano-retrieval",
                                                    "input": DOCS}, timeout=120)  # fmt: skip
        assert r.status_code == 200, r.text
        got = [d["embedding"] for d in r.json()["data"]]
        assert_same(got, mlx_jina.load(nano_retrieval).encode_document(DOCS))
        assert httpx.get(url + "/health").json()["loaded"] == [tiny_qwen_base.name, NANO_REPO]
