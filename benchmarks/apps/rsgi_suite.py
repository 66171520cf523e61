"""RSGI apps of the benchmark suite, one callable per scenario (`apps.rsgi_suite:NAME`)."""

BODY_10K = b'x' * 10 * 1024
BODY_1M = b'x' * 1024 * 1024
CHUNK = b'x' * 1024
CHUNKS = 32
TEXT = [('content-type', 'text/plain')]
OCTETS = [('content-type', 'application/octet-stream')]


async def body_10k(scope, proto):
    proto.response_bytes(200, OCTETS, BODY_10K)


async def body_1m(scope, proto):
    proto.response_bytes(200, OCTETS, BODY_1M)


async def upload(scope, proto):
    """Reads the whole request body, answers its size."""
    body = await proto()
    proto.response_str(200, TEXT, str(len(body)))


async def stream(scope, proto):
    """32 chunks of 1 KiB, no content-length: a chunked response."""
    transport = proto.response_stream(200, OCTETS)
    for _ in range(CHUNKS):
        await transport.send_bytes(CHUNK)


async def ws_echo(scope, proto):
    """Websocket echo; plain HTTP requests get 'Hello, world!' (the runner's readiness probe)."""
    if scope.proto != 'ws':
        proto.response_str(200, TEXT, 'Hello, world!')
        return
    transport = await proto.accept()
    while True:
        message = await transport.receive()
        if message.kind == 0:
            return
        if message.kind == 1:
            await transport.send_bytes(message.data)
        else:
            await transport.send_str(message.data)
