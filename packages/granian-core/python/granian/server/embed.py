"""The embeddable server: one worker running inside the caller's asyncio event loop.

```python
server = Server(app, interface='asgi', port=8000)
task = asyncio.create_task(server.serve())
...
server.stop()
await task
```

No processes, no threads of its own beyond the native runtime threads, no signal handlers:
the caller owns the loop and the process. Options are those of `Granian` where they apply.
"""

import asyncio
import contextlib
from typing import Any, Optional, Union

from .._granian import LoopBridge, SocketHolder, Worker
from .._interfaces import load_interface
from ..constants import Interfaces
from ..errors import ConfigurationError
from ..log import configure_logging, logger
from .common import Granian

# Options that only make sense when Granian owns the process (workers, reloading on changes,
# process naming, PID files, respawning): refused when set to something else than the default.
_UNSUPPORTED = {
    'workers': 1,
    'reload': False,
    'pid_file': None,
    'process_name': None,
    'respawn_failed_workers': False,
    'workers_lifetime': None,
    'workers_max_rss': None,
    'workers_kill_timeout': None,
    'factory': False,
}


class _Generation:
    """One native worker serving one prepared app on the shared listener."""

    def __init__(self, app: Any, native: Worker, bridge: LoopBridge, done: 'asyncio.Future[None]'):
        self.app = app
        self.native = native
        self.bridge = bridge
        self.done = done
        self.stop_asked = False

    def ask_stop(self) -> None:
        if not self.stop_asked:
            self.stop_asked = True
            self.native.shutdown()


class Server(Granian):
    """`Server(app, interface='asgi'|'asginl'|'rsgi', **options)`: `await server.serve()` in a running loop.

    `stop()` stops gracefully (in-flight requests complete, then `serve()` returns);
    `reload()` starts serving a freshly prepared app on the same listener, then retires the old one.
    """

    _worker_kind = 'embedded'

    def __init__(self, app: Any, interface: Union[Interfaces, str] = Interfaces.RSGI, **options: Any):
        try:
            kind = Interfaces(interface)
        except ValueError:
            raise ConfigurationError(
                f'interface: unknown interface {interface!r}: the embedded server serves asgi, asginl or rsgi'
            ) from None
        if kind == Interfaces.WSGI:
            raise ConfigurationError(
                'interface: the embedded server runs on an asyncio event loop and only serves async '
                "interfaces ('asgi', 'asginl', 'rsgi'): WSGI is not supported, use granian.Granian instead"
            )
        if 'target' in options:
            raise ConfigurationError('target: the embedded server takes the application object, not an import string')
        for option, default in _UNSUPPORTED.items():
            if option in options and options[option] != default:
                raise ConfigurationError(
                    f'{option}: not supported by the embedded server (it runs one worker in the caller loop)'
                )
        if options.get('loop', 'auto') != 'auto':
            raise ConfigurationError('loop: the embedded server runs on the caller event loop')
        self.app = app
        super().__init__(f'<embedded {type(app).__name__}>', interface=kind, **options)
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._socket: Optional[SocketHolder] = None
        self._current: Optional[_Generation] = None
        self._retiring: set[asyncio.Task] = set()
        self._serving = False
        self._stop_pending = False
        self.bound_port: Optional[int] = None
        self.started = asyncio.Event()

    # -- control (any thread) ------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stops gracefully: the listener closes, in-flight requests complete, then `serve()` returns.

        Safe from any thread; before `serve()` runs, it makes `serve()` return at once."""
        self._stop_pending = True
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if _on_loop(loop):
            self._stop_now()
        else:
            loop.call_soon_threadsafe(self._stop_now)

    def reload(self) -> Optional['asyncio.Future[None]']:
        """Serves a freshly prepared app on the same listener, then retires the old worker gracefully.

        New first: no connection is refused meanwhile. Returns something to wait on (an asyncio
        task on the loop's thread, a concurrent future elsewhere), or None when not serving."""
        loop = self._loop
        if loop is None or loop.is_closed() or not self._serving:
            return None
        if _on_loop(loop):
            return loop.create_task(self._reload())
        return asyncio.run_coroutine_threadsafe(self._reload(), loop)  # type: ignore[return-value]

    def _stop_now(self) -> None:
        if self._current is not None:
            logger.info('Shutting down: waiting for in-flight requests')
            self._current.ask_stop()

    # -- serving -------------------------------------------------------------------------------------------------

    async def serve(self) -> None:
        """Serves until `stop()`; ASGI lifespan / RSGI init hooks run at start and at the end."""
        if self._serving:
            raise RuntimeError('this server is already serving')
        loop = asyncio.get_running_loop()
        configure_logging(self.log_level, self.log_dictconfig, self.log_enabled)
        self._load_env_files()
        self._loop = loop
        self._serving = True
        try:
            await self._serve(loop)
        finally:
            self._serving = False
            self._loop = None
            self._stop_pending = False  # served to the end: it can serve again
            self.started = asyncio.Event()

    async def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._stop_pending:
            return
        interface = load_interface(self.interface)
        if self.uds:
            socket = SocketHolder.bind_unix(self.uds, self.uds_permissions, self.backlog)
        else:
            socket = SocketHolder.bind(self.address, self.port, self.backlog)
        self._socket = socket
        self.bound_port = None if self.uds else socket.port
        generation: Optional[_Generation] = None
        try:
            where = f'unix:{self.uds}' if self.uds else f'{self.address}:{socket.port}'
            logger.info(f'Starting granian (embedded, interface: {self.interface}, HTTP: {self.http})')
            self._call_hooks('startup')
            generation = await self._start_generation(interface, loop)
            self._current = generation
            logger.info(f'Listening at: {self.scheme}://{where}')
            self.started.set()
            if self._stop_pending:
                self._stop_now()
            # A reload swaps `_current`: the server ends when the current generation has stopped.
            while True:
                generation = self._current
                assert generation is not None
                try:
                    await asyncio.shield(generation.done)
                except asyncio.CancelledError:
                    # Cancelled serve(): still a graceful stop, then the cancellation goes on.
                    # (A generation being retired by a reload is finished by its reload task.)
                    self._stop_pending = True
                    generation = self._current
                    assert generation is not None
                    self._stop_now()
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.shield(generation.done)
                    await self._finish(interface, generation)
                    generation = None
                    raise
                if generation is self._current:
                    break
            await self._finish(interface, generation)
            generation = None
        finally:
            if generation is not None:
                # Startup or serving failed half-way.
                generation.ask_stop()
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(asyncio.shield(generation.done), 30)
                with contextlib.suppress(BaseException):
                    await self._finish(interface, generation)
            for task in list(self._retiring):
                with contextlib.suppress(BaseException):
                    await task
            self._current = None
            socket.close()
            self._socket = None
            if self.uds:
                with contextlib.suppress(OSError):
                    self.uds.unlink()
        self._call_hooks('shutdown')
        logger.info('Shutdown complete')

    async def _start_generation(self, interface: Any, loop: asyncio.AbstractEventLoop) -> _Generation:
        """Prepares the app, runs its startup (lifespan / `__rsgi_init__`), starts a native worker."""
        assert self._socket is not None
        app = interface.prepare(self.app, self)
        await _startup(self.interface, app, loop)
        try:
            bridge = LoopBridge()
            loop.add_reader(bridge.fileno(), bridge.drain)
            done: asyncio.Future[None] = loop.create_future()

            def on_stopped(*_: Any) -> None:
                if not done.done():
                    done.set_result(None)

            native = self._native_worker()
            generation = _Generation(app, native, bridge, done)
            try:
                interface.serve(app, native, self._socket, bridge, loop, logger, on_stopped)
            except BaseException:
                loop.remove_reader(bridge.fileno())
                raise
        except BaseException:
            await _shutdown(self.interface, app, loop)
            raise
        return generation

    async def _finish(self, interface: Any, generation: _Generation) -> None:
        """After a generation's `on_stopped`: its runtime threads exit, then the app's shutdown runs."""
        await asyncio.to_thread(generation.native.join)
        self._loop_or_running().remove_reader(generation.bridge.fileno())
        await _shutdown(self.interface, generation.app, self._loop_or_running())

    def _loop_or_running(self) -> asyncio.AbstractEventLoop:
        return self._loop or asyncio.get_running_loop()

    async def _reload(self) -> None:
        loop = asyncio.get_running_loop()
        old = self._current
        if old is None or not self._serving or self._stop_pending or old.stop_asked:
            return
        logger.info('Reloading: starting a new worker, then stopping the old one gracefully')
        try:
            self._load_env_files()
            self._call_hooks('reload')
        except Exception as exc:  # noqa: BLE001 - a user hook failing must not take the server down
            logger.error(f'a reload hook failed: {exc!r}', exc_info=True)
        interface = load_interface(self.interface)
        try:
            new = await self._start_generation(interface, loop)
        except Exception as exc:
            logger.error(f'reload failed, the running worker keeps serving: {exc!r}')
            raise
        if self._stop_pending or self._current is not old or not self._serving:
            # Stopped (or reloaded again) meanwhile: this one is not needed.
            new.ask_stop()
            await asyncio.shield(new.done)
            await self._finish(interface, new)
            return
        self._current = new
        retire = loop.create_task(self._retire(interface, old))
        self._retiring.add(retire)
        retire.add_done_callback(self._retiring.discard)
        # serve() waits on the old generation: it notices the swap once the old one stops.
        await retire

    async def _retire(self, interface: Any, old: _Generation) -> None:
        old.ask_stop()
        await asyncio.shield(old.done)
        await self._finish(interface, old)
        logger.info('Reload complete: the old worker stopped')


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


async def _startup(interface: Interfaces, app: Any, loop: asyncio.AbstractEventLoop) -> None:
    if interface == Interfaces.RSGI:
        hook = getattr(app.target, '__rsgi_init__', None)
        if hook is not None:
            hook(loop)
        return
    lifespan = getattr(app, 'lifespan', None)
    if lifespan is not None:
        await lifespan.startup()


async def _shutdown(interface: Interfaces, app: Any, loop: asyncio.AbstractEventLoop) -> None:
    if interface == Interfaces.RSGI:
        hook = getattr(app.target, '__rsgi_del__', None)
        if hook is not None:
            hook(loop)
        return
    lifespan = getattr(app, 'lifespan', None)
    if lifespan is not None:
        await lifespan.shutdown()


__all__ = ['Server']
