"""ASGI apps of the benchmark suite, one callable per scenario (`apps.asgi_suite:NAME`)."""

BODY_10K = b'x' * 10 * 1024
BODY_1M = b'x' * 1024 * 1024
CHUNK = b'x' * 1024
CHUNKS = 32
TEXT = [(b'content-type', b'text/plain')]
OCTETS = [(b'content-type', b'application/octet-stream')]


async def _fixed(send, body: bytes, headers=OCTETS):
    await send(
        {
            'type': 'http.response.start',
            'status': 200,
            'headers': [*headers, (b'content-length', str(len(body)).encode())],
        }
    )
    await send({'type': 'http.response.body', 'body': body})


async def _read_body(receive) -> bytes:
    parts = []
    more = True
    while more:
        message = await receive()
        parts.append(message.get('body', b''))
        more = message.get('more_body', False)
    return b''.join(parts)


async def body_10k(scope, receive, send):
    if scope['type'] == 'http':
        await _fixed(send, BODY_10K)


async def body_1m(scope, receive, send):
    if scope['type'] == 'http':
        await _fixed(send, BODY_1M)


async def upload(scope, receive, send):
    """Reads the whole request body, answers its size."""
    if scope['type'] == 'http':
        body = await _read_body(receive)
        await _fixed(send, str(len(body)).encode(), TEXT)


async def stream(scope, receive, send):
    """32 chunks of 1 KiB, no content-length: a chunked response."""
    if scope['type'] != 'http':
        return
    await send({'type': 'http.response.start', 'status': 200, 'headers': OCTETS})
    for _ in range(CHUNKS):
        await send({'type': 'http.response.body', 'body': CHUNK, 'more_body': True})
    await send({'type': 'http.response.body', 'body': b''})


async def ws_echo(scope, receive, send):
    """Websocket echo; plain HTTP requests get 'Hello, world!' (the runner's readiness probe)."""
    if scope['type'] == 'http':
        await _fixed(send, b'Hello, world!', TEXT)
        return
    if scope['type'] != 'websocket':
        return
    while True:
        message = await receive()
        kind = message['type']
        if kind == 'websocket.connect':
            await send({'type': 'websocket.accept'})
        elif kind == 'websocket.receive':
            if message.get('text') is not None:
                await send({'type': 'websocket.send', 'text': message['text']})
            else:
                await send({'type': 'websocket.send', 'bytes': message.get('bytes') or b''})
        else:  # websocket.disconnect
            return
