"""All four tasks in one loaded model: base weights once, adapters unmerged, task per call.

Run: python -m pytest tests/test_multitask.py -q
"""

import threading
import warnings

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

import mlx_jina
from _quantize_fixtures import cosines, dequantized_state, float_folder, model_tensors
from builders.layouts import TASKS, build_base
from builders.reference import reference_embeddings
from mlx_jina.models.lora import LoRALinear

TEXTS = [
    "Which planet is known as the Red Planet?",
    "Mars is often called the Red Planet.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "El zorro marrón rápido salta sobre el perro perezoso.",
    "Paris is the capital and largest city of France. " * 5,
]
# Published parameter counts (docs/model-facts.md).
SMALL = dict(backbone=596_049_920, adapter=20_185_088)
NANO = dict(backbone=211_766_016, adapter=6_782_976)


@pytest.mark.parametrize(
    "fixture", ["tiny_qwen_base", "tiny_eurobert_base", "tiny_qwen_mlx_unified"]
)
def test_each_task_equals_the_merged_model(request, fixture):
    """Unmerged LoRA per call gives the merged single-task model's vectors (fp32)."""
    src = request.getfixturevalue(fixture)
    multi = mlx_jina.load(src, multitask=True, dtype="float32")
    assert multi.task is None and sorted(multi.tasks) == sorted(TASKS)
    for task in TASKS:
        merged = mlx_jina.load(src, task=task, dtype="float32")
        for encode in ("encode_query", "encode_document"):
            got = getattr(multi, encode)(TEXTS, task=task)
            want = getattr(merged, encode)(TEXTS)
            assert cosines(got, want).min() >= 0.99999, (task, encode)
    # the adapters differ, so picking the wrong one would be caught
    a = multi.encode_document(TEXTS, task="retrieval")
    b = multi.encode_document(TEXTS, task="clustering")
    assert cosines(a, b).min() < 0.999


@pytest.mark.reference
def test_prompts_follow_the_task_of_each_call(tiny_qwen_base):
    """Retrieval queries get "Query: "; the other tasks use "Document: " for both."""
    multi = mlx_jina.load(tiny_qwen_base, multitask=True)
    want = reference_embeddings(
        tiny_qwen_base, TEXTS, task="retrieval", prompt="Query: "
    )
    assert cosines(multi.encode_query(TEXTS, task="retrieval"), want).min() >= 0.9999
    want = reference_embeddings(
        tiny_qwen_base, TEXTS, task="clustering", prompt="Document: "
    )
    assert cosines(multi.encode_query(TEXTS, task="clustering"), want).min() >= 0.9999
    assert multi.prompts_for("text-matching")["query"] == "Document: "


def test_concurrent_tasks_match_sequential(tiny_qwen_base):
    """Four threads, four tasks, interleaved: each gets exactly its sequential result."""
    multi = mlx_jina.load(tiny_qwen_base, multitask=True)
    sequential = {t: multi.encode_query(TEXTS, task=t) for t in TASKS}
    before = {k: np.array(v) for k, v in tree_flatten(multi.model.parameters())}
    results, errors = {t: [] for t in TASKS}, []
    start = threading.Barrier(len(TASKS))

    def work(task):
        try:
            start.wait()
            for _ in range(5):
                results[task].append(multi.encode_query(TEXTS, task=task, batch_size=2))
        except Exception as e:  # surfaced below, with the task that failed
            errors.append((task, e))

    threads = [threading.Thread(target=work, args=(t,)) for t in TASKS]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    for task in TASKS:
        for got in results[task]:
            np.testing.assert_allclose(got, sequential[task], rtol=0, atol=1e-6)
    # and no weight was touched on the way
    after = dict(tree_flatten(multi.model.parameters()))
    assert all(np.array_equal(before[k], np.array(after[k])) for k in before)


@pytest.mark.reference
@pytest.mark.parametrize("bits", [4, 8])
def test_quantized_base_with_float_adapters(tiny_eurobert_base, tmp_path, bits):
    """A 4/8-bit base plus float adapters computes what the dequantized base plus peft's
    merged adapter computes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # down_proj (96 inputs) stays float
        multi = mlx_jina.load(tiny_eurobert_base, multitask=True, bits=bits)
    q_proj = multi.model.layers[0].self_attn.q_proj
    assert isinstance(q_proj, LoRALinear) and isinstance(
        q_proj.base, nn.QuantizedLinear
    )
    assert (
        q_proj.base.bits == bits and q_proj.lora["retrieval"]["a"].dtype == mx.float32
    )
    state = dequantized_state(model_tensors(multi.model), bits, 64)
    folder = float_folder(tmp_path / "deq", state, tiny_eurobert_base, adapters=True)
    for task in ("retrieval", "text-matching"):
        want = reference_embeddings(folder, TEXTS, task=task, prompt="Document: ")
        assert cosines(multi.encode_document(TEXTS, task=task), want).min() >= 0.9999


def test_task_errors(tiny_qwen_base, tiny_qwen_merged):
    """Unknown or missing tasks, and per-call tasks on single-task models, are refused."""
    multi = mlx_jina.load(tiny_qwen_base, multitask=True)
    with pytest.raises(ValueError, match=r"pass task= to pick one"):
        multi.encode(TEXTS)
    with pytest.raises(
        ValueError, match=r"Unknown task 'summarize'. Available tasks: retrieval"
    ):
        multi.encode(TEXTS, task="summarize")
    single = mlx_jina.load(tiny_qwen_base, task="retrieval")
    assert single.encode(TEXTS[:1], task="retrieval").shape == (1, 64)
    with pytest.raises(
        ValueError,
        match=r"loaded for task 'retrieval', not 'clustering'.*multitask=True",
    ):
        single.encode(TEXTS, task="clustering")
    with pytest.raises(ValueError, match=r"no adapters/ folder.*multitask=True"):
        mlx_jina.load(tiny_qwen_merged, multitask=True)
    with pytest.raises(ValueError, match=r"Unknown task 'nope'"):
        mlx_jina.load(tiny_qwen_base, multitask=True, task="nope")
    # a default task makes task= optional
    default = mlx_jina.load(tiny_qwen_base, multitask=True, task="clustering")
    np.testing.assert_allclose(
        default.encode(TEXTS), multi.encode(TEXTS, task="clustering"), rtol=0, atol=1e-6
    )


def adapter_params(args, r: int) -> int:
    """LoRA parameters of one task: r * (in + out) for each of the 7 projections per layer."""
    h, q, kv = (
        args.hidden_size,
        args.num_attention_heads * args.head_dim,
        args.num_key_value_heads * args.head_dim,
    )
    i = args.intermediate_size
    per_layer = (h + q) * 2 + (h + kv) * 2 + (h + i) * 3
    return r * per_layer * args.num_hidden_layers


def nbytes(model) -> int:
    return sum(v.nbytes for _, v in tree_flatten(model.parameters()))


def memory_saved(
    backbone: int, adapter: int, bytes_per_param: float = 2.0
) -> tuple[float, float]:
    """(GB for one multitask model, GB for four merged models) at `bytes_per_param`."""
    return (
        backbone + 4 * adapter
    ) * bytes_per_param / 1e9, 4 * backbone * bytes_per_param / 1e9


@pytest.mark.parametrize("bits", [None, 4])
def test_memory_formula(make_checkpoint, tiny_tokenizer, bits):
    """Bytes of one multitask model = one merged model + 4 adapters; four merged models
    cost 4x. Checked on a tiny model whose every layer quantizes (intermediate 128)."""
    base = make_checkpoint(
        build_base,
        "qwen3",
        tokenizer=tiny_tokenizer,
        seed=9,
        config_overrides={"intermediate_size": 128},
    )
    multi = mlx_jina.load(base, multitask=True, bits=bits)
    merged = mlx_jina.load(base, task="retrieval", bits=bits)
    adapter = adapter_params(merged.model.args, r=4)
    assert (
        nbytes(multi.model) == nbytes(merged.model) + 4 * adapter * 4
    )  # float32 adapters
    if bits is None:
        assert nbytes(merged.model) == 4 * sum(
            v.size for _, v in tree_flatten(merged.model.parameters())
        )
    else:  # packed weights: bits/8 bytes per weight, plus a float32 scale and bias per 64
        quantized = [
            m
            for _, m in merged.model.named_modules()
            if isinstance(m, (nn.QuantizedLinear, nn.QuantizedEmbedding))
        ]
        weights = sum(
            m.weight.shape[0] * m.weight.shape[1] * 32 // bits for m in quantized
        )
        floats = nbytes(merged.model) - sum(
            m.weight.nbytes + m.scales.nbytes + m.biases.nbytes for m in quantized
        )
        assert nbytes(merged.model) == weights * (bits / 8 + 2 * 4 / 64) + floats

    # The published adapters fit the same formula (r 32), and the README figures follow.
    small = type(
        "A",
        (),
        dict(
            hidden_size=1024,
            num_attention_heads=16,
            head_dim=128,
            num_key_value_heads=8,
            intermediate_size=3072,
            num_hidden_layers=28,
        ),
    )
    nano = type(
        "A",
        (),
        dict(
            hidden_size=768,
            num_attention_heads=12,
            head_dim=64,
            num_key_value_heads=12,
            intermediate_size=3072,
            num_hidden_layers=12,
        ),
    )
    assert (
        adapter_params(small, 32) == SMALL["adapter"]
        and adapter_params(nano, 32) == NANO["adapter"]
    )
    figures = {
        "small 16-bit": memory_saved(**SMALL),
        "nano 16-bit": memory_saved(**NANO),
        # 4-bit base with 16-bit scales and biases per 64 weights; adapters stay 16-bit
        "small 4-bit": (
            (SMALL["backbone"] * (0.5 + 4 / 64) + 4 * SMALL["adapter"] * 2) / 1e9,
            4 * SMALL["backbone"] * (0.5 + 4 / 64) / 1e9,
        ),
    }
    print(
        "\n"
        + "\n".join(
            f"{k}: one multitask {a:.2f} GB, four merged {b:.2f} GB, saves "
            f"{1 - a / b:.0%}"
            for k, (a, b) in figures.items()
        )
    )
    assert [round(v, 2) for v in figures["small 16-bit"]] == [1.35, 4.77]
    assert [round(v, 2) for v in figures["nano 16-bit"]] == [0.48, 1.69]
    assert [round(v, 2) for v in figures["small 4-bit"]] == [0.50, 1.34]
