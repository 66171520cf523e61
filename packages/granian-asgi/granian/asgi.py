"""ASGI 3: lifespan and the glue core calls to serve an ASGI app.

Scope building, `receive` and `send` for HTTP are native (`granian._granian`); the
lifespan protocol runs here, on the worker's loop, before and after serving.
"""

import asyncio
from typing import Any, Dict, Optional

from granian._internal import require_callable
from granian.errors import FatalError
from granian.log import logger

IS_ASYNC = True
ASGI_INFO = {'version': '3.0', 'spec_version': '2.3'}
# How long shutdown waits for the app's lifespan to answer before the worker exits anyway.
SHUTDOWN_TIMEOUT = 30.0


class LifespanUnsupported(Exception):
    pass


class Lifespan:
    """Runs the app's lifespan task for the life of the worker."""

    def __init__(self, app: Any):
        self.app = app
        self.state: Dict[str, Any] = {}
        self.supported = True
        self._inbox: asyncio.Queue = asyncio.Queue()
        self._events: Dict[str, asyncio.Future] = {}
        self._task: Optional[asyncio.Task] = None
        self._failure: Optional[str] = None

    async def _receive(self) -> Dict[str, Any]:
        return await self._inbox.get()

    async def _send(self, message: Dict[str, Any]) -> None:
        kind = message.get('type', '')
        phase, _, outcome = kind.removeprefix('lifespan.').partition('.')
        future = self._events.get(phase)
        if future is None or outcome not in ('complete', 'failed'):
            raise RuntimeError(f'ASGI protocol error: unexpected lifespan message {kind!r}')
        if future.done():
            raise RuntimeError(f'ASGI protocol error: {kind!r} sent twice')
        if outcome == 'failed':
            self._failure = message.get('message', '') or f'lifespan {phase} failed'
        future.set_result(outcome)

    async def _run(self) -> None:
        scope = {'type': 'lifespan', 'asgi': dict(ASGI_INFO), 'state': self.state}
        try:
            await self.app(scope, self._receive, self._send)
        except BaseException as exc:  # anything the app raises ends its lifespan
            for future in self._events.values():
                if not future.done():
                    future.set_exception(LifespanUnsupported(repr(exc)))
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
        finally:
            for future in self._events.values():
                if not future.done():
                    future.set_exception(LifespanUnsupported('the lifespan task returned'))

    async def _phase(self, phase: str, timeout: Optional[float] = None) -> str:
        loop = asyncio.get_running_loop()
        self._events[phase] = loop.create_future()
        if self._task is None:
            self._task = loop.create_task(self._run())
        await self._inbox.put({'type': f'lifespan.{phase}'})
        return await asyncio.wait_for(self._events[phase], timeout)

    async def startup(self) -> None:
        try:
            outcome = await self._phase('startup')
        except LifespanUnsupported as exc:
            self.supported = False
            logger.warning(f'ASGI lifespan appears unsupported by the application ({exc}): serving without it')
            return
        if outcome == 'failed':
            raise FatalError(f'ASGI lifespan startup failed: {self._failure}')

    async def shutdown(self) -> None:
        if not self.supported or self._task is None or self._task.done():
            return
        try:
            outcome = await self._phase('shutdown', SHUTDOWN_TIMEOUT)
        except (LifespanUnsupported, asyncio.TimeoutError) as exc:
            logger.warning(f'ASGI lifespan shutdown did not complete: {exc!r}')
            return
        if outcome == 'failed':
            logger.error(f'ASGI lifespan shutdown failed: {self._failure}')


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
