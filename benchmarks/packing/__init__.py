"""Packing prototype (issue 13, item 5): a batch's texts in one row, each token at its
position within its own text, attention kept inside each text.

    layout.py   pack texts into rows under a token budget; per-token positions; the mask
    forward.py  the packed forward over mlx_jina's own layers (mask or per-text spans)
    corpora.py  the long-tailed corpus (the GPU check's) and short queries
    flops.py    FLOP accounting: padding saved against attention added
    timing.py   padded and packed passes, interleaved: tokens/s, peak memory, cosines
    rule.py     the decision rule, applied to measured tables
    report.py   markdown tables; prose.py the text of results/packing.md

Used by benchmarks/bench_packing.py (CPU), benchmarks/gpu/packing.py (GPU check) and
tests/test_packing_benchmark.py. Nothing here is part of mlx_jina.
"""
