"""The report's paragraphs: corpus, method, what the columns mean, what depth does."""

from checkpoint import NANO, SMALL

from .jobs import JINA
from .suite import Results

# Where each peer's documented use comes from (read in the installed packages).
MLX_EMBEDDINGS_USE = (
    "mlx-embeddings 0.1.0's README (section 'Batch Processing', `get_embedding`) "
    "tokenizes a list of texts with `tokenizer.batch_encode_plus(texts, "
    'return_tensors="mlx", padding=True, truncation=True, max_length=512)` and takes '
    "`model(input_ids, attention_mask=...).text_embeds`: the whole list is one batch "
    "padded to its longest text. Given a corpus, we pass it 32 texts at a time in input "
    "order (the README's max_length=512 would cut our documents; we pass the same ids "
    "as every engine instead), through `mlx_embeddings.utils.load_model`"
)
ST_USE = (
    "sentence-transformers' `encode` sorts texts by character length, longest first, "
    "and runs batches of 32 (its default batch_size), each padded to its longest; we "
    "run the backbone (`Qwen3Model` / `EuroBertModel`) that way, pooling the last token "
    "and normalizing as jina-embeddings-v5 does"
)


def plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else words or word + 's'}"


def corpus_lines(res: Results) -> list[str]:
    s, work = res.settings.spec, res.works["small"]
    lengths = [len(r) for r in work.ids]
    sub = work.subset
    heads = res.models["small"].config["num_attention_heads"]
    return [
        f"Corpus: {plural(len(lengths), 'text')}, {sum(lengths):,} tokens (small's "
        f"tokenizer, prompt included): {plural(s.queries, 'query', 'queries')} of 6–14 "
        f"words, {plural(s.passages, 'passage')} of 100–500 tokens, "
        f"{plural(s.docs, 'document')} of {s.doc_tokens:,} tokens, shuffled; longest "
        f"{max(lengths):,} tokens. Documents stay this short because mlx-embeddings as "
        "documented pads the batch of 32 holding one to its length and builds (32, "
        f"{heads}, L, L) float32 score matrices per layer: its memory (MLX peak in the "
        "table below) and its time grow with L², and so does torch's time in "
        "sentence-transformers' batches. Subset (the 16-bit and quantized rows, whose MLX CPU matmuls "
        f"run at 2–4 GFLOP/s): the first {plural(s.subset_queries, 'query', 'queries')} "
        f"and {plural(s.subset_passages, 'passage')} in input order, "
        f"{plural(len(sub), 'text')}, {work.tokens(sub):,} tokens.",
    ]


def method_lines(res: Results) -> list[str]:
    s = res.settings
    grouped = " (--smoke: one process per engine)" if s.grouped else ""
    return [
        f"Method: {plural(s.rounds, 'interleaved round')}; round r first samples the "
        "matmul rates (a fresh MLX process, then a fresh torch process), then runs every "
        f"row once, each in a fresh `python` process{grouped}, in an order rotated by "
        "r/rounds. A process loads its model, warms up on the 4 shortest texts, times one "
        "pass over the corpus (tokens/s = real tokens / wall time), then times "
        f"{s.query_calls + 2} single queries (p50 of the last {s.query_calls}). Ratios "
        "divide medians; in brackets the lowest and highest ratio within one round. "
        "mlx_jina runs `encode(texts)` as users call it (tokenization included; its "
        "batch plan: length-sorted, at most 32 texts and 8,192 padded tokens, padding "
        "bounded); the peers run the same token ids, pre-tokenized, once as documented "
        "and once fed mlx_jina's batches.",
        "",
        f"Documented uses: {MLX_EMBEDDINGS_USE}. {ST_USE}; torch runs float32 on "
        f"{s.torch_threads} thread(s).",
    ]


def columns_lines(res: Results) -> list[str]:
    rows = res.slow_rates.get("rows")
    return [
        "Padding efficiency: real tokens / padded tokens computed. Executed GFLOP/s: the "
        "FLOPs of the matrix products each engine executes (the peers: every layer at "
        "every token, full score matrices; mlx_jina: causal attention in query blocks, "
        "the last layer at the pooled token) over wall time; matmul-rate fraction: that "
        "over the same round's probe rate for its backend and dtype. The 16-bit and "
        f"quantized rows divide by rates sampled once, at {rows} rows and that moment's "
        "load: a fraction over 100% there means the sample ran slower than the row did, "
        "not a row beyond peak. MLX peak: MLX's own counter during the timed pass, "
        "weights included; process peak RSS: VmHWM of the whole process.",
    ]


def depth_lines(res: Results, rows: list) -> list[str]:
    """How much of mlx_jina's lead is the reduced depth (its pooled last layer)."""
    from .batch_plans import our_plan
    from .flops import pooled_layer_saving

    published = {"small": SMALL["num_hidden_layers"], "nano": NANO["num_hidden_layers"]}
    parts, per_flop = [], []
    by_key = {r.job.key: r for r in rows}
    for name, m in res.models.items():
        work = res.works[name]
        lengths, batches = [len(r) for r in work.ids], our_plan(work.ids)
        here = pooled_layer_saving(m.config, m.causal, batches, lengths)
        deep = dict(m.config, num_hidden_layers=published[name])
        full = pooled_layer_saving(deep, m.causal, batches, lengths)
        parts.append(
            f"{name} {here:.0%} at {m.layers} layers, {full:.1%} at {published[name]}"
        )
        jina = by_key.get(f"{name}-{JINA}-float32")
        for peer in ("mlx-embeddings-plan", "transformers-plan"):
            other = by_key.get(f"{name}-{peer}")
            if jina and other and jina.gflops and other.gflops:
                label = "mlx-embeddings" if peer.startswith("mlx") else "torch"
                per_flop.append(f"{name} {jina.gflops / other.gflops:.2f}× {label}")
    return [
        "Depth: mlx_jina runs the last layer at the pooled token only (keys and values "
        "at every token), which skips this share of a full forward's FLOPs on this "
        f"corpus: {'; '.join(parts)}. At reduced depth that inflates its ratios against "
        "the peers, which compute every layer at every token. Per executed FLOP "
        "(executed GFLOP/s, both with our batch plan), closer to what full-depth "
        f"models would show, mlx_jina float32 runs at {', '.join(per_flop) or '—'}.",
    ]
