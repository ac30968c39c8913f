"""`mlx-jina serve`: the models to offer, the first one loaded, served with uvicorn."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

from .app import check_api_key, create_app, uvicorn_config
from .durations import FOREVER
from .guards import default_allowed_hosts, is_loopback
from .limits import Limits
from .model_specs import cached_specs, served_name, specs_from
from .registry import DEFAULT_MAX_LOADED, ModelRegistry

__all__ = ["FOREVER", "serve", "served_name"]

# Ollama's default: an idle model gives its memory back after five minutes.
DEFAULT_KEEP_ALIVE = 300.0


def serve(
    source: str | Sequence[str],
    *,
    task: str | None = None,
    multitask: bool = False,
    bits: int | None = None,
    dtype: str | None = None,
    revision: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    api_key: str | None = None,
    model_name: str | None = None,
    limits: Limits | None = None,
    allowed_hosts: Iterable[str] | None = None,
    cors_origins: Iterable[str] = (),
    split_special_tokens: bool = False,
    accept_token_ids: bool = False,
    log_level: str = "info",
    models_file: str | Path | None = None,
    keep_alive: float = DEFAULT_KEEP_ALIVE,
    max_loaded_models: int = DEFAULT_MAX_LOADED,
    offer_cached: bool = True,
) -> None:
    """Serve `source` (one model, or several: each a folder, a repo id or NAME=SOURCE) with
    uvicorn until interrupted. The first model loads now; the others, and the Jina v5
    models in the Hugging Face cache (`offer_cached`), load on their first request.

    `allowed_hosts=None` accepts loopback names when bound to loopback, any host otherwise.
    `accept_token_ids`: embed token-id inputs (this model's ids); refused by default.
    `keep_alive`: seconds an idle model stays loaded (FOREVER: always); a request's
    `keep_alive` wins. `max_loaded_models`: at most this many loaded at once (the least
    recently used idle one is unloaded to make room).
    """
    import uvicorn

    check_api_key(api_key)  # before the model loads: a bad key is a start-up error
    if not is_loopback(host) and api_key is None:
        warnings.warn(
            f"Serving on {host} without --api-key: anyone who can reach it can use it.",
            stacklevel=2,
        )
    limits = limits or Limits()
    settings = dict(task=task, multitask=multitask, bits=bits, dtype=dtype, revision=revision)
    entries = [source] if isinstance(source, (str, Path)) else list(source)
    specs = specs_from(map(str, entries), settings, models_file, model_name)
    if offer_cached:
        specs += cached_specs(settings, {n for s in specs for n in s.names})
    registry = ModelRegistry(
        specs,
        limits=limits,
        keep_alive=keep_alive,
        max_loaded=max_loaded_models,
        split_special_tokens=split_special_tokens,
        accept_token_ids=accept_token_ids,
    )
    registry.preload()  # a model that can't load is a start-up error
    app = create_app(
        registry,
        api_key=api_key,
        allowed_hosts=default_allowed_hosts(host) if allowed_hosts is None else allowed_hosts,
        cors_origins=cors_origins,
    )
    server = uvicorn.Server(
        uvicorn_config(app, host=host, port=port, limits=limits, log_level=log_level)
    )
    try:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a server is stopped
            server.run()
    finally:
        registry.stop_all()


