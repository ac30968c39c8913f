"""Loading: layout detection, tasks, dtype, errors, and Hub access without the network.

Run: pytest tests/test_loader.py
"""

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import mlx.core as mx
import numpy as np
import pytest

import mlx_jina
from builders.files import executed_sentinels
from builders.reference import reference_embeddings
from mlx_jina.checkpoint import hub
from mlx_jina.checkpoint.folder import inspect_folder

TEXTS = ["Which planet is red?", "Mars is red."]


def copy(folder: Path, tmp_path: Path, name: str = "copy") -> Path:
    dst = tmp_path / name
    shutil.copytree(folder, dst)
    return dst


def test_layout_detection(tiny_qwen_base, tiny_qwen_merged, tiny_qwen_mlx_task, tiny_qwen_mlx_unified):
    """Layouts are told apart from the files alone."""
    assert inspect_folder(tiny_qwen_base).layout == "base"
    assert inspect_folder(tiny_qwen_merged).layout == "merged"
    assert inspect_folder(tiny_qwen_mlx_task).layout == "mlx-task"
    assert inspect_folder(tiny_qwen_mlx_unified).layout == "mlx-unified"


def test_several_adapters_need_a_task(tiny_qwen_base):
    with pytest.raises(ValueError, match="pass task=. Available tasks: retrieval, text-matching"):
        mlx_jina.load(tiny_qwen_base)


def test_unknown_task(tiny_qwen_base):
    with pytest.raises(ValueError, match="Unknown task 'search'. Available tasks"):
        mlx_jina.load(tiny_qwen_base, task="search")


def test_single_adapter_is_picked(tiny_qwen_base, tmp_path):
    """A source with one adapter needs no task; a missing adapter is named."""
    folder = copy(tiny_qwen_base, tmp_path)
    for task in ("text-matching", "classification", "clustering"):
        shutil.rmtree(folder / "adapters" / task)
    assert mlx_jina.load(folder).task == "retrieval"
    with pytest.raises(ValueError, match="Unknown task 'clustering'. Available tasks: retrieval"):
        mlx_jina.load(folder, task="clustering")


def test_task_from_name_and_saved_block(tiny_qwen_merged, tmp_path):
    """Merged repos know their task from the mlx_jina block or the repo name; a clash raises."""
    named = copy(tiny_qwen_merged, tmp_path, "jina-embeddings-v5-text-small-retrieval")
    assert mlx_jina.load(named).task == "retrieval"
    with pytest.raises(ValueError, match="was converted for task 'retrieval', not 'clustering'"):
        mlx_jina.load(named, task="clustering")
    saved = copy(tiny_qwen_merged, tmp_path, "saved")
    config = json.loads((saved / "config.json").read_text())
    config["mlx_jina"] = {"task": "clustering"}
    (saved / "config.json").write_text(json.dumps(config))
    model = mlx_jina.load(saved)
    assert model.task == "clustering" and model.prompts["query"] == "Document: "


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_dtype_casts(tiny_qwen_mlx_unified, dtype):
    model = mlx_jina.load(tiny_qwen_mlx_unified, task="retrieval", dtype=dtype)
    assert model.model.layers[0].self_attn.q_proj.weight.dtype == getattr(mx, dtype)
    assert model.model.norm.weight.dtype == getattr(mx, dtype)


def test_dtype_none_keeps_stored(tiny_qwen_mlx_unified, tiny_qwen_base):
    assert mlx_jina.load(tiny_qwen_mlx_unified, task="retrieval").model.norm.weight.dtype == mx.float16
    assert mlx_jina.load(tiny_qwen_base, task="retrieval").model.norm.weight.dtype == mx.float32


def test_bad_dtype(tiny_qwen_base):
    with pytest.raises(ValueError, match="dtype='fp16'; choose one of float16, bfloat16, float32"):
        mlx_jina.load(tiny_qwen_base, task="retrieval", dtype="fp16")


def test_missing_things(tiny_qwen_merged, tmp_path):
    """Missing folder, config, weights or tokenizer: FileNotFoundError naming what's missing."""
    with pytest.raises(FileNotFoundError, match="No model folder at"):
        mlx_jina.load(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="No config.json in"):
        mlx_jina.load(tmp_path)
    no_weights = copy(tiny_qwen_merged, tmp_path, "no_weights")
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="No model.*safetensors in .*no_weights"):
        mlx_jina.load(no_weights)
    no_tok = copy(tiny_qwen_merged, tmp_path, "no_tok")
    (no_tok / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="No tokenizer.json in .*no_tok"):
        mlx_jina.load(no_tok)


def test_corrupt_weight_file_is_named(tiny_qwen_merged, tmp_path):
    folder = copy(tiny_qwen_merged, tmp_path)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match=r"model\.safetensors.*corrupt or incomplete"):
        mlx_jina.load(folder)


def test_bad_config_json(tiny_qwen_merged, tmp_path):
    folder = copy(tiny_qwen_merged, tmp_path)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        mlx_jina.load(folder)


def test_weights_not_matching_config(tiny_qwen_merged, tmp_path):
    folder = copy(tiny_qwen_merged, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"] += 1
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="weights don't fit a qwen3 model"):
        mlx_jina.load(folder)


def test_adapter_problems_are_reported_together(tiny_qwen_base, tiny_eurobert_base, tmp_path):
    """An adapter from another model lists every mismatching weight in one error."""
    folder = copy(tiny_qwen_base, tmp_path)
    shutil.copy(
        tiny_eurobert_base / "adapters" / "retrieval" / "adapter_model.safetensors",
        folder / "adapters" / "retrieval" / "adapter_model.safetensors",
    )
    with pytest.raises(ValueError, match=r"(?s)'retrieval' adapter does not fit.*\n.*\n"):
        mlx_jina.load(folder, task="retrieval")


@pytest.mark.parametrize(
    "change, words",
    [
        ({"use_dora": True}, "use_dora=true"),
        ({"fan_in_fan_out": True}, "fan_in_fan_out=true"),
        ({"bias": "all"}, "bias='all'"),
        ({"r": 7}, "says r=7 but the tensors have rank 4"),
    ],
)
def test_unsupported_adapter_configs(tiny_qwen_base, tmp_path, change, words):
    folder = copy(tiny_qwen_base, tmp_path)
    path = folder / "adapters" / "retrieval" / "adapter_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    with pytest.raises(ValueError, match=words):
        mlx_jina.load(folder, task="retrieval")


def test_gguf_only_repo(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen3"}))
    (tmp_path / "model-Q4_K_M.gguf").write_bytes(b"GGUF")
    with pytest.raises(ValueError, match="GGUF repo"):
        mlx_jina.load(tmp_path)


def test_python_files_never_run(tiny_qwen_mlx_unified, tiny_qwen_mlx_task, tiny_qwen_base):
    for folder in (tiny_qwen_mlx_unified, tiny_qwen_mlx_task, tiny_qwen_base):
        assert list(folder.glob("*.py"))
        mlx_jina.load(folder, task="retrieval")
        assert executed_sentinels(folder) == []


def test_revision_on_local_folder(tiny_qwen_merged):
    with pytest.raises(ValueError, match="revision='v1' applies to Hub repos"):
        mlx_jina.load(tiny_qwen_merged, revision="v1")


# --- Hub access, never the network --------------------------------------------------


def test_wanted_files_skip_code_and_other_exports():
    names = [
        "config.json", "config_sentence_transformers.json", "tokenizer.json", "modules.json",
        "modeling_jina_embeddings_v5.py", "custom_st.py", "model.safetensors", "model-4bit.safetensors",
        "onnx/model.onnx", "adapters/retrieval/adapter_config.json",
        "adapters/retrieval/adapter_model.safetensors", "adapters/clustering/adapter_config.json",
        "adapters/clustering/adapter_model.safetensors", "README.md",
    ]
    wanted = hub.wanted_files(names, task="retrieval")
    assert wanted == sorted([
        "config.json", "config_sentence_transformers.json", "tokenizer.json", "modules.json",
        "model.safetensors", "adapters/retrieval/adapter_config.json",
        "adapters/retrieval/adapter_model.safetensors", "adapters/clustering/adapter_config.json",
    ])
    assert "model-4bit.safetensors" in hub.wanted_files(names, bits=4)
    assert "model.safetensors" not in hub.wanted_files(names, bits=4)
    assert "adapters/clustering/adapter_model.safetensors" in hub.wanted_files(names, all_tasks=True)


class FakeApi:
    """Stands in for huggingface_hub.HfApi: lists a local folder's files."""

    folder: Path
    calls: list = []

    def model_info(self, repo_id, revision=None, timeout=None):
        FakeApi.calls.append((repo_id, revision))
        assert timeout is not None  # the listing must never wait without a limit
        names = [str(p.relative_to(self.folder)) for p in self.folder.rglob("*") if p.is_file()]
        return SimpleNamespace(siblings=[SimpleNamespace(rfilename=n) for n in names])


@pytest.mark.reference
def test_hub_download_asks_only_for_needed_files(tiny_qwen_base, tmp_path, monkeypatch):
    """Online: list the repo, then snapshot_download only JSON, tokenizer, weights, one adapter."""
    import huggingface_hub.constants

    FakeApi.folder, FakeApi.calls = tiny_qwen_base, []
    asked = {}

    def fake_snapshot_download(repo_id, revision=None, allow_patterns=None, **kwargs):
        asked.update(repo_id=repo_id, revision=revision, patterns=allow_patterns)
        dst = tmp_path / "snapshot"
        for name in allow_patterns:
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(tiny_qwen_base / name, dst / name)
        return str(dst)

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    model = mlx_jina.load("jinaai/jina-embeddings-v5-text-small", task="clustering", revision="abc123")
    assert FakeApi.calls == [("jinaai/jina-embeddings-v5-text-small", "abc123")]
    assert asked["revision"] == "abc123"
    assert not any(p.endswith(".py") for p in asked["patterns"])
    weights = [p for p in asked["patterns"] if p.endswith(".safetensors")]
    assert weights == ["adapters/clustering/adapter_model.safetensors", "model.safetensors"]
    ref = reference_embeddings(tiny_qwen_base, TEXTS, task="clustering", prompt="Document: ")
    assert np.min(np.sum(model.encode(TEXTS) * ref, axis=1)) >= 0.99999
    assert model.source == "jinaai/jina-embeddings-v5-text-small"


def fake_cache(cache: Path, repo: str, folder: Path, commit: str) -> None:
    """Lay out `folder` as huggingface_hub's cache does: snapshots/<commit> and refs/main."""
    root = cache / f"models--{repo.replace('/', '--')}"
    shutil.copytree(folder, root / "snapshots" / commit)
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)


def test_offline_mode_uses_the_cache(tiny_qwen_merged, tmp_path, monkeypatch):
    """HF_HUB_OFFLINE: load by repo id (and pinned commit) from the cache, no listing."""
    import huggingface_hub.constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    fake_cache(tmp_path, "jinaai/jina-embeddings-v5-text-small-retrieval", tiny_qwen_merged, commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))

    class NoApi:
        def __init__(self):
            raise AssertionError("offline mode must not call the Hub API")

    monkeypatch.setattr(huggingface_hub, "HfApi", NoApi)
    repo = "jinaai/jina-embeddings-v5-text-small-retrieval"
    model = mlx_jina.load(repo)
    assert model.task == "retrieval"  # from the repo name
    pinned = mlx_jina.load(repo, revision=commit)
    np.testing.assert_allclose(model.encode(TEXTS), pinned.encode(TEXTS), atol=1e-6)
    with pytest.raises(FileNotFoundError, match="is not in the Hugging Face cache"):
        mlx_jina.load("jinaai/jina-embeddings-v5-text-nano-retrieval")
    with pytest.raises(FileNotFoundError, match="revision v9"):
        mlx_jina.load(repo, revision="v9")


def test_unreachable_hub_falls_back_to_cache(tiny_qwen_merged, tmp_path, monkeypatch):
    """A connection error while listing files falls back to the cache instead of failing."""
    import huggingface_hub.constants

    commit = "89abcdef0123456789abcdef0123456789abcdef"
    fake_cache(tmp_path, "org/model-text-matching", tiny_qwen_merged, commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))

    class DownApi:
        def model_info(self, repo_id, revision=None, timeout=None):
            raise ConnectionError("no route to host")

    monkeypatch.setattr(huggingface_hub, "HfApi", DownApi)
    assert mlx_jina.load("org/model-text-matching").task == "text-matching"


def test_missing_repo_is_not_mistaken_for_offline(monkeypatch):
    import huggingface_hub.constants
    from huggingface_hub.errors import RepositoryNotFoundError

    class MissingApi:
        def model_info(self, repo_id, revision=None, timeout=None):
            raise RepositoryNotFoundError("404 Repository Not Found", response=None)

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "HfApi", MissingApi)
    with pytest.raises(ValueError, match="Could not list 'org/typo'"):
        mlx_jina.load("org/typo")


@pytest.mark.reference
def test_head_dim_from_weights_when_config_lacks_it(qwen_base_odd, tmp_path):
    """3 heads x head_dim 16 != hidden 64: without head_dim in config.json the q_proj shape decides."""
    folder = copy(qwen_base_odd, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    assert config.pop("head_dim") == 16
    (folder / "config.json").write_text(json.dumps(config))
    model = mlx_jina.load(folder, task="retrieval")
    ref = reference_embeddings(qwen_base_odd, TEXTS, task="retrieval", prompt="Document: ")
    assert np.min(np.sum(model.encode(TEXTS) * ref, axis=1)) >= 0.99999


@pytest.mark.reference
def test_kv_heads_from_weights_when_config_lacks_them(tiny_qwen_base, tmp_path):
    """4 query heads over 2 KV heads, with neither head_dim nor num_key_value_heads in config.json."""
    folder = copy(tiny_qwen_base, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config.pop("head_dim"), config.pop("num_key_value_heads")
    (folder / "config.json").write_text(json.dumps(config))
    model = mlx_jina.load(folder, task="retrieval")
    assert model.model.layers[0].self_attn.n_kv_heads == 2
    ref = reference_embeddings(tiny_qwen_base, TEXTS, task="retrieval", prompt="Document: ")
    assert np.min(np.sum(model.encode(TEXTS) * ref, axis=1)) >= 0.99999
