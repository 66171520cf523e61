"""WSGI (PEP 3333): the glue core calls to serve a WSGI app, and the response helpers.

The server's environ, `start_response`, `wsgi.input` and response iteration are native
(`granian._granian`) and run on the worker's blocking threads. `Response` and
`ResponseIterWrap` are the same contract in Python, for code that drives a WSGI app itself:

    response = Response()
    body = ResponseIterWrap(app(environ, response))
    try:
        send(response.status, response.headers, b''.join(body))
    finally:
        body.close()
"""

import os
from typing import Any, Iterable, Iterator, List, Optional, Tuple

from granian._granian import FileWrapper
from granian._internal import require_callable

IS_ASYNC = False

__all__ = ['FileWrapper', 'Response', 'ResponseIterWrap']


class Response:
    """A `start_response` callable that keeps what the app set: `status` (the code, an int)
    and `headers` (the list of `(name, value)` the app passed); 200 and no headers until then.

    A second call is an error unless it carries `exc_info` (PEP 3333: an app that failed
    after starting its response may replace the status and headers with an error's).
    """

    __slots__ = ('_started', 'headers', 'status')

    def __init__(self):
        self.status = 200
        self.headers: List[Tuple[str, str]] = []
        self._started = False

    def __call__(self, status: str, headers: List[Tuple[str, str]], exc_info: Optional[Any] = None) -> None:
        if self._started and exc_info is None:
            raise RuntimeError('WSGI: start_response() called again without exc_info')
        self.status = _status_code(status)
        self.headers = headers
        self._started = True


def _status_code(status: str) -> int:
    """The code of a PEP 3333 status line: three digits, then a space and the reason, if any."""
    if not isinstance(status, str):
        raise TypeError(f'WSGI: the status must be a str, not {type(status).__name__}')
    code, rest = status[:3], status[3:]
    valid = len(code) == 3 and code.isascii() and code.isdigit() and code[0] != '0'
    if not valid or rest[:1] not in ('', ' '):
        raise ValueError(f'WSGI: invalid status line {status!r}')
    return int(code)


class ResponseIterWrap:
    """Iterates the response iterable a WSGI app returned (`inner`); `close()` calls its
    `close()` when it has one, as PEP 3333 asks of whoever consumes the response."""

    __slots__ = ('_iterator', 'inner')

    def __init__(self, inner: Iterable[bytes]):
        self.inner = inner
        self._iterator: Iterator[bytes] = iter(inner)

    def __iter__(self) -> 'ResponseIterWrap':
        return self

    def __next__(self) -> bytes:
        return next(self._iterator)

    def close(self) -> None:
        close = getattr(self.inner, 'close', None)
        if close is not None:
            close()


def default_blocking_threads() -> int:
    # Threads beyond the cores mostly wait for the GIL; a few extra cover apps doing I/O.
    return max(2, (os.cpu_count() or 1) * 2)


class WSGIApp:
    def __init__(self, target: Any, options: Any):
        self.handler = target
        self.blocking_threads = options.blocking_threads or default_blocking_threads()
        self.idle_timeout = int(options.blocking_threads_idle_timeout)
        self.script_name = (options.url_path_prefix or '').rstrip('/')
        self.multiprocess = options.workers > 1


def prepare(target: Any, options: Any) -> WSGIApp:
    return WSGIApp(require_callable(target, options.target), options)


def startup(app: WSGIApp, loop: Any) -> None:
    pass


def shutdown(app: WSGIApp, loop: Any) -> None:
    pass


def serve(app: WSGIApp, worker: Any, socket: Any, bridge: Any, loop: Any, logger: Any, on_stopped: Any) -> None:
    worker.serve_wsgi(
        socket,
        bridge,
        app.handler,
        logger,
        on_stopped,
        app.blocking_threads,
        app.idle_timeout,
        app.script_name,
        app.multiprocess,
    )
