"""`mlx-jina serve`: load a model on a worker thread and serve it with uvicorn."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable
from pathlib import Path

from .app import check_api_key, create_app, uvicorn_config
from .guards import default_allowed_hosts, is_loopback
from .limits import Limits
from .worker import Worker


def served_name(source: str) -> str:
    path = Path(source).expanduser()
    return path.resolve().name if path.exists() else str(source)


def serve(
    source: str,
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
) -> None:
    """Load `source` on a worker thread and serve it with uvicorn until interrupted.

    `allowed_hosts=None` accepts loopback names when bound to loopback, any host otherwise.
    `accept_token_ids`: embed token-id inputs (this model's ids); refused by default.
    """
    import uvicorn

    check_api_key(api_key)  # before the model loads: a bad key is a start-up error
    if not is_loopback(host) and api_key is None:
        warnings.warn(
            f"Serving on {host} without --api-key: anyone who can reach it can use it.",
            stacklevel=2,
        )
    from ..loading import load

    limits = limits or Limits()
    worker = Worker(
        lambda: load(
            source, task=task, multitask=multitask, bits=bits, dtype=dtype, revision=revision
        ),
        limits=limits,
    ).start()
    app = create_app(
        worker,
        model_name=model_name or served_name(source),
        api_key=api_key,
        allowed_hosts=default_allowed_hosts(host) if allowed_hosts is None else allowed_hosts,
        cors_origins=cors_origins,
        split_special_tokens=split_special_tokens,
        accept_token_ids=accept_token_ids,
    )
    server = uvicorn.Server(
        uvicorn_config(app, host=host, port=port, limits=limits, log_level=log_level)
    )
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a server is stopped
        server.run()
