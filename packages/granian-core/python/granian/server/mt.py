"""Workers as threads of one interpreter: for free-threaded CPython builds.

Without the GIL, threads run Python in parallel, so each worker is a thread with its own
event loop and Rust runtimes, sharing one listening socket and one imported application.
The main thread supervises them as `mp.py` supervises processes, with two differences: a
thread cannot be killed (a worker that ignores the kill timeout is left behind, and dies
with the process), and memory is not per worker (`workers_max_rss` does not apply).

If the GIL is enabled (an extension module imported by the application can turn it back
on), threads would take turns instead of running in parallel: the server refuses to run.
"""

import os
import sys
import threading
from typing import Callable, Optional

from .._granian import SocketHolder
from ..errors import FatalError
from ..log import logger
from ._supervisor import WorkerHandle
from ._worker import RunningWorker, run_worker
from .common import AbstractServer

__all__ = ['MTServer', 'gil_enabled']


def gil_enabled() -> Optional[bool]:
    """True/False on builds that can tell (CPython 3.13+), None elsewhere."""
    probe = getattr(sys, '_is_gil_enabled', None)
    return None if probe is None else bool(probe())


_GIL_MESSAGE = (
    'the GIL is enabled{when}: worker threads would not run in parallel. '
    'Run a free-threaded Python with the GIL off (PYTHON_GIL=0), or a standard build, which runs workers as processes'
)


class MTServer(AbstractServer):
    """The server with its workers as threads (picked on free-threaded builds)."""

    _worker_kind = 'threads'

    def _worker_factory(self, socket_holder: SocketHolder, wake: Callable[[], None]) -> Callable[[int], WorkerHandle]:
        if gil_enabled():
            raise FatalError(_GIL_MESSAGE.format(when=''))
        if self.workers_max_rss:
            logger.warning('workers_max_rss is ignored with worker threads: their memory is not their own')
        if self.process_name:
            logger.info('process_name names the one process: worker threads share it')

        def spawn(slot: int) -> WorkerHandle:
            return _ThreadWorker(self, slot, socket_holder, wake)

        return spawn

    def _check_ready_worker(self, handle: WorkerHandle) -> Optional[str]:
        if gil_enabled():
            return _GIL_MESSAGE.format(when=' (turned on while the application was imported)')
        return None


class _ThreadWorker(WorkerHandle):
    def __init__(self, server: MTServer, slot: int, socket_holder: SocketHolder, wake: Callable[[], None]):
        super().__init__(slot)
        self.server = server
        self.socket_holder = socket_holder
        self._own_socket = socket_holder
        self.wake = wake
        self.exit_code: Optional[int] = None
        self.abandoned = False
        self._ready = threading.Event()
        self._worker: Optional[RunningWorker] = None
        self._thread: Optional[threading.Thread] = None

    def describe(self) -> str:
        return f'{self.name} (thread)'

    def start(self) -> None:
        # Each thread takes its own copy of the listener (SocketHolder hands out clones), or
        # with reuse_port a socket of its own.
        self._own_socket = self.server.worker_socket(lambda: self.socket_holder)
        self._worker = RunningWorker(
            self.server, self._own_socket, signals=(), on_ready=self._on_ready, metrics=self.metrics
        )
        # Daemon: a worker that ignored the kill timeout must not keep the process alive.
        self._thread = threading.Thread(target=self._main, name=f'granian-{self.name}', daemon=True)
        self.pid = os.getpid()
        self._thread.start()

    def _main(self) -> None:
        assert self._worker is not None
        try:
            self.exit_code = run_worker(self._worker)
        finally:
            if self.exit_code is None:
                self.exit_code = 1
            if self._own_socket is not self.socket_holder:
                self._own_socket.close()
            self.wake()

    def _on_ready(self) -> None:
        self._ready.set()
        self.wake()

    def poll_ready(self) -> bool:
        return self._ready.is_set()

    def is_alive(self) -> bool:
        return self.exit_code is None and not self.abandoned

    def exit_status(self) -> str:
        if self.abandoned:
            return 'left behind'
        return 'still running' if self.exit_code is None else f'exit code {self.exit_code}'

    def terminate(self) -> None:
        assert self._worker is not None
        self._worker.request_stop()

    def kill(self) -> bool:
        # Threads cannot be killed: stop waiting for this one; it ends with the process.
        self.abandoned = True
        return False
