async def app(scope, proto):
    body = await proto()
    proto.response_bytes(200, [('content-type', 'application/octet-stream')], body)
