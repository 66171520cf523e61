"""Apps for the worker life-cycle tests, and a runner for the Python API.

`python -m tests.apps.workers_apps '{"port": 8000, "workers": 2, ...}'` serves through
`Granian(...)` with those keyword arguments, so options the CLI bounds (short lifetimes,
sub-second memory samples) can be tested. Runner-only keys:
- `server_class`: `mp` or `mt` (default: whatever `granian.server.Granian` is);
- `hooks_file`: the main process's hooks append their phase to this file;
- `drive`: `reload-then-stop` calls `server.reload()` then `server.stop()` from a thread;
- `fake_gil`: `on` makes `sys._is_gil_enabled()` return True (free-threaded checks).
"""

import asyncio
import json
import os
import signal
import sys
import threading
import time
import urllib.request
from urllib.parse import parse_qs

# Memory the app keeps on purpose (`/alloc`), so that a worker goes over an RSS limit.
BALLAST: list = []


def _query(scope) -> dict:
    return {k: v[0] for k, v in parse_qs(scope.query_string).items()}


async def app(scope, proto):
    path = scope.path
    query = _query(scope)
    if path == '/pid':
        return proto.response_str(200, [], str(os.getpid()))
    if path == '/sleep':
        await asyncio.sleep(float(query.get('s', 1)))
        return proto.response_str(200, [], f'slept {os.getpid()}')
    if path == '/slow':
        print(f'slow request started {query.get("id", "")} in {os.getpid()}', flush=True)
        await asyncio.sleep(float(query.get('s', 1)))
        return proto.response_str(200, [], f'slept {os.getpid()}')
    if path == '/alloc':
        chunk = bytearray(int(query.get('mb', 1)) * 1024 * 1024)
        for i in range(0, len(chunk), 4096):
            chunk[i] = 1  # touch every page: resident, not just reserved
        BALLAST.append(chunk)
        return proto.response_str(200, [], str(os.getpid()))
    if path == '/env':
        return proto.response_str(200, [], json.dumps({k: os.environ.get(k) for k in query.get('keys', '').split(',')}))
    return proto.response_str(200, [], 'ok')


class _StubbornApp:
    """Ignores SIGTERM: only the kill timeout (or SIGKILL) ends its worker."""

    def __rsgi_init__(self, loop):
        loop.remove_signal_handler(signal.SIGTERM)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    async def __rsgi__(self, scope, proto):
        await app(scope, proto)


stubborn_app = _StubbornApp()


class _FailingInit:
    """Its start-up hook fails, in every worker, every time."""

    def __rsgi_init__(self, loop):
        raise RuntimeError('init failed on purpose')

    async def __rsgi__(self, scope, proto):
        await app(scope, proto)


failing_init_app = _FailingInit()


def gil_on_import_app():
    """A factory whose import "turns the GIL on", as some extension modules do."""
    sys._is_gil_enabled = lambda: True
    return app


def _record(path: str, what: str) -> None:
    with open(path, 'a') as f:
        f.write(what + '\n')


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def _wait_pid_change(url: str, old: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid = _get(url + '/pid')
        except OSError:
            pid = old
        if pid != old:
            return pid
        time.sleep(0.1)
    raise RuntimeError('the worker was not replaced')


def run_server(options: dict) -> None:
    server_class = options.pop('server_class', None)
    hooks_file = options.pop('hooks_file', None)
    drive = options.pop('drive', None)
    if options.pop('fake_gil', None) == 'on':
        sys._is_gil_enabled = lambda: True
    target = options.pop('target', 'tests.apps.workers_apps:app')
    if server_class == 'mt':
        from granian.server import MTServer as Server
    elif server_class == 'mp':
        from granian.server import MPServer as Server
    else:
        from granian import Granian as Server

    server = Server(target, interface='rsgi', loop='asyncio', **options)
    if hooks_file:
        for phase in ('startup', 'reload', 'shutdown'):
            getattr(server, f'on_{phase}')(lambda phase=phase: _record(hooks_file, phase))
    if drive == 'reload-then-stop':
        url = f'http://127.0.0.1:{options["port"]}'

        def control() -> None:
            first = _wait_pid_change(url, '')
            server.reload()
            _wait_pid_change(url, first)
            server.stop()

        server.on_startup(lambda: threading.Thread(target=control, daemon=True).start())
    server.serve()


if __name__ == '__main__':
    run_server(json.loads(sys.argv[1]))
