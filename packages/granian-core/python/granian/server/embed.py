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
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from .._granian import LoopBridge, SocketHolder, Worker
from .._interfaces import load_interface, shutdown_on_running_loop, startup_on_running_loop
from ..constants import HTTPModes, Interfaces, SSLProtocols, TaskImpl
from ..errors import ConfigurationError
from ..http import HTTP1Settings, HTTP2Settings
from ..log import LogFormats, LogLevels, configure_logging, logger
from ._worker import attach_bridge
from .common import AbstractServer

_NO_SPAWN_TARGET = (
    "spawn_target: the embedded worker runs this server's own serve loop and cannot be replaced; "
    'use factory=True to build the app when it starts'
)

# Options of `Granian` that only make sense when it owns the process (workers, the loop,
# reloading on changes, process naming, PID files, respawning): accepted at their default,
# refused otherwise (granian 2.8.7's embedded server does not take them at all).
_PROCESS_OPTIONS = {
    'workers': 1,
    'loop': 'auto',
    'reload': False,
    'pid_file': None,
    'process_name': None,
    'respawn_failed_workers': False,
    'workers_lifetime': None,
    'workers_max_rss': None,
    'workers_kill_timeout': None,
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


class Server(AbstractServer):
    """`Server(app, interface='asgi'|'asginl'|'rsgi', **options)`: `await server.serve()` in a running loop.

    `stop()` stops gracefully (in-flight requests complete, then `serve()` returns);
    `reload()` starts serving a freshly prepared app on the same listener, then retires the old one.
    """

    _worker_kind = 'embedded'

    def __init__(
        self,
        target: Any,
        address: str = '127.0.0.1',
        port: int = 8000,
        uds: Optional[Path] = None,
        interface: Interfaces = Interfaces.RSGI,
        blocking_threads: Optional[int] = None,
        blocking_threads_idle_timeout: int = 30,
        runtime_threads: int = 1,
        runtime_blocking_threads: Optional[int] = None,
        task_impl: TaskImpl = TaskImpl.asyncio,
        http: HTTPModes = HTTPModes.auto,
        websockets: bool = True,
        backlog: int = 128,
        backpressure: Optional[int] = None,
        http1_settings: Optional[HTTP1Settings] = None,
        http2_settings: Optional[HTTP2Settings] = None,
        log_enabled: bool = True,
        log_level: LogLevels = LogLevels.info,
        log_dictconfig: Optional[Dict[str, Any]] = None,
        log_access: bool = False,
        log_access_format: Optional[str] = None,
        ssl_cert: Optional[Path] = None,
        ssl_key: Optional[Path] = None,
        ssl_key_password: Optional[str] = None,
        ssl_protocol_min: SSLProtocols = SSLProtocols.tls13,
        ssl_ca: Optional[Path] = None,
        ssl_crl: Optional[List[Path]] = None,
        ssl_client_verify: bool = False,
        url_path_prefix: Optional[str] = None,
        factory: bool = False,
        static_path_route: Optional[Sequence[str]] = None,
        static_path_mount: Optional[Sequence[Path]] = None,
        static_path_dir_to_file: Optional[str] = None,
        static_path_expires: int = 86400,
        log_format: LogFormats = LogFormats.text,
        max_body_size: Optional[int] = None,
        body_read_timeout: Optional[int] = 60,
        ws_max_message_size: int = 16 * 1024 * 1024,
        ws_max_frame_size: int = 16 * 1024 * 1024,
        ws_ping_interval: Optional[int] = None,
        ws_idle_timeout: Optional[int] = None,
        ws_compression: bool = True,
        http3: bool = False,
        http3_idle_timeout: int = 30,
        http3_max_concurrent_streams: int = 100,
        **options: Any,
    ):
        """`target` is the application object (with `factory=True`, a callable returning it,
        called each time a worker starts: at serve() and at every reload)."""
        try:
            kind = Interfaces(interface)
        except ValueError:
            raise ConfigurationError(
                f'interface: unknown interface {interface!r}: the embedded server serves asgi, asginl or rsgi'
            ) from None
        if not load_interface(kind).IS_ASYNC:
            raise ConfigurationError(
                'interface: the embedded server runs on an asyncio event loop and only serves async '
                f"interfaces ('asgi', 'asginl', 'rsgi'): {kind.value.upper()} is not supported, "
                'use granian.Granian instead'
            )
        if factory and not callable(target):
            raise ConfigurationError('factory: the target must be callable when factory is set')
        for option, value in options.items():
            if option not in _PROCESS_OPTIONS:
                raise TypeError(f"Server() got an unexpected keyword argument '{option}'")
            if value != _PROCESS_OPTIONS[option]:
                raise ConfigurationError(
                    f'{option}: not supported by the embedded server (it runs one worker in the caller loop)'
                )
        super().__init__(
            f'<embedded {type(target).__name__}>',
            address=address,
            port=port,
            uds=uds,
            interface=kind,
            blocking_threads=blocking_threads,
            blocking_threads_idle_timeout=blocking_threads_idle_timeout,
            runtime_threads=runtime_threads,
            runtime_blocking_threads=runtime_blocking_threads,
            task_impl=task_impl,
            http=http,
            websockets=websockets,
            backlog=backlog,
            backpressure=backpressure,
            http1_settings=http1_settings,
            http2_settings=http2_settings,
            log_enabled=log_enabled,
            log_level=log_level,
            log_dictconfig=log_dictconfig,
            log_access=log_access,
            log_access_format=log_access_format,
            ssl_cert=ssl_cert,
            ssl_key=ssl_key,
            ssl_key_password=ssl_key_password,
            ssl_protocol_min=ssl_protocol_min,
            ssl_ca=ssl_ca,
            ssl_crl=ssl_crl,
            ssl_client_verify=ssl_client_verify,
            url_path_prefix=url_path_prefix,
            factory=factory,
            static_path_route=static_path_route,
            static_path_mount=static_path_mount,
            static_path_dir_to_file=static_path_dir_to_file,
            static_path_expires=static_path_expires,
            log_format=log_format,
            max_body_size=max_body_size,
            body_read_timeout=body_read_timeout,
            ws_max_message_size=ws_max_message_size,
            ws_max_frame_size=ws_max_frame_size,
            ws_ping_interval=ws_ping_interval,
            ws_idle_timeout=ws_idle_timeout,
            ws_compression=ws_compression,
            http3=http3,
            http3_idle_timeout=http3_idle_timeout,
            http3_max_concurrent_streams=http3_max_concurrent_streams,
        )
        self.target = target
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._socket: Optional[SocketHolder] = None
        self._current: Optional[_Generation] = None
        self._retiring: set[asyncio.Task] = set()
        self._serving = False
        self._stop_pending = False
        self._background: Optional[asyncio.Task] = None
        self.bound_port: Optional[int] = None
        self.started = asyncio.Event()

    @property
    def app(self) -> Any:
        """The application object given as `target` (the factory, with `factory=True`)."""
        return self.target

    def _load_app(self) -> Any:
        """The app a worker serves: `target` (what it returns, with `factory=True`), or `target_loader`'s."""
        if self._app_loader is not None:
            return self._app_loader()
        return self.target() if self.factory else self.target

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

    def startup(self, spawn_target: Optional[Callable[..., Any]], target_loader: Optional[Callable[..., Any]]) -> None:
        """Starts serving in the background on the running loop; `await shutdown()` ends it."""
        if spawn_target is not None:
            raise ConfigurationError(_NO_SPAWN_TARGET)
        loop = asyncio.get_running_loop()
        if target_loader is not None:
            self._app_loader = target_loader
        self._background = loop.create_task(self.serve())

    async def shutdown(self, exit_code: int = 0) -> None:  # type: ignore[override]
        """Stops gracefully what startup() started and waits for it; exits when exit_code is not 0."""
        self.stop()
        task, self._background = self._background, None
        if task is not None:
            await task
        if exit_code:
            raise SystemExit(exit_code)

    async def serve(self, spawn_target: Optional[Callable[..., Any]] = None) -> None:  # type: ignore[override]
        """Serves until `stop()`; ASGI lifespan / RSGI init hooks run at start and at the end."""
        if spawn_target is not None:
            raise ConfigurationError(_NO_SPAWN_TARGET)
        if self._serving:
            raise RuntimeError('this server is already serving')
        loop = asyncio.get_running_loop()
        configure_logging(self.log_level, self.log_dictconfig, self.log_enabled, self.log_format)
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
        """Prepares the app, runs its startup hook (lifespan, `__rsgi_init__`), starts a native worker."""
        assert self._socket is not None
        app = interface.prepare(self._load_app(), self)
        await startup_on_running_loop(interface, app, loop)
        try:
            bridge = attach_bridge(loop)
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
            await shutdown_on_running_loop(interface, app, loop)
            raise
        return generation

    async def _finish(self, interface: Any, generation: _Generation) -> None:
        """After a generation's `on_stopped`: its runtime threads exit, then the app's shutdown runs."""
        await asyncio.to_thread(generation.native.join)
        self._loop_or_running().remove_reader(generation.bridge.fileno())
        await shutdown_on_running_loop(interface, generation.app, self._loop_or_running())

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


__all__ = ['Server']
