"""Encoding: `Embedder` (embedder.py) is what users call; the engine (engine.py) plans
batches (batching.py), runs forward passes and turns pooled states into output vectors."""
