"""Errors in another API's shape: the Ollama and TEI routes answer their clients' error
bodies, not the app's OpenAI-style ones."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response

from .app import Endpoint
from .protocol import ApiError, ClientGone

log = logging.getLogger("mlx_jina.server")


def errors_shaped(endpoint: Endpoint, shape: Callable[[ApiError], Response]) -> Endpoint:
    """The endpoint, its errors answered by `shape` instead of the app's handlers; any
    other exception is logged and answered as a 500 in that shape."""

    @functools.wraps(endpoint)
    async def answered(request: Request) -> Response:
        try:
            return await endpoint(request)
        except ApiError as e:
            return shape(e)
        except ClientGone:
            raise  # nobody to answer; the app logs it as 499
        except Exception as e:  # a request never kills the server; the log has the cause
            log.exception("Internal error on %s", request.url.path)
            return shape(ApiError(500, f"Internal error: {type(e).__name__}: {e}"))

    return answered
