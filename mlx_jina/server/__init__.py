"""An OpenAI- and Jina-compatible embedding server (`mlx-jina serve`).

protocol.py: limits, errors, the request schema and response encoding; worker.py: the
thread that runs the model; service.py: a request to a worker job and back; prompts.py:
which prompt a request asks for (task, input_type, `<name>:query`); app.py:
routes, auth and error handlers; metrics.py: Prometheus metrics; serve.py: the uvicorn
entry point. Needs the `server` extra (starlette, uvicorn, prometheus_client).
"""

from .app import create_app
from .protocol import ApiError, Limits
from .serve import serve
from .service import EmbeddingService
from .worker import Job, Worker

__all__ = ["ApiError", "EmbeddingService", "Job", "Limits", "Worker", "create_app", "serve"]
