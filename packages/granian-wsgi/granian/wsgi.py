"""WSGI (PEP 3333): the glue core calls to serve a WSGI app.

The environ, `start_response`, `wsgi.input` and response iteration are native
(`granian._granian`) and run on the worker's blocking threads.
"""

import os
from typing import Any

from granian._granian import FileWrapper
from granian._internal import require_callable

IS_ASYNC = False

__all__ = ['FileWrapper']


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
