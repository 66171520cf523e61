"""`AbstractServer`: the server's life cycle in its main process.

What every flavour of the server shares beyond its options (`_server_options.py`): hooks,
`stop()` and `reload()`, and the main process's duties (socket, PID file, signals, env
files). The workers it runs are kept serving by the `Supervisor` (`_supervisor.py`); how a
worker runs (a process in `mp.py`, a thread in `mt.py`) is a `WorkerHandle`, and what runs
inside one is `_worker.py`. Reloading on changes watches files with the `Reloader`
(`_reloader.py`).
"""

import contextlib
import functools
import os
import pickle
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from .._granian import MetricsExporter, SocketHolder
from .._internal import build_env_loader
from ..errors import ConfigurationError, FatalError, PidFileError
from ..log import (
    DEFAULT_ACCESSLOG_FMT,  # noqa: F401 - a public name of granian 2.8.7's module
    configure_logging,
    logger,
)
from ._reloader import Reloader
from ._server_options import ServerOptions
from ._supervisor import Supervisor, WorkerHandle
from ._systemd import take_activated_sockets

Hook = Callable[[], Any]


class AbstractServer(ServerOptions):
    """The server: `Granian('module:app', **options).serve()`.

    `granian.Granian` is the flavour for this interpreter (`MPServer`, or `MTServer` on a
    free-threaded build); this class holds what they share. Its public methods are those of
    granian 2.8.7's server, so subclasses written for it keep working.
    """

    def _init_runtime_state(self) -> None:
        super()._init_runtime_state()
        self._hooks: Dict[str, List[Hook]] = {'startup': [], 'shutdown': [], 'reload': []}
        self._supervisor: Optional[Supervisor] = None
        self._reloader: Optional[Reloader] = None
        self._metrics: Optional[MetricsExporter] = None
        self._socket: Optional[SocketHolder] = None
        self._socket_origin = 'bound'  # or 'fd', 'systemd': where the listening socket came from
        self._previous_signals: Dict[int, Any] = {}
        self._stop_requested = False
        self._env_loader: Optional[Callable[[Sequence[Path]], None]] = None

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

    def _before_reload(self) -> None:
        """What a reload does before it replaces the workers (they inherit the env files' variables)."""
        self._load_env_files()
        self._call_hooks('reload')

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

    # -- serving --------------------------------------------------------------------------

    # What runs the workers: `mp.py` (processes) and `mt.py` (threads) fill these in.
    _worker_kind = 'workers'

    def _worker_factory(self, socket: SocketHolder, wake: Callable[[], None]) -> Callable[[int], WorkerHandle]:
        """Returns `spawn(slot) -> WorkerHandle` (not started); `wake()` rouses the supervisor."""
        raise NotImplementedError('use granian.Granian, which runs workers as processes or threads')

    def _check_ready_worker(self, handle: WorkerHandle) -> Optional[str]:
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
            configure_logging(self.log_level, self.log_dictconfig, self.log_enabled, self.log_format)
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

    def startup(self, spawn_target: Optional[Callable[..., Any]], target_loader: Optional[Callable[..., Any]]) -> None:
        """Binds the socket, writes the PID file, takes the signals, runs the startup hooks and
        starts the workers; `serve()` calls it, then supervises, then calls `shutdown()`."""
        if target_loader is not None:
            self._app_loader = target_loader
        socket = self._listening_socket()
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
        if self.metrics_enabled:
            try:
                self._metrics = self._start_metrics()
            except (OSError, ValueError) as exc:
                self._remove_pid_file()
                socket.close()
                raise FatalError(str(exc)) from None
        supervisor = Supervisor(self, self._before_reload, self._check_ready_worker, self._metrics)
        self._supervisor = supervisor
        where = f'unix:{socket.address}' if socket.is_unix else f'{socket.address}:{socket.port}'
        how = {'fd': f' (file descriptor {self.fd})', 'systemd': ' (socket activation)'}.get(self._socket_origin, '')
        logger.info(f'Listening at: {self.scheme}://{where}{how}')
        self._take_signals()
        self._call_hooks('startup')
        if self.reload_on_changes:
            self._reloader = Reloader(self, functools.partial(supervisor.request, 'reload'))
            self._reloader.start()
        supervisor.start(self._worker_factory(socket, supervisor.wake), self._stop_requested)

    def _listening_socket(self) -> SocketHolder:
        """The socket the workers serve: inherited (`fd`, systemd socket activation) or bound here."""
        activated = take_activated_sockets()
        try:
            if self.fd is not None:
                self._socket_origin = 'fd'
                return SocketHolder.from_fd(self.fd)
            if activated:
                if len(activated) > 1:
                    raise FatalError(
                        f'socket activation passed {len(activated)} sockets: the server serves one '
                        '(give its socket unit a single Listen... line)'
                    )
                if self.reuse_port:
                    raise FatalError('reuse_port: the socket comes from socket activation, the server binds none')
                self._socket_origin = 'systemd'
                return SocketHolder.from_fd(activated[0])
            self._socket_origin = 'bound'
            if self.uds:
                return SocketHolder.bind_unix(self.uds, self.uds_permissions, self.backlog)
            if self.reuse_port:
                # Reserved, not listening: each worker listens on a socket of its own.
                socket = SocketHolder.bind(self.address, self.port, self.backlog, reuse_port=True, listen=False)
                self.port = socket.port  # port 0: the one picked here is the one every worker joins
                return socket
            return SocketHolder.bind(self.address, self.port, self.backlog)
        except OSError as exc:
            raise FatalError(str(exc)) from None

    def worker_socket(self, shared: Callable[[], SocketHolder]) -> SocketHolder:
        """In a worker: the socket it serves, its own with `reuse_port`, else `shared()`."""
        if self.reuse_port:
            return SocketHolder.bind(self.address, self.port, self.backlog, reuse_port=True)
        return shared()

    def _start_metrics(self) -> MetricsExporter:
        # Room for every worker and then some: a replacement starts before the process it
        # replaces ends, and retiring processes may take a while to finish their requests.
        exporter = MetricsExporter(
            self.metrics_address,
            self.metrics_port,
            self.workers,
            str(self.interface),
            float(self.metrics_scrape_interval),
            self.workers * 4 + 4,
        )
        logger.info(f'Metrics at: http://{self.metrics_address}:{exporter.port}/metrics')
        return exporter

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
        metrics, self._metrics = self._metrics, None
        if metrics is not None:
            metrics.close()
        socket, self._socket = self._socket, None
        if socket is not None:
            socket.close()
            if self.uds and self._socket_origin == 'bound':
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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _set_process_name(name: str) -> None:
    import setproctitle

    setproctitle.setproctitle(name)
