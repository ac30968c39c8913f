"""The pieces of bench_encode.py.

The parent process (bench_encode.py):
shapes.py          the models (real widths at 2 layers and full depth; tiny) and checkpoints
corpus.py          the mixed corpus, its subset, the token ids every engine gets
batch_plans.py     the batches: input order, sentence-transformers', mlx_jina's plan
jobs.py            one job per table row, and each round's order
blas.py            OpenBLAS or the reference BLAS for MLX processes; what a process mapped
rounds.py          interleaved rounds, each job in a fresh process
suite.py           checkpoints, corpus and jobs in a run folder, then the rounds
flops.py           the FLOPs each engine executes on a batch
summary.py         rounds into rows: min / median / max, ratios, GFLOP/s, agreement
report.py          the tables (Markdown) and their figures (JSON)
progress.py        progress lines on stderr

The measured processes (`python -m encode.runner`, PYTHONPATH=benchmarks):
runner.py          one engine's jobs: warm-up pass, timed passes, written as JSON
jina_engine.py, mlx_embeddings_engine.py, torch_engine.py   the engines
passes.py          one timed pass, p50 timing, cosine

These modules import `checkpoint` and `internals` from benchmarks/, which is on sys.path
when a script there runs.
"""
