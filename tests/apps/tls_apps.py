"""Tiny ASGI and WSGI apps reporting the scheme they see, for the HTTPS tests."""

import json

from tests.apps.lifespan import complete_lifespan


async def asgi_app(scope, receive, send):
    if scope['type'] == 'lifespan':
        return await complete_lifespan(receive, send)
    body = json.dumps({'scheme': scope['scheme'], 'http_version': scope['http_version']}).encode()
    await send({'type': 'http.response.start', 'status': 200, 'headers': [(b'content-type', b'application/json')]})
    await send({'type': 'http.response.body', 'body': body})


def wsgi_app(environ, start_response):
    body = json.dumps({'scheme': environ['wsgi.url_scheme'], 'protocol': environ['SERVER_PROTOCOL']}).encode()
    start_response('200 OK', [('Content-Type', 'application/json'), ('Content-Length', str(len(body)))])
    return [body]
