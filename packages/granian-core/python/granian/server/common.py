"""Options, their validation, the supervision of workers, and the life cycle of one worker.

`Granian` here holds what every flavour of the server shares: options, hooks, the main
process's duties (socket, PID file, signals) and `_Supervisor`, which keeps N workers
running. How a worker runs (a process in `mp.py`, a thread in `mt.py`) is a `WorkerHandle`;
inside it, `_RunningWorker` serves: event loop on its thread, native runtimes beside it.
"""

import asyncio
import contextlib
import functools
import importlib.util
import os
import pickle
import re
import select
import signal
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple, Union

from .._granian import LoopBridge, SocketHolder, Worker, check_access_log_format, check_tls
from .._interfaces import load_interface
from .._internal import build_env_loader, load_target
from .._loops import loops
from ..constants import HTTPModes, Interfaces, Loops, RuntimeModes, SSLProtocols, TaskImpl
from ..errors import ConfigurationError, FatalError, PidFileError
from ..http import HTTP1Settings, HTTP2Settings
from ..log import DEFAULT_ACCESSLOG_FMT, LogLevels, configure_logging, logger

Hook = Callable[[], Any]


def _paths(values: Optional[Sequence[Union[str, Path]]]) -> Optional[List[Path]]:
    return [Path(v) for v in values] if values else None


class AbstractServer:
    """The server: `Granian('module:app', **options).serve()`.

    `granian.Granian` is the flavour for this interpreter (`MPServer`, or `MTServer` on a
    free-threaded build); this class holds what they share. Its public methods are those of
    granian 2.8.7's server, so subclasses written for it keep working.
    """

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
        static_path_dir_to_file: Optional[str] = None,
        static_path_expires: int = 86400,
        metrics_enabled: bool = False,
        metrics_scrape_interval: int = 15,
        metrics_address: str = '127.0.0.1',
        metrics_port: int = 9090,
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
        # Values below these minimums are raised to them (with a warning), as granian 2.8.7 does.
        self.workers = _at_least('workers', workers, 1)
        self.blocking_threads = blocking_threads
        self.blocking_threads_idle_timeout = blocking_threads_idle_timeout
        self.runtime_threads = _at_least('runtime_threads', runtime_threads, 1)
        self.runtime_blocking_threads = (
            None
            if runtime_blocking_threads is None
            else _at_least('runtime_blocking_threads', runtime_blocking_threads, 1)
        )
        self.runtime_mode = RuntimeModes(runtime_mode)
        self.loop = Loops(loop)
        self.task_impl = TaskImpl(task_impl)
        self.http = HTTPModes(http)
        self.websockets = websockets
        self.backlog = _at_least('backlog', backlog, 128)
        # 0 or None: the default (backlog / workers), as in granian 2.8.7.
        self.backpressure = _at_least('backpressure', backpressure, 1) if backpressure else None
        self.http1_settings = http1_settings or HTTP1Settings()
        self.http2_settings = http2_settings or HTTP2Settings()
        self.log_enabled = log_enabled
        self.log_level = LogLevels(log_level)
        self.log_dictconfig = log_dictconfig
        self.log_access = log_access
        self.log_access_format = log_access_format
        self.build_ssl_context(
            ssl_cert, ssl_key, ssl_key_password, ssl_protocol_min, ssl_ca, ssl_crl or [], ssl_client_verify
        )
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
        self.static_path_dir_to_file = static_path_dir_to_file
        self.metrics_enabled = metrics_enabled
        self.metrics_scrape_interval = metrics_scrape_interval
        self.metrics_address = metrics_address
        self.metrics_port = metrics_port
        # Not `self.reload`: that name is the reload() method.
        self.reload_on_changes = reload
        self.reload_paths = _paths(reload_paths)
        self.reload_ignore_dirs = reload_ignore_dirs
        self.reload_ignore_patterns = reload_ignore_patterns
        self.reload_ignore_paths = _paths(reload_ignore_paths)
        self.reload_filter = reload_filter
        self.reload_tick = reload_tick
        self.reload_ignore_worker_failure = reload_ignore_worker_failure
        self.process_name = process_name
        self.pid_file = Path(pid_file) if pid_file else None

        self._init_runtime_state()
        self._validate()

    def _init_runtime_state(self) -> None:
        self._hooks: Dict[str, List[Hook]] = {'startup': [], 'shutdown': [], 'reload': []}
        self._supervisor: Optional[_Supervisor] = None
        self._reloader: Optional[_Reloader] = None
        self._socket: Optional[SocketHolder] = None
        self._previous_signals: Dict[int, Any] = {}
        self._stop_requested = False
        self._env_loader: Optional[Callable[[Sequence[Path]], None]] = None
        self._app_loader: Optional[Callable[[], Any]] = None

    def __getstate__(self) -> Dict[str, Any]:
        # What a worker process receives: the options and the app loader. Hooks, the reload
        # filter and the supervisor's state belong to the main process (and may not even pickle).
        state = {k: v for k, v in self.__dict__.items() if not k.startswith('_') and k != 'reload_filter'}
        state['_app_loader'] = self._app_loader
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        loader = state.pop('_app_loader', None)
        self.__dict__.update(state)
        self.reload_filter = None
        self._init_runtime_state()
        self._app_loader = loader

    # -- validation -------------------------------------------------------------------

    def _validate(self) -> None:
        def refuse(option: str, why: str) -> None:
            raise ConfigurationError(f'{option}: {why}')

        if self.metrics_enabled:
            refuse('metrics_enabled', 'the Prometheus metrics exporter is not part of this build yet')
        is_async = self.interface in (Interfaces.RSGI, Interfaces.ASGI, Interfaces.ASGINL)
        if is_async and self.blocking_threads not in (None, 1):
            refuse('blocking_threads', f'the {self.interface} interface runs on the event loop: it can only be 1')
        if self.respawn_interval < 0:
            refuse('respawn_interval', 'cannot be negative')
        if self.rss_sample_interval <= 0:
            refuse('rss_sample_interval', 'must be positive')
        if self.rss_samples < 1:
            refuse('rss_samples', 'must be at least 1')
        for option in ('workers_lifetime', 'workers_max_rss', 'workers_kill_timeout'):
            value = getattr(self, option)
            if value is not None and value <= 0:
                refuse(option, 'must be positive')
        if self.process_name and importlib.util.find_spec('setproctitle') is None:
            refuse('process_name', 'setting process names needs the setproctitle package: pip install granian[pname]')
        if self.env_files and importlib.util.find_spec('dotenv') is None:
            refuse(
                'env_files', 'loading environment files needs the python-dotenv package: pip install granian[dotenv]'
            )
        if self.url_path_prefix and self.interface == Interfaces.RSGI:
            refuse('url_path_prefix', 'RSGI scopes have no root path: mount the app under the prefix in the app itself')
        if self.reload_on_changes:
            self._validate_reload(refuse)
        if self.static_path_mount:
            routes = self.static_path_route or ['/static']
            if len(routes) != len(self.static_path_mount) and not (
                self.static_path_route is None and len(self.static_path_mount) == 1
            ):
                refuse('static_path_route', 'give one route per static_path_mount, in the same order')
            for mount in self.static_path_mount:
                if not mount.is_dir():
                    refuse('static_path_mount', f'{mount} is not a directory')
        elif self.static_path_route:
            refuse('static_path_route', 'needs static_path_mount')
        if self.static_path_expires < 0:
            refuse('static_path_expires', 'must be 0 (disabled) or more')
        if self.log_access:
            try:
                check_access_log_format(self.log_access_format or DEFAULT_ACCESSLOG_FMT)
            except ValueError as exc:
                refuse('log_access_format', str(exc))
        loops.check(self.loop)
        load_interface(self.interface)

    def build_ssl_context(
        self,
        cert: Optional[Path],
        key: Optional[Path],
        password: Optional[str],
        proto: SSLProtocols,
        ca: Optional[Path],
        crl: Sequence[Path],
        client_verify: bool,
    ) -> None:
        """Sets (and checks, by loading them) the TLS files the workers serve with.

        Also sets `ssl_ctx`, the summary granian 2.8.7 keeps: (enabled, cert, key, password,
        minimum protocol, ca, crl, client_verify). Unlike it, a half-made setup (a certificate
        without its key, a CA or client verification without a certificate, client
        verification without a CA) is refused rather than served over plain HTTP.
        """
        self.ssl_cert = Path(cert) if cert else None
        self.ssl_key = Path(key) if key else None
        self.ssl_key_password = password
        self.ssl_protocol_min = SSLProtocols(proto)
        self.ssl_ca = Path(ca) if ca else None
        self.ssl_crl = _paths(crl)
        self.ssl_client_verify = bool(client_verify)

        def refuse(option: str, why: str) -> None:
            raise ConfigurationError(f'{option}: {why}')

        if bool(self.ssl_cert) != bool(self.ssl_key):
            refuse('ssl_cert' if not self.ssl_cert else 'ssl_key', 'HTTPS needs both ssl_cert and ssl_key')
        if self._tls is None and (self.ssl_ca or self.ssl_crl or self.ssl_key_password or self.ssl_client_verify):
            option = next(
                name
                for name, value in (
                    ('ssl_ca', self.ssl_ca),
                    ('ssl_crl', self.ssl_crl),
                    ('ssl_key_password', self.ssl_key_password),
                    ('ssl_client_verify', self.ssl_client_verify),
                )
                if value
            )
            refuse(option, 'needs ssl_cert')
        if self.ssl_client_verify and not self.ssl_ca:
            refuse('ssl_client_verify', 'needs ssl_ca')
        tls = self._tls
        if tls is not None:
            try:
                check_tls(tls)
            except ValueError as exc:
                raise ConfigurationError(str(exc)) from None
            self.ssl_ctx: tuple = (
                True,
                str(self.ssl_cert.resolve()),
                str(self.ssl_key.resolve()),
                password,
                str(self.ssl_protocol_min),
                str(self.ssl_ca.resolve()) if self.ssl_ca else None,
                [str(path.resolve()) for path in self.ssl_crl or []],
                self.ssl_client_verify,
            )
        else:
            self.ssl_ctx = (False, None, None, None, str(self.ssl_protocol_min), None, [], False)

    def _validate_reload(self, refuse: Callable[[str, str], None]) -> None:
        try:
            import watchfiles  # noqa: F401
        except ImportError:
            refuse('reload', 'reloading on changes needs the watchfiles package: pip install granian[reload]')
        if self.reload_tick <= 0:
            refuse('reload_tick', 'must be positive')
        for path in self._reload_watch_paths():
            if not path.exists():
                refuse('reload_paths', f'{path} does not exist')
        for pattern in self.reload_ignore_patterns or ():
            try:
                re.compile(pattern)
            except re.error as exc:
                refuse('reload_ignore_patterns', f'{pattern!r} is not a valid regular expression: {exc}')

    def _reload_watch_paths(self) -> List[Path]:
        if self.reload_paths:
            return [Path(p).resolve() for p in self.reload_paths]
        return [(self.working_dir or Path.cwd()).resolve()]

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
        """Asks a running server to stop gracefully (as SIGTERM does); safe from any thread."""
        self._stop_requested = True
        supervisor = self._supervisor
        if supervisor is not None:
            supervisor.request('stop', 'stop() called')

    def reload(self) -> None:
        """Replaces every worker gracefully, new ones first (as SIGHUP does); safe from any thread.

        Does nothing when the server is not running."""
        supervisor = self._supervisor
        if supervisor is not None:
            supervisor.request('reload', 'reload() called')

    # -- serving ------------------------------------------------------------------------

    @property
    def _runtime_mode(self) -> str:
        if self.runtime_mode == RuntimeModes.auto:
            return 'st' if self.runtime_threads == 1 else 'mt'
        return str(self.runtime_mode)

    @property
    def _tls(self) -> Optional[tuple]:
        if not (self.ssl_cert and self.ssl_key):
            return None
        return (
            Path(self.ssl_cert),
            Path(self.ssl_key),
            self.ssl_key_password,
            self.ssl_protocol_min == SSLProtocols.tls13,
            Path(self.ssl_ca) if self.ssl_ca else None,
            list(self.ssl_crl or []),
            bool(self.ssl_client_verify),
        )

    @property
    def _statics(self) -> Optional[tuple]:
        if not self.static_path_mount:
            return None
        routes = self.static_path_route or ['/static'] * len(self.static_path_mount)
        pairs = [(route, Path(mount)) for route, mount in zip(routes, self.static_path_mount, strict=True)]
        return (pairs, int(self.static_path_expires), self.static_path_dir_to_file)

    @property
    def scheme(self) -> str:
        return 'https' if self._tls else 'http'

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
            self._tls,
            self._statics,
            (self.log_access_format or DEFAULT_ACCESSLOG_FMT) if self.log_access else None,
            self.websockets,
            str(self.task_impl),
        )

    # What runs the workers: `mp.py` (processes) and `mt.py` (threads) fill these in.
    _worker_kind = 'workers'

    def _worker_factory(self, socket: SocketHolder, wake: Callable[[], None]) -> Callable[[int], 'WorkerHandle']:
        """Returns `spawn(slot) -> WorkerHandle` (not started); `wake()` rouses the supervisor."""
        raise NotImplementedError('use granian.Granian, which runs workers as processes or threads')

    def _check_ready_worker(self, handle: 'WorkerHandle') -> Optional[str]:
        """A reason to stop the server once `handle` serves, or None."""
        return None

    def serve(
        self,
        spawn_target: Optional[Callable[..., Any]] = None,
        target_loader: Optional[Callable[..., Any]] = None,
        wrap_loader: bool = True,
    ) -> None:
        """Runs the server until SIGINT/SIGTERM or `stop()`; a failure exits with SystemExit(1).

        `target_loader` replaces how each worker gets the app: it is called in the worker as
        `target_loader(target)`, or with no argument when `wrap_loader` is false (with
        processes as workers it must pickle: a module-level function). `spawn_target` (granian
        2.8.7 hands it its compiled worker internals) has no counterpart here and is refused.
        """
        if spawn_target is not None:
            raise ConfigurationError(
                "spawn_target: workers run this server's own serve loop and cannot be replaced; "
                'use target_loader to change how the app is loaded'
            )
        self._set_app_loader(target_loader, wrap_loader)
        try:
            configure_logging(self.log_level, self.log_dictconfig, self.log_enabled)
        except (ValueError, TypeError, AttributeError, ImportError, KeyError) as exc:
            # dictConfig's own messages name the faulty part; no traceback for a config mistake.
            cause = f'{exc}: {exc.__cause__}' if exc.__cause__ else str(exc)
            print(f'Error: log_dictconfig: invalid logging configuration: {cause}', file=sys.stderr)
            raise SystemExit(2) from None
        self._load_env_files()
        if self.process_name:
            _set_process_name(self.process_name)
        cpus = os.cpu_count() or 1
        if self.workers > cpus:
            logger.warning(
                f'{self.workers} workers for {cpus} CPU cores: more workers than cores rarely adds throughput '
                'and costs memory; consider more runtime or blocking threads per worker instead'
            )
        exit_code = 1
        try:
            self.startup(spawn_target, self._app_loader)
            exit_code = self._serve_loop()
        except FatalError as exc:
            logger.error(str(exc))
        finally:
            self.shutdown(exit_code)

    def _set_app_loader(self, target_loader: Optional[Callable[..., Any]], wrap_loader: bool) -> None:
        if target_loader is None:
            self._app_loader = None
            return
        if not callable(target_loader):
            raise ConfigurationError('target_loader: must be callable')
        loader = functools.partial(target_loader, self.target) if wrap_loader else target_loader
        if self._worker_kind == 'processes':
            try:
                pickle.dumps(loader)
            except Exception as exc:  # noqa: BLE001 - pickle raises several kinds for the same problem
                raise ConfigurationError(
                    f'target_loader: must pickle to reach the worker processes (a module-level function): {exc}'
                ) from None
        self._app_loader = loader

    def _load_app(self) -> Any:
        """In a worker: the application object, from `target_loader` when serve() had one."""
        if self._app_loader is not None:
            return self._app_loader()
        wd = self.working_dir.resolve() if self.working_dir else None
        if wd is not None:
            os.chdir(wd)  # `working_dir` is where the app runs, not only where it is imported from
        return load_target(self.target, wd=wd, factory=self.factory)

    def startup(self, spawn_target: Optional[Callable[..., Any]], target_loader: Optional[Callable[..., Any]]) -> None:
        """Binds the socket, writes the PID file, takes the signals, runs the startup hooks and
        starts the workers; `serve()` calls it, then supervises, then calls `shutdown()`."""
        if target_loader is not None:
            self._app_loader = target_loader
        try:
            if self.uds:
                socket = SocketHolder.bind_unix(self.uds, self.uds_permissions, self.backlog)
            else:
                socket = SocketHolder.bind(self.address, self.port, self.backlog)
        except OSError as exc:
            raise FatalError(str(exc)) from None
        logger.info(
            f'Starting granian (interface: {self.interface}, HTTP: {self.http}, loop: {self.loop}, '
            f'workers: {self.workers} ({self._worker_kind}), main PID: {os.getpid()})'
        )
        try:
            self._write_pid_file()
        except FatalError:
            socket.close()
            raise
        self._socket = socket
        supervisor = _Supervisor(self)
        self._supervisor = supervisor
        where = f'unix:{self.uds}' if self.uds else f'{self.address}:{socket.port}'
        logger.info(f'Listening at: {self.scheme}://{where}')
        self._take_signals()
        self._call_hooks('startup')
        if self.reload_on_changes:
            self._reloader = _Reloader(self, supervisor)
            self._reloader.start()
        supervisor.start(self._worker_factory(socket, supervisor.wake))

    def _serve_loop(self) -> int:
        assert self._supervisor is not None
        return self._supervisor.loop()

    def shutdown(self, exit_code: int = 0) -> None:
        """Releases what startup() took (workers, socket, PID file, signals), runs the shutdown
        hooks, and exits with SystemExit(exit_code) when it is not 0."""
        if self._reloader is not None:
            self._reloader.stop()
            self._reloader = None
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.kill_leftovers()
            supervisor.close()
        socket, self._socket = self._socket, None
        if socket is not None:
            socket.close()
            if self.uds:
                with contextlib.suppress(OSError):
                    self.uds.unlink()
            self._remove_pid_file()
        self._give_back_signals()
        if socket is not None:
            self._call_hooks('shutdown')
            logger.info('Shutdown complete')
        if exit_code:
            raise SystemExit(exit_code)

    def signal_handler_interrupt(self, *args: Any, **kwargs: Any) -> None:
        """What SIGINT and SIGTERM do: stop gracefully (a second one kills the workers)."""
        reason = _signal_name(args[0]) if args else 'interrupt'
        self._stop_requested = True
        supervisor = self._supervisor
        if supervisor is not None:
            supervisor.request('stop', reason, from_signal=True)

    def signal_handler_reload(self, *args: Any, **kwargs: Any) -> None:
        """What SIGHUP does: replace every worker, new ones first."""
        reason = _signal_name(args[0]) if args else 'reload'
        supervisor = self._supervisor
        if supervisor is not None:
            supervisor.request('reload', reason)

    def _take_signals(self) -> None:
        """SIGINT/SIGTERM stop the server, SIGHUP reloads it (main thread only: elsewhere, use stop())."""
        if threading.current_thread() is not threading.main_thread():
            return
        handlers = [(signal.SIGINT, self.signal_handler_interrupt), (signal.SIGTERM, self.signal_handler_interrupt)]
        if hasattr(signal, 'SIGHUP'):
            handlers.append((signal.SIGHUP, self.signal_handler_reload))
        self._previous_signals = {sig: signal.signal(sig, handler) for sig, handler in handlers}

    def _give_back_signals(self) -> None:
        previous, self._previous_signals = self._previous_signals, {}
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def _load_env_files(self) -> None:
        """Sets the variables of the env files (later files win), never those the process started with.

        Runs at start and again on reload, before workers are spawned: they inherit the result."""
        if not self.env_files:
            return
        if self._env_loader is None:
            self._env_loader = build_env_loader()  # the variables of this moment are never touched
        self._env_loader(self.env_files)

    def _write_pid_file(self) -> None:
        if not self.pid_file:
            return
        try:
            old_pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            old_pid = None
        if old_pid and old_pid != os.getpid() and _pid_alive(old_pid):
            raise PidFileError(f'the PID file {self.pid_file} names a running process ({old_pid}): refusing to start')
        self.pid_file.write_text(f'{os.getpid()}\n')

    def _remove_pid_file(self) -> None:
        if not self.pid_file:
            return
        with contextlib.suppress(OSError, ValueError):
            if int(self.pid_file.read_text().strip()) == os.getpid():
                self.pid_file.unlink()


def _signal_name(signum: Any) -> str:
    try:
        return signal.Signals(signum).name
    except (ValueError, TypeError):
        return str(signum)


def _at_least(option: str, value: int, minimum: int) -> int:
    if value < minimum:
        logger.warning(f'{option}: {value} is below the minimum of {minimum}, using {minimum}')
        return minimum
    return value


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _RunningWorker:
    """One worker in this process: the event loop on this thread, Rust runtimes beside it.

    `signals` stop it gracefully (on the main thread only); `on_ready` is called once it serves.
    """

    def __init__(
        self,
        server: AbstractServer,
        socket: SocketHolder,
        signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM),
        on_ready: Optional[Callable[[], None]] = None,
    ):
        self.server = server
        self.socket = socket
        self.signals = tuple(signals)
        self.on_ready = on_ready
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
        target = server._load_app()
        app = interface.prepare(target, server)
        loop = loops.get(server.loop)
        self.loop = loop
        asyncio.set_event_loop(loop)
        bridge = LoopBridge()
        bridge.bind_loop(loop)
        loop.add_reader(bridge.fileno(), bridge.drain)
        with self._signals(loop):
            interface.startup(app, loop)
            self.native = server._native_worker()
            interface.serve(app, self.native, self.socket, bridge, loop, logger, loop.stop)
            if self.on_ready is not None:
                self.on_ready()
            if self._stopping:
                self._stop()
            try:
                loop.run_forever()
            finally:
                # Responses finished but still in the outbox (a loop that stopped early) go
                # out before waiting for the connections that need them.
                bridge.flush()
                self.native.shutdown()
                self.native.join()
                loop.remove_reader(bridge.fileno())
                interface.shutdown(app, loop)
                _cancel_leftovers(loop)
                loop.close()
                asyncio.set_event_loop(None)

    @contextlib.contextmanager
    def _signals(self, loop: asyncio.AbstractEventLoop):
        handled = self.signals
        if not handled or threading.current_thread() is not threading.main_thread():
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


def _run_worker(worker: _RunningWorker) -> int:
    """Runs a worker to its end; returns its exit code (failures are logged, not raised)."""
    try:
        worker.run()
    except FatalError as exc:
        logger.error(str(exc))
        return 1
    except Exception as exc:  # noqa: BLE001 - whatever the app raised: a log line and an exit code
        logger.error(f'the worker failed: {exc!r}', exc_info=True)
        return 1
    return 0


def _wait_readable(fds: List[int], timeout: float) -> None:
    if hasattr(select, 'poll'):
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        poller.poll(timeout * 1000)
    else:
        select.select(fds, [], [], timeout)


def _set_process_name(name: str) -> None:
    import setproctitle

    setproctitle.setproctitle(name)


# -- reloading on changes -----------------------------------------------------------------------------------------


class _Reloader:
    """Watches the reload paths on a thread of the main process: each batch of changes asks
    the supervisor for one reload (watchfiles groups a burst of writes into one batch)."""

    def __init__(self, server: AbstractServer, supervisor: '_Supervisor'):
        self.server = server
        self.supervisor = supervisor
        self.paths = server._reload_watch_paths()
        self.watch_filter = self._make_filter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name='granian-reloader', daemon=True)

    def _make_filter(self) -> Any:
        import watchfiles

        server = self.server
        cls = server.reload_filter or watchfiles.DefaultFilter
        if not isinstance(cls, type):
            return cls  # already a filter: any callable (change, path) -> bool
        # The ignore options extend what the filter class ignores already.
        options = {
            'ignore_dirs': (server.reload_ignore_dirs, 'ignore_dirs', str),
            'ignore_entity_patterns': (server.reload_ignore_patterns, 'ignore_entity_patterns', str),
            'ignore_paths': (server.reload_ignore_paths, 'ignore_paths', lambda p: Path(p).resolve()),
        }
        kwargs = {
            name: tuple(getattr(cls, attr, ())) + tuple(convert(v) for v in values)
            for name, (values, attr, convert) in options.items()
            if values
        }
        if issubclass(cls, watchfiles.DefaultFilter):
            return cls(**kwargs)
        instance = cls()
        if kwargs and isinstance(instance, watchfiles.BaseFilter):
            instance._ignore_dirs = set(kwargs.get('ignore_dirs', instance._ignore_dirs))
            if 'ignore_entity_patterns' in kwargs:
                instance._ignore_entity_regexes = tuple(re.compile(r) for r in kwargs['ignore_entity_patterns'])
            if 'ignore_paths' in kwargs:
                instance._ignore_paths = tuple(map(str, kwargs['ignore_paths']))
        return instance

    def start(self) -> None:
        logger.info(f'Watching for changes in: {", ".join(str(p) for p in self.paths)}')
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        import watchfiles

        try:
            for changes in watchfiles.watch(
                *self.paths,
                watch_filter=self.watch_filter,
                stop_event=self._stop,
                debounce=1_600,
                step=self.server.reload_tick,
                rust_timeout=1_000,
                raise_interrupt=False,
            ):
                if self._stop.is_set():
                    return
                names = sorted({_relative(path, self.paths) for _, path in changes})
                shown = ', '.join(names[:5]) + (f' and {len(names) - 5} more' if len(names) > 5 else '')
                self.supervisor.request('reload', f'files changed: {shown}')
        except Exception as exc:  # noqa: BLE001 - the watcher failing must not take the server down
            logger.error(f'watching for changes failed, reloading on changes stops: {exc!r}', exc_info=True)


def _relative(path: str, roots: Sequence[Path]) -> str:
    for root in roots:
        with contextlib.suppress(ValueError):
            return str(Path(path).relative_to(root))
    return path


# -- supervision --------------------------------------------------------------------------------------------------


class WorkerHandle:
    """One worker as the main process sees it. `mp.py` runs it as a process, `mt.py` as a thread.

    The supervisor only calls these methods, from its own thread.
    """

    def __init__(self, slot: int):
        self.slot = slot  # worker-N, 1-based: a replacement takes the slot of the worker it replaces
        self.pid: Optional[int] = None
        self.ready = False
        self.ready_at = 0.0
        self.stop_asked = False
        self.kill_at: Optional[float] = None
        self.rss_over = 0  # consecutive memory samples above the limit
        self.generation = 0  # how many reloads the supervisor had begun when this worker started

    @property
    def name(self) -> str:
        return f'worker-{self.slot}'

    def describe(self) -> str:
        return f'{self.name} (PID {self.pid})'

    def start(self) -> None:
        raise NotImplementedError

    def waitables(self) -> List[int]:
        """File descriptors that become readable when there is news of this worker."""
        return []

    def poll_ready(self) -> bool:
        """Whether the worker reported that it serves (checked until it did)."""
        raise NotImplementedError

    def is_alive(self) -> bool:
        raise NotImplementedError

    def exit_status(self) -> str:
        raise NotImplementedError

    def terminate(self) -> None:
        """Asks for a graceful stop: in-flight requests finish."""
        raise NotImplementedError

    def kill(self) -> bool:
        """Stops the worker at once; False when that is not possible."""
        return False

    def rss_mib(self) -> Optional[float]:
        """Resident memory of this worker alone, when it can be measured."""
        return None

    def close(self) -> None:
        """Releases what the handle holds, once the worker has exited."""


class _Supervisor:
    """Keeps `workers` workers serving, and replaces them as options, signals and failures ask.

    Single-threaded: everything happens in `run()`. Signals, `stop()`, `reload()` and thread
    workers only queue a command or wake it up through a pipe.

    - Replacements (reload, lifetime, memory) go one at a time: the new worker starts, and
      the old one is asked to stop only once the new one serves.
    - A worker that exits before it serves stops the server (a replacement that fails to
      start only cancels the pending replacements: the old workers keep serving).
    - A worker that dies is respawned after `respawn_interval` with `respawn_failed_workers`;
      otherwise the server stops with exit code 1.
    - Reloading on changes (`reload`) tolerates workers that fail to start (a syntax error
      being edited): the failure is logged and the next change starts them again. With
      `reload_ignore_worker_failure`, a serving worker that dies waits for the next change too.
    """

    def __init__(self, server: AbstractServer):
        self.server = server
        self.slots: Dict[int, Optional[WorkerHandle]] = {}
        self.pending: Optional[WorkerHandle] = None  # a replacement that does not serve yet
        self.queue: Deque[Tuple[int, str]] = deque()  # slots waiting for a replacement, and why
        self.retiring: List[WorkerHandle] = []
        self.respawn_at: Dict[int, float] = {}
        self.next_rss_sample: Optional[float] = None
        self.stopping = False
        self.exit_code = 0
        self.reloads = 0
        self.commands: Deque[Tuple[str, str, bool]] = deque()
        self.spawn: Optional[Callable[[int], WorkerHandle]] = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    # -- from other threads and signal handlers ----------------------------------------------------------------

    def request(self, command: str, reason: str, from_signal: bool = False) -> None:
        self.commands.append((command, reason, from_signal))
        self.wake()

    def wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b'!')

    def close(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- the loop ---------------------------------------------------------------------------------------------

    def start(self, spawn: Callable[[int], WorkerHandle]) -> None:
        """Starts the workers (none when a stop came first); loop() then keeps them serving."""
        self.spawn = spawn
        if self.server._stop_requested:
            self.stopping = True
            return
        for slot in range(1, self.server.workers + 1):
            self.slots[slot] = self._start(slot)
        if self.server.workers_max_rss:
            self.next_rss_sample = time.monotonic() + self.server.rss_sample_interval

    def loop(self) -> int:
        try:
            while not (self.stopping and not self._handles()):
                self._wait()
                self._handle_commands()
                self._check_workers()
                self._run_timers()
        finally:
            self.kill_leftovers()
        return self.exit_code

    def kill_leftovers(self) -> None:
        """Kills what still runs (the loop ended by an exception, or never ran)."""
        for handle in self._handles():
            if handle.is_alive():
                handle.kill()
            handle.close()
        self.slots.clear()
        self.pending = None
        self.retiring.clear()

    def _handles(self) -> List[WorkerHandle]:
        handles = [h for h in self.slots.values() if h is not None]
        if self.pending is not None:
            handles.append(self.pending)
        return handles + self.retiring

    def _start(self, slot: int) -> WorkerHandle:
        assert self.spawn is not None
        handle = self.spawn(slot)
        handle.generation = self.reloads
        handle.start()
        logger.info(f'Spawned {handle.describe()}')
        return handle

    def _wait(self) -> None:
        fds = [self._wake_r]
        for handle in self._handles():
            fds.extend(handle.waitables())
        _wait_readable(fds, self._timeout())
        with contextlib.suppress(OSError):
            while os.read(self._wake_r, 512):
                pass

    def _timeout(self) -> float:
        now = time.monotonic()
        due = [h.kill_at for h in self._handles() if h.kill_at is not None]
        due.extend(self.respawn_at.values())
        lifetime = self.server.workers_lifetime
        if lifetime and not self.stopping:
            due.extend(
                h.ready_at + lifetime
                for slot, h in self.slots.items()
                if h and h.ready and not h.stop_asked and not self._scheduled(slot)
            )
        if self.next_rss_sample is not None and not self.stopping:
            due.append(self.next_rss_sample)
        # Capped: a lost wake-up costs at most a second.
        return min(max(min(due, default=now + 1.0) - now, 0.0), 1.0)

    def _handle_commands(self) -> None:
        while self.commands:
            command, reason, from_signal = self.commands.popleft()
            if command == 'stop':
                self._begin_stop(reason, from_signal)
            elif command == 'reload':
                self._begin_reload(reason)

    # -- stopping and reloading --------------------------------------------------------------------------------

    def _begin_stop(self, reason: str, from_signal: bool = False) -> None:
        if self.stopping:
            if from_signal:
                logger.warning(f'{reason} received while stopping: killing the workers')
                for handle in self._handles():
                    if handle.is_alive() and not handle.kill():
                        logger.warning(f'{handle.describe()} cannot be killed')
            return
        self.stopping = True
        logger.info(f'Shutting down ({reason}): stopping the workers gracefully')
        self.queue.clear()
        self.respawn_at.clear()
        for handle in self._handles():
            self._ask_stop(handle)

    def _fail(self, why: str) -> None:
        self.exit_code = 1
        self._begin_stop(why)

    def _ask_stop(self, handle: WorkerHandle) -> None:
        if handle.stop_asked:
            return
        handle.stop_asked = True
        timeout = self.server.workers_kill_timeout
        if timeout:
            handle.kill_at = time.monotonic() + timeout
        handle.terminate()

    def _begin_reload(self, reason: str) -> None:
        if self.stopping:
            return
        logger.info(f'Reloading ({reason}): replacing the workers one at a time, new ones first')
        try:
            self.server._load_env_files()
            self.server._call_hooks('reload')
        except Exception as exc:  # noqa: BLE001 - a user hook failing must not take the server down
            logger.error(f'a reload hook failed: {exc!r}', exc_info=True)
        self.reloads += 1
        for slot in range(1, self.server.workers + 1):
            if self.server.reload_on_changes and self._restart_idle_slot(slot):
                continue
            self._enqueue(slot, 'reload')

    def _restart_idle_slot(self, slot: int) -> bool:
        """Reloading on changes: starts a slot with no serving worker at once (it failed, or it
        is still starting with the code as it was). False when a serving worker has to be replaced."""
        handle = self.slots.get(slot)
        if handle is not None and (handle.ready or handle.stop_asked):
            return False
        if self.pending is not None and self.pending.slot == slot:
            return False
        if handle is not None:
            logger.info(f'Stopping {handle.describe()}, which started before the change')
            self.retiring.append(handle)
            self._ask_stop(handle)
        self.respawn_at.pop(slot, None)
        self.slots[slot] = self._start(slot)
        return True

    def _enqueue(self, slot: int, reason: str) -> None:
        if all(queued != slot for queued, _ in self.queue):
            self.queue.append((slot, reason))

    def _scheduled(self, slot: int) -> bool:
        pending = self.pending is not None and self.pending.slot == slot
        return pending or any(queued == slot for queued, _ in self.queue)

    # -- worker events -----------------------------------------------------------------------------------------

    def _check_workers(self) -> None:
        for handle in self._handles():
            if not handle.ready and handle.poll_ready():
                handle.ready = True
                handle.ready_at = time.monotonic()
                self._on_ready(handle)
            if not handle.is_alive():
                self._on_exit(handle)

    def _on_ready(self, handle: WorkerHandle) -> None:
        logger.info(f'{handle.describe()} is serving')
        problem = self.server._check_ready_worker(handle)
        if problem:
            logger.error(problem)
            self._fail('the server cannot run')
            return
        if handle is self.pending:
            self.pending = None
            old = self.slots.get(handle.slot)
            self.slots[handle.slot] = handle
            self.respawn_at.pop(handle.slot, None)
            if old is not None:
                logger.info(f'Stopping the old {old.describe()}')
                self.retiring.append(old)
                self._ask_stop(old)
        if not self.queue and self.pending is None and not self.stopping:
            logger.debug('All workers serving')

    def _on_exit(self, handle: WorkerHandle) -> None:
        status = handle.exit_status()
        handle.close()
        if handle in self.retiring:
            self.retiring.remove(handle)
            logger.info(f'{handle.describe()} stopped ({status})')
            return
        # A stop signal may have raced with this exit: it explains the exit when it came first.
        self._handle_commands()
        if handle is self.pending:
            self.pending = None
        elif self.slots.get(handle.slot) is handle:
            self.slots[handle.slot] = None
        if self.stopping:
            logger.info(f'{handle.describe()} stopped ({status})')
            return
        slot = handle.slot
        if not handle.ready:
            if self.slots.get(slot) is not None:
                if self.server.reload_on_changes and handle.generation < self.reloads:
                    # Changed again since it started: the reload queued for that change goes on.
                    logger.error(
                        f'{handle.describe()} exited before serving ({status}): '
                        f'the running worker-{slot} keeps serving until the latest change is loaded'
                    )
                    return
                logger.error(
                    f'{handle.describe()} exited before serving ({status}): '
                    f'the running worker-{slot} keeps serving, pending replacements are cancelled'
                )
                self.queue.clear()
                old = self.slots[slot]
                assert old is not None
                old.ready_at = time.monotonic()
                old.rss_over = 0
                return
            if self.server.reload_on_changes:
                logger.error(
                    f'{handle.describe()} exited before serving ({status}): '
                    'waiting for a change to the watched files to start it again'
                )
                return
            logger.error(f'{handle.describe()} exited before serving ({status}): shutting down')
            self._fail('a worker failed to start')
            return
        logger.error(f'{handle.describe()} died unexpectedly ({status})')
        if self.server.respawn_failed_workers:
            interval = self.server.respawn_interval
            logger.info(f'Respawning worker-{slot} in {interval:g}s')
            self.respawn_at[slot] = time.monotonic() + interval
        elif self.server.reload_on_changes and self.server.reload_ignore_worker_failure:
            logger.warning(f'worker-{slot} stays down until a change to the watched files starts it again')
        else:
            logger.error('Respawning failed workers is disabled (see --respawn-failed-workers): shutting down')
            self._fail('a worker died')

    # -- timers ------------------------------------------------------------------------------------------------

    def _run_timers(self) -> None:
        now = time.monotonic()
        for handle in self._handles():
            if handle.kill_at is not None and now >= handle.kill_at and handle.is_alive():
                handle.kill_at = None
                timeout = self.server.workers_kill_timeout
                if handle.kill():
                    logger.warning(f'{handle.describe()} did not stop within {timeout:g}s: killed')
                else:
                    logger.warning(f'{handle.describe()} did not stop within {timeout:g}s and cannot be killed')
        if self.stopping:
            return
        for slot, due in list(self.respawn_at.items()):
            if now >= due:
                del self.respawn_at[slot]
                if self.slots.get(slot) is None and not self._scheduled(slot):
                    logger.info(f'Respawning worker-{slot}')
                    self.slots[slot] = self._start(slot)
        lifetime = self.server.workers_lifetime
        if lifetime:
            for slot, handle in self.slots.items():
                if handle is None or not handle.ready or handle.stop_asked or self._scheduled(slot):
                    continue
                if now - handle.ready_at >= lifetime:
                    logger.info(f'{handle.describe()} reached its lifetime ({lifetime:g}s): replacing it')
                    self._enqueue(slot, 'lifetime')
        if self.next_rss_sample is not None and now >= self.next_rss_sample:
            self.next_rss_sample = now + self.server.rss_sample_interval
            self._sample_memory()
        self._next_replacement()

    def _sample_memory(self) -> None:
        limit = self.server.workers_max_rss
        samples = self.server.rss_samples
        for slot, handle in self.slots.items():
            if handle is None or not handle.ready or handle.stop_asked:
                continue
            rss = handle.rss_mib()
            if rss is None:
                continue
            if rss <= limit:
                handle.rss_over = 0
                continue
            handle.rss_over += 1
            logger.warning(
                f'{handle.describe()} uses {rss:.0f} MiB, over the {limit} MiB limit '
                f'({handle.rss_over}/{samples} samples)'
            )
            if handle.rss_over >= samples and not self._scheduled(slot):
                logger.info(f'{handle.describe()} stayed over the memory limit: replacing it')
                self._enqueue(slot, 'memory')

    def _next_replacement(self) -> None:
        while self.pending is None and self.queue and not self.stopping:
            slot, reason = self.queue.popleft()
            old = self.slots.get(slot)
            if old is None or not old.ready or old.stop_asked:
                continue  # (re)starting anyway
            logger.info(f'Replacing {old.describe()} ({reason})')
            self.pending = self._start(slot)
