"""The server's options: taken, normalised, checked, and turned into what a worker serves with.

Each option is declared once, as data, in `granian._options` (flags, environment variables,
defaults, help); this module is what the server does with the values it is given.

`ServerOptions` is the base of `AbstractServer` (`common.py`). Each argument of the constructor
becomes the attribute of the same name (`reload` excepted: `reload_on_changes`, the name
`reload` being the method), paths become `Path`s and numbers below their minimum are raised to
it. A combination the server cannot serve is refused with a `ConfigurationError` that names the
option. A worker process receives the options pickled, together with how to load the app.
"""

import importlib.util
import os
import re
import socket
from pathlib import Path
from typing import Any, Callable, Dict, List, NoReturn, Optional, Sequence, Union

from .._granian import Worker, check_access_log_format, check_tls
from .._interfaces import load_interface
from .._internal import load_target
from .._loops import loops
from .._native import MetricsSettings, StaticFilesSettings, TLSSettings, WorkerSettings
from ..constants import HTTPModes, Interfaces, Loops, RuntimeModes, SSLProtocols, TaskImpl
from ..errors import ConfigurationError
from ..http import HTTP1Settings, HTTP2Settings
from ..log import DEFAULT_ACCESSLOG_FMT, LogFormats, LogLevels, logger


class ServerOptions:
    """The options of a server, and the settings derived from them."""

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
        *,
        fd: Optional[int] = None,
        reuse_port: bool = False,
        max_body_size: Optional[int] = None,
        body_read_timeout: int = 60,
        log_format: LogFormats = LogFormats.text,
        ws_max_message_size: int = 16 * 1024 * 1024,
        ws_max_frame_size: int = 16 * 1024 * 1024,
        ws_ping_interval: Optional[int] = None,
        ws_idle_timeout: Optional[int] = None,
        ws_compression: bool = True,
        http3: bool = False,
        http3_idle_timeout: int = 30,
        http3_max_concurrent_streams: int = 100,
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
        self.log_format = LogFormats(log_format)
        self.ws_max_message_size = ws_max_message_size
        self.ws_max_frame_size = ws_max_frame_size
        self.ws_ping_interval = ws_ping_interval
        self.ws_idle_timeout = ws_idle_timeout
        self.ws_compression = ws_compression
        self.http3 = http3
        self.http3_idle_timeout = http3_idle_timeout
        self.http3_max_concurrent_streams = http3_max_concurrent_streams
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
        self.fd = fd
        self.reuse_port = reuse_port
        self.max_body_size = max_body_size
        self.body_read_timeout = body_read_timeout

        self._init_runtime_state()
        self._validate()

    def _init_runtime_state(self) -> None:
        """Sets what is not an option. Subclasses extend it; a worker process runs it again
        after unpickling the options."""
        self._app_loader: Optional[Callable[[], Any]] = None

    # -- what a worker receives -----------------------------------------------------------

    def __getstate__(self) -> Dict[str, Any]:
        # The options and the app loader. Hooks, the reload filter and the supervisor's state
        # belong to the main process (and may not even pickle).
        state = {k: v for k, v in self.__dict__.items() if not k.startswith('_') and k != 'reload_filter'}
        state['_app_loader'] = self._app_loader
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        loader = state.pop('_app_loader', None)
        self.__dict__.update(state)
        self.reload_filter = None
        self._init_runtime_state()
        self._app_loader = loader

    def _load_app(self) -> Any:
        """In a worker: the application object, from `target_loader` when serve() had one."""
        if self._app_loader is not None:
            return self._app_loader()
        wd = self.working_dir.resolve() if self.working_dir else None
        if wd is not None:
            os.chdir(wd)  # `working_dir` is where the app runs, not only where it is imported from
        return load_target(self.target, wd=wd, factory=self.factory)

    # -- validation -----------------------------------------------------------------------

    def _validate(self) -> None:
        if self.blocking_threads not in (None, 1) and load_interface(self.interface).IS_ASYNC:
            _refuse('blocking_threads', f'the {self.interface} interface runs on the event loop: it can only be 1')
        if self.fd is not None:
            if self.fd < 0:
                _refuse('fd', 'must be a file descriptor number (0 or more)')
            if self.uds:
                _refuse('fd', 'serves an inherited socket: it cannot be combined with uds')
        for option in ('ws_max_message_size', 'ws_max_frame_size'):
            if getattr(self, option) < 1:
                _refuse(option, 'must be a number of bytes (1 or more)')
        for option in ('ws_ping_interval', 'ws_idle_timeout'):
            value = getattr(self, option)
            if value is not None and value <= 0:
                _refuse(option, 'must be a positive number of seconds, or None for off')
        if self.max_body_size is not None and self.max_body_size < 1:
            _refuse('max_body_size', 'must be a number of bytes (1 or more), or None for no limit')
        if self.body_read_timeout is not None and self.body_read_timeout <= 0:
            _refuse('body_read_timeout', 'must be a positive number of seconds, or None for no limit')
        if self.reuse_port:
            if self.uds or self.fd is not None:
                _refuse('reuse_port', 'applies to the TCP socket the server binds itself, not to uds or fd')
            if not hasattr(socket, 'SO_REUSEPORT'):
                _refuse('reuse_port', 'this platform has no SO_REUSEPORT')
        if self.http3:
            if self._tls is None:
                _refuse('http3', 'HTTP/3 needs TLS: set ssl_cert and ssl_key')
            if self.uds:
                _refuse('http3', 'HTTP/3 is served on UDP beside a TCP socket, not beside uds')
            if self.http3_idle_timeout <= 0:
                _refuse('http3_idle_timeout', 'must be a positive number of seconds')
            if self.http3_max_concurrent_streams < 1:
                _refuse('http3_max_concurrent_streams', 'must be 1 or more')
        if self.respawn_interval < 0:
            _refuse('respawn_interval', 'cannot be negative')
        if self.rss_sample_interval <= 0:
            _refuse('rss_sample_interval', 'must be positive')
        if self.rss_samples < 1:
            _refuse('rss_samples', 'must be at least 1')
        if self.metrics_enabled and not 1 <= self.metrics_scrape_interval <= 60:
            _refuse('metrics_scrape_interval', 'must be between 1 and 60 seconds')
        for option in ('workers_lifetime', 'workers_max_rss', 'workers_kill_timeout'):
            value = getattr(self, option)
            if value is not None and value <= 0:
                _refuse(option, 'must be positive')
        if self.process_name and importlib.util.find_spec('setproctitle') is None:
            _refuse('process_name', 'setting process names needs the setproctitle package: pip install granian[pname]')
        if self.env_files and importlib.util.find_spec('dotenv') is None:
            _refuse(
                'env_files', 'loading environment files needs the python-dotenv package: pip install granian[dotenv]'
            )
        if self.url_path_prefix and self.interface == Interfaces.RSGI:
            _refuse(
                'url_path_prefix', 'RSGI scopes have no root path: mount the app under the prefix in the app itself'
            )
        if self.reload_on_changes:
            self._validate_reload()
        if self.static_path_mount:
            routes = self.static_path_route or ['/static']
            if len(routes) != len(self.static_path_mount) and not (
                self.static_path_route is None and len(self.static_path_mount) == 1
            ):
                _refuse('static_path_route', 'give one route per static_path_mount, in the same order')
            for mount in self.static_path_mount:
                if not mount.is_dir():
                    _refuse('static_path_mount', f'{mount} is not a directory')
        elif self.static_path_route:
            _refuse('static_path_route', 'needs static_path_mount')
        if self.static_path_expires < 0:
            _refuse('static_path_expires', 'must be 0 (disabled) or more')
        if self.log_access:
            try:
                check_access_log_format(self.log_access_format or DEFAULT_ACCESSLOG_FMT)
            except ValueError as exc:
                _refuse('log_access_format', str(exc))
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

        if bool(self.ssl_cert) != bool(self.ssl_key):
            _refuse('ssl_cert' if not self.ssl_cert else 'ssl_key', 'HTTPS needs both ssl_cert and ssl_key')
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
            _refuse(option, 'needs ssl_cert')
        if self.ssl_client_verify and not self.ssl_ca:
            _refuse('ssl_client_verify', 'needs ssl_ca')
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

    def _validate_reload(self) -> None:
        try:
            import watchfiles  # noqa: F401
        except ImportError:
            _refuse('reload', 'reloading on changes needs the watchfiles package: pip install granian[reload]')
        if self.reload_tick <= 0:
            _refuse('reload_tick', 'must be positive')
        for path in self._reload_watch_paths():
            if not path.exists():
                _refuse('reload_paths', f'{path} does not exist')
        for pattern in self.reload_ignore_patterns or ():
            try:
                re.compile(pattern)
            except re.error as exc:
                _refuse('reload_ignore_patterns', f'{pattern!r} is not a valid regular expression: {exc}')

    # -- derived settings -----------------------------------------------------------------

    def _reload_watch_paths(self) -> List[Path]:
        if self.reload_paths:
            return [Path(p).resolve() for p in self.reload_paths]
        return [(self.working_dir or Path.cwd()).resolve()]

    @property
    def _runtime_mode(self) -> str:
        if self.runtime_mode == RuntimeModes.auto:
            return 'st' if self.runtime_threads == 1 else 'mt'
        return str(self.runtime_mode)

    @property
    def _tls(self) -> Optional[TLSSettings]:
        if not (self.ssl_cert and self.ssl_key):
            return None
        return TLSSettings(
            cert=Path(self.ssl_cert),
            key=Path(self.ssl_key),
            key_password=self.ssl_key_password,
            min_tls13=self.ssl_protocol_min == SSLProtocols.tls13,
            ca=Path(self.ssl_ca) if self.ssl_ca else None,
            crls=list(self.ssl_crl or []),
            client_verify=bool(self.ssl_client_verify),
        )

    @property
    def _statics(self) -> Optional[StaticFilesSettings]:
        if not self.static_path_mount:
            return None
        routes = self.static_path_route or ['/static'] * len(self.static_path_mount)
        pairs = [(route, Path(mount)) for route, mount in zip(routes, self.static_path_mount, strict=True)]
        return StaticFilesSettings(
            mounts=pairs, expires=int(self.static_path_expires), dir_to_file=self.static_path_dir_to_file
        )

    @property
    def scheme(self) -> str:
        return 'https' if self._tls else 'http'

    def _native_worker(self, metrics: Optional[MetricsSettings] = None) -> Worker:
        """The native worker (Rust runtimes, HTTP stack) these options describe, not serving yet."""
        return Worker(
            WorkerSettings(
                runtime_mode=self._runtime_mode,
                runtime_threads=self.runtime_threads,
                runtime_blocking_threads=self.runtime_blocking_threads or 512,
                backpressure=self.backpressure or max(self.backlog // self.workers, 1),
                http_mode=str(self.http),
                http1=self.http1_settings,
                http2=self.http2_settings,
                tls=self._tls,
                statics=self._statics,
                access_log_format=(self.log_access_format or DEFAULT_ACCESSLOG_FMT) if self.log_access else None,
                log_format=str(self.log_format),
                ws_max_message_size=self.ws_max_message_size,
                ws_max_frame_size=self.ws_max_frame_size,
                ws_ping_interval=float(self.ws_ping_interval) if self.ws_ping_interval else None,
                ws_idle_timeout=float(self.ws_idle_timeout) if self.ws_idle_timeout else None,
                ws_compression=self.ws_compression,
                http3=self.http3,
                http3_idle_timeout=float(self.http3_idle_timeout),
                http3_max_concurrent_streams=self.http3_max_concurrent_streams,
                http3_sole_worker=self.workers == 1,
                websockets=self.websockets,
                task_impl=str(self.task_impl),
                metrics=metrics,
                max_body_size=self.max_body_size,
                body_read_timeout=float(self.body_read_timeout) if self.body_read_timeout else None,
            )
        )


def _refuse(option: str, why: str) -> NoReturn:
    raise ConfigurationError(f'{option}: {why}')


def _paths(values: Optional[Sequence[Union[str, Path]]]) -> Optional[List[Path]]:
    return [Path(v) for v in values] if values else None


def _at_least(option: str, value: int, minimum: int) -> int:
    if value < minimum:
        logger.warning(f'{option}: {value} is below the minimum of {minimum}, using {minimum}')
        return minimum
    return value
