"""The pieces of benchmarks/gpu_check.py (the one-command GPU check).

    setup.py     the shapes (full or --smoke), the checkpoints, the corpus, device facts
    mlx_runs.py  mlx_jina per precision: tokens/s, query latency, peak memory, matmul rate
    long_input.py  child process: peak memory of one long input (an OOM costs one row)
    report.py    gpu_check.json and gpu_check.md
"""
