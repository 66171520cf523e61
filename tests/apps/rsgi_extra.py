"""Extra routes for the RSGI HTTP and life-cycle tests; anything else goes to `rsgi_app.app`."""

import asyncio
import json
import os
from urllib.parse import parse_qs

from . import rsgi_app


def _json(proto, data, status=200):
    proto.response_str(status, [('content-type', 'application/json')], json.dumps(data))


async def app(scope, proto):
    path = scope.path
    query = {k: v[0] for k, v in parse_qs(scope.query_string).items()}

    if path == '/headers-api':
        headers = scope.headers
        return _json(
            proto,
            {
                'keys': list(headers.keys()),
                'values': list(headers.values()),
                'items': [list(item) for item in headers.items()],
                'iter': list(headers),
                'len': len(headers),
                'get_all_multi': headers.get_all('x-multi'),
                'get_all_missing': headers.get_all('x-missing'),
                'get_multi': headers.get('x-multi'),
                'get_missing': headers.get('x-missing'),
                'get_default': headers.get('x-missing', 'dflt'),
                'contains_multi': 'x-multi' in headers,
                'contains_missing': 'x-missing' in headers,
            },
        )
    if path == '/slow':
        # The marker lines tell a test when the request reached the app, and when the app was done with it.
        print(f'slow request started {query.get("id", "")}', flush=True)
        await asyncio.sleep(float(query.get('s', 2)))
        print(f'slow request finished {query.get("id", "")}', flush=True)
        return proto.response_str(200, [], 'slept')
    if path == '/upload':
        total = chunks = biggest = 0
        async for chunk in proto:
            total += len(chunk)
            chunks += 1
            biggest = max(biggest, len(chunk))
        return _json(proto, {'total': total, 'chunks': chunks, 'biggest': biggest, 'pid': os.getpid()})
    if path == '/many-headers':
        count = int(query.get('n', 200))
        headers = [(f'x-many-{i}', f'value-{i}') for i in range(count)]
        headers += [('set-cookie', f'c{i}=v{i}') for i in range(5)]
        return proto.response_empty(200, headers)
    if path == '/unicode-stream':
        transport = proto.response_stream(200, [('content-type', 'text/plain; charset=utf-8')])
        for part in ('héllo ', 'wörld ', '✓ ', '日本 ', '🚀'):
            await transport.send_str(part)
        await transport.send_bytes('ünïcode bytes'.encode())
        return None
    if path == '/unicode-bytes':
        body = 'ßø ✓ 日本語 🚀'.encode()
        return proto.response_bytes(200, [('content-type', 'text/plain; charset=utf-8')], body)
    if path == '/cwd':
        return proto.response_str(200, [], os.getcwd())
    if path == '/body-info':
        body = await proto()
        return _json(proto, {'len': len(body), 'type': type(body).__name__, 'head': body[:16].decode('latin-1')})
    if path == '/respond-then-watch':
        # The documented pattern: respond, then cancel the disconnect watcher ourselves.
        watcher = asyncio.ensure_future(proto.client_disconnect())
        proto.response_str(200, [], 'watched')
        await asyncio.sleep(0)
        watcher.cancel()
        return None
    return await rsgi_app.app(scope, proto)


def serve_in_process(port: int, root: str) -> None:
    """Target of a multiprocessing 'spawn' child: runs the server through the Python API."""
    from granian import Granian

    Granian(
        'tests.apps.rsgi_app:app',
        interface='rsgi',
        address='127.0.0.1',
        port=port,
        loop='asyncio',
        working_dir=root,
    ).serve()


class LoopHooks:
    """Hooks that drive the loop themselves, as the contract allows; records them in GRANIAN_TEST_HOOKS."""

    def __init__(self):
        self.state = 'new'

    def _write(self, what):
        path = os.environ.get('GRANIAN_TEST_HOOKS')
        if path:
            with open(path, 'a') as f:
                f.write(what + '\n')

    def __rsgi_init__(self, loop):
        async def setup():
            await asyncio.sleep(0)
            return 'initialised in loop'

        self.state = loop.run_until_complete(setup())
        self._write(f'init running={loop.is_running()}')

    def __rsgi_del__(self, loop):
        async def teardown():
            await asyncio.sleep(0)
            return 'torn down in loop'

        self._write(f'del running={loop.is_running()} {loop.run_until_complete(teardown())}')

    async def __call__(self, scope, proto):
        proto.response_str(500, [], 'called __call__')

    async def __rsgi__(self, scope, proto):
        proto.response_str(200, [], self.state)


loop_hooks_app = LoopHooks()
