"""Convert a jina-embeddings-v5-text checkpoint to MLX. Same as `mlx-jina convert`."""

from mlx_jina.conversion import main

if __name__ == "__main__":
    main()
