"""Resumable, sharded embedding of corpora too large to hold in memory.

    reader.py    the input as a stream of checked texts, and its identity
    manifest.py  the job folder: its file names, the manifest, the lock
    settings.py  what decides the vectors, and the check that a folder holds this job
    shards.py    shard files written, verified and joined into one embedding file
    results.py   load_embeddings(): an embedding file, or a finished job's folder
    errors.py    ShardPoolError, which the CLI catches without loading MLX, and its exit
    rounds.py    under mlx.launch: shards over every rank in lockstep rounds (collectives)
    wire.py      the bytes the ranks exchange: texts out, vectors back
    agreement.py before any shard: every rank holds rank 0's model (by content) and settings
    job.py       embed_corpus(): the scheduler, the shard function, progress, summary
    cli.py       the `mlx-jina embed --out-dir` options and handler

Nothing is imported here, so the CLI can name these modules without loading MLX.
"""
