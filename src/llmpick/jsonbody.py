r"""Request bodies parsed by orjson: strict UTF-8, and faster than the standard library.

FastAPI reads a JSON body with ``await request.json()`` (``json.loads``), which accepts
lone UTF-16 surrogates (``"\\ud83b"``): such text cannot be encoded for a tokenizer or a
log line, and failed deep inside generation with a 500. orjson refuses it while
parsing, so it is a 400 like any other malformed body; its error is a
``json.JSONDecodeError``, which FastAPI already turns into a validation error.

:class:`OrjsonRoute` is FastAPI's documented hook for this ("custom Request and
APIRoute class"): routers built with ``route_class=OrjsonRoute`` parse with it.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute

__all__ = ["OrjsonRoute"]


class _OrjsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = orjson.loads(await self.body())
        return self._json


class OrjsonRoute(APIRoute):
    """An API route whose JSON body is parsed by orjson."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler, given a request whose ``json()`` is orjson's."""
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            return await handler(_OrjsonRequest(request.scope, request.receive))

        return route
