"""The model identity (mlx_jina/checkpoint/identity.py), as `load()` sets it on the Embedder:
equal for the same content under any path spelling, different for anything that changes
the vectors, blind to config.json's bookkeeping.

Run: python -m pytest tests/test_identity.py -q
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.numpy import load_file, save_file

import mlx_jina
from builders.layouts import build_base


def identity(path, **load_kwargs) -> str:
    return mlx_jina.load(path, **{"task": "retrieval", **load_kwargs}).identity


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    path.write_text(json.dumps(data | changes, indent=4))


@pytest.fixture(scope="module")
def reference(tiny_qwen_base) -> str:
    return identity(tiny_qwen_base)


def test_identity_is_a_scheme_and_a_digest(reference):
    scheme, digest = reference.split(":")
    assert scheme == "c1" and len(digest) == 32 and int(digest, 16) >= 0


def test_same_content_under_any_spelling(tiny_qwen_base, reference, tmp_path, monkeypatch):
    copy(tiny_qwen_base, tmp_path / "models" / "m")
    copy(tiny_qwen_base, tmp_path / "elsewhere" / "another-name")
    (tmp_path / "link").symlink_to(tmp_path / "models" / "m", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    spellings = ["models/m", "./models/m/", str(tmp_path / "models" / "m"), Path("models/m"),
                 "link", "elsewhere/another-name", tiny_qwen_base]  # fmt: skip
    assert {identity(s) for s in spellings} == {reference}


def test_same_tensors_in_other_shards(tiny_qwen_base, reference, tmp_path):
    folder = copy(tiny_qwen_base, tmp_path / "sharded")
    tensors = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    names = sorted(tensors)
    for i, part in enumerate((names[::2], names[1::2])):
        save_file({k: tensors[k] for k in part}, folder / f"model-0000{i + 1}-of-00002.safetensors")
    assert identity(folder) == reference


def test_bookkeeping_does_not_change_it(tiny_qwen_mlx_task, tmp_path):
    """Where a folder came from is not what it computes: config.json's `_name_or_path`,
    transformers_version and the converter's mlx_jina.source / revision / version, nor
    the order or layout of config.json's keys."""
    a, b = copy(tiny_qwen_mlx_task, tmp_path / "a"), copy(tiny_qwen_mlx_task, tmp_path / "b")
    block = {"task": "retrieval", "weights": "model.safetensors"}
    edit_json(a / "config.json", _name_or_path="/home/alice/qwen", transformers_version="4.57.1",
              mlx_jina=block | {"source": "/home/alice/qwen", "revision": None, "version": "0.1.0"})  # fmt: skip
    edit_json(b / "config.json", _name_or_path="jinaai/x", transformers_version="5.25.0",
              mlx_jina=block | {"source": "jinaai/x", "revision": "abc", "version": "9.9.9"})  # fmt: skip
    config = json.loads((b / "config.json").read_text())
    (b / "config.json").write_text(json.dumps(dict(reversed(config.items()))))
    assert identity(a) == identity(b)


def test_rebuilt_in_place_with_other_weights(tiny_tokenizer_eos, tmp_path):
    folder = tmp_path / "models" / "m"
    build_base(folder, "qwen3", tokenizer=tiny_tokenizer_eos, seed=0)
    before = identity(folder)
    build_base(folder, "qwen3", tokenizer=tiny_tokenizer_eos, seed=7)
    assert identity(folder) != before


def test_one_changed_value_is_seen(tiny_qwen_base, reference, tmp_path):
    folder = copy(tiny_qwen_base, tmp_path / "m")
    tensors = load_file(folder / "model.safetensors")
    tensors["norm.weight"][3] += 1e-3
    save_file(tensors, folder / "model.safetensors")
    assert identity(folder) != reference


def test_eurobert_is_not_qwen3(tiny_eurobert_base, reference):
    assert identity(tiny_eurobert_base) != reference


def test_another_tokenizer(tiny_qwen_base, tiny_tokenizer, reference, tmp_path):
    folder = copy(tiny_qwen_base, tmp_path / "m")
    shutil.copyfile(tiny_tokenizer, folder / "tokenizer.json")  # the same vocabulary, no eos
    assert identity(folder) != reference


@pytest.mark.parametrize("change", [dict(rms_norm_eps=1e-5), dict(max_position_embeddings=64)])
def test_a_config_value_that_matters(change, tiny_qwen_base, reference, tmp_path):
    folder = copy(tiny_qwen_base, tmp_path / "m")
    edit_json(folder / "config.json", **change)
    assert identity(folder) != reference


def test_other_prompts(tiny_qwen_base, reference, tmp_path):
    folder = copy(tiny_qwen_base, tmp_path / "m")
    edit_json(folder / "config_sentence_transformers.json",
              prompts={"query": "Question: ", "document": "Document: "})  # fmt: skip
    assert identity(folder) != reference


def test_another_adapter_or_another_adapter_file(tiny_qwen_base, reference, tmp_path):
    assert identity(tiny_qwen_base, task="text-matching") != reference
    assert identity(tiny_qwen_base, multitask=True) != reference
    folder = copy(tiny_qwen_base, tmp_path / "m")
    edit_json(folder / "adapters" / "retrieval" / "adapter_config.json", lora_alpha=16)
    assert identity(folder) != reference


def test_dtype_and_bits(tiny_qwen_base, reference):
    found = {reference, identity(tiny_qwen_base, dtype="float16"),
             identity(tiny_qwen_base, dtype="bfloat16"), identity(tiny_qwen_base, bits=8),
             identity(tiny_qwen_base, bits=4), identity(tiny_qwen_base, bits=4, group_size=32)}  # fmt: skip
    assert len(found) == 6
    # a setting that changes nothing the model computes leaves it alone
    assert identity(tiny_qwen_base, truncate_dim=32) == reference


def test_the_parts_say_where_two_models_differ(tiny_qwen_base, tiny_tokenizer, tmp_path):
    from mlx_jina.checkpoint.identity import differing_parts

    def parts(path, **kwargs):
        return mlx_jina.load(path, **{"task": "retrieval", **kwargs}).identity_parts

    base = parts(tiny_qwen_base)
    tokenizer, config = copy(tiny_qwen_base, tmp_path / "t"), copy(tiny_qwen_base, tmp_path / "c")
    shutil.copyfile(tiny_tokenizer, tokenizer / "tokenizer.json")
    edit_json(config / "config.json", rms_norm_eps=1e-5)
    assert differing_parts(base, parts(tokenizer)) == ["tokenizer"]
    assert differing_parts(base, parts(config)) == ["config"]
    assert differing_parts(base, parts(tiny_qwen_base, dtype="float16")) == ["settings"]
    assert differing_parts(base, parts(tiny_qwen_base, task="text-matching")) == ["adapters", "settings"]
    assert differing_parts(base, None) == []


def test_the_sampled_bytes_are_the_tensors_own(tiny_qwen_base, tmp_path):
    """The windows are read at the header's offsets: a small tensor is read whole and is
    exactly its data; a large one's first and last windows are its first and last KiB."""
    import os

    import numpy as np

    from mlx_jina.checkpoint.identity import SAMPLE_WINDOWS, WINDOW, _sample
    from mlx_jina.checkpoint.safetensors import read_header

    path = tmp_path / "t.safetensors"
    big = np.arange(SAMPLE_WINDOWS * WINDOW, dtype=np.float32)  # 4x the whole-read size
    small = np.arange(10, dtype=np.float32) * 3
    save_file({"a.small": small, "b.big": big}, path)
    header = read_header(path).tensors
    fd = os.open(path, os.O_RDONLY)
    try:
        assert _sample(fd, header["a.small"]) == small.tobytes()
        windows = _sample(fd, header["b.big"])
    finally:
        os.close(fd)
    assert len(windows) == SAMPLE_WINDOWS * WINDOW
    assert windows[:WINDOW] == big.tobytes()[:WINDOW]
    assert windows[-WINDOW:] == big.tobytes()[-WINDOW:]
