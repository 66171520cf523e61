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


def prepare(target: Any, name: str) -> Callable[..., Any]:
    # An object can serve both ASGI and RSGI: `__rsgi__` wins when present.
    return require_callable(getattr(target, '__rsgi__', target), name)


def startup(target: Any, loop: asyncio.AbstractEventLoop) -> None:
    hook = getattr(target, '__rsgi_init__', None)
    if hook is not None:
        hook(loop)


def shutdown(target: Any, loop: asyncio.AbstractEventLoop) -> None:
    hook = getattr(target, '__rsgi_del__', None)
    if hook is not None:
        hook(loop)


def serve(
    worker: Any, socket: Any, bridge: Any, app: Any, loop: Any, logger: Any, on_stopped: Any, options: Any
) -> None:
    worker.serve_rsgi(socket, bridge, app, loop, logger, on_stopped)
