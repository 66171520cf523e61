"""Listening sockets as plain values: specs that bind one, and holders of its descriptor.

`SocketSpec(host, port, backlog)` and `UnixSocketSpec(bind, backlog, permissions)` describe a
listener; `build()` binds it (the same way the server binds `--host`/`--port` or `--uds`),
starts listening with the backlog, and returns a `SocketHolder(fd, uds, backlog)`.

The descriptor belongs to whoever holds it: a holder never closes it (`os.close(holder.get_fd())`
when done), so `spec.build().get_fd()` stays valid. All three pickle: a holder pickles as its
descriptor's number, meaningful where that descriptor is open (this process, a forked child),
except when `multiprocessing` sends it (a `Process` argument, a `Queue`), which passes the
descriptor itself: the receiver's holder has its own duplicate, under whatever number.
"""

import operator
import os
from multiprocessing.reduction import DupFd, ForkingPickler
from typing import Any, Optional, Tuple

from ._granian import SocketHolder as _NativeListener

__all__ = ['SocketHolder', 'SocketSpec', 'UnixSocketSpec']

_PORT_MAX = 65535
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


def _bounded(name: str, value: Any, low: int, high: int) -> int:
    number = operator.index(value)
    if not low <= number <= high:
        raise OverflowError(f'{name} must be within {low} and {high}, not {number}')
    return number


def _adopt(native: _NativeListener, uds: bool, backlog: int) -> 'SocketHolder':
    """A holder of a duplicate of what the native listener bound; the listener then lets go of its own."""
    try:
        fd = os.dup(native.fileno())
    finally:
        native.close()
    return SocketHolder(fd, uds, backlog)


class SocketHolder:
    """A listening socket's descriptor (`get_fd()`), whether it is a Unix socket (`is_uds()`),
    and the backlog it listens with."""

    __slots__ = ('_backlog', '_fd', '_uds')

    def __init__(self, fd: int, uds: bool, backlog: int):
        self._fd = operator.index(fd)
        self._uds = bool(uds)
        self._backlog = _bounded('backlog', backlog, _INT32_MIN, _INT32_MAX)

    def get_fd(self, /) -> int:
        return self._fd

    def is_uds(self, /) -> bool:
        return self._uds

    @property
    def backlog(self) -> int:
        return self._backlog

    def __getstate__(self) -> Tuple[int, bool, int]:
        return (self._fd, self._uds, self._backlog)

    def __reduce__(self) -> Any:
        return (SocketHolder, self.__getstate__())

    def __repr__(self) -> str:
        return f'SocketHolder(fd={self._fd}, uds={self._uds}, backlog={self._backlog})'


def _send_to_process(holder: SocketHolder) -> Any:
    return (_receive_from_process, (DupFd(holder.get_fd()), holder.is_uds(), holder.backlog))


def _receive_from_process(descriptor: Any, uds: bool, backlog: int) -> SocketHolder:
    return SocketHolder(descriptor.detach(), uds, backlog)


# Only multiprocessing's pickler: it knows how to hand a descriptor to another process.
ForkingPickler.register(SocketHolder, _send_to_process)


class SocketSpec:
    """A TCP listener on `host` (an address, `::` listening on IPv4 too, or a name to resolve)
    and `port` (0: one the system picks), listening with `backlog`."""

    __slots__ = ('_backlog', '_host', '_port')

    def __init__(self, host: str, port: int, backlog: int):
        if not isinstance(host, str):
            raise TypeError(f'host must be a str, not {type(host).__name__}')
        self._host = host
        self._port = _bounded('port', port, 0, _PORT_MAX)
        self._backlog = _bounded('backlog', backlog, _INT32_MIN, _INT32_MAX)

    def build(self, /) -> SocketHolder:
        """Binds and listens; OSError when the address is taken or cannot be bound."""
        return _adopt(_NativeListener.bind(self._host, self._port, self._backlog), False, self._backlog)

    def is_uds(self, /) -> bool:
        return False

    def __getstate__(self) -> Tuple[str, int, int]:
        return (self._host, self._port, self._backlog)

    def __reduce__(self) -> Any:
        return (SocketSpec, self.__getstate__())

    def __repr__(self) -> str:
        return f'SocketSpec(host={self._host!r}, port={self._port}, backlog={self._backlog})'


class UnixSocketSpec:
    """A Unix socket listener at the path `bind`, listening with `backlog`; `permissions`
    (an int such as 0o660, or None for what the umask gives) is the mode of the socket file."""

    __slots__ = ('_backlog', '_bind', '_permissions')

    def __init__(self, bind: str, backlog: int, permissions: Optional[int]):
        self._bind = os.fspath(bind)
        if not isinstance(self._bind, str):
            raise TypeError(f'bind must be a str path, not {type(self._bind).__name__}')
        self._backlog = _bounded('backlog', backlog, _INT32_MIN, _INT32_MAX)
        self._permissions = None if permissions is None else _bounded('permissions', permissions, 0, 0o7777)

    def build(self, /) -> SocketHolder:
        """Binds (replacing a stale socket file left by a server that is gone, never a live
        socket nor another kind of file), sets the permissions, and listens; OSError otherwise."""
        native = _NativeListener.bind_unix(self._bind, self._permissions, self._backlog)
        return _adopt(native, True, self._backlog)

    def is_uds(self, /) -> bool:
        return True

    def __getstate__(self) -> Tuple[str, int, Optional[int]]:
        return (self._bind, self._backlog, self._permissions)

    def __reduce__(self) -> Any:
        return (UnixSocketSpec, self.__getstate__())

    def __repr__(self) -> str:
        mode = None if self._permissions is None else oct(self._permissions)
        return f'UnixSocketSpec(bind={self._bind!r}, backlog={self._backlog}, permissions={mode})'
