"""The pieces of bench_encode.py; gpu_check.py runs its models, corpus and engines too.

shapes.py    the models (real widths at 2 layers and full depth; tiny) and checkpoints
corpus.py    the mixed corpus, its subset, the token ids every engine gets; random ids
jobs.py      one job per table row; the batches: input order, sentence-transformers', our plan
suite.py     checkpoints, corpus and jobs in a run folder, then the interleaved rounds
runner.py    (a fresh process per job) warm-up pass, timed passes, its BLAS, as JSON
engines.py   mlx_jina, mlx-embeddings, transformers, and one timed pass
flops.py     the FLOPs each engine executes on a batch
report.py    rounds into rows, then the tables (Markdown) and their figures (JSON)

These modules import `checkpoint` and `internals` from benchmarks/, which is on sys.path
when a script there runs (the runner's processes get it on PYTHONPATH).
"""
