"""The pieces of bench_encode.py, in the order a run uses them.

shapes.py   the reduced models and their random checkpoints
corpus.py   the mixed corpus and the token ids every engine gets
measure.py  FLOPs, matmul rates, p50 timing
engines.py  a class per engine (mlx_jina, mlx-embeddings, transformers); `run_engine`
sections.py the measurements beyond the table: 4K batches, one query, long inputs
suite.py    the whole run, in order
report.py   the Markdown report

These modules import `checkpoint` and `internals` from benchmarks/, which is on sys.path
when a script there runs.
"""
