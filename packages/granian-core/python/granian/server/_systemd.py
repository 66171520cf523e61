"""systemd integration of the main process: the sockets of socket activation, and the
notices of `Type=notify` / `Type=notify-reload` units (ready, reloading, stopping, watchdog).

The messages themselves go through the core (`sd-notify`); this module decides when.
Everything here does nothing unless systemd started the process with the variables asking
for it (`LISTEN_FDS`/`LISTEN_PID`, `NOTIFY_SOCKET`, `WATCHDOG_USEC`).
"""

import os
import time
from typing import Dict, List, Optional

from .._granian import systemd_listen_fds, systemd_notify, systemd_watchdog_interval
from ..log import logger

# What socket activation sets for this process only: the application's own children must not
# take the sockets for theirs.
_ACTIVATION_VARS = ('LISTEN_FDS', 'LISTEN_PID', 'LISTEN_FDNAMES')
# What only the main process talks to: workers get an environment without them.
_NOTIFY_VARS = ('NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID')


def take_activated_sockets() -> List[int]:
    """The descriptors socket activation passed to this process (none without it); the
    variables that announced them are cleared either way."""
    try:
        fds = systemd_listen_fds()
    finally:
        for name in _ACTIVATION_VARS:
            os.environ.pop(name, None)
    return fds


def worker_environment() -> Dict[str, str]:
    """The environment of a worker process: this one's, without the service manager's channel."""
    return {name: value for name, value in os.environ.items() if name not in _NOTIFY_VARS}


class ServiceNotifier:
    """Tells the service manager what the server does, when it listens (`NOTIFY_SOCKET`)."""

    def __init__(self) -> None:
        self.active = 'NOTIFY_SOCKET' in os.environ
        self.watchdog_interval: Optional[float] = systemd_watchdog_interval() if self.active else None
        self.next_watchdog: Optional[float] = time.monotonic() if self.watchdog_interval else None
        self.state = 'starting'

    def _send(self, *states: str) -> None:
        if not self.active:
            return
        try:
            systemd_notify(list(states))
        except OSError as exc:
            logger.warning(f'systemd: {exc}')

    def serving(self, workers: int) -> None:
        """Every worker serves: the start or the reload is over."""
        if self.state != 'ready':
            self.state = 'ready'
            self._send('READY', f'STATUS=serving with {workers} workers')

    def reloading(self) -> None:
        if self.state != 'stopping':
            self.state = 'reloading'
            self._send('RELOADING', 'STATUS=replacing the workers')

    def stopping(self) -> None:
        if self.state != 'stopping':
            self.state = 'stopping'
            self._send('STOPPING', 'STATUS=stopping the workers')

    def ping_watchdog(self, now: float, healthy: bool) -> None:
        """Pings the watchdog when due and `healthy`: a server with no worker serving lets it fire."""
        if self.next_watchdog is None or self.watchdog_interval is None or now < self.next_watchdog:
            return
        self.next_watchdog = now + self.watchdog_interval
        if healthy:
            self._send('WATCHDOG')
