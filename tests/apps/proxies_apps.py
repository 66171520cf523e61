"""Apps wrapped with the forwarded-header middleware, for every interface and several servers.

Stdlib and `granian.utils.proxies` only: the same module is served by granian, by uvicorn
and by wsgiref from a virtual env where granian-proxies is the only granian distribution.
Each app answers with JSON describing what it saw. The trusted hosts come from the
`PROXIES_TEST_TRUSTED` environment variable (default: the wrappers' own default).
"""

import json
import os

from granian.utils.proxies import (
    wrap_asgi_with_proxy_headers,
    wrap_rsgi_with_proxy_headers,
    wrap_wsgi_with_proxy_headers,
)

_TRUSTED = os.environ.get('PROXIES_TEST_TRUSTED')
_OPTIONS = {} if _TRUSTED is None else {'trusted_hosts': _TRUSTED}


class _RSGIApp:
    def __init__(self):
        self.init_calls = 0

    def __rsgi_init__(self, loop):
        self.init_calls += 1

    async def __call__(self, scope, proto):
        body = await proto()
        data = {
            'client': scope.client,
            'scheme': scope.scheme,
            'proto': scope.proto,
            'method': scope.method,
            'path': scope.path,
            'query_string': scope.query_string,
            'server': scope.server,
            'http_version': scope.http_version,
            'forwarded_for': scope.headers.get_all('x-forwarded-for'),
            'custom': scope.headers.get('x-custom'),
            'body': body.decode(),
            'init_calls': self.init_calls,
        }
        proto.response_str(200, [('content-type', 'application/json')], json.dumps(data))


async def _asgi_app(scope, receive, send):
    if scope['type'] == 'lifespan':
        while True:
            message = await receive()
            if message['type'] == 'lifespan.startup':
                await send({'type': 'lifespan.startup.complete'})
            elif message['type'] == 'lifespan.shutdown':
                await send({'type': 'lifespan.shutdown.complete'})
                return
    body = b''
    while True:
        message = await receive()
        body += message.get('body', b'')
        if not message.get('more_body'):
            break
    headers = {k.decode('latin-1'): v.decode('latin-1') for k, v in scope['headers']}
    data = {
        'client': list(scope['client']) if scope.get('client') else None,
        'scheme': scope['scheme'],
        'method': scope['method'],
        'path': scope['path'],
        'query_string': scope['query_string'].decode(),
        'custom': headers.get('x-custom'),
        'body': body.decode(),
    }
    payload = json.dumps(data).encode()
    await send(
        {
            'type': 'http.response.start',
            'status': 200,
            'headers': [(b'content-type', b'application/json'), (b'content-length', str(len(payload)).encode())],
        }
    )
    await send({'type': 'http.response.body', 'body': payload})


def _wsgi_app(environ, start_response):
    length = int(environ.get('CONTENT_LENGTH') or 0)
    body = environ['wsgi.input'].read(length) if length else b''
    data = {
        'client': environ.get('REMOTE_ADDR'),
        'scheme': environ['wsgi.url_scheme'],
        'method': environ['REQUEST_METHOD'],
        'path': environ.get('PATH_INFO'),
        'query_string': environ.get('QUERY_STRING', ''),
        'custom': environ.get('HTTP_X_CUSTOM'),
        'body': body.decode(),
    }
    payload = json.dumps(data).encode()
    start_response('200 OK', [('Content-Type', 'application/json'), ('Content-Length', str(len(payload)))])
    return [payload]


rsgi_app = wrap_rsgi_with_proxy_headers(_RSGIApp(), **_OPTIONS)
asgi_app = wrap_asgi_with_proxy_headers(_asgi_app, **_OPTIONS)
wsgi_app = wrap_wsgi_with_proxy_headers(_wsgi_app, **_OPTIONS)
