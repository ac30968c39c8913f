"""An OpenAI- and Jina-compatible embedding server (`mlx-jina serve`).

protocol.py: request schema, limits, errors; worker.py: the thread that runs the model;
app.py: routes, auth and the uvicorn entry point; metrics.py: Prometheus counters.
Needs the `server` extra (starlette, uvicorn).
"""

from .app import EmbeddingService, create_app, serve
from .protocol import ApiError, Limits
from .worker import Job, Worker

__all__ = ["ApiError", "EmbeddingService", "Job", "Limits", "Worker", "create_app", "serve"]
