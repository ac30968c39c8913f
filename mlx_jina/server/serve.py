"""`mlx-jina serve`: the models to offer, the first one loaded, served with uvicorn."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

from .app import check_api_key, create_app, uvicorn_config
from .durations import DEFAULT_KEEP_ALIVE, FOREVER
from .guards import default_allowed_hosts, is_loopback
from .limits import DEFAULT_MAX_LOADED, Limits
from .model_specs import cached_specs, served_name, serving_adapter, specs_from
from .registry import ModelRegistry
from .unix_socket import check_unix_socket_path, run_server

__all__ = ["FOREVER", "build_registry", "serve", "served_name"]


def build_registry(
    source: str | Sequence[str],
    *,
    task: str | None = None,
    multitask: bool = False,
    bits: int | None = None,
    dtype: str | None = None,
    revision: str | None = None,
    model_name: str | None = None,
    limits: Limits | None = None,
    split_special_tokens: bool = False,
    accept_token_ids: bool = False,
    models_file: str | Path | None = None,
    keep_alive: float = DEFAULT_KEEP_ALIVE,
    max_loaded_models: int = DEFAULT_MAX_LOADED,
    offer_cached: bool = True,
    cache_dir: str | Path | None = None,
) -> ModelRegistry:
    """The registry `serve` serves, nothing loaded yet; see `serve` for the arguments
    (`cache_dir`: the Hugging Face cache to list, None: huggingface_hub's). Every model
    named is checked here: a bad setting or a missing folder raises ValueError or
    FileNotFoundError naming it."""
    task = serving_adapter(task)
    settings = dict(task=task, multitask=multitask, bits=bits, dtype=dtype, revision=revision)
    entries = [source] if isinstance(source, (str, Path)) else list(source)
    specs = specs_from(map(str, entries), settings, models_file, model_name)
    if not specs:
        raise ValueError("Give a model to serve: -m MODEL (repeat for several) or --models FILE.")
    if offer_cached:
        taken = {n for s in specs for n in (*s.names, s.source)}
        specs += cached_specs(settings, taken, cache_dir)
    return ModelRegistry(
        specs,
        limits=limits or Limits(),
        keep_alive=keep_alive,
        max_loaded=max_loaded_models,
        split_special_tokens=split_special_tokens,
        accept_token_ids=accept_token_ids,
    )


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
    uds: str | None = None,  # a Unix socket to serve on (mode 0600), not host:port
) -> None:
    """Serve `source` (one model, or several: each a folder, a repo id or NAME=SOURCE) with
    uvicorn until interrupted. The first model loads now; the others, and the Jina v5
    models in the Hugging Face cache (`offer_cached`), load on their first request.

    `allowed_hosts=None` accepts loopback names when bound to loopback, any host otherwise.
    `accept_token_ids`: embed token-id inputs (this model's ids); refused by default.
    `model_name`: the first model's served name. `keep_alive`: seconds an idle model stays
    loaded (FOREVER or negative: always). `max_loaded_models`: loaded at once at most.
    """
    import uvicorn

    check_api_key(api_key)  # before the model loads: a bad key is a start-up error
    host = checked_host(host, api_key, uds)  # before the model loads
    limits = limits or Limits()
    registry = build_registry(
        source, task=task, multitask=multitask, bits=bits, dtype=dtype, revision=revision,
        model_name=model_name, limits=limits, split_special_tokens=split_special_tokens,
        accept_token_ids=accept_token_ids, models_file=models_file, keep_alive=keep_alive,
        max_loaded_models=max_loaded_models, offer_cached=offer_cached,
    )  # fmt: skip
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
            run_server(server, uds)
    finally:
        registry.stop_all()


def checked_host(host: str, api_key: str | None, uds: str | None) -> str:
    """The host clients will name: `host`, with a warning if it is open to others without
    a key; with `uds`, "localhost" (what a Unix socket's clients send), once the socket
    path is known to work (else ValueError or FileNotFoundError)."""
    if uds is None:
        warn_if_open(host, api_key)
        return host
    check_unix_socket_path(uds)
    return "localhost"


def warn_if_open(host: str, api_key: str | None) -> None:
    if not is_loopback(host) and api_key is None:
        warnings.warn(
            f"Serving on {host} without --api-key: anyone who can reach it can use it.",
            stacklevel=4,  # serve() -> checked_host() -> here
        )
