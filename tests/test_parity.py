"""Parity with the upstream stack: transformers Qwen3Model / EuroBertModel + peft merge.

Every published layout, both backbones, every task and both prompts, in float32.
Run: pytest tests/test_parity.py
"""

import mlx.core as mx
import numpy as np
import pytest

import mlx_jina
from builders.files import executed_sentinels
from builders.layouts import TASKS, build_base, build_mlx_unified
from builders.reference import reference_embeddings

pytestmark = pytest.mark.reference

TEXTS = [
    "Which planet is known as the Red Planet?",
    "Mars is often called the Red Planet because iron oxide makes its surface look reddish.",
    "hi",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "火星是太阳系中的第四颗行星。",
    "La tour Eiffel se trouve à Paris. " * 6,
]
FP32_MIN_COS = 0.99999


def prompt_for(task: str | None, name: str) -> str:
    """Jina's prompt table: only retrieval queries get "Query: "."""
    return "Query: " if name == "query" and task in (None, "retrieval") else "Document: "


def min_cos(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.min(np.sum(a * b, axis=1)))


def check(model, folder, task, *, ref_task=None, dtype_note="float32", threshold=FP32_MIN_COS):
    for name in ("query", "document"):
        ours = model.encode(TEXTS, prompt_name=name)
        ref = reference_embeddings(folder, TEXTS, task=ref_task, prompt=prompt_for(task, name))
        cos = min_cos(ours, ref)
        assert cos >= threshold, f"{folder.name} task={task} prompt={name} {dtype_note}: {cos}"


BASES = [
    "qwen_base",  # real Qwen3 tokenizer and vocabulary
    "eurobert_base",  # real Llama-3 tokenizer and vocabulary
    "qwen_base_odd",  # 3 query heads over 1 KV head, lora_alpha 12 != r 4, top-level rope_theta
    "eurobert_base_gqa",  # 4 query / 2 KV heads, r 8 / alpha 4, rope_scaling linear 1.0
    "tiny_qwen_rslora",  # use_rslora: scale alpha / sqrt(r)
    "tiny_qwen_base",  # tokenizer appends EOS
    "tiny_eurobert_base",  # tokenizer adds BOS and EOS
]


@pytest.mark.parametrize("fixture", BASES)
def test_base_layout_every_task_and_prompt(fixture, request):
    """Layout (a): base weights + PEFT adapter merged at load == peft merge_and_unload."""
    base = request.getfixturevalue(fixture)
    outputs = {}
    for task in TASKS:
        model = mlx_jina.load(base, task=task)
        assert model.task == task and set(model.tasks) == set(TASKS)
        check(model, base, task, ref_task=task)
        outputs[task] = model.encode(TEXTS)
    # The adapters really change the vectors, so a merge that did nothing would fail above.
    assert min_cos(outputs["retrieval"], outputs["clustering"]) < 0.999
    assert executed_sentinels(base) == []


@pytest.mark.parametrize("arch", ["tiny_qwen", "tiny_eurobert", "qwen", "eurobert"])
def test_merged_layout(arch, request):
    """Layout (b): a merged per-task repo loads without adapters and matches its weights."""
    folder = request.getfixturevalue(f"{arch}_merged")
    model = mlx_jina.load(folder)
    assert model.task is None and model.tasks == ()
    check(model, folder, None)
    task = "retrieval" if "qwen" in arch else "text-matching"
    check(mlx_jina.load(folder, task=task), folder, task)


@pytest.mark.parametrize("arch", ["tiny_qwen", "tiny_eurobert", "qwen", "eurobert"])
def test_mlx_task_layout(arch, request):
    """Layout (c): `model.`-prefixed keys, model_type qwen3/eurobert, architectures null."""
    folder = request.getfixturevalue(f"{arch}_mlx_task")
    model = mlx_jina.load(folder, dtype="float32")
    check(model, folder, None)
    assert executed_sentinels(folder) == []


@pytest.mark.parametrize("arch", ["tiny_qwen", "qwen"])
def test_mlx_unified_layout(arch, request):
    """Layout (d): float16 `model.`-prefixed base + float16 adapters, merged in float32."""
    folder = request.getfixturevalue(f"{arch}_mlx_unified")
    for task in TASKS:
        model = mlx_jina.load(folder, task=task, dtype="float32")
        check(model, folder, task, ref_task=task)
    assert executed_sentinels(folder) == []


def test_mlx_unified_without_adapter_config(make_checkpoint, tiny_tokenizer):
    """Unified repos may lack adapter_config.json: rank from the tensors, lora_alpha = r."""
    base = make_checkpoint(build_base, "eurobert", tokenizer=tiny_tokenizer, r=4, lora_alpha=4)
    unified = make_checkpoint(
        build_mlx_unified, base, with_adapter_config=False, dtype="float32"
    )
    assert not (unified / "adapters" / "retrieval" / "adapter_config.json").exists()
    for task in TASKS:
        check(mlx_jina.load(unified, task=task), base, task, ref_task=task)


def test_stored_dtype_kept_and_bf16_close(tiny_eurobert_base_bf16):
    """dtype=None keeps bfloat16 (close to the reference); dtype='float32' matches it exactly."""
    folder = tiny_eurobert_base_bf16
    model = mlx_jina.load(folder, task="retrieval")
    assert model.model.layers[0].mlp.up_proj.weight.dtype == mx.bfloat16
    # bfloat16 keeps ~3 significant digits; 0.99 is a loose floor, the fp32 check is the real one.
    check(model, folder, "retrieval", ref_task="retrieval", dtype_note="bf16", threshold=0.99)
    model32 = mlx_jina.load(folder, task="retrieval", dtype="float32")
    check(model32, folder, "retrieval", ref_task="retrieval")


def test_matryoshka_matches_reference(tiny_qwen_base):
    """truncate_dim cuts then renormalizes, exactly as the reference does."""
    model = mlx_jina.load(tiny_qwen_base, task="retrieval")
    ours = model.encode(TEXTS, truncate_dim=32)
    ref = reference_embeddings(tiny_qwen_base, TEXTS, task="retrieval", prompt="Document: ", truncate_dim=32)
    assert min_cos(ours, ref) >= FP32_MIN_COS
