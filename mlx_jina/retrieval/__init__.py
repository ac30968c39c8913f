"""Retrieval: output precisions (precision.py), exact search over float, int8 and binary
corpora (search.py), and embedding files that remember how they were made (store.py)."""
