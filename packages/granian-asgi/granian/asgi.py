"""ASGI 3: the lifespan protocol, and the glue core calls to serve an ASGI app.

Scope building, `receive` and `send` for HTTP and websockets are native (`granian._granian`);
the lifespan protocol runs here, on the worker's loop, before and after serving.
"""

import asyncio
from typing import Any, Callable, Dict, Optional

from granian._internal import require_callable
from granian.errors import FatalError
from granian.log import logger

IS_ASYNC = True
ASGI_INFO = {'version': '3.0', 'spec_version': '2.3'}
# How long shutdown waits for the app's lifespan to answer before the worker exits anyway.
SHUTDOWN_TIMEOUT = 30.0

_UNSUPPORTED_WARNING = (
    'ASGI Lifespan errored, continuing without Lifespan support (to avoid Lifespan completely use "asginl" interface)'
)


class LifespanProtocol:
    """The ASGI lifespan protocol between a server and one app: `await startup()` before
    serving, `await shutdown()` after.

    The app's outcome is reported in attributes, never raised:
    - `interrupt`: the app sent `lifespan.startup.failed` / `lifespan.shutdown.failed` (its
      `message` is logged as an error and kept in `failure_message`), or raised after sending
      one; the server should not go on (startup) or should report it (shutdown);
    - `unsupported`: the app raised without sending a failure, which is how apps without
      lifespan support answer the scope: serve without lifespan (a warning is logged);
    - `errored` and `exc`: the app raised, and what.
    `state` is the dict the app received as `scope['state']`: a server copies it into the
    scope of every request.
    """

    error_transition = 'Invalid lifespan state transition'

    def __init__(self, callable: Callable[..., Any]):
        self.callable = callable
        self.state: Dict[str, Any] = {}
        self.event_queue: asyncio.Queue = asyncio.Queue()
        self.event_startup = asyncio.Event()
        self.event_shutdown = asyncio.Event()
        self.unsupported = False
        self.errored = False
        self.failure_startup = False
        self.failure_shutdown = False
        self.failure_message = ''
        self.interrupt = False
        self.exc: Optional[BaseException] = None
        self._task: Optional[asyncio.Task] = None

    async def handle(self) -> None:
        """Runs the app with the lifespan scope until it returns; `startup()` starts it as a task."""
        scope = {'type': 'lifespan', 'asgi': dict(ASGI_INFO), 'state': self.state}
        try:
            await self.callable(scope, self.receive, self.send)
        except Exception as exc:  # noqa: BLE001 - whatever the app raised ends its lifespan
            self.errored = True
            self.exc = exc
            if not (self.failure_startup or self.failure_shutdown):
                self.unsupported = True
                logger.warning(_UNSUPPORTED_WARNING)
        finally:
            # Whatever the app did, nobody waits for an answer it can no longer send.
            self.event_startup.set()
            self.event_shutdown.set()

    async def startup(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.handle())
        await self.event_queue.put({'type': 'lifespan.startup'})
        await self.event_startup.wait()
        if self.failure_startup or (self.errored and not self.unsupported):
            self.interrupt = True

    async def shutdown(self) -> None:
        try:
            # Nobody would answer: startup never completed, or the app ended its lifespan by raising.
            if self.errored or not self.event_startup.is_set():
                return
            await self.event_queue.put({'type': 'lifespan.shutdown'})
            await self.event_shutdown.wait()
            if self.failure_shutdown or (self.errored and not self.unsupported):
                self.interrupt = True
        finally:
            # After the app's shutdown ran, so that it still finds what it put there at startup.
            self.state.clear()

    async def receive(self) -> Dict[str, Any]:
        return await self.event_queue.get()

    async def send(self, message: Dict[str, Any]) -> None:
        phase, failed = _LIFESPAN_ANSWERS[message['type']]
        # startup answers come first, and once; a shutdown answer needs a finished startup.
        if self.event_shutdown.is_set() or self.event_startup.is_set() != (phase == 'shutdown'):
            raise AssertionError(self.error_transition)
        if failed:
            if phase == 'startup':
                self.failure_startup = True
            else:
                self.failure_shutdown = True
            self.failure_message = message.get('message') or ''
            if self.failure_message:
                logger.error(self.failure_message)
        (self.event_startup if phase == 'startup' else self.event_shutdown).set()


# The messages an app may send on the lifespan scope: (phase, whether it failed).
_LIFESPAN_ANSWERS = {
    'lifespan.startup.complete': ('startup', False),
    'lifespan.startup.failed': ('startup', True),
    'lifespan.shutdown.complete': ('shutdown', False),
    'lifespan.shutdown.failed': ('shutdown', True),
}


class Lifespan:
    """How the server runs an app's `LifespanProtocol`: a failed startup is fatal, and
    shutdown waits at most `SHUTDOWN_TIMEOUT` for the app."""

    def __init__(self, app: Any):
        self.protocol = LifespanProtocol(app)

    @property
    def state(self) -> Dict[str, Any]:
        return self.protocol.state

    @property
    def supported(self) -> bool:
        return not self.protocol.unsupported

    async def startup(self) -> None:
        protocol = self.protocol
        await protocol.startup()
        if protocol.interrupt:
            reason = protocol.failure_message or (repr(protocol.exc) if protocol.exc else 'the app gave no reason')
            raise FatalError(f'ASGI lifespan startup failed: {reason}')

    async def shutdown(self) -> None:
        protocol = self.protocol
        try:
            await asyncio.wait_for(protocol.shutdown(), SHUTDOWN_TIMEOUT)
        except asyncio.TimeoutError:
            logger.warning(f'ASGI lifespan shutdown did not complete within {SHUTDOWN_TIMEOUT:g}s')
            return
        # A failure message was already logged by the protocol.
        if protocol.interrupt and not protocol.failure_message:
            reason = repr(protocol.exc) if protocol.exc else 'the app gave no reason'
            logger.error(f'ASGI lifespan shutdown failed: {reason}')


class ASGIApp:
    """The loaded app, its lifespan (unless `asginl`), and the serving options it needs."""

    def __init__(self, target: Any, with_lifespan: bool, root_path: str):
        self.handler = target
        self.lifespan: Optional[Lifespan] = Lifespan(target) if with_lifespan else None
        self.root_path = root_path


def prepare(target: Any, options: Any) -> ASGIApp:
    require_callable(target, options.target)
    root_path = (options.url_path_prefix or '').rstrip('/')
    return ASGIApp(target, str(options.interface) == 'asgi', root_path)


def startup(app: ASGIApp, loop: asyncio.AbstractEventLoop) -> None:
    if app.lifespan is not None:
        loop.run_until_complete(app.lifespan.startup())


def shutdown(app: ASGIApp, loop: asyncio.AbstractEventLoop) -> None:
    if app.lifespan is not None:
        loop.run_until_complete(app.lifespan.shutdown())


def serve(app: ASGIApp, worker: Any, socket: Any, bridge: Any, loop: Any, logger: Any, on_stopped: Any) -> None:
    state = app.lifespan.state if app.lifespan is not None and app.lifespan.supported else None
    worker.serve_asgi(socket, bridge, app.handler, loop, logger, on_stopped, state, app.root_path)
