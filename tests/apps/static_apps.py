"""One tiny app per interface for the static files and logging tests.

Each answers every request with `app:<METHOD> <path> body=<n>`, so a test can tell a response
of the app from one of the static files handler (which never enters Python), and whether the
request body reached the app.
"""

import os

from tests.apps.lifespan import complete_lifespan


def _text(method: str, path: str, body: bytes) -> bytes:
    return f'app:{method} {path} body={len(body)}'.encode()


async def rsgi_app(scope, proto):
    body = await proto()
    if scope.path == '/pid':
        return proto.response_str(200, [('content-type', 'text/plain')], str(os.getpid()))
    proto.response_bytes(
        200, [('content-type', 'text/plain'), ('x-from', 'app')], _text(scope.method, scope.path, body)
    )


async def asgi_app(scope, receive, send):
    if scope['type'] == 'lifespan':
        return await complete_lifespan(receive, send)
    body = b''
    while True:
        message = await receive()
        body += message.get('body', b'')
        if not message.get('more_body'):
            break
    await send(
        {
            'type': 'http.response.start',
            'status': 200,
            'headers': [(b'content-type', b'text/plain'), (b'x-from', b'app')],
        }
    )
    await send({'type': 'http.response.body', 'body': _text(scope['method'], scope['path'], body)})


def wsgi_app(environ, start_response):
    length = int(environ.get('CONTENT_LENGTH') or 0)
    body = environ['wsgi.input'].read(length) if length else b''
    start_response('200 OK', [('content-type', 'text/plain'), ('x-from', 'app')])
    return [_text(environ['REQUEST_METHOD'], environ['PATH_INFO'], body)]
