"""Embedding classes for RAG frameworks, one module each, imported only when named:

    from mlx_jina.integrations.langchain import MLXJinaEmbeddings      # pip install 'mlx-jina[langchain]'
    from mlx_jina.integrations.llama_index import MLXJinaEmbedding     # pip install 'mlx-jina[llama-index]'
    from mlx_jina.integrations.chroma import MLXJinaEmbeddingFunction  # pip install 'mlx-jina[chroma]'

This package imports nothing itself: `import mlx_jina` never loads a framework.
"""
