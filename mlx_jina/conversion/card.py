"""The model card (README.md) a converted folder carries, through huggingface_hub's
ModelCard, so the Hub shows its license, library and base model."""

import json

from huggingface_hub import ModelCard, ModelCardData

from . import quality


def model_card(info: dict, report: dict | None, name: str) -> str:
    """A short README.md: what the folder holds, how to load it, quality, license."""
    source = info["source"]
    local = "/" not in source  # a folder is recorded by its name only; a Hub id is OWNER/NAME
    data = ModelCardData(
        license="cc-by-nc-4.0",
        library_name="mlx",
        pipeline_tag="feature-extraction",
        tags=["mlx", "mlx-jina", "sentence-similarity"],
        base_model=None if local else source,  # the Hub's model tree links it
    )
    link = f"`{source}`" if local else f"[{source}](https://huggingface.co/{source})"
    weights = report["weights"] if report else "float"
    lines = [
        f"# {name}",
        "",
        f"{link} for the `{info['task']}` task, converted to MLX by mlx-jina "
        f"{info['version']} (source revision {info['revision'] or 'unknown'}). Weights: "
        f"{weights}; a base repo's LoRA adapter is merged in float32 before quantizing.",
        "",
        "```python",
        "import mlx_jina",
        "",
        f'model = mlx_jina.load("{name}")',
        'vectors = model.encode_query(["Which planet is known as the Red Planet?"])',
        "```",
        "",
        f"Prompts: {json.dumps(info['prompts'], ensure_ascii=False)}. Matryoshka sizes: "
        f"{', '.join(map(str, info['dims']))}. Context: {info['max_length']} tokens.",
        "",
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
