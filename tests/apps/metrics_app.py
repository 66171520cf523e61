"""The app the metrics tests count requests of: `/error` raises, websockets echo."""


async def app(scope, proto):
    if scope.proto == 'ws':
        transport = await proto.accept()
        while True:
            message = await transport.receive()
            if message.kind == 0:
                return
            await transport.send_str(message.data) if message.kind == 2 else await transport.send_bytes(message.data)
    if scope.path == '/error':
        raise RuntimeError('boom, for the metrics')
    body = await proto()
    proto.response_str(200, [('content-type', 'text/plain')], f'ok {len(body)}')
