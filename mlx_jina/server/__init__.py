"""An OpenAI-, Jina- and Ollama-compatible embedding server (`mlx-jina serve`).

limits.py: every limit's default and help; protocol.py: errors, the request schema and
response encoding; worker.py: the thread that runs the model; service.py: a request to a
worker job and back; registry.py: the models offered, loaded on demand and unloaded when
idle; model_specs.py: which models (-m, --models, the Hugging Face cache); durations.py:
keep-alive durations; prompts.py: which prompt a request asks for (task, input_type,
`<name>:query`); app.py: routes, auth and error handlers; ollama.py: Ollama's embedding
API (ollama_protocol.py parses its bodies, ollama_models.py lists models); tei.py:
Hugging Face text-embeddings-inference's API (tei_protocol.py: its bodies and errors);
guards.py and connections.py: what a request and a connection must pass; metrics.py:
Prometheus metrics; serve.py: the uvicorn entry point. Needs the `server` extra
(starlette, uvicorn, prometheus_client), except limits.py, which the CLI reads for its flags.
"""

from importlib import import_module

# name -> module; imported on first use, so `mlx_jina.server.limits` needs no extra.
EXPORTS = {
    "ApiError": "protocol",
    "EmbeddingService": "service",
    "Job": "worker",
    "Limits": "limits",
    "ModelRegistry": "registry",
    "ModelSpec": "registry",
    "Worker": "worker",
    "build_registry": "serve",
    "create_app": "app",
    "serve": "serve",
}
__all__ = sorted(EXPORTS)


def __getattr__(name: str):
    if name not in EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = import_module(f".{EXPORTS[name]}", __name__)
    value = globals()[name] = getattr(module, name)
    if EXPORTS[name] == "serve":  # importing the submodule `serve` bound it here
        globals()["serve"] = module.serve  # the function wins: `from .server import serve`
    return value
