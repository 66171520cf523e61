"""An RSGI app with one route per behaviour the tests check."""

import asyncio
import json
import os
from urllib.parse import parse_qs

from granian.rsgi import ProtocolClosed, ProtocolError

# What happened in requests that outlive their response, keyed by a test-chosen id.
EVENTS: dict = {}


def _json(proto, data, status=200):
    proto.response_str(status, [('content-type', 'application/json')], json.dumps(data))


def _scope_dict(scope):
    return {
        'proto': scope.proto,
        'rsgi_version': scope.rsgi_version,
        'http_version': scope.http_version,
        'server': scope.server,
        'client': scope.client,
        'scheme': scope.scheme,
        'method': scope.method,
        'path': scope.path,
        'query_string': scope.query_string,
        'authority': scope.authority,
        'headers': [[k, v] for k, v in scope.headers.items()],
        'header_keys': list(scope.headers.keys()),
        'header_len': len(scope.headers),
        'accept_all': scope.headers.get_all('x-multi'),
        'has_host': 'host' in scope.headers,
        'missing': scope.headers.get('x-missing', 'fallback'),
    }


async def app(scope, proto):
    path = scope.path
    query = {k: v[0] for k, v in parse_qs(scope.query_string).items()}

    if path.startswith('/scope'):
        return _json(proto, _scope_dict(scope))
    if path == '/echo':
        body = await proto()
        return proto.response_bytes(200, [('content-type', 'application/octet-stream')], body)
    if path == '/chunks':
        sizes = []
        async for chunk in proto:
            sizes.append(len(chunk))
        return _json(proto, {'chunks': len(sizes), 'total': sum(sizes)})
    if path == '/str':
        return proto.response_str(200, [('content-type', 'text/plain; charset=utf-8')], 'héllo wörld ✓ 日本')
    if path == '/empty':
        return proto.response_empty(int(query.get('status', 204)), [('x-empty', 'yes')])
    if path == '/bytes':
        size = int(query.get('size', 1024))
        return proto.response_bytes(200, [('content-type', 'application/octet-stream')], b'x' * size)
    if path == '/headers':
        headers = [('x-repeat', 'one'), ('x-repeat', 'two')] + [(f'x-h{i}', str(i)) for i in range(50)]
        return proto.response_empty(200, headers)
    if path == '/file':
        return proto.response_file(200, [('content-type', 'application/octet-stream')], query['path'])
    if path == '/range':
        try:
            proto.response_file_range(
                206,
                [('content-type', 'application/octet-stream')],
                query['path'],
                int(query['start']),
                int(query['end']),
            )
        except ValueError as exc:
            return proto.response_str(416, [], str(exc))
        return None
    if path == '/stream':
        count = int(query.get('count', 10))
        transport = proto.response_stream(200, [('content-type', 'text/plain')])
        for i in range(count):
            if i % 2:
                await transport.send_bytes(f'chunk{i}\n'.encode())
            else:
                await transport.send_str(f'chunk{i}\n')
        return None
    if path == '/stream-forever':
        key = query.get('id', 'stream')
        transport = proto.response_stream(200, [('content-type', 'text/plain')])
        try:
            for _ in range(100_000):
                await transport.send_bytes(b'y' * 1024)
                await asyncio.sleep(0.001)
        except ProtocolClosed:
            EVENTS[key] = 'closed'
            return None
        EVENTS[key] = 'finished'
        return None
    if path == '/error':
        raise RuntimeError('boom from the app')
    if path == '/noresponse':
        return None
    if path == '/twice':
        key = query.get('id', 'twice')
        proto.response_str(200, [], 'first')
        try:
            proto.response_str(200, [], 'second')
        except ProtocolError:
            EVENTS[key] = 'ProtocolError'
        else:
            EVENTS[key] = 'accepted'
        return None
    if path == '/bad-header':
        try:
            proto.response_str(200, [('bad header', 'x')], 'nope')
        except ValueError:
            return proto.response_str(200, [], 'rejected')
        return None
    if path == '/disconnect':
        key = query.get('id', 'disconnect')
        EVENTS[key] = 'waiting'
        await proto.client_disconnect()
        EVENTS[key] = 'disconnected'
        return None
    if path == '/events':
        return _json(proto, EVENTS)
    if path == '/sleep':
        await asyncio.sleep(float(query.get('s', 1)))
        return proto.response_str(200, [], 'slept')
    if path == '/pid':
        return proto.response_str(200, [], str(os.getpid()))
    return proto.response_str(200, [('content-type', 'text/plain')], 'Hello, world!')


class WithHooks:
    """Records its life-cycle hooks in a file given by GRANIAN_TEST_HOOKS."""

    def __init__(self):
        self.log = os.environ.get('GRANIAN_TEST_HOOKS')

    def _write(self, what):
        if self.log:
            with open(self.log, 'a') as f:
                f.write(what + '\n')

    def __rsgi_init__(self, loop):
        self._write('init')

    def __rsgi_del__(self, loop):
        self._write('del')

    async def __call__(self, scope, proto):
        proto.response_str(500, [], 'called __call__')

    async def __rsgi__(self, scope, proto):
        proto.response_str(200, [], 'called __rsgi__')


hooks_app = WithHooks()


def factory():
    async def built(scope, proto):
        proto.response_str(200, [], 'from factory')

    return built


not_callable = 42
