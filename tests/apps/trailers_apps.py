"""Apps that end their responses with trailer fields (as gRPC does), for RSGI and ASGI."""

from tests.apps.lifespan import complete_lifespan

CHECKSUM = 'sha256=abc123'


async def rsgi_app(scope, proto):
    if scope.path == '/scope':
        proto.response_str(200, [], 'no extensions in RSGI')
        return
    transport = proto.response_stream(200, [('content-type', 'text/plain'), ('trailer', 'x-checksum, x-status')])
    await transport.send_bytes(b'hello ')
    await transport.send_str('world')
    await transport.send_trailers([('x-checksum', CHECKSUM), ('x-status', '0')])


async def asgi_app(scope, receive, send):
    if scope['type'] == 'lifespan':
        await complete_lifespan(receive, send)
        return
    if scope['path'] == '/scope':
        body = repr(sorted(scope.get('extensions', {}))).encode()
        await send({'type': 'http.response.start', 'status': 200, 'headers': []})
        await send({'type': 'http.response.body', 'body': body})
        return
    headers = [(b'content-type', b'text/plain'), (b'trailer', b'x-checksum, x-status')]
    await send({'type': 'http.response.start', 'status': 200, 'headers': headers, 'trailers': True})
    await send({'type': 'http.response.body', 'body': b'hello ', 'more_body': True})
    await send({'type': 'http.response.body', 'body': b'world'})
    await send(
        {'type': 'http.response.trailers', 'headers': [(b'x-checksum', CHECKSUM.encode())], 'more_trailers': True}
    )
    await send({'type': 'http.response.trailers', 'headers': [(b'x-status', b'0')]})
