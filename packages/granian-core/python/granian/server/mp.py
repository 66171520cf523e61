"""Workers as processes: the main process owns the listening socket and supervises them.

Each worker is a fresh interpreter (like multiprocessing's 'spawn', without its resource
tracker process) with its own Rust runtimes and its own instance of the application. It inherits three descriptors:
- the listening socket, which it adopts (`SocketHolder.from_fd`);
- the write end of a "ready" pipe: one byte once the worker serves;
- the read end of an "alive" pipe that only the main process writes to: it reads EOF when
  the main process is gone, however it went, and the worker then stops gracefully.
The options arrive on stdin, pickled (hooks stay in the main process). When they name objects
of the main module (a Granian subclass or a target loader defined in the script being run),
the worker loads that module first, under another name, as multiprocessing's spawn does.
"""

import contextlib
import functools
import importlib
import importlib.util
import os
import pickle
import signal
import subprocess
import sys
import threading
from typing import Callable, Dict, List, Optional, Tuple

from .._granian import SocketHolder
from ..log import configure_logging, logger
from ._supervisor import WorkerHandle
from ._systemd import worker_environment
from ._worker import RunningWorker, run_worker
from .common import AbstractServer, _set_process_name

__all__ = ['MPServer']

# What the new interpreter runs: the parent's sys.path first (it may be how granian and the
# application are found), then the worker itself.
_BOOTSTRAP = (
    'import pickle, sys; '
    'path, argv, main, payload = pickle.load(sys.stdin.buffer); '
    'sys.path[:] = path; sys.argv[:] = argv; '
    'from granian.server.mp import _worker_main; '
    '_worker_main(payload, main)'
)
_READY = b'R'


class MPServer(AbstractServer):
    """The server with its workers as processes (the default)."""

    _worker_kind = 'processes'

    def _worker_factory(self, socket_holder: SocketHolder, wake: Callable[[], None]) -> Callable[[int], WorkerHandle]:
        listener_fd = socket_holder.fileno()

        def spawn(slot: int) -> WorkerHandle:
            return _ProcessWorker(self, slot, listener_fd)

        return spawn


class _ProcessWorker(WorkerHandle):
    def __init__(self, server: MPServer, slot: int, listener_fd: int):
        super().__init__(slot)
        self.server = server
        self.listener_fd = listener_fd
        self.process: Optional[subprocess.Popen] = None
        self._ready_r: Optional[int] = None  # also tells the exit (EOF) where pidfds do not exist
        self._alive_w: Optional[int] = None
        self._pidfd: Optional[int] = None

    def start(self) -> None:
        ready_r, ready_w = os.pipe()
        alive_r, alive_w = os.pipe()
        self._ready_r, self._alive_w = ready_r, alive_w
        os.set_blocking(ready_r, False)
        fds = {'listener': self.listener_fd, 'ready': ready_w, 'alive': alive_r}
        payload = pickle.dumps((self.server, self.slot, fds, self.metrics))
        flags = getattr(subprocess, '_args_from_interpreter_flags', list)()
        try:
            self.process = subprocess.Popen(
                [sys.executable, *flags, '-c', _BOOTSTRAP],
                stdin=subprocess.PIPE,
                pass_fds=tuple(fds.values()),
                env=worker_environment(),
            )
        finally:
            # The child has its own copies now; ours would hide its exit (no EOF).
            os.close(ready_w)
            os.close(alive_r)
        self.pid = self.process.pid
        if hasattr(os, 'pidfd_open'):
            with contextlib.suppress(OSError):
                self._pidfd = os.pidfd_open(self.pid)
        assert self.process.stdin is not None
        try:
            main = _main_module() if b'__main__' in payload else None
            self.process.stdin.write(pickle.dumps((sys.path, sys.argv, main, payload)))
            self.process.stdin.close()
        except BrokenPipeError:
            pass  # died at once: its exit status tells why

    def waitables(self) -> List[int]:
        return [fd for fd in (self._pidfd, self._ready_r) if fd is not None]

    def poll_ready(self) -> bool:
        if self._ready_r is None:
            return False
        try:
            data = os.read(self._ready_r, 16)
        except BlockingIOError:
            return False
        except OSError:
            data = b''
        if data:
            if self._pidfd is not None:
                self._close_ready_pipe()  # the pidfd tells the exit
            return _READY in data
        # EOF: the worker exited (before serving, or after, without a pidfd).
        self._close_ready_pipe()
        assert self.process is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(1)
        return False

    def _close_ready_pipe(self) -> None:
        if self._ready_r is not None:
            os.close(self._ready_r)
            self._ready_r = None

    def is_alive(self) -> bool:
        assert self.process is not None
        if self.ready and self._ready_r is not None:
            self.poll_ready()  # no pidfd: EOF on this pipe is the news of the exit
        return self.process.poll() is None

    def exit_status(self) -> str:
        assert self.process is not None
        code = self.process.poll()
        if code is None:
            return 'still running'
        if code < 0:
            try:
                return f'killed by {signal.Signals(-code).name}'
            except ValueError:
                return f'killed by signal {-code}'
        return f'exit code {code}'

    def terminate(self) -> None:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.terminate()

    def kill(self) -> bool:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(5)
        return True

    def rss_mib(self) -> Optional[float]:
        return _rss_mib(self.pid)

    def close(self) -> None:
        self._close_ready_pipe()
        for fd in (self._alive_w, self._pidfd):
            if fd is not None:
                os.close(fd)
        self._alive_w = self._pidfd = None


def _rss_mib(pid: Optional[int]) -> Optional[float]:
    """VmRSS of a process from /proc, in MiB (None where /proc is not available)."""
    if pid is None:
        return None
    try:
        with open(f'/proc/{pid}/status') as status:
            for line in status:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


def _main_module() -> Optional[Tuple[str, str]]:
    """How a worker finds the main module, for options that name its objects (a Granian
    subclass or a target_loader defined in the script being run): by module name under
    `python -m`, by path for a script; None when there is no file (an interactive session)."""
    main = sys.modules.get('__main__')
    spec = getattr(main, '__spec__', None)
    if spec is not None and spec.name:
        return ('name', spec.name)
    path = getattr(main, '__file__', None)
    if path:
        return ('path', os.path.abspath(path))
    return None


def _load_main_module(main: Optional[Tuple[str, str]]) -> None:
    """Makes the parent's `__main__` objects unpicklable here, as multiprocessing's spawn does:
    the module runs again under another name, so its `if __name__ == '__main__':` part does not."""
    if main is None:
        return
    kind, where = main
    if kind == 'name':
        module = importlib.import_module(where)
    else:
        spec = importlib.util.spec_from_file_location('__mp_main__', where)
        if spec is None or spec.loader is None:
            return
        module = importlib.util.module_from_spec(spec)
        sys.modules['__mp_main__'] = module
        spec.loader.exec_module(module)
    sys.modules['__main__'] = module


def _worker_main(payload: bytes, main: Optional[Tuple[str, str]] = None) -> None:
    """A worker process: serve until SIGTERM (or until the main process is gone), then exit."""
    # Ctrl-C reaches the whole process group: the main process turns it into SIGTERM for us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with open(os.devnull) as devnull:
        os.dup2(devnull.fileno(), 0)
    server: MPServer
    fds: Dict[str, int]
    _load_main_module(main)
    server, slot, fds, metrics = pickle.loads(payload)
    for fd in fds.values():
        os.set_inheritable(fd, False)  # not for the application's own subprocesses
    configure_logging(server.log_level, server.log_dictconfig, server.log_enabled, server.log_format)
    if server.process_name:
        _set_process_name(f'{server.process_name} [worker-{slot}]')
    holder = server.worker_socket(functools.partial(SocketHolder.from_fd, fds['listener']))
    os.close(fds['listener'])
    ready_fd = fds['ready']

    def on_ready() -> None:
        # The pipe stays open: the main process reads its EOF when this process exits.
        os.write(ready_fd, _READY)

    worker = RunningWorker(server, holder, signals=(signal.SIGTERM,), on_ready=on_ready, metrics=metrics)
    watcher = threading.Thread(target=_watch_main_process, args=(fds['alive'], worker), name='granian-main-watch')
    watcher.daemon = True
    watcher.start()
    code = run_worker(worker)
    holder.close()
    sys.exit(code)


def _watch_main_process(alive_fd: int, worker: RunningWorker) -> None:
    with contextlib.suppress(OSError):
        while os.read(alive_fd, 1):  # nothing is ever written: this returns when the main process is gone
            pass
    logger.warning(f'The main process is gone: worker (PID {os.getpid()}) stopping')
    worker.request_stop()
