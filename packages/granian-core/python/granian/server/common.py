"""Options, their validation, and the life cycle of one worker."""

import asyncio
import contextlib
import os
import signal
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from .._granian import LoopBridge, SocketHolder, Worker
from .._interfaces import load_interface
from .._internal import load_target
from .._loops import loops
from ..constants import HTTPModes, Interfaces, Loops, RuntimeModes, SSLProtocols, TaskImpl
from ..errors import ConfigurationError, FatalError
from ..http import HTTP1Settings, HTTP2Settings
from ..log import LogLevels, configure_logging, logger

Hook = Callable[[], Any]


def _paths(values: Optional[Sequence[Union[str, Path]]]) -> Optional[List[Path]]:
    return [Path(v) for v in values] if values else None


class Granian:
    """The server: `Granian('module:app', **options).serve()`."""

    def __init__(
        self,
        target: str,
        address: str = '127.0.0.1',
        port: int = 8000,
        uds: Optional[Path] = None,
        uds_permissions: Optional[int] = None,
        interface: Interfaces = Interfaces.RSGI,
        workers: int = 1,
        blocking_threads: Optional[int] = None,
        blocking_threads_idle_timeout: int = 30,
        runtime_threads: int = 1,
        runtime_blocking_threads: Optional[int] = None,
        runtime_mode: RuntimeModes = RuntimeModes.auto,
        loop: Loops = Loops.auto,
        task_impl: TaskImpl = TaskImpl.asyncio,
        http: HTTPModes = HTTPModes.auto,
        websockets: bool = True,
        backlog: int = 1024,
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
        respawn_failed_workers: bool = False,
        respawn_interval: float = 3.5,
        rss_sample_interval: int = 30,
        rss_samples: int = 1,
        workers_lifetime: Optional[int] = None,
        workers_max_rss: Optional[int] = None,
        workers_kill_timeout: Optional[int] = None,
        factory: bool = False,
        working_dir: Optional[Path] = None,
        env_files: Optional[Sequence[Path]] = None,
        static_path_route: Optional[Sequence[str]] = None,
        static_path_mount: Optional[Sequence[Path]] = None,
        static_path_expires: int = 86400,
        reload: bool = False,
        reload_paths: Optional[Sequence[Path]] = None,
        reload_ignore_dirs: Optional[Sequence[str]] = None,
        reload_ignore_patterns: Optional[Sequence[str]] = None,
        reload_ignore_paths: Optional[Sequence[Path]] = None,
        reload_filter: Optional[Any] = None,
        reload_tick: int = 50,
        reload_ignore_worker_failure: bool = False,
        process_name: Optional[str] = None,
        pid_file: Optional[Path] = None,
    ):
        self.target = target
        self.address = address
        self.port = port
        self.uds = Path(uds) if uds else None
        self.uds_permissions = uds_permissions
        self.interface = Interfaces(interface)
        self.workers = workers
        self.blocking_threads = blocking_threads
        self.blocking_threads_idle_timeout = blocking_threads_idle_timeout
        self.runtime_threads = runtime_threads
        self.runtime_blocking_threads = runtime_blocking_threads
        self.runtime_mode = RuntimeModes(runtime_mode)
        self.loop = Loops(loop)
        self.task_impl = TaskImpl(task_impl)
        self.http = HTTPModes(http)
        self.websockets = websockets
        self.backlog = backlog
        self.backpressure = backpressure
        self.http1_settings = http1_settings or HTTP1Settings()
        self.http2_settings = http2_settings or HTTP2Settings()
        self.log_enabled = log_enabled
        self.log_level = LogLevels(log_level)
        self.log_dictconfig = log_dictconfig
        self.log_access = log_access
        self.log_access_format = log_access_format
        self.ssl_cert = ssl_cert
        self.ssl_key = ssl_key
        self.ssl_key_password = ssl_key_password
        self.ssl_protocol_min = SSLProtocols(ssl_protocol_min)
        self.ssl_ca = ssl_ca
        self.ssl_crl = _paths(ssl_crl)
        self.ssl_client_verify = ssl_client_verify
        self.url_path_prefix = url_path_prefix
        self.respawn_failed_workers = respawn_failed_workers
        self.respawn_interval = respawn_interval
        self.rss_sample_interval = rss_sample_interval
        self.rss_samples = rss_samples
        self.workers_lifetime = workers_lifetime
        self.workers_max_rss = workers_max_rss
        self.workers_kill_timeout = workers_kill_timeout
        self.factory = factory
        self.working_dir = Path(working_dir) if working_dir else None
        self.env_files = _paths(env_files)
        self.static_path_route = list(static_path_route) if static_path_route else None
        self.static_path_mount = _paths(static_path_mount)
        self.static_path_expires = static_path_expires
        self.reload = reload
        self.reload_paths = _paths(reload_paths)
        self.reload_ignore_dirs = reload_ignore_dirs
        self.reload_ignore_patterns = reload_ignore_patterns
        self.reload_ignore_paths = _paths(reload_ignore_paths)
        self.reload_filter = reload_filter
        self.reload_tick = reload_tick
        self.reload_ignore_worker_failure = reload_ignore_worker_failure
        self.process_name = process_name
        self.pid_file = Path(pid_file) if pid_file else None

        self._hooks: Dict[str, List[Hook]] = {'startup': [], 'shutdown': [], 'reload': []}
        self._running: Optional[_RunningWorker] = None
        self._stop_requested = False
        self._validate()

    # -- validation -------------------------------------------------------------------

    def _validate(self) -> None:
        def refuse(option: str, why: str) -> None:
            raise ConfigurationError(f'{option}: {why}')

        if self.workers < 1:
            refuse('workers', 'must be at least 1')
        if self.workers > 1:
            refuse('workers', 'running more than one worker process is not supported by this build yet')
        if self.backlog < 128:
            refuse('backlog', 'must be at least 128')
        if self.backpressure is not None and self.backpressure < 1:
            refuse('backpressure', 'must be at least 1')
        if self.runtime_threads < 1:
            refuse('runtime_threads', 'must be at least 1')
        if self.runtime_blocking_threads is not None and self.runtime_blocking_threads < 1:
            refuse('runtime_blocking_threads', 'must be at least 1')
        is_async = self.interface in (Interfaces.RSGI, Interfaces.ASGI, Interfaces.ASGINL)
        if is_async and self.blocking_threads not in (None, 1):
            refuse('blocking_threads', f'the {self.interface} interface runs on the event loop: it can only be 1')
        if self.task_impl == TaskImpl.rust:
            refuse('task_impl', "the 'rust' task implementation is not available in this build: use 'asyncio'")
        unsupported = {
            'uds': self.uds,
            'ssl_cert': self.ssl_cert,
            'ssl_key': self.ssl_key,
            'ssl_ca': self.ssl_ca,
            'ssl_crl': self.ssl_crl,
            'static_path_mount': self.static_path_mount,
            'reload': self.reload,
            'workers_lifetime': self.workers_lifetime,
            'workers_max_rss': self.workers_max_rss,
            'respawn_failed_workers': self.respawn_failed_workers,
            'log_access': self.log_access,
            'url_path_prefix': self.url_path_prefix if self.interface == Interfaces.RSGI else None,
            'process_name': self.process_name,
            'env_files': self.env_files,
        }
        for option, value in unsupported.items():
            if value:
                refuse(option, 'is not supported by this build yet')
        if self.ssl_client_verify and not self.ssl_ca:
            refuse('ssl_client_verify', 'needs ssl_ca')
        loops.check(self.loop)
        load_interface(self.interface)

    # -- hooks and control ------------------------------------------------------------

    def on_startup(self, hook: Hook) -> Hook:
        self._hooks['startup'].append(hook)
        return hook

    def on_shutdown(self, hook: Hook) -> Hook:
        self._hooks['shutdown'].append(hook)
        return hook

    def on_reload(self, hook: Hook) -> Hook:
        self._hooks['reload'].append(hook)
        return hook

    def _call_hooks(self, phase: str) -> None:
        for hook in self._hooks[phase]:
            hook()

    def stop(self) -> None:
        """Asks a running server to stop gracefully; safe from any thread."""
        self._stop_requested = True
        if self._running is not None:
            self._running.request_stop()

    def reload(self) -> None:
        raise FatalError('reloading workers needs worker processes, which this build does not run yet')

    # -- serving ------------------------------------------------------------------------

    @property
    def _runtime_mode(self) -> str:
        if self.runtime_mode == RuntimeModes.auto:
            return 'st' if self.runtime_threads == 1 else 'mt'
        return str(self.runtime_mode)

    def _native_worker(self) -> Worker:
        h1, h2 = self.http1_settings, self.http2_settings
        return Worker(
            self._runtime_mode,
            self.runtime_threads,
            self.runtime_blocking_threads or 512,
            self.backpressure or max(self.backlog // self.workers, 1),
            str(self.http),
            (h1.header_read_timeout, h1.keep_alive, h1.max_buffer_size, h1.pipeline_flush),
            (
                h2.adaptive_window,
                h2.initial_connection_window_size,
                h2.initial_stream_window_size,
                h2.keep_alive_interval,
                h2.keep_alive_timeout,
                h2.max_concurrent_streams,
                h2.max_frame_size,
                h2.max_headers_size,
                h2.max_send_buffer_size,
            ),
        )

    def serve(self) -> None:
        configure_logging(self.log_level, self.log_dictconfig, self.log_enabled)
        try:
            socket = SocketHolder.bind(self.address, self.port, self.backlog)
        except OSError as exc:
            logger.error(str(exc))
            raise SystemExit(1) from None
        logger.info(f'Starting granian (interface: {self.interface}, HTTP: {self.http}, loop: {self.loop})')
        try:
            self._write_pid_file()
        except FatalError as exc:
            socket.close()
            logger.error(str(exc))
            raise SystemExit(1) from None
        self._call_hooks('startup')
        try:
            self._running = _RunningWorker(self, socket)
            if self._stop_requested:
                self._running.request_stop()
            self._running.run()
        except FatalError as exc:
            logger.error(str(exc))
            raise SystemExit(1) from None
        finally:
            self._running = None
            socket.close()
            self._remove_pid_file()
        self._call_hooks('shutdown')
        logger.info('Shutdown complete')

    def _write_pid_file(self) -> None:
        if not self.pid_file:
            return
        try:
            old_pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            old_pid = None
        if old_pid and old_pid != os.getpid() and _pid_alive(old_pid):
            raise FatalError(f'the PID file {self.pid_file} names a running process ({old_pid}): refusing to start')
        self.pid_file.write_text(f'{os.getpid()}\n')

    def _remove_pid_file(self) -> None:
        if not self.pid_file:
            return
        with contextlib.suppress(OSError, ValueError):
            if int(self.pid_file.read_text().strip()) == os.getpid():
                self.pid_file.unlink()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _RunningWorker:
    """One worker in this process: the event loop on this thread, Rust runtimes beside it."""

    def __init__(self, server: Granian, socket: SocketHolder):
        self.server = server
        self.socket = socket
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.native: Optional[Worker] = None
        self._stopping = False

    def request_stop(self) -> None:
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._stop)
        else:
            self._stopping = True

    def _stop(self) -> None:
        if self._stopping and self.native is None:
            return
        self._stopping = True
        if self.native is not None:
            logger.info('Shutting down: waiting for in-flight requests')
            self.native.shutdown()

    def run(self) -> None:
        server = self.server
        interface = load_interface(server.interface)
        target = load_target(server.target, server.factory, str(server.working_dir) if server.working_dir else None)
        app = interface.prepare(target, server)
        loop = loops.get(server.loop)
        self.loop = loop
        asyncio.set_event_loop(loop)
        bridge = LoopBridge()
        loop.add_reader(bridge.fileno(), bridge.drain)
        with self._signals(loop):
            interface.startup(app, loop)
            self.native = server._native_worker()
            interface.serve(app, self.native, self.socket, bridge, loop, logger, loop.stop)
            logger.info(f'Listening at: http://{server.address}:{self.socket.port}')
            if self._stopping:
                self._stop()
            try:
                loop.run_forever()
            finally:
                self.native.shutdown()
                self.native.join()
                loop.remove_reader(bridge.fileno())
                interface.shutdown(app, loop)
                _cancel_leftovers(loop)
                loop.close()
                asyncio.set_event_loop(None)

    @contextlib.contextmanager
    def _signals(self, loop: asyncio.AbstractEventLoop):
        handled = (signal.SIGINT, signal.SIGTERM)
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        for sig in handled:
            loop.add_signal_handler(sig, self._stop)
        try:
            yield
        finally:
            for sig in handled:
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    with contextlib.suppress(Exception):
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
