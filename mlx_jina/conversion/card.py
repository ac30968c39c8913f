"""The model card (README.md) a converted folder carries, through huggingface_hub's
ModelCard, so the Hub shows its license, library and base model."""

import json

from huggingface_hub import ModelCard, ModelCardData

from . import quality


def model_card(
    info: dict, report: dict | None, name: str, *, backbone: str = "qwen3", fmt: str = "mlx"
) -> str:
    """A short README.md: what the folder holds, how to load it (Python; Swift for a
    Qwen3 MLX folder), quality, license."""
    source = info["source"]
    local = "/" not in source  # a folder is recorded by its name only; a Hub id is OWNER/NAME
    st = fmt == "sentence-transformers"
    swift = backbone == "qwen3" and not st
    tags = ["mlx-jina", "jina-embeddings-v5", backbone, "sentence-similarity", "embeddings"]
    tags = ["sentence-transformers", *tags] if st else ["mlx", *tags]
    data = ModelCardData(
        license="cc-by-nc-4.0",
        library_name="sentence-transformers" if st else "mlx",
        pipeline_tag="feature-extraction",
        tags=tags + (["mlx-swift"] if swift else []),
        base_model=None if local else source,  # the Hub's model tree links it
    )
    link = f"`{source}`" if local else f"[{source}](https://huggingface.co/{source})"
    weights = report["weights"] if report else "float"
    made = "a sentence-transformers folder" if st else "MLX"
    lines = [
        f"# {name}",
        "",
        f"{link} for the `{info['task']}` task, converted to {made} by mlx-jina "
        f"{info['version']} (source revision {info['revision'] or 'unknown'}). Weights: "
        f"{weights}; a base repo's LoRA adapter is merged in float32 before quantizing.",
        "",
        *(st_usage(info, name) if st else python_usage(name)),
        "",
        f"Prompts: {json.dumps(info['prompts'], ensure_ascii=False)}. Matryoshka sizes: "
        f"{', '.join(map(str, info['dims']))}. Context: {info['max_length']} tokens.",
        "",
        *(swift_usage(info, name) if swift else []),
        *(no_swift(backbone) if not swift and not st else []),
    ]
    if report:
        lines += [
            "## Quantization quality",
            "",
            f"Measured by `convert` on its built-in set ({report['texts']} texts in "
            f"{len(quality.LANGUAGES)} languages, short queries to ~2K-token passages):",
            "",
            quality.markdown_table([report]),
            "",
        ]
    lines += [
        "## License",
        "",
        "The weights are Jina AI's and licensed under CC BY-NC 4.0 (non-commercial use only); "
        "see the original model card. The conversion code (mlx-jina) is Apache-2.0.",
        "",
    ]
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)))


def python_usage(name: str) -> list[str]:
    return [
        "```python",
        "import mlx_jina",
        "",
        f'model = mlx_jina.load("{name}")',
        'vectors = model.encode_query(["Which planet is known as the Red Planet?"])',
        "```",
    ]


def st_usage(info: dict, name: str) -> list[str]:
    return [
        "```python",
        "from sentence_transformers import SentenceTransformer",
        "",
        f'model = SentenceTransformer("{name}")  # no trust_remote_code needed',
        'queries = model.encode(["Which planet is known as the Red Planet?"], prompt_name="query")',
        'documents = model.encode(["Mars is often called the Red Planet."], prompt_name="document")',
        "```",
    ]


def swift_usage(info: dict, name: str) -> list[str]:
    """MLX Swift (MLXEmbedders) loading this folder; the app adds the prompts itself."""
    query, document = info["prompts"]["query"], info["prompts"]["document"]
    return [
        "## Swift (MLX Swift's MLXEmbedders)",
        "",
        "The folder is one MLXEmbedders loads as it is: `model_type` `qwen3`, one weight "
        "file, last-token pooling in `1_Pooling/config.json`. Prompts are the app's job: "
        f"put `{json.dumps(query)}` before queries and `{json.dumps(document)}` before "
        "documents. Pass the attention mask by position (the last real token may be "
        "the pad token), and normalize without a layer norm.",
        "",
        "```swift",
        "import MLX",
        "import MLXEmbedders",
        "import MLXHuggingFace",
        "import Tokenizers",
        "",
        f'let folder = URL(filePath: "/path/to/{name.rsplit("/", 1)[-1]}")',
        "let container = try await EmbedderModelFactory.shared.loadContainer(",
        "    from: folder, using: #huggingFaceTokenizerLoader())",
        "",
        "let texts = [",
        f'    {json.dumps(query + "Which planet is known as the Red Planet?", ensure_ascii=False)},',
        f'    {json.dumps(document + "Mars is often called the Red Planet.", ensure_ascii=False)},',
        "]",
        "let vectors = await container.perform { context -> [[Float]] in",
        "    let ids = texts.map { context.tokenizer.encode(text: $0, addSpecialTokens: true) }",
        "    let width = ids.map(\\.count).max() ?? 1",
        "    let pad = context.tokenizer.eosTokenId ?? 0",
        "    let tokens = stacked(ids.map { row in",
        "        MLXArray(row + Array(repeating: pad, count: width - row.count)) })",
        "    let mask = stacked(ids.map { row in",
        "        MLXArray((0 ..< width).map { Int32($0 < row.count ? 1 : 0) }) })",
        "    let hidden = context.model(",
        "        tokens, positionIds: nil, tokenTypeIds: nil, attentionMask: mask)",
        "    let pooled = context.pooling(hidden, mask: mask, normalize: true)",
        "    pooled.eval()",
        "    return pooled.map { $0.asArray(Float.self) }",
        "}",
        "```",
        "",
        f"For a smaller vector keep its first {info['dims'][0]} to {info['dims'][-1]} "
        "values (a Matryoshka size above) and normalize again.",
        "",
    ]


def no_swift(backbone: str) -> list[str]:
    return [
        "## Swift",
        "",
        f"MLX Swift's MLXEmbedders has no `{backbone}` model, so Swift apps can't load this "
        "folder; the small (Qwen3) model's folders load there.",
        "",
    ]
