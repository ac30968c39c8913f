"""Tests of the test fixtures themselves (no mlx_jina needed).

They pin the published layouts our fixtures imitate, check that the numpy builders
write what transformers and peft write (configs, the adapter merge), and that the torch
reference is strong enough to catch merge, rope and mask bugs (those carry the
``reference`` marker).
"""

from __future__ import annotations

import json
import runpy
import shutil
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from builders.configs import backbone_arch
from builders.files import SENTINEL, executed_sentinels, file_dtypes, read_safetensors
from builders.layouts import MERGED_TASKS, TASKS, build_base
from builders.reference import reference_embeddings, reference_token_ids
from builders.tokenizers import tiny_tokenizer_json
from builders.weights import LORA_TARGETS

TEXTS = [
    "Paris is the capital of France.",
    "Mars",
    "Mars is the fourth planet from the Sun, often called the Red Planet.",
]
TINY_BASES = [
    "tiny_qwen_base",
    "tiny_eurobert_base",
    "qwen_base_odd",
    "eurobert_base_gqa",
    "tiny_qwen_rslora",
    "tiny_eurobert_base_bf16",
]
REAL_BASES = ["qwen_base", "eurobert_base"]
ADAPTER_FILES = ["adapter_config.json", "adapter_model.safetensors"]


def _config(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


# ---------------------------------------------------------------------------
# layout (a)


@pytest.mark.parametrize("name", TINY_BASES + REAL_BASES)
def test_base_layout_files(request, name):
    base = request.getfixturevalue(name)
    files = {p.name for p in base.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "config_sentence_transformers.json",
        "modules.json",
        "modeling_jina_embeddings_v5.py",
        "configuration_jina_embeddings_v5.py",
        "custom_st.py",
        "adapters",
    } <= files
    assert sorted(p.name for p in (base / "adapters").iterdir()) == sorted(TASKS)
    for task in TASKS:
        assert (
            sorted(p.name for p in (base / "adapters" / task).iterdir())
            == ADAPTER_FILES
        )
    st = json.loads((base / "config_sentence_transformers.json").read_text())
    assert st["prompts"] == {"query": "Query: ", "document": "Document: "}
    assert st["default_prompt_name"] == "document"


@pytest.mark.parametrize("name", TINY_BASES + REAL_BASES)
def test_base_weight_keys_are_unprefixed(request, name):
    base = request.getfixturevalue(name)
    weights = read_safetensors(base / "model.safetensors")
    config = _config(base)
    assert "embed_tokens.weight" in weights and "norm.weight" in weights
    assert not any(k.startswith(("model.", "lm_head.")) for k in weights)
    assert weights["embed_tokens.weight"].shape == (
        config["vocab_size"],
        config["hidden_size"],
    )
    assert ("layers.0.self_attn.q_norm.weight" in weights) == (
        backbone_arch(base) == "qwen3"
    )
    # norms are visibly not 1, so a missing or misplaced norm changes the output
    assert weights["layers.0.input_layernorm.weight"].astype(np.float32).std() > 0.1


def test_odd_head_shapes(qwen_base_odd):
    w = read_safetensors(qwen_base_odd / "model.safetensors")
    assert w["layers.0.self_attn.q_proj.weight"].shape == (48, 64)  # 3 heads x 16 != 64
    assert w["layers.0.self_attn.k_proj.weight"].shape == (16, 64)
    assert w["layers.0.self_attn.o_proj.weight"].shape == (64, 48)
    assert w["layers.0.self_attn.q_norm.weight"].shape == (16,)
    config = _config(qwen_base_odd)
    assert (config["num_attention_heads"], config["num_key_value_heads"]) == (3, 1)
    assert config["head_dim"] == 16


@pytest.mark.parametrize(
    "name, r, alpha, rslora",
    [
        ("tiny_qwen_base", 4, 8, False),
        ("qwen_base_odd", 4, 12, False),
        ("eurobert_base_gqa", 8, 4, False),
        ("tiny_qwen_rslora", 4, 8, True),
    ],
)
def test_adapters_follow_jina_naming(request, name, r, alpha, rslora):
    base = request.getfixturevalue(name)
    n_layers = _config(base)["num_hidden_layers"]
    for task in TASKS:
        folder = base / "adapters" / task
        cfg = json.loads((folder / "adapter_config.json").read_text())
        assert cfg["peft_type"] == "LORA" and cfg["task_type"] == "FEATURE_EXTRACTION"
        assert (cfg["r"], cfg["lora_alpha"], cfg["use_rslora"]) == (r, alpha, rslora)
        assert sorted(cfg["target_modules"]) == sorted(LORA_TARGETS)
        assert (
            cfg["bias"] == "none" and not cfg["use_dora"] and not cfg["fan_in_fan_out"]
        )
        tensors = read_safetensors(folder / "adapter_model.safetensors")
        assert len(tensors) == n_layers * 7 * 2
        a = tensors["base_model.model.layers.0.self_attn.q_proj.lora_A.weight"]
        b = tensors["base_model.model.layers.0.self_attn.q_proj.lora_B.weight"]
        assert a.shape[0] == r and b.shape[1] == r  # PEFT: A [r, in], B [out, r]
        assert "base_model.model.layers.0.mlp.down_proj.lora_B.weight" in tensors
        assert np.abs(a).min() > 0 and np.abs(b).sum() > 0  # random, not PEFT's zero B


def test_adapters_differ_between_tasks(tiny_qwen_base):
    key = "base_model.model.layers.1.mlp.up_proj.lora_B.weight"
    b = [
        read_safetensors(tiny_qwen_base / "adapters" / t / "adapter_model.safetensors")[
            key
        ]
        for t in TASKS
    ]
    for x, y in combinations(b, 2):
        assert not np.array_equal(x, y)


def test_config_parameters_form(tiny_qwen_base):
    config = _config(tiny_qwen_base)
    assert config["model_type"] == "jina_embeddings_v5"
    assert config["architectures"] == ["JinaEmbeddingsV5Model"]
    assert config["task_names"] == list(TASKS)
    assert "rope_theta" not in config
    assert config["rope_parameters"] == {
        "rope_theta": 3_500_000.0,
        "rope_type": "default",
    }
    assert config["rms_norm_eps"] == 1e-6 and config["tie_word_embeddings"] is True


def test_config_top_form(tiny_eurobert_base):
    config = _config(tiny_eurobert_base)
    assert config["model_type"] == "jina_embeddings_v5"
    assert config["task_names"] == list(TASKS)
    assert "rope_parameters" not in config
    assert config["rope_theta"] == 1_000_000.0 and config["rope_scaling"] is None
    assert config["is_decoder"] is False
    assert "head_dim" not in config  # like nano's file: derive hidden / heads
    assert config["rms_norm_eps"] == 1e-5 and config["tie_word_embeddings"] is False


def test_config_top_linear_form(eurobert_base_gqa):
    config = _config(eurobert_base_gqa)
    assert config["rope_scaling"] == {"type": "linear", "factor": 1.0}
    assert (config["num_attention_heads"], config["num_key_value_heads"]) == (4, 2)


def test_bf16_base_files(tiny_eurobert_base_bf16):
    assert file_dtypes(tiny_eurobert_base_bf16 / "model.safetensors") == {"bfloat16"}
    adapter = tiny_eurobert_base_bf16 / "adapters/retrieval/adapter_model.safetensors"
    assert file_dtypes(adapter) == {"bfloat16"}
    assert (
        _config(tiny_eurobert_base_bf16)["torch_dtype"] == "float32"
    )  # like nano's lie


# ---------------------------------------------------------------------------
# reference


@pytest.mark.reference
@pytest.mark.parametrize("name", TINY_BASES + REAL_BASES)
def test_reference_unit_norm_and_tasks_differ(request, name):
    base = request.getfixturevalue(name)
    emb = {
        t: reference_embeddings(base, TEXTS, task=t, prompt="Query: ") for t in TASKS
    }
    for t, e in emb.items():
        assert e.dtype == np.float32 and e.shape == (
            len(TEXTS),
            _config(base)["hidden_size"],
        )
        np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    for s, t in combinations(TASKS, 2):
        assert _cos(emb[s], emb[t]).max() < 0.99, (s, t)
    # texts are told apart too (context matters, not only the last token)
    e = emb["retrieval"]
    assert _cos(e[1], e[2]) < 0.99


@pytest.mark.reference
@pytest.mark.parametrize(
    "name", ["tiny_qwen_base", "tiny_eurobert_base", "eurobert_base_gqa"]
)
def test_reference_padding_invariance(request, name):
    # batched (right-padded) equals one at a time: the reference masks pads correctly
    base = request.getfixturevalue(name)
    batch = reference_embeddings(base, TEXTS, task="retrieval", prompt="Document: ")
    for i, text in enumerate(TEXTS):
        alone = reference_embeddings(
            base, [text], task="retrieval", prompt="Document: "
        )
        assert _cos(batch[i], alone[0]) > 0.99999


@pytest.mark.reference
def test_reference_truncate_dim(tiny_qwen_base):
    full = reference_embeddings(
        tiny_qwen_base, TEXTS, task="clustering", prompt="Document: "
    )
    cut = reference_embeddings(
        tiny_qwen_base, TEXTS, task="clustering", prompt="Document: ", truncate_dim=16
    )
    assert cut.shape == (len(TEXTS), 16)
    np.testing.assert_allclose(np.linalg.norm(cut, axis=1), 1.0, atol=1e-5)
    expected = full[:, :16] / np.linalg.norm(full[:, :16], axis=1, keepdims=True)
    np.testing.assert_allclose(cut, expected, atol=1e-5)


@pytest.mark.reference
def test_wrong_rope_theta_is_detectable(
    tiny_qwen_base, tiny_tokenizer_eos, make_checkpoint
):
    # same seed, same weights, Qwen3's own theta 1e6 instead of 3.5e6
    other = make_checkpoint(
        build_base,
        "qwen3",
        tokenizer=tiny_tokenizer_eos,
        config_overrides={"rope_theta": 1e6},
    )
    a = read_safetensors(tiny_qwen_base / "model.safetensors")
    b = read_safetensors(other / "model.safetensors")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    texts = [TEXTS[2], TEXTS[2] + " " + TEXTS[0]]
    e1 = reference_embeddings(tiny_qwen_base, texts, task="retrieval", prompt="Query: ")
    e2 = reference_embeddings(other, texts, task="retrieval", prompt="Query: ")
    assert _cos(e1, e2).max() < 0.9999


def test_make_checkpoint_caches(make_checkpoint, tiny_tokenizer):
    a = make_checkpoint(build_base, "eurobert", tokenizer=tiny_tokenizer, seed=9)
    b = make_checkpoint(build_base, "eurobert", tokenizer=tiny_tokenizer, seed=9)
    assert a == b


# ---------------------------------------------------------------------------
# layouts (b), (c), (d)

PREFIXES = ["tiny_qwen", "tiny_eurobert", "qwen", "eurobert"]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_merged_layout(request, prefix):
    base = request.getfixturevalue(f"{prefix}_base")
    merged = request.getfixturevalue(f"{prefix}_merged")
    assert not (merged / "adapters").exists()
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "config_sentence_transformers.json",
    } <= {p.name for p in merged.iterdir()}
    config = _config(merged)
    assert config["model_type"] == "jina_embeddings_v5" and "task_names" not in config
    weights = read_safetensors(merged / "model.safetensors")
    assert weights.keys() == read_safetensors(base / "model.safetensors").keys()
    assert file_dtypes(merged / "model.safetensors") == file_dtypes(
        base / "model.safetensors"
    )


@pytest.mark.reference
@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("layout", ["merged", "mlx_task"])
def test_merged_layouts_match_peft(request, prefix, layout):
    """The numpy merge of the builders, through the reference model, gives what the base
    repo with peft's merge_and_unload gives."""
    base = request.getfixturevalue(f"{prefix}_base")
    folder = request.getfixturevalue(f"{prefix}_{layout}")
    task = MERGED_TASKS[backbone_arch(base)]
    want = reference_embeddings(base, TEXTS, task=task, prompt="Query: ")
    got = reference_embeddings(folder, TEXTS, task=None, prompt="Query: ")
    exact = file_dtypes(folder / "model.safetensors") == {"float32"}
    assert _cos(want, got).min() >= (0.99999 if exact else 0.999)


@pytest.mark.reference
def test_numpy_merge_equals_peft_merge_and_unload(tiny_qwen_base, tiny_eurobert_base_bf16):
    from builders.layouts import merged_weights
    from builders.reference import merged_state_dict

    for base in (tiny_qwen_base, tiny_eurobert_base_bf16):
        ours = merged_weights(base, "text-matching")
        theirs = merged_state_dict(base, "text-matching")
        assert ours.keys() == theirs.keys()
        for key, value in theirs.items():
            np.testing.assert_allclose(ours[key], value.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.reference
@pytest.mark.parametrize("arch", ["qwen3", "eurobert"])
@pytest.mark.parametrize("vocab_size", [512, 128_256, 151_936])
def test_configs_are_what_transformers_saves(arch, vocab_size):
    """hf_config writes, without transformers, what transformers' save_pretrained
    writes for the same settings (its version string aside)."""
    import transformers
    from builders.configs import TINY, hf_config

    ours = hf_config(arch, vocab_size=vocab_size, num_hidden_layers=3)
    theirs_class = {"qwen3": transformers.Qwen3Config, "eurobert": transformers.EuroBertConfig}
    kw = {k: v for k, v in ours.items() if k not in ("model_type", "transformers_version")}
    theirs = json.loads(theirs_class[arch](**kw).to_json_string(use_diff=True))
    theirs.pop("_attn_implementation_autoset", None)
    ours.pop("transformers_version"), theirs.pop("transformers_version")
    assert ours == theirs
    assert TINY[arch]["hidden_size"] == ours["hidden_size"]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_mlx_task_layout(request, prefix):
    base = request.getfixturevalue(f"{prefix}_base")
    folder = request.getfixturevalue(f"{prefix}_mlx_task")
    arch = backbone_arch(base)
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json",
        "model.py",
        "model.safetensors",
        "tokenizer.json",
    ]
    config = _config(folder)
    assert config["model_type"] == arch and config["architectures"] is None
    assert "rope_parameters" not in config and config["rope_theta"] > 0
    weights = read_safetensors(folder / "model.safetensors")
    assert all(k.startswith("model.") for k in weights)
    assert "model.embed_tokens.weight" in weights
    dtype = "float32" if arch == "qwen3" else "float16"
    assert file_dtypes(folder / "model.safetensors") == {dtype}


@pytest.mark.parametrize("prefix", PREFIXES)
def test_mlx_unified_layout(request, prefix):
    base = request.getfixturevalue(f"{prefix}_base")
    folder = request.getfixturevalue(f"{prefix}_mlx_unified")
    with_config = backbone_arch(base) == "qwen3"
    assert {
        "config.json",
        "model.py",
        "utils.py",
        "model.safetensors",
        "tokenizer.json",
        "adapters",
    } == {p.name for p in folder.iterdir()}
    config = _config(folder)
    assert config["model_type"] == backbone_arch(base) and "task_names" not in config
    assert "rope_theta" in config and "rope_parameters" not in config
    assert len((folder / "config.json").read_text()) < 500  # minimal, like nano's 378 B
    weights = read_safetensors(folder / "model.safetensors")
    assert all(k.startswith("model.") for k in weights)
    assert file_dtypes(folder / "model.safetensors") == {"float16"}
    for task in TASKS:
        names = sorted(p.name for p in (folder / "adapters" / task).iterdir())
        assert names == (
            ADAPTER_FILES if with_config else ["adapter_model.safetensors"]
        )
        ours = read_safetensors(
            folder / "adapters" / task / "adapter_model.safetensors"
        )
        theirs = read_safetensors(
            base / "adapters" / task / "adapter_model.safetensors"
        )
        assert ours.keys() == theirs.keys()
        for k, v in theirs.items():
            assert np.array_equal(ours[k], v.astype(np.float16))


@pytest.mark.reference
@pytest.mark.parametrize("prefix", ["tiny_qwen", "qwen"])
def test_mlx_unified_is_close_to_the_reference(request, prefix):
    """float16 base + adapter still close to the float32 reference."""
    base = request.getfixturevalue(f"{prefix}_base")
    folder = request.getfixturevalue(f"{prefix}_mlx_unified")
    want = reference_embeddings(base, TEXTS, task="text-matching", prompt="Document: ")
    got = reference_embeddings(folder, TEXTS, task="text-matching", prompt="Document: ")
    assert _cos(want, got).min() >= 0.999


def test_mlx_task_can_carry_lm_head(make_checkpoint, tiny_qwen_base):
    from builders.layouts import build_mlx_task

    folder = make_checkpoint(
        build_mlx_task, tiny_qwen_base, "retrieval", with_lm_head=True
    )
    weights = read_safetensors(folder / "model.safetensors")
    assert np.array_equal(weights["lm_head.weight"], weights["model.embed_tokens.weight"])


# ---------------------------------------------------------------------------
# tokenizers


def test_real_qwen_tokenizer(qwen_tokenizer):
    assert reference_token_ids(qwen_tokenizer, ["hi"], prompt="Query: ") == [
        [2859, 25, 15588]
    ]


def test_real_llama_tokenizer(llama_tokenizer):
    ids = reference_token_ids(llama_tokenizer, ["hi"], prompt="Query: ")
    assert ids == [[128000, 2929, 25, 15960]]  # BOS in front, no EOS


def test_tiny_tokenizers(tiny_tokenizer, tiny_tokenizer_eos, tiny_tokenizer_bos_eos):
    text = ["Paris is the capital of France."]
    plain = reference_token_ids(tiny_tokenizer, text, prompt="Query: ")[0]
    assert reference_token_ids(tiny_tokenizer_eos, text, prompt="Query: ")[
        0
    ] == plain + [2]
    both = reference_token_ids(tiny_tokenizer_bos_eos, text, prompt="Query: ")[0]
    assert both == [1] + plain + [2]
    assert max(plain) < 512 and min(plain) > 3  # ordinary text gives no special ids
    # truncation keeps room for the specials
    cut = reference_token_ids(
        tiny_tokenizer_bos_eos, text, prompt="Query: ", max_length=5
    )[0]
    assert cut == [1] + plain[:3] + [2]


def test_tiny_tokenizer_is_deterministic(tmp_path, tiny_tokenizer_eos):
    again = tiny_tokenizer_json(tmp_path / "tokenizer.json", add_eos=True)
    assert again.read_bytes() == tiny_tokenizer_eos.read_bytes()


# ---------------------------------------------------------------------------
# remote-code sentinels


def test_dummy_python_files_exist_and_were_not_run(
    tiny_qwen_base, tiny_qwen_mlx_task, tiny_qwen_mlx_unified
):
    for folder, names in [
        (tiny_qwen_base, ["modeling_jina_embeddings_v5.py", "custom_st.py"]),
        (tiny_qwen_mlx_task, ["model.py"]),
        (tiny_qwen_mlx_unified, ["model.py", "utils.py"]),
    ]:
        for name in names:
            assert SENTINEL in (folder / name).read_text()
        assert executed_sentinels(folder) == []


def test_dummy_python_leaves_sentinel_when_run(tmp_path, tiny_qwen_mlx_task):
    shutil.copyfile(tiny_qwen_mlx_task / "model.py", tmp_path / "model.py")
    with pytest.raises(RuntimeError, match="model-folder code was executed"):
        runpy.run_path(str(tmp_path / "model.py"))
    assert executed_sentinels(tmp_path) == [tmp_path / SENTINEL]
