"""RSGI: the types apps import, and the glue core calls to serve an RSGI app.

The protocol objects, headers and exceptions are the native classes of `granian._granian`.
`Scope` and `WebsocketMessage` describe what the server passes (attributes and their types,
for annotations); the native scope and message classes are registered as their virtual
subclasses, so `isinstance(scope, Scope)` holds for what the server passes, and an app's
tests can build or subclass them.
"""

import asyncio
from abc import ABC
from enum import Enum
from typing import Any, Callable, Optional, Union

from granian._granian import (
    ProtocolClosed,
    ProtocolError,
    RSGIScope,
    RSGIWebsocketMessage,
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
    RSGIWebsocketProtocol as WebsocketProtocol,
)
from granian._internal import require_callable

__all__ = [
    'HTTPProtocol',
    'HTTPStreamTransport',
    'Headers',
    'ProtocolClosed',
    'ProtocolError',
    'Scope',
    'WebsocketMessage',
    'WebsocketMessageType',
    'WebsocketProtocol',
]


class Scope(ABC):
    """What an RSGI app receives as `scope` (the server's own is `granian._granian.RSGIScope`)."""

    proto: str
    http_version: str
    rsgi_version: str
    server: str
    client: str
    scheme: str
    method: str
    path: str
    query_string: str
    authority: Optional[str]

    @property
    def headers(self) -> Headers:
        """The request headers. Like the other attributes, set only on the server's scopes
        (or by a subclass): reading it here raises AttributeError."""
        raise AttributeError(f"{type(self).__name__!r} object has no attribute 'headers'")


Scope.register(RSGIScope)


class WebsocketMessageType(int, Enum):
    close = 0
    bytes = 1
    string = 2


class WebsocketMessage(ABC):
    """What `await transport.receive()` returns on a websocket (the server's own is
    `granian._granian.RSGIWebsocketMessage`): `kind` compares equal to a `WebsocketMessageType`,
    `data` is bytes, str, or None for `close`."""

    kind: WebsocketMessageType
    data: Union[bytes, str]


WebsocketMessage.register(RSGIWebsocketMessage)

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
