"""RSGI: the types apps import, and the glue core calls to serve an RSGI app."""

import asyncio
from enum import IntEnum
from typing import Any, Callable

from granian._granian import (
    ProtocolClosed,
    ProtocolError,
)
from granian._granian import (
    RSGIHeaders as Headers,
)
from granian._granian import (
    RSGIHTTPProtocol as HTTPProtocol,
)
from granian._granian import (
    RSGIHTTPStreamTransport as HTTPStreamTransport,
)
from granian._granian import (
    RSGIScope as Scope,
)
from granian._internal import require_callable

__all__ = [
    'HTTPProtocol',
    'HTTPStreamTransport',
    'Headers',
    'ProtocolClosed',
    'ProtocolError',
    'Scope',
    'WebsocketMessageType',
]


class WebsocketMessageType(IntEnum):
    close = 0
    bytes = 1
    string = 2


IS_ASYNC = True


class RSGIApp:
    """The loaded target and the callable the worker calls per request."""

    def __init__(self, target: Any, handler: Callable[..., Any]):
        self.target = target
        self.handler = handler


def prepare(target: Any, options: Any) -> RSGIApp:
    # An object can serve both ASGI and RSGI: `__rsgi__` wins when present.
    return RSGIApp(target, require_callable(getattr(target, '__rsgi__', target), options.target))


def startup(app: RSGIApp, loop: asyncio.AbstractEventLoop) -> None:
    hook = getattr(app.target, '__rsgi_init__', None)
    if hook is not None:
        hook(loop)


def shutdown(app: RSGIApp, loop: asyncio.AbstractEventLoop) -> None:
    hook = getattr(app.target, '__rsgi_del__', None)
    if hook is not None:
        hook(loop)


def serve(app: RSGIApp, worker: Any, socket: Any, bridge: Any, loop: Any, logger: Any, on_stopped: Any) -> None:
    worker.serve_rsgi(socket, bridge, app.handler, loop, logger, on_stopped)
