"""What runs inside one worker: the app on an event loop, served by native runtimes beside it.

`RunningWorker` is the same whether the worker is a process (`mp.py`) or a thread (`mt.py`):
it loads the app, runs the interface's hooks around serving and reports when it serves.
"""

import asyncio
import contextlib
import signal
import threading
from typing import Callable, Optional, Sequence

from .._granian import LoopBridge, SocketHolder, Worker
from .._interfaces import load_interface
from .._loops import loops
from .._native import MetricsSettings
from ..errors import FatalError
from ..log import logger
from ._server_options import ServerOptions


class RunningWorker:
    """One worker in this process: the event loop on this thread, Rust runtimes beside it.

    `signals` stop it gracefully (on the main thread only); `on_ready` is called once it serves.
    """

    def __init__(
        self,
        server: ServerOptions,
        socket: SocketHolder,
        signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM),
        on_ready: Optional[Callable[[], None]] = None,
        metrics: Optional[MetricsSettings] = None,
    ):
        self.server = server
        self.metrics = metrics
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
        bridge = attach_bridge(loop)
        with self._signals(loop):
            interface.startup(app, loop)
            self.native = server._native_worker(self.metrics)
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


def attach_bridge(loop: asyncio.AbstractEventLoop) -> LoopBridge:
    """A bridge that hands the native runtimes' work to `loop`; the caller removes its reader
    (`loop.remove_reader(bridge.fileno())`) once the native worker has stopped."""
    bridge = LoopBridge()
    bridge.bind_loop(loop)
    loop.add_reader(bridge.fileno(), bridge.drain)
    return bridge


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    with contextlib.suppress(Exception):
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


def run_worker(worker: RunningWorker) -> int:
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
