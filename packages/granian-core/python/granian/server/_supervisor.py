"""Supervision: keeping `workers` workers serving, and replacing them as asked.

`Supervisor` runs on the main thread of the main process and only sees workers through
`WorkerHandle`, whatever runs them (a process in `mp.py`, a thread in `mt.py`).
"""

import contextlib
import os
import select
import time
from collections import deque
from typing import Callable, Deque, Dict, List, Optional, Tuple

from .._granian import MetricsExporter
from .._native import MetricsSettings
from ..log import logger
from ._server_options import ServerOptions
from ._systemd import ServiceNotifier


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
        self.metrics: Optional[MetricsSettings] = None  # its slot of the metrics region, with --metrics

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


class Supervisor:
    """Keeps `workers` workers serving, and replaces them as options, signals and failures ask.

    Single-threaded: everything happens in `loop()`. Signals, `stop()`, `reload()` and thread
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

    def __init__(
        self,
        options: ServerOptions,
        before_reload: Callable[[], None],
        check_ready: Callable[[WorkerHandle], Optional[str]],
        metrics: Optional[MetricsExporter] = None,
        notifier: Optional[ServiceNotifier] = None,
    ):
        self.options = options
        self.notifier = notifier or ServiceNotifier()  # systemd's view: ready, reloading, stopping
        self.metrics = metrics  # the exporter, told of every worker process that starts and ends
        self.before_reload = before_reload  # env files and reload hooks: may raise, which is logged
        self.check_ready = check_ready  # a reason to stop the server once a worker serves, or None
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

    def start(self, spawn: Callable[[int], WorkerHandle], stop_requested: bool = False) -> None:
        """Starts the workers (none when a stop came first); loop() then keeps them serving."""
        self.spawn = spawn
        if stop_requested:
            self.stopping = True
            return
        for slot in range(1, self.options.workers + 1):
            self.slots[slot] = self._start(slot)
        if self.options.workers_max_rss:
            self.next_rss_sample = time.monotonic() + self.options.rss_sample_interval

    def loop(self) -> int:
        try:
            while not (self.stopping and not self._handles()):
                self._wait()
                self._handle_commands()
                self._check_workers()
                self._run_timers()
                self._report_state()
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
        if self.metrics is not None:
            handle.metrics = MetricsSettings(path=self.metrics.path, slot=self.metrics.claim(slot))
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
        lifetime = self.options.workers_lifetime
        if lifetime and not self.stopping:
            due.extend(
                h.ready_at + lifetime
                for slot, h in self.slots.items()
                if h and h.ready and not h.stop_asked and not self._scheduled(slot)
            )
        if self.next_rss_sample is not None and not self.stopping:
            due.append(self.next_rss_sample)
        if self.notifier.next_watchdog is not None:
            due.append(self.notifier.next_watchdog)
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
        self.notifier.stopping()
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
        timeout = self.options.workers_kill_timeout
        if timeout:
            handle.kill_at = time.monotonic() + timeout
        handle.terminate()

    def _begin_reload(self, reason: str) -> None:
        if self.stopping:
            return
        logger.info(f'Reloading ({reason}): replacing the workers one at a time, new ones first')
        self.notifier.reloading()
        try:
            self.before_reload()
        except Exception as exc:  # noqa: BLE001 - a user hook failing must not take the server down
            logger.error(f'a reload hook failed: {exc!r}', exc_info=True)
        self.reloads += 1
        for slot in range(1, self.options.workers + 1):
            if self.options.reload_on_changes and self._restart_idle_slot(slot):
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
        problem = self.check_ready(handle)
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
        if self.metrics is not None and handle.metrics is not None:
            self.metrics.release(handle.metrics.slot)
            handle.metrics = None
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
                if self.options.reload_on_changes and handle.generation < self.reloads:
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
            if self.options.reload_on_changes:
                logger.error(
                    f'{handle.describe()} exited before serving ({status}): '
                    'waiting for a change to the watched files to start it again'
                )
                return
            logger.error(f'{handle.describe()} exited before serving ({status}): shutting down')
            self._fail('a worker failed to start')
            return
        logger.error(f'{handle.describe()} died unexpectedly ({status})')
        if self.options.respawn_failed_workers:
            interval = self.options.respawn_interval
            logger.info(f'Respawning worker-{slot} in {interval:g}s')
            self.respawn_at[slot] = time.monotonic() + interval
        elif self.options.reload_on_changes and self.options.reload_ignore_worker_failure:
            logger.warning(f'worker-{slot} stays down until a change to the watched files starts it again')
        else:
            logger.error('Respawning failed workers is disabled (see --respawn-failed-workers): shutting down')
            self._fail('a worker died')

    def _report_state(self) -> None:
        """Tells the service manager once every worker serves (at start, after a reload), and
        pings its watchdog while some worker serves."""
        if self.stopping:
            return
        serving = [h for h in self.slots.values() if h is not None and h.ready]
        if self.pending is None and not self.queue and len(serving) == self.options.workers:
            self.notifier.serving(self.options.workers)
        self.notifier.ping_watchdog(time.monotonic(), healthy=bool(serving))

    # -- timers ------------------------------------------------------------------------------------------------

    def _run_timers(self) -> None:
        now = time.monotonic()
        for handle in self._handles():
            if handle.kill_at is not None and now >= handle.kill_at and handle.is_alive():
                handle.kill_at = None
                timeout = self.options.workers_kill_timeout
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
                    if self.metrics is not None:
                        self.metrics.respawned('err')
                    self.slots[slot] = self._start(slot)
        lifetime = self.options.workers_lifetime
        if lifetime:
            for slot, handle in self.slots.items():
                if handle is None or not handle.ready or handle.stop_asked or self._scheduled(slot):
                    continue
                if now - handle.ready_at >= lifetime:
                    logger.info(f'{handle.describe()} reached its lifetime ({lifetime:g}s): replacing it')
                    self._enqueue(slot, 'lifetime')
        if self.next_rss_sample is not None and now >= self.next_rss_sample:
            self.next_rss_sample = now + self.options.rss_sample_interval
            self._sample_memory()
        self._next_replacement()

    def _sample_memory(self) -> None:
        limit = self.options.workers_max_rss
        samples = self.options.rss_samples
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
            if self.metrics is not None and reason in _RESPAWN_REASONS:
                self.metrics.respawned(_RESPAWN_REASONS[reason])
            self.pending = self._start(slot)


# Replacements the metrics count, by the name the exporter gives their counter.
_RESPAWN_REASONS = {'lifetime': 'lifetime', 'memory': 'rss'}


def _wait_readable(fds: List[int], timeout: float) -> None:
    if hasattr(select, 'poll'):
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        poller.poll(timeout * 1000)
    else:
        select.select(fds, [], [], timeout)
