"""The same routes in RSGI, ASGI and WSGI, for the HTTP/3 tests.

/             'hello'
/version      the protocol version the app was told ('3' over HTTP/3) and the scheme
/echo         the request body back, with its size in x-received
/stream       32 chunks of 1 KiB ('0' * 1024, '1' * 1024, ...), streamed
/file?path=   the file (RSGI: a byte range of it with &start=&end=)
/error        the app raises: 500
/slow         answers 'slow' after 0.5 s
/wait-disconnect?id=   (RSGI, ASGI) waits for the client to leave and notes it; /events?id= tells
"""

import asyncio
import time
from urllib.parse import parse_qs

from tests.apps.lifespan import complete_lifespan

CHUNKS = 32
CHUNK = 1024
EVENTS = {}


def chunk(i: int) -> bytes:
    return str(i % 10).encode() * CHUNK


# -- RSGI -------------------------------------------------------------------------------------------------------------


async def rsgi_app(scope, proto):
    path = scope.path
    query = {k: v[0] for k, v in parse_qs(scope.query_string).items()}
    if path == '/':
        return proto.response_str(200, [('content-type', 'text/plain')], 'hello')
    if path == '/version':
        return proto.response_str(200, [], f'{scope.http_version} {scope.scheme}')
    if path == '/echo':
        body = b''
        async for piece in proto:
            body += piece
        return proto.response_bytes(200, [('x-received', str(len(body)))], body)
    if path == '/stream':
        transport = proto.response_stream(200, [('content-type', 'application/octet-stream')])
        for i in range(CHUNKS):
            await transport.send_bytes(chunk(i))
        return None
    if path == '/file':
        if 'start' in query:
            return proto.response_file_range(206, [], query['path'], int(query['start']), int(query['end']))
        return proto.response_file(200, [], query['path'])
    if path == '/error':
        raise RuntimeError('boom over HTTP/3')
    if path == '/slow':
        await asyncio.sleep(0.5)
        return proto.response_str(200, [], 'slow')
    if path == '/wait-disconnect':
        await proto.client_disconnect()
        EVENTS[query['id']] = 'disconnected'
        return None
    if path == '/events':
        return proto.response_str(200, [], EVENTS.get(query['id'], 'none'))
    return proto.response_empty(404, [])


# -- ASGI -------------------------------------------------------------------------------------------------------------


async def asgi_app(scope, receive, send):
    if scope['type'] == 'lifespan':
        return await complete_lifespan(receive, send)
    path = scope['path']
    query = {k: v[0] for k, v in parse_qs(scope['query_string'].decode()).items()}

    async def answer(status, body=b'', headers=()):
        await send({'type': 'http.response.start', 'status': status, 'headers': list(headers)})
        await send({'type': 'http.response.body', 'body': body})

    if path == '/':
        return await answer(200, b'hello', [(b'content-type', b'text/plain')])
    if path == '/version':
        return await answer(200, f'{scope["http_version"]} {scope["scheme"]}'.encode())
    if path == '/echo':
        body = b''
        while True:
            message = await receive()
            if message['type'] == 'http.disconnect':
                return None  # the body broke off (a limit, or the client left): no answer
            body += message.get('body', b'')
            if not message.get('more_body'):
                break
        return await answer(200, body, [(b'x-received', str(len(body)).encode())])
    if path == '/stream':
        await send({'type': 'http.response.start', 'status': 200, 'headers': []})
        for i in range(CHUNKS):
            await send({'type': 'http.response.body', 'body': chunk(i), 'more_body': True})
        return await send({'type': 'http.response.body', 'body': b''})
    if path == '/file':
        await send({'type': 'http.response.start', 'status': 200, 'headers': []})
        return await send({'type': 'http.response.pathsend', 'path': query['path']})
    if path == '/error':
        raise RuntimeError('boom over HTTP/3')
    if path == '/slow':
        await asyncio.sleep(0.5)
        return await answer(200, b'slow')
    if path == '/wait-disconnect':
        while (await receive())['type'] != 'http.disconnect':
            pass
        EVENTS[query['id']] = 'disconnected'
        return None
    if path == '/events':
        return await answer(200, EVENTS.get(query['id'], 'none').encode())
    return await answer(404)


# -- WSGI -------------------------------------------------------------------------------------------------------------


def wsgi_app(environ, start_response):
    path = environ['PATH_INFO']
    query = {k: v[0] for k, v in parse_qs(environ['QUERY_STRING']).items()}
    if path == '/':
        start_response('200 OK', [('content-type', 'text/plain')])
        return [b'hello']
    if path == '/version':
        start_response('200 OK', [])
        return [f'{environ["SERVER_PROTOCOL"]} {environ["wsgi.url_scheme"]}'.encode()]
    if path == '/echo':
        body = environ['wsgi.input'].read()
        start_response('200 OK', [('x-received', str(len(body)))])
        return [body]
    if path == '/stream':
        start_response('200 OK', [])
        return (chunk(i) for i in range(CHUNKS))
    if path == '/file':
        start_response('200 OK', [])
        return environ['wsgi.file_wrapper'](open(query['path'], 'rb'))
    if path == '/error':
        raise RuntimeError('boom over HTTP/3')
    if path == '/slow':
        time.sleep(0.5)
        start_response('200 OK', [])
        return [b'slow']
    start_response('404 Not Found', [])
    return [b'']
